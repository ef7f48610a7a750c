// The action applier: the scheduler's decisions carried out, one store operation per action
// (docs/scheduling.md). A Transition is Store::ApplyTransition (state, retries and the attempt's
// end together); a Launch is Store::StartAttempt (its number, the checkpoint it resumes from,
// the hash of its fresh report token); a Signal or a Kill writes nothing and names the attempt
// it is for. A lease's job row and the starts polls report are written a second later
// (Core::Apply, Core::RecordStarts).
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <set>

#include "common/secrets.h"
#include "coordinator/core.h"

namespace vitscale::coordinator {
namespace {

using storage::JobRecord;

storage::AttemptOutcome OutcomeFor(Reason reason) {
  switch (reason) {
    case Reason::kSucceeded: return storage::AttemptOutcome::kSucceeded;
    case Reason::kPreempted: return storage::AttemptOutcome::kPreempted;
    case Reason::kLeaseLost: return storage::AttemptOutcome::kLost;
    case Reason::kHostUnreachable: return storage::AttemptOutcome::kLost;
    case Reason::kCancelled: return storage::AttemptOutcome::kCancelled;
    default: return storage::AttemptOutcome::kFailed;
  }
}

bool EndsAttempt(Reason reason) {
  switch (reason) {
    case Reason::kSucceeded:
    case Reason::kRetry:
    case Reason::kOutOfMemory:
    case Reason::kFailed:
    case Reason::kConfigError:
    case Reason::kPreempted:
    case Reason::kLeaseLost:
    case Reason::kHostUnreachable:
    case Reason::kCancelled:
      return true;
    default:
      return false;
  }
}

std::vector<protocol::HostRanks> HostsOf(const std::vector<Placement>& placements) {
  std::vector<protocol::HostRanks> hosts;
  for (const Placement& p : placements) hosts.push_back({p.host, p.ranks});
  return hosts;
}

// The job's newest attempt: the one a Signal or a Kill is for. The scheduler emits a Kill right
// after the transition that ends the attempt (a lost lease, a cancel) and before any Launch of
// the job's next attempt in the same list, so at this point of the list it is the attempt the
// scheduler meant, also when the same pass places the job again.
Expected<int> NewestAttempt(storage::Store& store, const std::string& job_id) {
  ASSIGN_OR_RETURN(int attempts, store.CountAttempts(job_id));
  if (attempts < 1) {
    return Internal("job " + job_id + " has no attempt to signal (a scheduler bug)");
  }
  return attempts;
}

}  // namespace

protocol::Json Core::LaunchSpec(const std::string& job_id, const std::string& config_json,
                                int gpus_per_rank, int attempt,
                                const std::string& report_token) const {
  // docs/train-spec.md: "job" is the canonical config (what is computed), "run" how this attempt
  // runs. Every attempt of a job shares its directory, so a resumed attempt finds the
  // checkpoints of the one before. The report token is this attempt's alone.
  protocol::Json config = protocol::Json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  return protocol::Json{{"job", config},
                        {"run",
                         {{"dir", RunDir(job_id)},
                          {"grace_seconds", options_.grace_seconds},
                          {"checkpoint_every_steps", options_.checkpoint_every_steps},
                          {"report_url", options_.public_url},
                          {"report_token", report_token},
                          {"attempt", attempt},
                          {"gpus_per_rank", gpus_per_rank}}}};
}

Status Core::Persist(const std::vector<Action>& actions,
                     const std::map<std::string, int>& exit_statuses,
                     std::vector<std::pair<std::string, protocol::LaunchEntry>>* launches,
                     std::vector<std::pair<std::string, protocol::SignalEntry>>* signals,
                     std::vector<JobRecord>* changed) {
  for (const Action& action : actions) {
    if (const auto* t = std::get_if<Transition>(&action)) {
      std::optional<storage::AttemptEnd> end;
      if (EndsAttempt(t->reason)) {
        auto status = exit_statuses.find(t->job_id);
        end = storage::AttemptEnd{OutcomeFor(t->reason),
                                  status == exit_statuses.end()
                                      ? std::nullopt
                                      : std::optional<int>(status->second)};
      }
      ASSIGN_OR_RETURN(JobRecord job,
                       store_.ApplyTransition(t->job_id, t->from, t->to, t->retries_left, end));
      changed->push_back(std::move(job));
    } else if (const auto* launch = std::get_if<Launch>(&action)) {
      // The job's shape from the scheduler, and only its config from the store: GetJob would
      // also read the attempts and metrics a launch does not send.
      std::optional<JobSpec> job = scheduler_->GetJobSpec(launch->job_id);
      if (!job) {
        return Internal("job " + launch->job_id +
                        " is launched but not scheduled (a scheduler bug)");
      }
      ASSIGN_OR_RETURN(std::string config_json, store_.GetJobConfig(launch->job_id));
      ASSIGN_OR_RETURN(std::string token, RandomHexToken(32));
      std::vector<protocol::HostRanks> hosts = HostsOf(launch->placements);
      ASSIGN_OR_RETURN(storage::AttemptRecord attempt,
                       store_.StartAttempt(launch->job_id, launch->placements.front().agent_id,
                                           protocol::HostsString(hosts), TokenHash(token)));
      std::vector<protocol::HostGpus> gpus;
      for (const Placement& p : launch->placements) {
        if (!p.gpu_indices.empty()) gpus.push_back({p.host, p.gpu_indices});
      }
      for (size_t i = 0; i < launch->placements.size(); ++i) {
        protocol::LaunchEntry entry;
        entry.job = launch->job_id;
        entry.attempt = attempt.number;
        if (i == 0) {
          entry.gpus = gpus;  // every host's, for the ranks the leader's mpirun starts there
          entry.ranks = job->ranks;
          entry.hosts = hosts;
          entry.grace_seconds = options_.grace_seconds;
          entry.log = AttemptLogPath(launch->job_id, attempt.number);
          entry.spec = LaunchSpec(launch->job_id, config_json, job->gpus_per_rank,
                                  attempt.number, token);
        } else {
          entry.hold = true;  // a gang member: keep the slots and heartbeat the job
          const Placement& p = launch->placements[i];
          if (!p.gpu_indices.empty()) entry.gpus = {{p.host, p.gpu_indices}};
        }
        launches->emplace_back(launch->placements[i].agent_id, std::move(entry));
      }
    } else if (const auto* signal = std::get_if<Signal>(&action)) {
      ASSIGN_OR_RETURN(int attempt, NewestAttempt(store_, signal->job_id));
      protocol::SignalEntry entry;
      entry.job = signal->job_id;
      entry.attempt = attempt;
      entry.action = protocol::SignalAction::kPreempt;
      entry.grace_seconds = static_cast<int>(
          std::chrono::duration_cast<std::chrono::seconds>(signal->grace).count());
      signals->emplace_back(signal->agent_id, std::move(entry));
    } else if (const auto* kill = std::get_if<Kill>(&action)) {
      ASSIGN_OR_RETURN(int attempt, NewestAttempt(store_, kill->job_id));
      for (const std::string& agent : kill->agent_ids) {
        protocol::SignalEntry entry;
        entry.job = kill->job_id;
        entry.attempt = attempt;
        entry.action = protocol::SignalAction::kKill;
        signals->emplace_back(agent, std::move(entry));
      }
    }
  }
  return Status::Ok();
}

Status Core::RecordStarts(const std::vector<Action>& actions) {
  bool starts_only = std::all_of(actions.begin(), actions.end(), [](const Action& action) {
    const auto* t = std::get_if<Transition>(&action);
    return t != nullptr && t->from == JobState::kLeased && t->to == JobState::kRunning;
  });
  if (!starts_only) return Apply(actions);
  TimePoint now = clock_.Now();
  for (const Action& action : actions) {
    const Transition& start = std::get<Transition>(action);
    auto [it, added] =
        unwritten_.try_emplace(start.job_id, UnwrittenChange{start.from, start, now});
    // A lease not written yet stays the row's state and keeps its time: the tick writes
    // pending -> running, one change for the two.
    if (!added) it->second.latest = start;
  }
  return Status::Ok();
}

std::vector<Action> Core::DueWrites(TimePoint made_by) const {
  std::vector<Action> writes;
  for (const auto& [job_id, change] : unwritten_) {
    if (change.since > made_by) continue;
    Transition write = change.latest;
    write.from = change.stored;
    writes.push_back(std::move(write));
  }
  return writes;
}

Status Core::WriteUnwritten() { return Apply(DueWrites(TimePoint::max())); }

Status Core::Apply(const std::vector<Action>& actions,
                   const std::map<std::string, int>& exit_statuses) {
  if (actions.empty()) return Status::Ok();  // no empty transaction on every tick
  // A lease (pending -> leased, with its Launch in the same list) writes only its attempt: the
  // job's row stays pending until a tick writes it (kStateWriteDelay) or the job's next
  // transition does. A transition of a job with a change not written yet is written from the
  // state its row holds, one change instead of two. unwritten_ changes only once the
  // transaction has committed; should it fail, Resync rebuilds the scheduler from the store (a
  // pending job with an open attempt is leased), and the agent's next poll reports the start
  // again.
  std::set<std::string> launched;
  for (const Action& action : actions) {
    if (const auto* launch = std::get_if<Launch>(&action)) launched.insert(launch->job_id);
  }
  std::map<std::string, UnwrittenChange> leases;  // this list's, kept once it commits
  std::set<std::string> caught_up;  // jobs whose rows this list brings up to the scheduler
  TimePoint now = clock_.Now();
  std::vector<Action> writes;
  writes.reserve(actions.size());
  for (const Action& action : actions) {
    const auto* t = std::get_if<Transition>(&action);
    if (t == nullptr || caught_up.count(t->job_id) > 0) {
      writes.push_back(action);
      continue;
    }
    std::optional<JobState> stored;
    if (auto lease = leases.find(t->job_id); lease != leases.end()) {
      stored = JobState::kPending;
      leases.erase(lease);
    } else if (auto unwritten = unwritten_.find(t->job_id); unwritten != unwritten_.end()) {
      stored = unwritten->second.stored;
    } else if (t->from == JobState::kPending && t->to == JobState::kLeased &&
               launched.count(t->job_id) > 0) {
      leases.emplace(t->job_id, UnwrittenChange{JobState::kPending, *t, now});
      continue;
    }
    if (!stored) {
      writes.push_back(action);
      continue;
    }
    Transition folded = *t;
    folded.from = *stored;
    caught_up.insert(t->job_id);
    writes.push_back(std::move(folded));
  }
  // One transaction for the whole list: a scheduling pass that leases 32 jobs is one fsync.
  std::vector<std::pair<std::string, protocol::LaunchEntry>> launches;
  std::vector<std::pair<std::string, protocol::SignalEntry>> signals;
  std::vector<JobRecord> changed;
  Status committed = store_.Atomically(
      [&] { return Persist(writes, exit_statuses, &launches, &signals, &changed); });
  if (!committed.ok()) {
    // Nothing was written and no agent hears of a launch the database does not have; the
    // scheduler, which already moved on, goes back to what the store holds.
    Resync();
    return committed;
  }
  for (const std::string& job_id : caught_up) unwritten_.erase(job_id);
  unwritten_.merge(leases);
  for (const JobRecord& job : changed) AnnounceJob(job);
  std::vector<std::string> agents;
  for (auto& [agent, entry] : launches) {
    mailbox_.Launch(agent, std::move(entry));
    agents.push_back(agent);
  }
  for (auto& [agent, entry] : signals) {
    mailbox_.Signal(agent, std::move(entry));
    agents.push_back(agent);
  }
  for (const std::string& agent : agents) mailbox_.Flush(agent);
  return Status::Ok();
}

}  // namespace vitscale::coordinator
