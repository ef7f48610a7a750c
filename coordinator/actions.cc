// The action applier: the scheduler's decisions carried out, one store operation per action
// (docs/scheduling.md). A Transition is Store::ApplyTransition (state, retries and the attempt's
// end together); a Launch is Store::StartAttempt (its number, the checkpoint it resumes from,
// the hash of its fresh report token); a Signal or a Kill writes nothing.
#include <fmt/format.h>

#include <cstdio>

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
    case Reason::kCancelled: return storage::AttemptOutcome::kCancelled;
    default: return storage::AttemptOutcome::kFailed;
  }
}

bool EndsAttempt(Reason reason) {
  switch (reason) {
    case Reason::kSucceeded:
    case Reason::kRetry:
    case Reason::kFailed:
    case Reason::kConfigError:
    case Reason::kPreempted:
    case Reason::kLeaseLost:
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

}  // namespace

protocol::Json Core::LaunchSpec(const JobRecord& job, int attempt,
                                const std::string& report_token) const {
  // docs/train-spec.md: "job" is the canonical config (what is computed), "run" how this attempt
  // runs. Every attempt of a job shares its directory, so a resumed attempt finds the
  // checkpoints of the one before. The report token is this attempt's alone.
  protocol::Json config =
      protocol::Json::parse(job.config_json, nullptr, /*allow_exceptions=*/false);
  return protocol::Json{{"job", config},
                        {"run",
                         {{"dir", RunDir(job.id)},
                          {"grace_seconds", options_.grace_seconds},
                          {"checkpoint_every_steps", options_.checkpoint_every_steps},
                          {"report_url", options_.public_url},
                          {"report_token", report_token},
                          {"attempt", attempt}}}};
}

Status Core::Persist(const std::vector<Action>& actions, std::optional<int> exit_status,
                     std::vector<std::pair<std::string, protocol::LaunchEntry>>* launches,
                     std::vector<std::pair<std::string, protocol::SignalEntry>>* signals,
                     std::vector<JobRecord>* changed) {
  for (const Action& action : actions) {
    if (const auto* t = std::get_if<Transition>(&action)) {
      std::optional<storage::AttemptEnd> end;
      if (EndsAttempt(t->reason)) end = storage::AttemptEnd{OutcomeFor(t->reason), exit_status};
      ASSIGN_OR_RETURN(JobRecord job,
                       store_.ApplyTransition(t->job_id, t->from, t->to, t->retries_left, end));
      changed->push_back(std::move(job));
    } else if (const auto* launch = std::get_if<Launch>(&action)) {
      ASSIGN_OR_RETURN(JobRecord job, store_.GetJob(launch->job_id));
      ASSIGN_OR_RETURN(std::string token, RandomHexToken(32));
      std::vector<protocol::HostRanks> hosts = HostsOf(launch->placements);
      ASSIGN_OR_RETURN(storage::AttemptRecord attempt,
                       store_.StartAttempt(job.id, launch->placements.front().agent_id,
                                           protocol::HostsString(hosts), TokenHash(token)));
      for (size_t i = 0; i < launch->placements.size(); ++i) {
        protocol::LaunchEntry entry;
        entry.job = job.id;
        entry.attempt = attempt.number;
        if (i == 0) {
          entry.ranks = job.ranks;
          entry.hosts = hosts;
          entry.grace_seconds = options_.grace_seconds;
          entry.log = AttemptLogPath(job.id, attempt.number);
          entry.spec = LaunchSpec(job, attempt.number, token);
        } else {
          entry.hold = true;  // a gang member: keep the slots and heartbeat the job
        }
        launches->emplace_back(launch->placements[i].agent_id, std::move(entry));
      }
    } else if (const auto* signal = std::get_if<Signal>(&action)) {
      ASSIGN_OR_RETURN(std::optional<storage::AttemptRecord> open,
                       store_.OpenAttempt(signal->job_id));
      protocol::SignalEntry entry;
      entry.job = signal->job_id;
      if (open) entry.attempt = open->number;
      entry.action = protocol::SignalAction::kPreempt;
      entry.grace_seconds = static_cast<int>(
          std::chrono::duration_cast<std::chrono::seconds>(signal->grace).count());
      signals->emplace_back(signal->agent_id, std::move(entry));
    } else if (const auto* kill = std::get_if<Kill>(&action)) {
      for (const std::string& agent : kill->agent_ids) {
        protocol::SignalEntry entry;
        entry.job = kill->job_id;
        entry.action = protocol::SignalAction::kKill;
        signals->emplace_back(agent, std::move(entry));
      }
    }
  }
  return Status::Ok();
}

Status Core::Apply(const std::vector<Action>& actions, std::optional<int> exit_status) {
  if (actions.empty()) return Status::Ok();  // no empty transaction on every tick
  // One transaction for the whole list: a scheduling pass that leases 32 jobs is one fsync.
  std::vector<std::pair<std::string, protocol::LaunchEntry>> launches;
  std::vector<std::pair<std::string, protocol::SignalEntry>> signals;
  std::vector<JobRecord> changed;
  Status committed = store_.Atomically(
      [&] { return Persist(actions, exit_status, &launches, &signals, &changed); });
  if (!committed.ok()) {
    // Nothing was written and no agent hears of a launch the database does not have; the
    // scheduler, which already moved on, goes back to what the store holds.
    Resync();
    return committed;
  }
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
