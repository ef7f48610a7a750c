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
#include <utility>
#include <variant>
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
  std::string gpu_kind;            // the GPU model its ranks need; "" = any (or CPU ranks)
  bool one_host = false;           // every rank on one host (else the ranks may span hosts)
  int retries_left = 0;            // failed -> pending while > 0
  // Set by the store; ignored by AddSweep (ImportSweep writes state, submitted_at, updated_at).
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
  // AddSweep: the `added` new jobs as stored (pending, with their submit_order and times), in
  // the sweep's order, so that the caller need not read them back. ImportSweep leaves it empty.
  std::vector<JobRecord> added_jobs;
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

// Keyset paging of the job list (docs/storage.md, "Paging"): a page starts at one end of the
// order or just after/before a row's position, so every page costs the same however deep it is.
enum class PageFrom { kFirst, kLast, kAfter, kBefore };

// A row's place in a job-list order: its sort key (none for kSubmitted; an integer for priority
// and subset, a real for updated, text for model and state) and its tie-break, the job's
// submit_order, or its position in the sweep when a sweep is listed in its own order.
struct JobPosition {
  std::variant<std::monostate, int64_t, double, std::string> key;
  int64_t order = 0;
  bool operator==(const JobPosition& other) const {
    return key == other.key && order == other.order;
  }
};

struct JobPageRequest {
  JobFilter filter;  // its limit and offset are not used
  PageFrom from = PageFrom::kFirst;
  JobPosition position;  // the row the page starts after (kAfter) or ends before (kBefore)
  int64_t limit = 50;
};

struct JobPage {
  std::vector<JobRecord> jobs;
  std::optional<JobPosition> before;  // the first row's position, when rows precede it
  std::optional<JobPosition> after;   // the last row's position, when rows follow it
};

// How many jobs match a filter: exact from maintained counters where the filter allows, else
// counted up to a bound (exact = false means "at least jobs").
struct JobCount {
  int64_t jobs = 0;
  bool exact = true;
};

// Cursors are the API's opaque form of a JobPosition. They carry a fingerprint of the filter
// and order they were made for, so a cursor used with other filters, or edited, is refused
// (kInvalidArgument) rather than read as some other place in some other order.
std::string EncodeJobCursor(const JobFilter& filter, const JobPosition& position);
Expected<JobPosition> DecodeJobCursor(const JobFilter& filter, std::string_view cursor);
// The study table's cursors (the row's place in its sweep): (sweep id, position), or nullopt
// for anything EncodeStudyCursor did not write.
std::string EncodeStudyCursor(int64_t sweep_id, int64_t position);
std::optional<std::pair<int64_t, int64_t>> DecodeStudyCursor(std::string_view cursor);

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
  std::string gpu_kind{};  // the GPUs' model; "" without GPUs
};

// One scalar of a training curve. Appended in batches; never updated.
struct MetricPoint {
  int64_t step = 0;
  std::string name;  // e.g. "train/loss", "lr"
  double value = 0;
  double time = 0;
};

// Store::ApplyRetention's rule and what it did.
struct RetentionRule {
  double finished_before = 0;  // seconds since the epoch: jobs last updated before this
  int64_t keep_every = 10;     // keep steps divisible by this (and each curve's last point)
  std::optional<std::string> archive;  // the SQLite file removed points are copied to
};
struct RetentionOutcome {
  int64_t jobs = 0;            // finished jobs looked at
  int64_t points_removed = 0;  // from metrics (and copied to the archive when one was given)
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

// One succeeded attempt that ran from scratch, as the ledger and the attempt record it: what
// the planner's throughput table is measured from (planning/throughput.h).
struct ThroughputSample {
  std::string job_id;
  std::string model;
  std::string device_kind;
  int64_t batch_size = 0;  // the job's global batch
  int devices = 1;         // ranks x GPUs per rank (CPU ranks count as one device each)
  int64_t images = 0;      // images seen in pretraining
  double train_flops = 0;
  double seconds = 0;  // the attempt's launch to its exit
};

// A benchmark's measurement, imported by `vitscale throughput import`.
struct ThroughputImport {
  std::string model;
  std::string device_kind;
  std::string precision;  // "fp32", "bf16", ...
  int64_t batch_size = 0;
  double images_per_second = 0;  // per device
  double flops_per_image = 0;    // training FLOPs per image (6 x MACs)
  double overhead_seconds = 0;   // per job, beside the images (start-up, evaluations)
  std::string source;            // where it came from, for people
  double imported_at = 0;        // set by the store
};

}  // namespace vitscale::storage
