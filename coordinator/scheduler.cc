#include "coordinator/scheduler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "common/names.h"

namespace vitscale::coordinator {
namespace {

// Our own names, so that this target needs no link to the store; they match JobStateName.
const char* StateName(JobState state) {
  switch (state) {
    case JobState::kPending:
      return "pending";
    case JobState::kLeased:
      return "leased";
    case JobState::kRunning:
      return "running";
    case JobState::kSucceeded:
      return "succeeded";
    case JobState::kFailed:
      return "failed";
    case JobState::kCancelled:
      return "cancelled";
    case JobState::kPreempted:
      return "preempted";
  }
  return "unknown";
}

// Ranks of a job with `gpus_per_rank` that fit into free `slots` and `gpus`.
int RanksThatFit(int gpus_per_rank, int slots, int gpus) {
  if (gpus_per_rank <= 0) return std::max(slots, 0);
  return std::max(std::min(slots, gpus / gpus_per_rank), 0);
}

std::vector<std::string> AgentIds(const JobView& job) {
  std::vector<std::string> ids;
  for (const Holder& h : job.holders) ids.push_back(h.placement.agent_id);
  return ids;
}

}  // namespace

const char* ReasonName(Reason reason) {
  switch (reason) {
    case Reason::kPlaced:
      return "placed";
    case Reason::kStarted:
      return "started";
    case Reason::kSucceeded:
      return "succeeded";
    case Reason::kRetry:
      return "retry";
    case Reason::kOutOfMemory:
      return "out_of_memory";
    case Reason::kFailed:
      return "failed";
    case Reason::kConfigError:
      return "config_error";
    case Reason::kPreemptRequested:
      return "preempt_requested";
    case Reason::kPreempted:
      return "preempted";
    case Reason::kLeaseLost:
      return "lease_lost";
    case Reason::kHostUnreachable:
      return "host_unreachable";
    case Reason::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

Expected<Scheduler> Scheduler::Create(const Clock* clock, SchedulerOptions options) {
  if (clock == nullptr) return InvalidArgument("the scheduler needs a clock");
  if (options.lease_duration <= Duration::zero()) {
    return InvalidArgument("lease_duration must be > 0");
  }
  if (options.backoff_initial < Duration::zero()) {
    return InvalidArgument("backoff_initial must be >= 0");
  }
  if (!(options.backoff_factor >= 1.0)) {
    return InvalidArgument(
        fmt::format("backoff_factor must be >= 1, got {}", options.backoff_factor));
  }
  if (options.backoff_max < options.backoff_initial) {
    return InvalidArgument("backoff_max must be >= backoff_initial");
  }
  if (options.preempt_grace < Duration::zero()) {
    return InvalidArgument("preempt_grace must be >= 0");
  }
  if (options.reserve_after < Duration::zero()) {
    return InvalidArgument("reserve_after must be >= 0");
  }
  return Scheduler(clock, options);
}

Scheduler::Scheduler(const Clock* clock, SchedulerOptions options)
    : clock_(clock), options_(options) {}

// Jobs ------------------------------------------------------------------------------------

Status Scheduler::CheckSpec(const JobSpec& spec) {
  if (spec.id.empty()) return InvalidArgument("job id must not be empty");
  if (spec.ranks < 1) {
    return InvalidArgument(
        fmt::format("job '{}': ranks must be >= 1, got {}", spec.id, spec.ranks));
  }
  if (spec.gpus_per_rank < 0) {
    return InvalidArgument(
        fmt::format("job '{}': gpus_per_rank must be >= 0, got {}", spec.id, spec.gpus_per_rank));
  }
  if (spec.retries_left < 0) {
    return InvalidArgument(
        fmt::format("job '{}': retries_left must be >= 0, got {}", spec.id, spec.retries_left));
  }
  if (spec.failures < 0) {
    return InvalidArgument(
        fmt::format("job '{}': failures must be >= 0, got {}", spec.id, spec.failures));
  }
  return Status::Ok();
}

Status Scheduler::AddJob(const JobSpec& spec, std::optional<TimePoint> eligible_at) {
  RETURN_IF_ERROR(CheckSpec(spec));
  if (jobs_.count(spec.id) > 0) {
    return AlreadyExists(fmt::format("job '{}' is already scheduled", spec.id));
  }
  JobView job;
  job.spec = spec;
  job.failures = spec.failures;
  job.eligible_at = eligible_at.value_or(clock_->Now());
  jobs_.emplace(spec.id, std::move(job));
  pending_.insert(KeyOf(spec));
  return Status::Ok();
}

Status Scheduler::RestoreJob(const JobSpec& spec, JobState state,
                             std::vector<Placement> placements) {
  RETURN_IF_ERROR(CheckSpec(spec));
  if (jobs_.count(spec.id) > 0) {
    return AlreadyExists(fmt::format("job '{}' is already scheduled", spec.id));
  }
  if (state != JobState::kLeased && state != JobState::kRunning && state != JobState::kPreempted) {
    return InvalidArgument(fmt::format(
        "job '{}': only a leased, running or preempted job holds slots to restore, not a {} one",
        spec.id, StateName(state)));
  }
  int ranks = 0;
  for (const Placement& p : placements) {
    if (p.agent_id.empty() || p.ranks < 1) {
      return InvalidArgument(
          fmt::format("job '{}': each placement needs an agent id and ranks >= 1", spec.id));
    }
    ranks += p.ranks;
  }
  if (ranks != spec.ranks) {
    return InvalidArgument(fmt::format("job '{}': placements hold {} ranks but the job has {}",
                                       spec.id, ranks, spec.ranks));
  }
  TimePoint now = clock_->Now();
  JobView job;
  job.spec = spec;
  job.failures = spec.failures;
  job.state = state;
  job.eligible_at = now;
  job.leased_at = now;
  for (Placement& p : placements)
    job.holders.push_back({std::move(p), now + options_.lease_duration});
  jobs_.emplace(spec.id, std::move(job));
  leased_.insert(spec.id);
  return Status::Ok();
}

Expected<JobView*> Scheduler::FindJob(const std::string& job_id) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return NotFound(fmt::format("no job '{}' is scheduled", job_id));
  return &it->second;
}

Status Scheduler::SetPriority(const std::string& job_id, int priority) {
  ASSIGN_OR_RETURN(JobView * job, FindJob(job_id));
  if (IsFinal(job->state)) {
    return FailedPrecondition(fmt::format("job '{}' is {}; its priority no longer matters", job_id,
                                          StateName(job->state)));
  }
  if (job->state == JobState::kPending) pending_.erase(KeyOf(job->spec));
  job->spec.priority = priority;
  if (job->state == JobState::kPending) pending_.insert(KeyOf(job->spec));
  return Status::Ok();
}

void Scheduler::MoveTo(JobView& job, JobState to, Reason reason, std::vector<Action>& actions) {
  if (job.state == JobState::kPending) {
    pending_.erase(KeyOf(job.spec));
    job.reservation.clear();
    reserved_.erase(job.spec.id);
  }
  if (to == JobState::kPending) pending_.insert(KeyOf(job.spec));
  actions.push_back(
      Transition{job.spec.id, job.state, to, reason, job.spec.retries_left, job.eligible_at});
  job.state = to;
}

void Scheduler::ReleaseLease(JobView& job) {
  job.holders.clear();
  leased_.erase(job.spec.id);
}

Expected<std::vector<Action>> Scheduler::Cancel(const std::string& job_id) {
  ASSIGN_OR_RETURN(JobView * job, FindJob(job_id));
  if (IsFinal(job->state)) {
    return FailedPrecondition(
        fmt::format("job '{}' is already {}; only unfinished jobs can be cancelled", job_id,
                    StateName(job->state)));
  }
  std::vector<Action> actions;
  MoveTo(*job, JobState::kCancelled, Reason::kCancelled, actions);
  if (!job->holders.empty()) actions.push_back(Kill{job_id, AgentIds(*job)});
  return actions;
}

Expected<std::vector<Action>> Scheduler::Preempt(const std::string& job_id) {
  ASSIGN_OR_RETURN(JobView * job, FindJob(job_id));
  if (job->state == JobState::kPreempted) return std::vector<Action>{};  // already on its way
  if (job->state != JobState::kLeased && job->state != JobState::kRunning) {
    return FailedPrecondition(
        fmt::format("job '{}' is {}; only a leased or running job can be preempted", job_id,
                    StateName(job->state)));
  }
  std::vector<Action> actions;
  MoveTo(*job, JobState::kPreempted, Reason::kPreemptRequested, actions);
  actions.push_back(
      Signal{job_id, job->holders.front().placement.agent_id, options_.preempt_grace});
  return actions;
}

// Agents ----------------------------------------------------------------------------------

Status Scheduler::RegisterAgent(const AgentSpec& spec) {
  if (spec.id.empty()) return InvalidArgument("agent id must not be empty");
  if (spec.host.empty()) {
    return InvalidArgument(fmt::format("agent '{}': host must not be empty", spec.id));
  }
  if (spec.slots < 0 || spec.gpus < 0) {
    return InvalidArgument(fmt::format("agent '{}': slots and gpus must be >= 0, got {} and {}",
                                       spec.id, spec.slots, spec.gpus));
  }
  AgentView& agent = agents_[spec.id];
  agent.spec = spec;
  agent.last_heartbeat = clock_->Now();
  return Status::Ok();
}

Status Scheduler::CheckAgent(const std::string& agent_id) const {
  if (agents_.count(agent_id) > 0) return Status::Ok();
  std::vector<std::string> known;
  for (const auto& [id, agent] : agents_) known.push_back(id);
  return NotFound(fmt::format("agent '{}' is not registered; register it first{}", agent_id,
                              DidYouMean(agent_id, known)));
}

bool Scheduler::Alive(const AgentView& agent) const {
  return clock_->Now() < agent.last_heartbeat + options_.lease_duration;
}

Status Scheduler::Heartbeat(const std::string& agent_id, const std::vector<std::string>& job_ids) {
  RETURN_IF_ERROR(CheckAgent(agent_id));
  // Check every lease before touching any, so that a rejected heartbeat changes nothing.
  std::vector<Holder*> holders;
  for (const std::string& job_id : job_ids) {
    Holder* held = nullptr;
    auto it = jobs_.find(job_id);
    if (it != jobs_.end()) {
      for (Holder& h : it->second.holders) {
        if (h.placement.agent_id == agent_id) held = &h;
      }
    }
    if (held == nullptr) {
      return FailedPrecondition(fmt::format(
          "agent '{}' holds no lease on job '{}' (it ran out or was never granted); stop that job",
          agent_id, job_id));
    }
    holders.push_back(held);
  }
  TimePoint now = clock_->Now();
  agents_[agent_id].last_heartbeat = now;
  for (Holder* h : holders) h->deadline = now + options_.lease_duration;
  return Status::Ok();
}

Status Scheduler::AdoptGpus(const std::string& agent_id, const std::string& job_id,
                           const std::vector<int>& indices) {
  RETURN_IF_ERROR(CheckAgent(agent_id));
  ASSIGN_OR_RETURN(JobView * job, FindJob(job_id));
  for (Holder& h : job->holders) {
    if (h.placement.agent_id != agent_id) continue;
    std::set<int> distinct(indices.begin(), indices.end());
    int offered = agents_[agent_id].spec.gpus;
    if (h.placement.gpus == 0 || static_cast<int>(distinct.size()) != h.placement.gpus ||
        static_cast<int>(indices.size()) != h.placement.gpus || *distinct.begin() < 0 ||
        *distinct.rbegin() >= offered) {
      return FailedPrecondition(fmt::format(
          "agent '{}' holds {} GPUs of job '{}' (of its {}), but lists {} for it", agent_id,
          h.placement.gpus, job_id, offered, indices.size()));
    }
    h.placement.gpu_indices = indices;
    return Status::Ok();
  }
  return FailedPrecondition(
      fmt::format("agent '{}' holds no lease on job '{}'", agent_id, job_id));
}

Expected<std::vector<Action>> Scheduler::ReportStarted(const std::string& agent_id,
                                                       const std::string& job_id) {
  RETURN_IF_ERROR(CheckAgent(agent_id));
  ASSIGN_OR_RETURN(JobView * job, FindJob(job_id));
  if (job->holders.empty() || job->holders.front().placement.agent_id != agent_id) {
    return FailedPrecondition(
        fmt::format("agent '{}' does not lead job '{}'; stop that job", agent_id, job_id));
  }
  agents_[agent_id].last_heartbeat = clock_->Now();  // any report proves the agent alive
  std::vector<Action> actions;
  if (job->state == JobState::kLeased) MoveTo(*job, JobState::kRunning, Reason::kStarted, actions);
  return actions;
}

Expected<std::vector<Action>> Scheduler::ReportExit(const std::string& agent_id,
                                                    const std::string& job_id, ExitKind exit) {
  RETURN_IF_ERROR(CheckAgent(agent_id));
  ASSIGN_OR_RETURN(JobView * job, FindJob(job_id));
  if (job->holders.empty() || job->holders.front().placement.agent_id != agent_id) {
    return FailedPrecondition(fmt::format(
        "agent '{}' does not lead job '{}' (its lease ran out or was never granted); its exit "
        "is not recorded",
        agent_id, job_id));
  }
  agents_[agent_id].last_heartbeat = clock_->Now();
  ReleaseLease(*job);
  std::vector<Action> actions;
  if (IsFinal(job->state)) return actions;  // cancelled while running: the exit only frees slots
  TimePoint now = clock_->Now();
  switch (exit) {
    case ExitKind::kSucceeded:
      MoveTo(*job, JobState::kSucceeded, Reason::kSucceeded, actions);
      break;
    case ExitKind::kConfigError:
      MoveTo(*job, JobState::kFailed, Reason::kConfigError, actions);
      break;
    case ExitKind::kPreempted:
      job->eligible_at = now;
      MoveTo(*job, JobState::kPending, Reason::kPreempted, actions);
      break;
    case ExitKind::kOutOfMemory:
      // Each such exit halves a recorded batch, and at 1 the trainer reports a configuration
      // error instead: the run of these retries is finite without counting them.
      job->eligible_at = now;
      MoveTo(*job, JobState::kPending, Reason::kOutOfMemory, actions);
      break;
    case ExitKind::kFailed:
    case ExitKind::kUnreachable: {
      // An unreachable host is the cluster's fault, not the job's: no retry is used, but the
      // backoff applies, so that the job is not placed on the same hosts again at once.
      job->failures += 1;
      const bool unreachable = exit == ExitKind::kUnreachable;
      if (!unreachable && job->spec.retries_left <= 0) {
        MoveTo(*job, JobState::kFailed, Reason::kFailed, actions);
        break;
      }
      if (!unreachable) job->spec.retries_left -= 1;
      job->eligible_at = now + BackoffAfter(job->failures);
      MoveTo(*job, JobState::kPending, unreachable ? Reason::kHostUnreachable : Reason::kRetry,
             actions);
      break;
    }
  }
  return actions;
}

Duration Scheduler::BackoffAfter(int failures) const {
  if (failures <= 0) return Duration::zero();
  double scale = std::pow(options_.backoff_factor, failures - 1);
  double delay = std::min(static_cast<double>(options_.backoff_initial.count()) * scale,
                          static_cast<double>(options_.backoff_max.count()));
  return Duration(static_cast<Duration::rep>(delay));
}

// Scheduling ------------------------------------------------------------------------------

void Scheduler::ExpireLeases(std::vector<Action>& actions) {
  TimePoint now = clock_->Now();
  std::vector<std::string> expired;
  for (const std::string& job_id : leased_) {
    const JobView& job = jobs_.at(job_id);
    for (const Holder& h : job.holders) {
      if (now >= h.deadline) {
        expired.push_back(job_id);
        break;
      }
    }
  }
  for (const std::string& job_id : expired) {
    JobView& job = jobs_.at(job_id);
    // One lost holder breaks the gang; the others must stop before the job runs elsewhere.
    std::vector<std::string> holders = AgentIds(job);
    ReleaseLease(job);
    if (!IsFinal(job.state)) {
      job.eligible_at = now;
      MoveTo(job, JobState::kPending, Reason::kLeaseLost, actions);
    }
    actions.push_back(Kill{job_id, std::move(holders)});
  }
}

bool Scheduler::Matches(const JobSpec& spec, const AgentSpec& agent) const {
  if (spec.gpus_per_rank <= 0) return true;
  return agent.gpus > 0 && (spec.gpu_kind.empty() || spec.gpu_kind == agent.gpu_kind);
}

std::optional<std::vector<int>> Scheduler::FreeGpus(const std::string& agent_id, int count) const {
  std::vector<bool> used(std::max(agents_.at(agent_id).spec.gpus, 0), false);
  for (const std::string& job_id : leased_) {
    for (const Holder& h : jobs_.at(job_id).holders) {
      if (h.placement.agent_id != agent_id) continue;
      for (int index : h.placement.gpu_indices) {
        if (index >= 0 && index < static_cast<int>(used.size())) used[index] = true;
      }
    }
  }
  std::vector<int> free;
  for (int index = 0; index < static_cast<int>(used.size()) && static_cast<int>(free.size()) < count;
       ++index) {
    if (!used[index]) free.push_back(index);
  }
  if (static_cast<int>(free.size()) < count) return std::nullopt;
  return free;
}

void Scheduler::ComputeCapacity(CapacityMap& free, CapacityMap& releasing) const {
  for (const auto& [id, agent] : agents_) {
    if (!Alive(agent)) continue;
    free[id] = {agent.spec.slots, agent.spec.gpus};
    releasing[id] = {0, 0};
  }
  for (const std::string& job_id : leased_) {
    const JobView& job = jobs_.at(job_id);
    bool giving_back = job.state == JobState::kPreempted || IsFinal(job.state);
    for (const Holder& h : job.holders) {
      auto it = free.find(h.placement.agent_id);
      if (it == free.end()) continue;
      it->second.slots -= h.placement.ranks;
      it->second.gpus -= h.placement.gpus;
      // GPUs held at indices not known yet (restored, the agent has not listed them): which of
      // the agent's GPUs are free is unknown, so none is offered until it says.
      if (h.placement.gpus > 0 && h.placement.gpu_indices.empty()) {
        it->second.gpus = std::min(it->second.gpus, 0);
      }
      if (giving_back) {
        releasing[h.placement.agent_id].slots += h.placement.ranks;
        releasing[h.placement.agent_id].gpus += h.placement.gpus;
      }
    }
  }
}

std::optional<std::vector<Placement>> Scheduler::PlaceGang(const JobSpec& spec,
                                                           const CapacityMap& capacity) const {
  auto placement_on = [&](const std::string& agent_id, int ranks) {
    return Placement{agent_id, agents_.at(agent_id).spec.host, ranks, ranks * spec.gpus_per_rank};
  };
  // One host when possible, the tightest fit, to keep large holes for large gangs.
  const std::string* best = nullptr;
  int best_fit = 0;
  int total = 0;
  std::vector<std::pair<int, const std::string*>> by_room;
  for (const auto& [id, room] : capacity) {
    if (!Matches(spec, agents_.at(id).spec)) continue;
    int fit = RanksThatFit(spec.gpus_per_rank, room.slots, room.gpus);
    if (fit <= 0) continue;
    if (agents_.at(id).spec.shares_runs_dir) {
      total += fit;
      by_room.emplace_back(fit, &id);
    }
    if (fit >= spec.ranks && (best == nullptr || fit < best_fit)) {
      best = &id;
      best_fit = fit;
    }
  }
  if (best != nullptr) return std::vector<Placement>{placement_on(*best, spec.ranks)};
  if (!spec.multi_host || total < spec.ranks) return std::nullopt;
  // Several hosts: the roomiest first, so the gang spans as few hosts as it can; the leader
  // (first) runs the most ranks.
  std::stable_sort(by_room.begin(), by_room.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<Placement> placements;
  int left = spec.ranks;
  for (const auto& [fit, id] : by_room) {
    if (left == 0) break;
    int take = std::min(fit, left);
    placements.push_back(placement_on(*id, take));
    left -= take;
  }
  return placements;
}

std::vector<JobView*> Scheduler::VictimCandidates(const JobSpec& for_job) {
  std::vector<JobView*> victims;
  for (const std::string& job_id : leased_) {
    JobView& job = jobs_.at(job_id);
    if ((job.state == JobState::kLeased || job.state == JobState::kRunning) &&
        job.spec.priority < for_job.priority) {
      victims.push_back(&job);
    }
  }
  // Lowest priority first; among equals the most recently started, which loses the least work.
  std::sort(victims.begin(), victims.end(), [](const JobView* a, const JobView* b) {
    if (a->spec.priority != b->spec.priority) return a->spec.priority < b->spec.priority;
    if (a->leased_at != b->leased_at) return a->leased_at > b->leased_at;
    return a->spec.submit_order > b->spec.submit_order;
  });
  return victims;
}

namespace {

template <typename Map>
Map Sum(const Map& a, const Map& b) {
  Map sum = a;
  for (const auto& [id, room] : b) {
    sum[id].slots += room.slots;
    sum[id].gpus += room.gpus;
  }
  return sum;
}

template <typename Map>
void AddHolders(Map& map, const std::vector<Holder>& holders) {
  for (const Holder& h : holders) {
    auto it = map.find(h.placement.agent_id);
    if (it == map.end()) continue;
    it->second.slots += h.placement.ranks;
    it->second.gpus += h.placement.gpus;
  }
}

// Takes `placements` out of `free` first and then out of `releasing`, so that later (lower
// priority) jobs in the same pass cannot take what a waiting job has been promised.
template <typename Map>
void Reserve(const std::vector<Placement>& placements, Map& free, Map& releasing) {
  for (const Placement& p : placements) {
    auto& f = free[p.agent_id];
    auto& r = releasing[p.agent_id];
    int slots = std::min(p.ranks, std::max(f.slots, 0));
    f.slots -= slots;
    r.slots -= p.ranks - slots;
    int gpus = std::min(p.gpus, std::max(f.gpus, 0));
    f.gpus -= gpus;
    r.gpus -= p.gpus - gpus;
  }
}

// Slots not yet spoken for; an agent overcommitted by a shrunken re-registration counts as 0.
template <typename Map>
int OpenSlots(const Map& map) {
  int open = 0;
  for (const auto& [id, room] : map) open += std::max(room.slots, 0);
  return open;
}

}  // namespace

bool Scheduler::PreemptFor(const JobView& job, CapacityMap& free, CapacityMap& releasing,
                           std::vector<Action>& actions) {
  // Add victims in order until the gang fits, then spare those it fits without.
  CapacityMap soon = Sum(free, releasing);
  std::vector<JobView*> chosen;
  bool fits = false;
  for (JobView* victim : VictimCandidates(job.spec)) {
    chosen.push_back(victim);
    AddHolders(soon, victim->holders);
    if (PlaceGang(job.spec, soon)) {
      fits = true;
      break;
    }
  }
  if (!fits) return false;  // cannot run even with every lower-priority job gone
  for (size_t i = chosen.size(); i-- > 0;) {
    CapacityMap without = Sum(free, releasing);
    for (size_t j = 0; j < chosen.size(); ++j) {
      if (j != i) AddHolders(without, chosen[j]->holders);
    }
    if (PlaceGang(job.spec, without)) chosen.erase(chosen.begin() + i);
  }
  for (JobView* victim : chosen) {
    MoveTo(*victim, JobState::kPreempted, Reason::kPreemptRequested, actions);
    actions.push_back(Signal{victim->spec.id, victim->holders.front().placement.agent_id,
                             options_.preempt_grace});
    AddHolders(releasing, victim->holders);
  }
  Reserve(*PlaceGang(job.spec, Sum(free, releasing)), free, releasing);
  return true;
}

std::vector<Action> Scheduler::Schedule() {
  std::vector<Action> actions;
  ExpireLeases(actions);
  CapacityMap free;
  CapacityMap releasing;
  ComputeCapacity(free, releasing);
  TimePoint now = clock_->Now();
  for (const std::string& job_id : reserved_) jobs_.at(job_id).reservation.clear();
  reserved_.clear();
  // Live agents' room as if nothing ran, less what earlier jobs of this pass reserved: where a
  // job that waited too long is promised slots. Based on whole agents, not on what is free now,
  // so that the same job gets the same hosts pass after pass while they drain.
  CapacityMap reservable;
  for (const auto& [id, agent] : agents_) {
    if (Alive(agent)) reservable[id] = {agent.spec.slots, agent.spec.gpus};
  }
  // Shortcuts that keep a pass over thousands of queued jobs cheap when the cluster is full:
  // slots open now or soon, and the priority a job must beat to preempt anyone. The latter may
  // go stale (too low) as victims are chosen; that only costs a needless look at candidates.
  int open_slots = OpenSlots(free) + OpenSlots(releasing);
  int lowest_victim_priority = std::numeric_limits<int>::max();
  for (const std::string& job_id : leased_) {
    const JobView& job = jobs_.at(job_id);
    if (job.state == JobState::kLeased || job.state == JobState::kRunning) {
      lowest_victim_priority = std::min(lowest_victim_priority, job.spec.priority);
    }
  }
  // Launching a job erases its own key from pending_ and nothing else enters or leaves it
  // during the pass, so the iterator to the next key stays valid.
  for (auto it = pending_.begin(); it != pending_.end();) {
    JobView& job = jobs_.at(std::get<2>(*it));
    ++it;
    if (now < job.eligible_at) continue;
    bool may_preempt = job.spec.priority > lowest_victim_priority;
    // The queue is in priority order, so no later job can preempt either, and no slot is open
    // for anyone to take or for a reservation to withhold: nothing more to do.
    if (open_slots == 0 && !may_preempt) break;
    if (job.spec.ranks <= open_slots) {
      auto placements = PlaceGang(job.spec, free);
      for (size_t i = 0; placements && i < placements->size(); ++i) {
        Placement& p = (*placements)[i];
        if (p.gpus == 0) continue;
        // The capacity counted these GPUs free, so as many indices are; the jobs placed earlier
        // in this pass hold theirs already.
        std::optional<std::vector<int>> gpus = FreeGpus(p.agent_id, p.gpus);
        if (!gpus) {
          placements.reset();
          break;
        }
        p.gpu_indices = std::move(*gpus);  // a gang has one placement per agent
      }
      if (placements) {
        Reserve(*placements, free, releasing);
        open_slots = OpenSlots(free) + OpenSlots(releasing);
        job.leased_at = now;
        for (Placement& p : *placements) job.holders.push_back({p, now + options_.lease_duration});
        leased_.insert(job.spec.id);
        MoveTo(job, JobState::kLeased, Reason::kPlaced, actions);
        actions.push_back(
            Launch{job.spec.id, std::move(*placements), now + options_.lease_duration});
        continue;
      }
      if (auto placements = PlaceGang(job.spec, Sum(free, releasing))) {
        Reserve(*placements, free, releasing);  // wait for jobs already on their way out
        open_slots = OpenSlots(free) + OpenSlots(releasing);
        continue;
      }
    }
    if (may_preempt && PreemptFor(job, free, releasing, actions)) {
      open_slots = OpenSlots(free) + OpenSlots(releasing);
      continue;
    }
    if (now - job.eligible_at < options_.reserve_after) continue;
    // Waited long enough: the hosts it would get on an idle cluster keep their free slots (and
    // those that jobs being preempted give back) for it, so the jobs behind it can only use
    // other hosts, and its hosts drain as their jobs end. A job too big for every live agent
    // together reserves nothing.
    if (auto plan = PlaceGang(job.spec, reservable)) {
      Reserve(*plan, free, releasing);
      open_slots = OpenSlots(free) + OpenSlots(releasing);
      for (const Placement& p : *plan) {
        reservable[p.agent_id].slots -= p.ranks;
        reservable[p.agent_id].gpus -= p.gpus;
      }
      job.reservation = std::move(*plan);
      reserved_.insert(job.spec.id);
    }
  }
  return actions;
}

// Views -----------------------------------------------------------------------------------

std::optional<JobView> Scheduler::GetJob(const std::string& job_id) const {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return std::nullopt;
  return it->second;
}

std::optional<JobSpec> Scheduler::GetJobSpec(const std::string& job_id) const {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end()) return std::nullopt;
  return it->second.spec;
}

std::optional<AgentView> Scheduler::GetAgent(const std::string& agent_id) const {
  auto it = agents_.find(agent_id);
  if (it == agents_.end()) return std::nullopt;
  AgentView view = it->second;
  view.alive = Alive(view);
  view.free_slots = view.spec.slots;
  view.free_gpus = view.spec.gpus;
  for (const std::string& job_id : leased_) {
    for (const Holder& h : jobs_.at(job_id).holders) {
      if (h.placement.agent_id != agent_id) continue;
      view.free_slots -= h.placement.ranks;
      view.free_gpus -= h.placement.gpus;
    }
  }
  // An agent draining to 0 slots still holds its jobs: it has none free, not fewer than none.
  view.free_slots = std::max(view.free_slots, 0);
  view.free_gpus = std::max(view.free_gpus, 0);
  return view;
}

std::optional<AgentSpec> Scheduler::GetAgentSpec(const std::string& agent_id) const {
  auto it = agents_.find(agent_id);
  if (it == agents_.end()) return std::nullopt;
  return it->second.spec;
}

std::map<std::string, AgentView> Scheduler::AgentViews() const {
  std::map<std::string, AgentView> views;
  for (const auto& [id, agent] : agents_) {
    AgentView& view = views.emplace(id, agent).first->second;
    view.alive = Alive(view);
    view.free_slots = view.spec.slots;
    view.free_gpus = view.spec.gpus;
  }
  for (const std::string& job_id : leased_) {
    for (const Holder& h : jobs_.at(job_id).holders) {
      auto it = views.find(h.placement.agent_id);
      if (it == views.end()) continue;
      it->second.free_slots -= h.placement.ranks;
      it->second.free_gpus -= h.placement.gpus;
    }
  }
  for (auto& [id, view] : views) {
    view.free_slots = std::max(view.free_slots, 0);
    view.free_gpus = std::max(view.free_gpus, 0);
  }
  return views;
}

std::vector<std::string> Scheduler::PendingQueue() const {
  std::vector<std::string> ids;
  for (const QueueKey& key : pending_) ids.push_back(std::get<2>(key));
  return ids;
}

std::vector<std::string> Scheduler::JobsOnAgent(const std::string& agent_id) const {
  std::vector<std::string> ids;
  for (const std::string& id : leased_) {
    const JobView& job = jobs_.at(id);
    for (const Holder& holder : job.holders) {
      if (holder.placement.agent_id == agent_id) {
        ids.push_back(id);
        break;
      }
    }
  }
  return ids;
}

}  // namespace vitscale::coordinator
