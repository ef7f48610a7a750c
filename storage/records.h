// The rows of the vitscale database as plain structs. The Store (storage/store.h) reads and
// writes them; the sweep expander fills JobRecord from YAML; the coordinator, the agent and the
// CLI pass them around. No SQLite types leak out of storage/: these structs are the interface.
//
// Times are seconds since the Unix epoch (UTC) as doubles; FLOPs are plain FLOPs (not exa).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "protocol/enums.h"

namespace vitscale::storage {

// The domain's enumerations live in protocol/enums.h, once for every process.
using protocol::AttemptOutcome;
using protocol::AttemptOutcomeName;
using protocol::Evaluation;
using protocol::EvaluationName;
using protocol::IsFinal;
using protocol::IsFinalStateName;
using protocol::JobPhase;
using protocol::JobPhaseName;
using protocol::JobState;
using protocol::JobStateName;
using protocol::ParseAttemptOutcome;
using protocol::ParseEvaluation;
using protocol::ParseJobPhase;
using protocol::ParseJobState;

// What a running attempt is doing: its trainer's newest phase report (protocol::PhaseReport).
struct PhaseRecord {
  JobPhase phase = JobPhase::kPretraining;
  int64_t index = 0;  // the part under way, 1..count; 0 without parts
  int64_t count = 0;
  std::string detail;
};

// One job: a pretraining run plus its transfer evaluations, as the sweep expansion produced it.
struct JobRecord {
  std::string id;                  // lower-case hex SHA-256 of config_json (the canonical config)
  std::string model;               // registry name, e.g. "ViT-B/16"
  std::string family;              // "ViT", "ResNet" or "hybrid" (models::FamilyName)
  std::string dataset;             // pretraining dataset, e.g. "jft-300m", "fashion-mnist"
  int64_t subset_size = 0;         // pretraining examples used (the nested subset), > 0
  double epochs = 0;               // passes over the subset, > 0
  std::string config_json;         // the canonical config, as hashed into `id`
  double planned_train_flops = 0;  // 6 x MACs x images seen, from the registry
  int priority = 0;                // higher runs first
  int ranks = 1;                   // MPI ranks of one attempt
  int gpus_per_rank = 0;           // 0 = CPU ranks
  int retries_left = 0;            // failed -> pending while > 0
  // Set by the store; ignored by AddSweep.
  JobState state = JobState::kPending;
  int64_t submit_order = 0;  // global submission order, ties broken by position in the sweep
  double submitted_at = 0;
  double updated_at = 0;
  int64_t attempts = 0;               // attempts started so far
  std::optional<double> images_seen;  // the newest "images_seen" metric, if any
  std::optional<PhaseRecord> phase;   // the open attempt's newest phase, if it reported one
};

struct SweepRecord {
  int64_t id = 0;
  std::string name;
  std::string definition;  // the YAML text as submitted
  double created_at = 0;
};

struct AddSweepOutcome {
  int64_t sweep_id = 0;
  int added = 0;          // jobs new to the database
  int already_known = 0;  // jobs that existed (from this or another sweep) and were linked
};

// Per sweep: how many jobs are in each state and what they cost, for lists and dashboards.
struct SweepSummary {
  int64_t id = 0;
  std::string name;
  double created_at = 0;
  int64_t jobs = 0;
  std::map<std::string, int64_t> jobs_by_state;  // JobStateName -> count; absent states = 0
  double planned_train_flops = 0;                // sum over the sweep's jobs
  double spent_train_flops = 0;                  // sum over their ledger entries
};

// The orders ListJobs offers; each breaks ties by submission order.
enum class JobSort { kSubmitted, kPriority, kModel, kSubset, kState, kUpdated };
Expected<JobSort> ParseJobSort(std::string_view name);

// Selects jobs for ListJobs and CountJobs; unset or empty fields do not filter.
struct JobFilter {
  std::optional<std::string> sweep;  // sweep name; kSubmitted then means the sweep's own order
  std::vector<JobState> states;      // any of these
  std::optional<std::string> model;
  std::optional<int64_t> subset_size;
  JobSort sort = JobSort::kSubmitted;
  bool descending = false;
  int64_t limit = -1;  // -1 = no limit
  int64_t offset = 0;
};

struct AttemptRecord {
  std::string job_id;
  int number = 0;                       // 1, 2, ... per job, assigned by the store
  std::optional<std::string> agent_id;  // the leader agent; unset for standalone runs
  std::string hosts;                    // mpirun -H form, e.g. "h1:4,h2:4"
  double started_at = 0;
  std::optional<double> ended_at;
  std::optional<AttemptOutcome> outcome;
  std::optional<int> exit_status;
  std::optional<int64_t> resumed_from_step;  // unset = started from scratch
  // SHA-256 of the attempt's report token (common/secrets.h); empty for attempts recorded
  // before tokens existed or started outside a coordinator.
  std::string report_token_sha256;
};

// How an attempt ends, for Store::ApplyTransition.
struct AttemptEnd {
  AttemptOutcome outcome = AttemptOutcome::kFailed;
  std::optional<int> exit_status;
};

// One agent credential as stored: only the hash of the token.
struct AgentCredential {
  std::string host;
  std::string token_sha256;
  double issued_at = 0;
};

struct AgentRecord {
  std::string id;
  std::string host;
  int slots = 0;  // ranks the host can run at once
  int gpus = 0;
  double last_heartbeat_at = 0;
};

// One scalar of a training curve. Appended in batches; never updated.
struct MetricPoint {
  int64_t step = 0;
  std::string name;  // e.g. "train/loss", "lr"
  double value = 0;
  double time = 0;
};

struct CheckpointRecord {
  std::string job_id;
  int64_t step = 0;
  std::string path;
  std::string sha256;  // lower-case hex of the checkpoint file
  double created_at = 0;
};

// The metric name the result table reads; its value is a fraction in [0, 1].
inline constexpr std::string_view kAccuracyMetric = "accuracy";

struct ResultRecord {
  std::string job_id;
  Evaluation evaluation = Evaluation::kFewShot;
  std::string dataset;       // e.g. "imagenet", "cifar10"
  std::optional<int> shots;  // required for few_shot, unset otherwise
  std::optional<int> seed;   // few-shot sampling seed; unset when there is one run
  std::string metric;        // e.g. "accuracy"
  double value = 0;
};

// What one attempt cost. Recorded once per attempt; recording it again replaces it.
struct LedgerEntry {
  std::string job_id;
  int attempt = 0;
  double train_flops = 0;  // analytic: 6 x MACs x images seen in this attempt
  double eval_flops = 0;
  int64_t images_seen = 0;
  std::string device_kind;    // e.g. "cpu", "NVIDIA H100"
  double device_seconds = 0;  // summed over ranks' devices
  double wall_seconds = 0;
};

}  // namespace vitscale::storage
