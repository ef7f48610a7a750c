// The messages between people's tools (the CLI, the dashboard) and the coordinator
// (docs/api.md, "Reading" and "Changing"), the credential calls, the error body and the events
// of the event stream. Requests refuse unknown fields; replies and views ignore them.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "protocol/enums.h"
#include "protocol/json.h"
#include "protocol/reports.h"

namespace vitscale::protocol {

// Every 4xx and 5xx: {"error": "what is wrong and what to fix"}.
struct ErrorReply {
  std::string error;

  static Expected<ErrorReply> FromJson(const Json& value, const std::string& path);
  Json ToJson() const { return Json{{"error", error}}; }
};

// POST /api/v1/sweeps answers this.
struct SubmitReply {
  std::string sweep;
  int64_t jobs_added = 0;
  int64_t jobs_known = 0;
  std::vector<std::string> jobs;  // ids in the sweep's order

  static Expected<SubmitReply> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

// POST /api/v1/jobs/{id}/priority
struct PriorityRequest {
  int priority = 0;  // -1000000..1000000

  static Expected<PriorityRequest> FromJson(const Json& value, const std::string& path);
  Json ToJson() const { return Json{{"priority", priority}}; }
};

// POST /api/v1/agents/credentials (admin only): issue (or replace) a host's agent credential.
struct CredentialRequest {
  std::string host;

  static Expected<CredentialRequest> FromJson(const Json& value, const std::string& path);
  Json ToJson() const { return Json{{"host", host}}; }
};

struct CredentialReply {
  std::string host;
  std::string token;

  static Expected<CredentialReply> FromJson(const Json& value, const std::string& path);
  Json ToJson() const { return Json{{"host", host}, {"token", token}}; }
};

// A job as the job list shows it (and as a "job" event carries it).
struct JobSummary {
  std::string id;
  std::string model;
  std::string family;
  std::string dataset;
  int64_t subset_size = 0;
  double epochs = 0;
  JobState state = JobState::kPending;
  int priority = 0;
  int ranks = 1;
  int64_t attempts = 0;
  double planned_exaflops = 0;
  double images_seen = 0;
  double progress = 0;  // 0..1
  // What a running job is doing now (its open attempt's newest phase report); absent otherwise.
  std::optional<PhaseReport> phase;
  std::string created_at;
  std::string updated_at;

  static Expected<JobSummary> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

// A job-list cursor: hex, at most this long (storage::EncodeJobCursor).
inline constexpr TextRule kCursorRule{TextKind::kToken, 1024};

// GET /api/v1/jobs: one page of a keyset-paged list (docs/api.md). `next`/`prev` are opaque
// cursors for the pages after and before, absent at the ends; `total` is exact when
// `total_exact`, else a lower bound.
struct JobPage {
  int64_t total = 0;
  bool total_exact = true;
  int64_t limit = 0;
  std::vector<JobSummary> jobs;
  std::optional<std::string> next;
  std::optional<std::string> prev;

  static Expected<JobPage> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

struct AttemptView {
  int number = 0;
  std::optional<std::string> agent;
  std::string hosts;
  std::string started_at;
  std::optional<std::string> ended_at;
  std::optional<AttemptOutcome> outcome;
  std::optional<int> exit_status;
  std::optional<int64_t> resumed_from_step;

  static Expected<AttemptView> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

struct CheckpointView {
  int64_t step = 0;
  std::string path;
  std::string sha256;
  std::string created_at;

  static Expected<CheckpointView> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

// A job's cost over all its attempts.
struct LedgerTotals {
  double train_flops = 0;
  double eval_flops = 0;
  int64_t images_seen = 0;
  std::map<std::string, double> device_seconds;  // by device kind
  double wall_seconds = 0;

  static Expected<LedgerTotals> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

// GET /api/v1/jobs/{id}: the summary's fields and these ("attempts" is the list of attempts).
struct JobDetail {
  JobSummary summary;
  Json config;  // the canonical job config
  std::vector<std::string> sweeps;
  std::vector<AttemptView> attempts;
  std::vector<CheckpointView> checkpoints;
  std::vector<ResultEntry> results;
  LedgerTotals ledger;

  static Expected<JobDetail> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

// One sweep in GET /api/v1/sweeps; GET /api/v1/sweeps/{name} adds its definition.
struct SweepView {
  std::string name;
  std::string created_at;
  int64_t jobs = 0;
  std::map<std::string, int64_t> by_state;  // JobStateName -> count; absent states are 0
  double planned_exaflops = 0;
  double spent_exaflops = 0;
  std::optional<std::string> definition;  // the YAML as submitted

  static Expected<SweepView> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

struct SweepList {
  std::vector<SweepView> sweeps;

  static Expected<SweepList> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

// One agent in GET /api/v1/agents (and an "agent" event).
struct AgentInfo {
  std::string id;
  std::string host;
  int slots = 0;
  int gpus = 0;
  std::string gpu_kind;  // the GPUs' model ("NVIDIA H200"); "" without GPUs
  int free_slots = 0;
  int free_gpus = 0;
  std::string last_heartbeat;
  bool alive = false;
  std::vector<std::string> jobs;  // ids of the jobs whose leases hold its slots

  static Expected<AgentInfo> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

// One message of the event stream (GET /api/v1/events upgraded to a WebSocket).
struct Event {
  int64_t seq = 0;
  std::string time;
  std::string type;  // "job", "metric", "agent", "result", "sweep", or "reset"
  std::optional<std::string> job;
  Json data;  // the type's payload (docs/api.md, "Events")

  static Expected<Event> FromJson(const Json& value, const std::string& path);
  Json ToJson() const;
};

}  // namespace vitscale::protocol
