#include "coordinator/core.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iterator>

#include "common/text.h"
#include "coordinator/views.h"
#include "protocol/json.h"

namespace vitscale::coordinator {

using storage::JobRecord;

std::vector<JobRecord> ToJobRecords(const std::vector<sweep::Job>& expanded, int retries) {
  std::vector<JobRecord> records;
  records.reserve(expanded.size());
  for (const sweep::Job& job : expanded) {
    JobRecord record;
    record.id = job.id;
    record.model = job.config.model;
    record.family = job.family;
    record.dataset = job.config.dataset;
    record.subset_size = job.config.subset;
    record.epochs = job.config.train.epochs;
    record.config_json = protocol::Dump(job.canonical);
    record.planned_train_flops = job.train_flops;
    record.priority = static_cast<int>(job.priority);
    record.ranks = static_cast<int>(job.resources.ranks);
    record.gpus_per_rank = static_cast<int>(job.resources.gpus_per_rank);
    record.gpu_kind = job.resources.gpu_kind;
    record.one_host = job.resources.one_host;
    record.retries_left = retries;
    records.push_back(std::move(record));
  }
  return records;
}

JobSpec ToJobSpec(const JobRecord& job) {
  JobSpec spec;
  spec.id = job.id;
  spec.priority = job.priority;
  spec.submit_order = job.submit_order;
  spec.ranks = job.ranks;
  spec.gpus_per_rank = job.gpus_per_rank;
  spec.gpu_kind = job.gpu_kind;
  // One host is preferred; spanning hosts is allowed when needed, unless the sweep said not to.
  spec.multi_host = !job.one_host;
  spec.retries_left = job.retries_left;
  return spec;
}

Core::Core(boost::asio::io_context& io, storage::Store& store, const Clock& clock,
           CoordinatorOptions options, std::unique_ptr<Scheduler> scheduler)
    : io_(io),
      store_(store),
      clock_(clock),
      options_(std::move(options)),
      scheduler_(std::move(scheduler)),
      events_(options_.max_events, options_.max_event_bytes, clock),
      mailbox_(io, options_.poll_timeout) {
  mailbox_.SetLeaseSeconds(lease_seconds());
}

int Core::lease_seconds() const {
  return static_cast<int>(
      std::chrono::duration_cast<std::chrono::seconds>(options_.scheduler.lease_duration).count());
}

void Core::NoteAgent(const std::string& id) {
  if (std::find(agent_ids_.begin(), agent_ids_.end(), id) == agent_ids_.end()) {
    agent_ids_.push_back(id);
  }
}

namespace {

// What a job's attempts say about its failures: how many (they drive the backoff) and, when its
// newest ended attempt failed, the wall time that attempt ended (its backoff runs from then).
struct FailureHistory {
  int failures = 0;
  std::optional<double> backing_off_since;
  bool open_attempt = false;  // its newest attempt has not ended
};

Expected<FailureHistory> ReadFailureHistory(storage::Store& store, const JobRecord& job) {
  FailureHistory history;
  if (job.attempts == 0) return history;
  ASSIGN_OR_RETURN(std::vector<storage::AttemptRecord> attempts, store.ListAttempts(job.id));
  const storage::AttemptRecord* newest_ended = nullptr;
  for (const storage::AttemptRecord& attempt : attempts) {  // in number order
    history.open_attempt = !attempt.ended_at;
    if (!attempt.ended_at) continue;
    newest_ended = &attempt;
    if (attempt.outcome == storage::AttemptOutcome::kFailed) ++history.failures;
  }
  if (newest_ended && newest_ended->outcome == storage::AttemptOutcome::kFailed) {
    history.backing_off_since = newest_ended->ended_at;
  }
  return history;
}

}  // namespace

Status Core::RestoreJobs() {
  // Only unfinished jobs are read, a state at a time from its index: a database of a million
  // mostly finished jobs costs what its pending and running work costs, in time and memory.
  std::vector<JobRecord> jobs;
  for (JobState state :
       {JobState::kPending, JobState::kLeased, JobState::kRunning, JobState::kPreempted}) {
    storage::JobFilter unfinished;
    unfinished.states = {state};
    ASSIGN_OR_RETURN(std::vector<JobRecord> some, store_.ListJobs(unfinished));
    for (JobRecord& job : some) jobs.push_back(std::move(job));
  }
  for (JobRecord& job : jobs) {
    if (IsFinal(job.state)) continue;  // finished jobs need no scheduling
    // Backoffs are not stored as such: the attempts' outcomes and end times (wall clock) are,
    // and they give the same deadline after a restart, also of a coordinator on another clock.
    ASSIGN_OR_RETURN(FailureHistory history, ReadFailureHistory(store_, job));
    JobSpec spec = ToJobSpec(job);
    spec.failures = history.failures;
    std::optional<TimePoint> eligible_at;
    if (history.backing_off_since) {
      double waited = clock_.WallSeconds() - *history.backing_off_since;
      eligible_at = clock_.Now() + scheduler_->BackoffAfter(history.failures) -
                    std::chrono::duration_cast<Duration>(std::chrono::duration<double>(waited));
    }
    // A lease is written as its attempt alone, the job's row a second later (Apply): a pending
    // job with an open attempt is leased, and its row's write is due as any unwritten lease's.
    // Nothing is written here, so that a store that refuses writes cannot stop a Resync.
    if (job.state == JobState::kPending && history.open_attempt) {
      job.state = JobState::kLeased;
      Transition lease{job.id, JobState::kPending, JobState::kLeased, Reason::kPlaced,
                       job.retries_left, {}};
      unwritten_[job.id] = UnwrittenChange{JobState::kPending, std::move(lease), clock_.Now()};
    }
    switch (job.state) {
      case JobState::kPending:
        RETURN_IF_ERROR(scheduler_->AddJob(spec, eligible_at));
        break;
      case JobState::kLeased:
      case JobState::kRunning:
      case JobState::kPreempted: {
        ASSIGN_OR_RETURN(std::optional<storage::AttemptRecord> attempt,
                         store_.OpenAttempt(job.id));
        std::vector<Placement> placements;
        if (attempt) {
          Expected<std::vector<protocol::HostRanks>> hosts =
              protocol::ParseHosts(attempt->hosts, "hosts");
          if (hosts.ok()) {
            for (const protocol::HostRanks& h : *hosts) {
              placements.push_back({h.host, h.host, h.ranks, h.ranks * job.gpus_per_rank});
            }
          }
        }
        if (placements.empty()) {
          // Killed between persisting the lease and recording its attempt: nothing was
          // launched, so the job simply waits again.
          RETURN_IF_ERROR(store_.SetJobState(job.id, JobState::kPending, job.state));
          RETURN_IF_ERROR(scheduler_->AddJob(spec, eligible_at));
          break;
        }
        RETURN_IF_ERROR(scheduler_->RestoreJob(spec, job.state, placements));
        break;
      }
      default:
        break;
    }
  }
  return Status::Ok();
}

void Core::Resync() {
  std::fprintf(stderr,
               "coordinator: a store write failed; rebuilding the scheduler from the store\n");
  Expected<Scheduler> fresh = Scheduler::Create(&clock_, options_.scheduler);
  if (!fresh.ok()) return;
  auto rebuilt = std::make_unique<Scheduler>(std::move(fresh).value());
  // Agents stay registered; their next heartbeats re-adopt the jobs they run.
  for (const std::string& id : agent_ids_) {
    if (std::optional<AgentView> agent = scheduler_->GetAgent(id); agent && agent->alive) {
      Status ignored = rebuilt->RegisterAgent(agent->spec);
      (void)ignored;
    }
  }
  std::unique_ptr<Scheduler> old = std::move(scheduler_);
  scheduler_ = std::move(rebuilt);
  // The rebuilt jobs are as stored (RestoreJobs notes the leases whose rows are not written);
  // their agents' next polls report the starts again.
  std::map<std::string, UnwrittenChange> old_unwritten = std::move(unwritten_);
  unwritten_.clear();
  Status restored = RestoreJobs();
  if (!restored.ok()) {
    std::fprintf(stderr, "coordinator: cannot read the store to rebuild the scheduler: %s\n",
                 restored.ToString().c_str());
    scheduler_ = std::move(old);  // the store cannot be read: keep what we know
    unwritten_ = std::move(old_unwritten);
    return;
  }
}

void Core::Tick() {
  // The leases and starts due to be written first, in the scheduling pass's transaction.
  std::vector<Action> actions = DueWrites(clock_.Now() - kStateWriteDelay);
  std::vector<Action> scheduled = scheduler_->Schedule();
  actions.insert(actions.end(), std::make_move_iterator(scheduled.begin()),
                 std::make_move_iterator(scheduled.end()));
  Status status = Apply(actions);
  if (!status.ok()) std::fprintf(stderr, "coordinator: %s\n", status.ToString().c_str());
  if (tick_hook_) tick_hook_();
}

Expected<JobRecord> Core::FindJob(const std::string& id_or_prefix) {
  bool hex = !id_or_prefix.empty() && id_or_prefix.size() <= 64 &&
             id_or_prefix.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (!hex) {
    return NotFound("'" + Printable(id_or_prefix, 80) +
                    "' is not a job id (64 hex digits, or a prefix of 8+)");
  }
  if (id_or_prefix.size() == 64) return store_.GetJob(id_or_prefix);
  if (id_or_prefix.size() < 8) {
    return InvalidArgument("job id prefix '" + id_or_prefix + "' is too short: give 8+ hex digits");
  }
  return store_.GetJobByPrefix(id_or_prefix);
}

std::string Core::RunDir(const std::string& job_id) const {
  return (std::filesystem::path(options_.runs_dir) / job_id).string();
}

std::string Core::AttemptLogPath(const std::string& job_id, int attempt) const {
  return fmt::format("{}/attempt-{}.log", RunDir(job_id), attempt);
}

void Core::AnnounceJob(const JobRecord& job) {
  events_.Append("job", job.id, SummaryOf(job).ToJson());
}

}  // namespace vitscale::coordinator
