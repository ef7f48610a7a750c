#include "coordinator/core.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "common/text.h"
#include "coordinator/views.h"

namespace vitscale::coordinator {

using storage::JobRecord;

JobSpec ToJobSpec(const JobRecord& job) {
  JobSpec spec;
  spec.id = job.id;
  spec.priority = job.priority;
  spec.submit_order = job.submit_order;
  spec.ranks = job.ranks;
  spec.gpus_per_rank = job.gpus_per_rank;
  spec.multi_host = true;  // one host is preferred; spanning hosts is allowed when needed
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

Status Core::RestoreJobs() {
  ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, store_.ListJobs(storage::JobFilter{}));
  for (const JobRecord& job : jobs) {
    switch (job.state) {
      case JobState::kPending:
        RETURN_IF_ERROR(scheduler_->AddJob(ToJobSpec(job)));
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
          RETURN_IF_ERROR(scheduler_->AddJob(ToJobSpec(job)));
          break;
        }
        RETURN_IF_ERROR(scheduler_->RestoreJob(ToJobSpec(job), job.state, placements));
        break;
      }
      default:
        break;  // finished jobs need no scheduling
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
  Status restored = RestoreJobs();
  if (!restored.ok()) {
    std::fprintf(stderr, "coordinator: cannot read the store to rebuild the scheduler: %s\n",
                 restored.ToString().c_str());
    scheduler_ = std::move(old);  // the store cannot be read: keep what we know
  }
}

void Core::Tick() {
  Status status = Apply(scheduler_->Schedule());
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
