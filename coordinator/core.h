// What every audience's handlers share: the store, the scheduler, the clock, the event log, the
// agents' mailbox and the action applier. The handlers are grouped by who calls them:
//   coordinator/user_api.*    people and the CLI (sweeps, jobs, agents, exports, credentials)
//   coordinator/agent_api.*   agents (register, poll)
//   coordinator/report_api.*  a job's reports (metrics, results, checkpoints) and its exit
// and coordinator/actions.cc carries out the scheduler's decisions.
//
// The store is the truth: every scheduler transition is written (with the state it expects to
// move from) before the commands that follow it go out, and Restore() rebuilds the scheduler
// from the store, so the coordinator can be killed at any moment and started again without
// losing or duplicating a job. A store write that fails undoes itself whole, and the scheduler,
// which has already decided, is rebuilt from the store (Resync) so that memory never runs ahead
// of the database. Two exceptions, both written about a second later by a tick, or folded into
// the job's next transition when that comes first: a job's lease (pending -> leased) is
// written as its attempt alone, the durable record of the lease, and Restore reads a pending
// job with an open attempt as leased (Apply); a job's start (leased -> running, from an agent's
// poll) is kept in memory (RecordStarts). Until the write the job's views, counts and events
// show it pending (or leased); no command waits for it, and a start lost to a crash or a failed
// write is reported again by the agent's next poll.
//
// Threading: everything runs on the io_context's single thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "coordinator/event_log.h"
#include "coordinator/http_server.h"
#include "coordinator/mailbox.h"
#include "coordinator/scheduler.h"
#include "protocol/api.h"
#include "storage/store.h"
#include "sweep/sweep.h"

namespace vitscale::coordinator {

struct CoordinatorOptions {
  // Where jobs keep checkpoints and outputs: runs_dir/<job id>/. Every agent must see this path
  // (one machine, or a shared filesystem across hosts).
  std::string runs_dir;
  // The token in runs_dir/.vitscale-runs-mark: an agent that reports it sees runs_dir, and only
  // such agents are spanned by one job. Empty: no agent qualifies.
  std::string runs_mark;
  // The URL the trainer reports to (its HTTP sink).
  std::string public_url;
  // The admin token (<state dir>/token); agents and reports have credentials of their own.
  std::string admin_token;
  bool open_read_access = false;
  SchedulerOptions scheduler;  // its lease_duration is also what agents are told
  std::chrono::milliseconds tick{250};
  std::chrono::milliseconds poll_timeout{20000};
  int max_retries = 2;      // failures retried per job before it fails for good
  int grace_seconds = 60;   // SIGTERM to SIGKILL for a preempted job
  int checkpoint_every_steps = 200;
  size_t max_events = 100000;     // the event log's memory, in events
  size_t max_event_bytes = 64 << 20;  // and in bytes
};

class Core {
 public:
  // REQUIRES: every reference outlives the Core.
  Core(boost::asio::io_context& io, storage::Store& store, const Clock& clock,
       CoordinatorOptions options, std::unique_ptr<Scheduler> scheduler);

  boost::asio::io_context& io() { return io_; }
  storage::Store& store() { return store_; }
  Scheduler& scheduler() { return *scheduler_; }
  const Clock& clock() const { return clock_; }
  const CoordinatorOptions& options() const { return options_; }
  EventLog& events() { return events_; }
  const EventLog& events() const { return events_; }
  Mailbox& mailbox() { return mailbox_; }
  int lease_seconds() const;

  // Every agent seen (registered now or in the store), for the views.
  const std::vector<std::string>& agent_ids() const { return agent_ids_; }
  void NoteAgent(const std::string& id);

  // Rebuilds the scheduler's jobs from the store: pending jobs queue again, jobs with a live
  // attempt keep their slots until their agents come back (or their leases run out). A pending
  // job with an open attempt is leased (its lease's row was not written yet); the tick writes it.
  Status RestoreJobs();

  // Carries out the scheduler's actions (coordinator/actions.cc): one store operation per
  // action, all in one transaction; then the commands go to the agents' mailboxes and the
  // changed jobs to the event stream. If the transaction fails, nothing of it is written, no
  // launch goes out, and the scheduler is rebuilt from the store. `exit_statuses`: by job id,
  // the exit status an attempt ended by these actions reported (absent: none is known).
  Status Apply(const std::vector<Action>& actions,
               const std::map<std::string, int>& exit_statuses = {});
  // The starts an agent's poll reports (Scheduler::ReportStarted's leased -> running
  // transitions), kept for kStateWriteDelay and then written by a tick. A job whose next
  // transition comes first (it ended, was cancelled, its lease ran out) goes from leased (or
  // pending, its lease unwritten too) to that state in one write: a short job's whole life is
  // often shorter than the delay. Any other action is applied at once.
  Status RecordStarts(const std::vector<Action>& actions);
  // How long a lease's row and a start wait for the job's next transition before a tick writes
  // them.
  static constexpr std::chrono::seconds kStateWriteDelay{1};
  // Schedules now: expired leases, placements; writes the leases and starts kept for
  // kStateWriteDelay. Called by the timer and after events.
  void Tick();
  // Writes every lease and start not written yet (a clean stop).
  Status WriteUnwritten();
  // After a failed store write: the scheduler again as the store has it.
  void Resync();

  // A job by its id or a unique prefix of 8+ hex digits; errors say which form is wanted.
  Expected<storage::JobRecord> FindJob(const std::string& id_or_prefix);
  // Where a job's trainer keeps its checkpoints and reports, and an attempt's log.
  std::string RunDir(const std::string& job_id) const;
  std::string AttemptLogPath(const std::string& job_id, int attempt) const;
  // The job's row as the API shows it, announced on the event stream.
  void AnnounceJob(const storage::JobRecord& job);

  // Called on every tick (the user API's utilisation samples).
  void SetTickHook(std::function<void()> hook) { tick_hook_ = std::move(hook); }

 private:
  // The spec vitscale-train runs for this attempt (docs/train-spec.md).
  protocol::Json LaunchSpec(const std::string& job_id, const std::string& config_json,
                            int gpus_per_rank, int attempt,
                            const std::string& report_token) const;
  // Apply's writes, inside its transaction; the commands for agents go to `launches`/`signals`.
  Status Persist(const std::vector<Action>& actions, const std::map<std::string, int>& exit_statuses,
                 std::vector<std::pair<std::string, protocol::LaunchEntry>>* launches,
                 std::vector<std::pair<std::string, protocol::SignalEntry>>* signals,
                 std::vector<storage::JobRecord>* changed);

  boost::asio::io_context& io_;
  storage::Store& store_;
  const Clock& clock_;
  CoordinatorOptions options_;
  std::unique_ptr<Scheduler> scheduler_;
  EventLog events_;
  Mailbox mailbox_;
  std::vector<std::string> agent_ids_;
  std::function<void()> tick_hook_;
  // A job whose row is behind the scheduler: the state the row holds, the newest transition
  // (its `to` is the state to write) and when the first unwritten one was made.
  struct UnwrittenChange {
    JobState stored;
    Transition latest;
    TimePoint since;
  };
  // The leases and starts not yet written, by job id.
  std::map<std::string, UnwrittenChange> unwritten_;
  // The writes of the unwritten changes made at or before `made_by`; Apply takes them out of
  // unwritten_ once they have committed.
  std::vector<Action> DueWrites(TimePoint made_by) const;
};

// JobSpec for the scheduler from a stored job.
JobSpec ToJobSpec(const storage::JobRecord& job);

// The records a submission stores for an expanded sweep, each with `retries` retries.
std::vector<storage::JobRecord> ToJobRecords(const std::vector<sweep::Job>& expanded, int retries);

}  // namespace vitscale::coordinator
