// Scheduler: the coordinator's decisions about jobs and agent slots, with no I/O.
//
// It keeps, in memory, the jobs that are not finished and the agents that offer slots, and
// answers each event (a job added, a heartbeat, an exit report, a cancel, a timer tick) with
// explicit actions: state transitions for the store to persist and commands for agents to carry
// out (Launch, Signal, Kill). The coordinator applies each returned list in order: it persists a
// Transition (Store::SetJobState with `expected_from` = Transition::from) before it sends the
// commands that follow it. The scheduler never calls out, so every rule is unit-testable with a
// FakeClock. docs/scheduling.md explains the rules and why.
//
// Job states are storage::JobState. kPreempted is the transitional "preempting" state: the
// leader agent has been told to SIGTERM the job and the scheduler waits for it to exit
// checkpointed; then the job is pending again. Preemption and lost leases never use a retry.
//
// Ownership and threads: a Scheduler does not own its Clock, which must outlive it. It is not
// thread-safe; the coordinator calls it from its io_context thread only.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <variant>
#include <vector>

#include "common/status.h"
#include "common/clock.h"
#include "storage/records.h"

namespace vitscale::coordinator {

using storage::JobState;

struct SchedulerOptions {
  // A lease (and an agent's liveness) lasts this long after the last heartbeat.
  Duration lease_duration = std::chrono::seconds(30);
  // Failure n (1, 2, ...) waits backoff_initial * backoff_factor^(n-1), at most backoff_max,
  // before the job is eligible again.
  Duration backoff_initial = std::chrono::seconds(10);
  double backoff_factor = 2.0;
  Duration backoff_max = std::chrono::minutes(10);
  // Passed on in Signal: how long the agent lets a preempted job checkpoint before it kills it.
  Duration preempt_grace = std::chrono::seconds(60);
  // A job eligible this long without being placed gets slots reserved for it, so that a stream
  // of smaller jobs cannot starve it (docs/scheduling.md, "Reservation").
  Duration reserve_after = std::chrono::minutes(10);
};

// What the scheduler needs to know of a job; the rest of the record stays in the store.
struct JobSpec {
  std::string id;
  int priority = 0;          // higher runs first
  int64_t submit_order = 0;  // among equal priorities, lower runs first
  int ranks = 1;             // MPI ranks, all placed at once or not at all
  int gpus_per_rank = 0;     // 0 = CPU ranks
  bool multi_host = false;   // may the ranks span several agents?
  int retries_left = 0;      // failures still allowed before the job is failed for good
  int failures = 0;          // failures so far: a job restored from the store has some
  // The GPU model the ranks need ("NVIDIA H200"), matched exactly against an agent's
  // gpu_kind; "" = any GPU. Ignored for CPU ranks, which run on any agent's CPU slots.
  std::string gpu_kind{};
};

struct AgentSpec {
  std::string id;
  std::string host;  // what mpirun -H names
  int slots = 0;     // ranks the host runs at once
  int gpus = 0;      // GPUs 0..gpus-1 of the host
  // Their model ("" when unnamed: then only jobs that take any GPU run there). {}: initialisers
  // that stop at `gpus` stay warning-free.
  std::string gpu_kind{};
  // Sees the coordinator's runs folder (its runs mark matched): a job's ranks span only such
  // agents, since every host of a gang reads and writes the job's run folder.
  bool shares_runs_dir = true;
};

// Part of a gang: `ranks` ranks of a job on one agent.
struct Placement {
  std::string agent_id;
  std::string host;
  int ranks = 0;
  int gpus = 0;  // ranks x gpus_per_rank
  // Which of the host's GPUs (gpus of them), so that two jobs never share one: chosen when the
  // job is placed, lowest free indices first. Empty for a CPU job, and for a job restored after a
  // coordinator restart until its agent says which GPUs it uses (AdoptGpus); until then the
  // agent offers no GPUs to other jobs.
  std::vector<int> gpu_indices{};
};

// Why a transition happened; tells the coordinator how to end the attempt it records.
enum class Reason {
  kPlaced,            // pending -> leased: a Launch follows
  kStarted,           // leased -> running: the leader reports mpirun started
  kSucceeded,         // -> succeeded
  kRetry,             // -> pending after a failure; eligible again after the backoff
  kOutOfMemory,       // -> pending at once: the next attempt uses a halved batch; no retry used
  kFailed,            // -> failed: no retries left
  kConfigError,       // -> failed: the trainer rejected its spec; retrying cannot help
  kPreemptRequested,  // -> preempted: a Signal follows
  kPreempted,         // -> pending: exited checkpointed after SIGTERM; no retry used
  kLeaseLost,         // -> pending: a holder stopped heartbeating; no retry used
  kHostUnreachable,   // -> pending: the leader could not reach a host of the gang; no retry
                      //    used, eligible again after the failure backoff
  kCancelled,         // -> cancelled
};
const char* ReasonName(Reason reason);

// How the trainer ended, as the leader agent classifies its exit status.
// kOutOfMemory: the trainer ran out of memory and recorded a smaller batch for the next attempt
// (the coordinator has checked that it did), so running again is not a blind retry.
enum class ExitKind { kSucceeded, kFailed, kConfigError, kPreempted, kOutOfMemory,
                      kUnreachable };

// Actions --------------------------------------------------------------------------------
struct Transition {
  std::string job_id;
  JobState from = JobState::kPending;
  JobState to = JobState::kPending;
  Reason reason = Reason::kPlaced;
  int retries_left = 0;   // after the transition
  TimePoint eligible_at;  // for a job back in pending: not placed before this time
};

// Start the job: the leader (placements[0]) runs `mpirun -H host:ranks,...`; the other agents
// of the gang hold their slots. Each holder heartbeats the job to keep its lease.
struct Launch {
  std::string job_id;
  std::vector<Placement> placements;
  TimePoint lease_deadline;
};

// Preempt: the leader agent sends SIGTERM and kills after `grace` if the job has not exited.
struct Signal {
  std::string job_id;
  std::string agent_id;  // the leader
  Duration grace{};
};

// Stop the job now on every listed agent (cancel, or a gang whose lease was lost).
struct Kill {
  std::string job_id;
  std::vector<std::string> agent_ids;
};

using Action = std::variant<Transition, Launch, Signal, Kill>;

// Read-only views, for the API and tests --------------------------------------------------
struct Holder {
  Placement placement;
  TimePoint deadline;  // this holder's lease runs out then unless it heartbeats
};

struct JobView {
  JobSpec spec;
  JobState state = JobState::kPending;
  int failures = 0;             // failures so far (drives the backoff)
  TimePoint eligible_at;        // pending jobs wait until then
  TimePoint leased_at;          // when the current lease began
  std::vector<Holder> holders;  // non-empty while a lease is live; [0] is the leader
  // A pending job that waited reserve_after: where the last pass reserved its slots (free
  // slots there go to no job behind it). Empty otherwise.
  std::vector<Placement> reservation;
};

struct AgentView {
  AgentSpec spec;
  TimePoint last_heartbeat;
  bool alive = false;  // heartbeat within lease_duration: may receive work
  int free_slots = 0;  // never below 0, also while the agent drains to 0 slots
  int free_gpus = 0;
};

class Scheduler {
 public:
  // kInvalidArgument when an option is out of range (the message names it).
  static Expected<Scheduler> Create(const Clock* clock, SchedulerOptions options = {});

  // Jobs -----------------------------------------------------------------------------------
  // Queues a pending job, eligible from `eligible_at` on (now when unset; a job restored while
  // it backs off after a failure is eligible when that backoff ends). kAlreadyExists for a
  // known id; kInvalidArgument for bad fields.
  Status AddJob(const JobSpec& spec, std::optional<TimePoint> eligible_at = std::nullopt);
  // How long a job waits after its `failures`-th failure (SchedulerOptions: backoff_*).
  Duration BackoffAfter(int failures) const;
  // After a coordinator restart: re-adopts a job the store shows as leased, running or
  // preempted, with the slots its attempt holds ([0] = leader). Each holder gets a fresh
  // deadline; an agent that does not come back lets it run out, and the job is requeued.
  Status RestoreJob(const JobSpec& spec, JobState state, std::vector<Placement> placements);
  // Reorders a pending job, or changes whom a running job may be preempted by.
  Status SetPriority(const std::string& job_id, int priority);
  // From any non-final state: -> cancelled, and Kill to the holders if a lease is live. The
  // slots stay held until the leader reports the exit or the lease runs out.
  Expected<std::vector<Action>> Cancel(const std::string& job_id);
  // `vitscale preempt`: a leased or running job -> preempted, and a Signal to its leader.
  Expected<std::vector<Action>> Preempt(const std::string& job_id);

  // Agents ---------------------------------------------------------------------------------
  // Adds an agent or refreshes it (re-registration after an agent or coordinator restart).
  Status RegisterAgent(const AgentSpec& spec);
  // The agent is alive and still holds the leases of `job_ids` (may be empty). All or
  // nothing: kNotFound for an unregistered agent, kFailedPrecondition naming the first job
  // whose lease the agent does not hold; then nothing changes, and the agent must stop that job.
  Status Heartbeat(const std::string& agent_id, const std::vector<std::string>& job_ids);
  // The agent says which of its GPUs a job it holds uses (its registration lists them): after a
  // coordinator restart, that is how restored placements learn their indices. kNotFound for an
  // unknown agent or job; kFailedPrecondition when the agent holds no GPUs of the job, or
  // `indices` is not as many distinct GPUs of the agent as it holds.
  Status AdoptGpus(const std::string& agent_id, const std::string& job_id,
                   const std::vector<int>& indices);
  // The two reports below also count as the agent's heartbeat (not as its leases').
  // The leader reports the job's processes started: leased -> running.
  Expected<std::vector<Action>> ReportStarted(const std::string& agent_id,
                                              const std::string& job_id);
  // The leader reports how the job ended; the lease ends and its slots are free again.
  Expected<std::vector<Action>> ReportExit(const std::string& agent_id, const std::string& job_id,
                                           ExitKind exit);

  // The timer ---------------------------------------------------------------------------------
  // Requeues jobs whose leases ran out, then places eligible pending jobs by priority and
  // submission order, preempting lower-priority jobs for one that cannot otherwise be placed,
  // and reserving slots for one that has waited reserve_after.
  std::vector<Action> Schedule();

  // Views ----------------------------------------------------------------------------------
  std::optional<JobView> GetJob(const std::string& job_id) const;
  // The job's spec alone, without copying its holders and reservation: what a launch needs.
  std::optional<JobSpec> GetJobSpec(const std::string& job_id) const;
  std::optional<AgentView> GetAgent(const std::string& agent_id) const;
  // The agent's registration alone, without the walk over every lease that GetAgent's free
  // slots take: a poll needs no more, and a thousand agents poll every second.
  std::optional<AgentSpec> GetAgentSpec(const std::string& agent_id) const;
  // Every registered agent's view, by id, in one pass over the leases: what GetAgent per agent
  // gives, at O(agents + leases) rather than O(agents x leases) (a thousand agents, each
  // holding a job, are polled every second, and every tick samples the utilisation).
  std::map<std::string, AgentView> AgentViews() const;
  // Ids of pending jobs in the order Schedule considers them (eligible or still backing off).
  std::vector<std::string> PendingQueue() const;
  // Ids of the jobs whose live lease includes the agent's slots.
  std::vector<std::string> JobsOnAgent(const std::string& agent_id) const;

 private:
  // Free capacity per live agent, in agent-id order so decisions are deterministic.
  struct Capacity {
    int slots = 0;
    int gpus = 0;
  };
  using CapacityMap = std::map<std::string, Capacity>;
  // Pending order: priority descending, then submission order, then id.
  using QueueKey = std::tuple<int, int64_t, std::string>;

  Scheduler(const Clock* clock, SchedulerOptions options);

  static Status CheckSpec(const JobSpec& spec);
  static QueueKey KeyOf(const JobSpec& spec) {
    return {-spec.priority, spec.submit_order, spec.id};
  }
  Expected<JobView*> FindJob(const std::string& job_id);
  Status CheckAgent(const std::string& agent_id) const;
  bool Alive(const AgentView& agent) const;
  // Ends the job's lease, freeing its slots.
  void ReleaseLease(JobView& job);
  void MoveTo(JobView& job, JobState to, Reason reason, std::vector<Action>& actions);
  void ExpireLeases(std::vector<Action>& actions);
  // Capacity of live agents: what no lease holds (`free`), and what jobs that are being
  // preempted or cancelled hold and will give back (`releasing`).
  void ComputeCapacity(CapacityMap& free, CapacityMap& releasing) const;
  std::optional<std::vector<Placement>> PlaceGang(const JobSpec& spec,
                                                  const CapacityMap& capacity) const;
  // Can the agent run ranks of `spec`: any agent for CPU ranks; for GPU ranks, an agent whose
  // GPUs are of the kind asked for.
  bool Matches(const JobSpec& spec, const AgentSpec& agent) const;
  // The lowest `count` GPU indices of the agent that no lease holds; nullopt when fewer are free.
  std::optional<std::vector<int>> FreeGpus(const std::string& agent_id, int count) const;
  // Running or leased jobs the job `for_job` may preempt, best victim first.
  std::vector<JobView*> VictimCandidates(const JobSpec& for_job);
  // Preempts the fewest victims that make room for `job`, promises it that room (out of `free`
  // and `releasing`) and returns true; false, changing nothing, when no victims would do.
  bool PreemptFor(const JobView& job, CapacityMap& free, CapacityMap& releasing,
                  std::vector<Action>& actions);

  const Clock* clock_;
  SchedulerOptions options_;
  std::map<std::string, JobView> jobs_;
  std::map<std::string, AgentView> agents_;
  std::set<QueueKey> pending_;
  std::set<std::string> leased_;    // jobs with a live lease, whatever their state
  std::set<std::string> reserved_;  // pending jobs whose view shows a reservation
};

}  // namespace vitscale::coordinator
