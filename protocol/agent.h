// The messages between an agent and the coordinator (docs/api.md, "Agents"): registration, the
// poll (heartbeat and long poll in one) with its launch and signal entries, and the exit report.
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

// One job an agent runs or holds: (job id, attempt number).
struct RunningEntry {
  std::string job;  // 64 hex digits
  int attempt = 0;  // >= 1

  static Expected<RunningEntry> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
  bool operator==(const RunningEntry& o) const { return job == o.job && attempt == o.attempt; }
};

// POST /api/v1/agents/register
struct RegisterRequest {
  std::string host;  // the agent's id and the name mpirun -H gets (RFC 1123)
  int slots = 0;
  int gpus = 0;
  std::vector<RunningEntry> running;  // absent = none

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

// One entry of a poll reply's "launch": run the job (the gang's leader) or hold slots for it.
struct LaunchEntry {
  std::string job;
  int attempt = 0;
  bool hold = false;  // a gang member: keep the slots leased, run nothing
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
  std::optional<int> attempt;  // a kill names none: whatever runs of the job stops
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

// POST /api/v1/jobs/{id}/attempts/{n}/exit, from the gang's leader.
struct ExitReport {
  std::string agent;
  ExitOutcome outcome = ExitOutcome::kFailed;
  std::optional<int> exit_status;  // absent when the job never started

  static Expected<ExitReport> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

}  // namespace vitscale::protocol
