// The messages between an agent and the coordinator (docs/api.md, "Agents"): registration, the
// poll (heartbeat and long poll in one) with its launch and signal entries, and the exit batch.
// Requests (agent -> coordinator) refuse unknown fields; replies ignore them (protocol/json.h).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "protocol/enums.h"
#include "protocol/json.h"

namespace vitscale::protocol {

// Limits of one message.
inline constexpr int kMaxSlots = 4096;         // slots or GPUs of one agent
inline constexpr size_t kMaxRunning = 4096;    // jobs one agent lists
inline constexpr int kMaxAttempt = 1000000;
inline constexpr int kMaxRanks = 65536;
inline constexpr int kMaxGraceSeconds = 86400;
// The accelerator kind of CPU slots; a host's GPUs have their model's name as their kind.
inline constexpr char kCpuKind[] = "cpu";
inline constexpr TextRule kGpuKindRule{TextKind::kText, 128};

// Checks a GPU kind: one line of text, not empty, not "cpu".
Status CheckGpuKind(const std::string& path, const std::string& kind);

// GPU indices as the host numbers them (nvidia-smi's index, CUDA_VISIBLE_DEVICES's values),
// "gpus": [0, 1]: each in [0, kMaxSlots), none twice.
Status CheckGpuIndices(const std::string& path, const std::vector<int>& indices);
// "0,1": the value CUDA_VISIBLE_DEVICES gets.
std::string GpuIndicesString(const std::vector<int>& indices);

// One job an agent runs or holds: (job id, attempt number).
struct RunningEntry {
  std::string job;  // 64 hex digits
  int attempt = 0;  // >= 1
  // The GPUs of this host the job uses (absent: none). Sent in registrations, so that a
  // restarted coordinator learns which GPUs its running jobs hold.
  std::vector<int> gpus{};

  static Expected<RunningEntry> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
  bool operator==(const RunningEntry& o) const {
    return job == o.job && attempt == o.attempt && gpus == o.gpus;
  }
};

// The file in the coordinator's runs folder that names it: a random token written once.
inline constexpr const char* kRunsMarkFile = ".vitscale-runs-mark";

// POST /api/v1/agents/register
struct RegisterRequest {
  std::string host;  // the agent's id and the name mpirun -H gets (RFC 1123)
  int slots = 0;
  int gpus = 0;          // GPUs 0..gpus-1 of this host, offered besides the CPU slots
  std::string gpu_kind;  // their model ("NVIDIA H200"); required when gpus > 0, else absent
  std::vector<RunningEntry> running;  // absent = none
  // The content of <runs dir>/.vitscale-runs-mark as this host reads it (kRunsMarkFile); absent
  // when it cannot. The same mark as the coordinator's proves that the host sees the
  // coordinator's runs folder, which jobs spanning hosts need (docs/deploy.md).
  std::optional<std::string> runs_mark;

  static Expected<RegisterRequest> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

struct RegisterReply {
  std::string agent;
  int lease_seconds = 30;
  std::vector<RunningEntry> not_held;  // listed jobs whose leases the agent no longer holds

  static Expected<RegisterReply> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

// POST /api/v1/agents/{host}/poll
struct PollRequest {
  std::vector<RunningEntry> running;

  static Expected<PollRequest> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

// Where a gang's ranks run: "host:ranks" items, the leader first.
struct HostRanks {
  std::string host;
  int ranks = 0;
  bool operator==(const HostRanks& o) const { return host == o.host && ranks == o.ranks; }
};
// "h1:2,h2:2" <-> hosts; every host an RFC 1123 name, every count >= 1.
std::string HostsString(const std::vector<HostRanks>& hosts);
Expected<std::vector<HostRanks>> ParseHosts(std::string_view text, const std::string& path);

// The GPUs a job uses on one host of its gang.
struct HostGpus {
  std::string host;
  std::vector<int> gpus;

  static Expected<HostGpus> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
  bool operator==(const HostGpus& o) const { return host == o.host && gpus == o.gpus; }
};

// One entry of a poll reply's "launch": run the job (the gang's leader) or hold slots for it.
struct LaunchEntry {
  std::string job;
  int attempt = 0;
  bool hold = false;  // a gang member: keep the slots leased, run nothing
  // A GPU job's devices: the leader's entry names every host of `hosts`, in its order; a hold
  // names its own host. Empty for a CPU job.
  std::vector<HostGpus> gpus;
  // The leader's fields (absent in a hold):
  int ranks = 0;
  std::vector<HostRanks> hosts;
  int grace_seconds = 0;
  std::string log;  // absolute path of the attempt's log
  Json spec;        // what vitscale-train runs (docs/train-spec.md), checked by the trainer

  static Expected<LaunchEntry> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

// One entry of a poll reply's "signal".
struct SignalEntry {
  std::string job;
  // The attempt it is for. An agent applies it to that attempt only: a kill of an old attempt
  // never reaches the job's next one, here or on a restarted agent.
  int attempt = 0;
  SignalAction action = SignalAction::kPreempt;
  std::optional<int> grace_seconds;  // a preemption's time before SIGKILL

  static Expected<SignalEntry> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

struct PollReply {
  std::vector<LaunchEntry> launch;
  std::vector<SignalEntry> signal;
  int lease_seconds = 30;

  static Expected<PollReply> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

// The 409 answer to a poll that lists jobs the agent does not hold.
struct NotHeldReply {
  std::string error;
  std::vector<RunningEntry> not_held;

  static Expected<NotHeldReply> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

// One exit of an exit batch: how an attempt that this agent led ended.
struct ExitEntry {
  std::string job;
  int attempt = 0;
  ExitOutcome outcome = ExitOutcome::kFailed;
  std::optional<int> exit_status;  // absent when the job never started

  static Expected<ExitEntry> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
  bool operator==(const ExitEntry& o) const {
    return job == o.job && attempt == o.attempt && outcome == o.outcome &&
           exit_status == o.exit_status;
  }
};

// Exits in one batch: an agent holds at most kMaxRunning jobs, so one batch holds every exit
// it has waiting.
inline constexpr size_t kMaxExits = kMaxRunning;

// POST /api/v1/agents/{host}/exits, from the leader of the attempts: the exits it has reaped
// since its last report, recorded in one transaction. At least one; no attempt twice.
struct ExitBatch {
  std::vector<ExitEntry> exits;

  static Expected<ExitBatch> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

// What became of one exit of a batch.
struct ExitResultEntry {
  std::string job;
  int attempt = 0;
  ExitResult result = ExitResult::kRecorded;
  std::string message;  // why, when not kRecorded; else empty

  static Expected<ExitResultEntry> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

// The 200 answer to an exit batch, sent once the recorded exits are committed: one result per
// exit, in the batch's order.
struct ExitBatchReply {
  std::vector<ExitResultEntry> results;

  static Expected<ExitBatchReply> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

}  // namespace vitscale::protocol
