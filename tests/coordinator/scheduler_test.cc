#include "coordinator/scheduler.h"

#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <string>
#include <vector>

#include "common/clock.h"

namespace vitscale::coordinator {
namespace {

using std::chrono::seconds;

SchedulerOptions TestOptions() {
  SchedulerOptions options;
  options.lease_duration = seconds(30);
  options.backoff_initial = seconds(10);
  options.backoff_factor = 2;
  options.backoff_max = seconds(25);
  options.preempt_grace = seconds(60);
  options.reserve_after = seconds(120);
  return options;
}

template <typename T>
std::vector<T> Only(const std::vector<Action>& actions) {
  std::vector<T> out;
  for (const Action& a : actions) {
    if (const T* t = std::get_if<T>(&a)) out.push_back(*t);
  }
  return out;
}

std::vector<Action> Must(Expected<std::vector<Action>> actions) {
  EXPECT_TRUE(actions.ok()) << actions.status().ToString();
  return actions.ok() ? std::move(actions).value() : std::vector<Action>{};
}

class SchedulerTest : public ::testing::Test {
 protected:
  void AddAgent(const std::string& id, int slots, int gpus = 0) {
    ASSERT_TRUE(sched_.RegisterAgent({id, "host-" + id, slots, gpus}).ok());
  }
  void AddJob(const std::string& id, int priority, int ranks, bool multi_host = false,
              int retries = 0, int gpus_per_rank = 0) {
    JobSpec spec;
    spec.id = id;
    spec.priority = priority;
    spec.submit_order = next_order_++;
    spec.ranks = ranks;
    spec.gpus_per_rank = gpus_per_rank;
    spec.multi_host = multi_host;
    spec.retries_left = retries;
    ASSERT_TRUE(sched_.AddJob(spec).ok());
  }
  // Runs one pass and returns the ids of the jobs it launched, in launch order.
  std::vector<std::string> Launched(std::vector<Action>* all = nullptr) {
    std::vector<Action> actions = sched_.Schedule();
    std::vector<std::string> ids;
    for (const Launch& l : Only<Launch>(actions)) ids.push_back(l.job_id);
    if (all != nullptr) *all = actions;
    return ids;
  }
  JobState StateOf(const std::string& id) { return sched_.GetJob(id)->state; }
  int FreeSlots(const std::string& agent) { return sched_.GetAgent(agent)->free_slots; }
  // The agent that leads the job's current lease.
  std::string Leader(const std::string& id) {
    return sched_.GetJob(id)->holders.at(0).placement.agent_id;
  }
  // Advances the clock by `by` in 10 s steps, every agent heartbeating the jobs it holds.
  void AdvanceWithHeartbeats(std::chrono::seconds by, const std::vector<std::string>& agents) {
    for (std::chrono::seconds left = by; left > seconds(0); left -= seconds(10)) {
      clock_.Advance(std::min(left, std::chrono::seconds(10)));
      for (const std::string& agent : agents) {
        ASSERT_TRUE(sched_.Heartbeat(agent, sched_.JobsOnAgent(agent)).ok());
      }
    }
  }

  FakeClock clock_;
  Scheduler sched_ = Scheduler::Create(&clock_, TestOptions()).value();
  int64_t next_order_ = 0;
};

TEST_F(SchedulerTest, PendingJobsRunByPriorityThenSubmissionOrder) {
  AddJob("low-first", 0, 1);
  AddJob("high-first", 5, 1);
  AddJob("low-second", 0, 1);
  AddJob("high-second", 5, 1);
  EXPECT_EQ(sched_.PendingQueue(),
            (std::vector<std::string>{"high-first", "high-second", "low-first", "low-second"}));

  AddAgent("a", 1);
  std::vector<std::string> order;
  for (int i = 0; i < 4; ++i) {
    std::vector<std::string> launched = Launched();
    ASSERT_EQ(launched.size(), 1u) << "one slot runs one job at a time";
    order.push_back(launched[0]);
    ASSERT_TRUE(sched_.ReportExit("a", launched[0], ExitKind::kSucceeded).ok());
  }
  EXPECT_EQ(order,
            (std::vector<std::string>{"high-first", "high-second", "low-first", "low-second"}));
  EXPECT_EQ(StateOf("low-second"), JobState::kSucceeded);
}

TEST_F(SchedulerTest, RaisingPriorityMovesAJobAhead) {
  AddJob("first", 0, 1);
  AddJob("second", 0, 1);
  ASSERT_TRUE(sched_.SetPriority("second", 3).ok());
  EXPECT_EQ(sched_.PendingQueue(), (std::vector<std::string>{"second", "first"}));
  EXPECT_EQ(sched_.SetPriority("nope", 1).code(), StatusCode::kNotFound);
}

TEST_F(SchedulerTest, GangGoesToOneHostWhenOneHasRoom) {
  AddAgent("a", 2);
  AddAgent("b", 4);
  AddAgent("c", 3);
  AddJob("job", 0, 3, /*multi_host=*/true);
  std::vector<Action> actions;
  ASSERT_EQ(Launched(&actions), std::vector<std::string>{"job"});
  std::vector<Launch> launch = Only<Launch>(actions);
  ASSERT_EQ(launch[0].placements.size(), 1u);
  EXPECT_EQ(launch[0].placements[0].agent_id, "c") << "the tightest host that holds the gang";
  EXPECT_EQ(launch[0].placements[0].host, "host-c");
  EXPECT_EQ(launch[0].placements[0].ranks, 3);
  EXPECT_EQ(launch[0].lease_deadline, clock_.Now() + seconds(30));
  std::vector<Transition> moves = Only<Transition>(actions);
  ASSERT_EQ(moves.size(), 1u);
  EXPECT_EQ(moves[0].from, JobState::kPending);
  EXPECT_EQ(moves[0].to, JobState::kLeased);
  EXPECT_EQ(FreeSlots("c"), 0);
  EXPECT_EQ(FreeSlots("b"), 4);
}

TEST_F(SchedulerTest, GangSpansHostsWhenAllowed) {
  AddAgent("a", 2);
  AddAgent("b", 3);
  AddJob("wide", 0, 4, /*multi_host=*/true);
  std::vector<Action> actions;
  ASSERT_EQ(Launched(&actions), std::vector<std::string>{"wide"});
  std::vector<Placement> p = Only<Launch>(actions)[0].placements;
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].agent_id, "b") << "the leader is the host with the most ranks";
  EXPECT_EQ(p[0].ranks, 3);
  EXPECT_EQ(p[1].agent_id, "a");
  EXPECT_EQ(p[1].ranks, 1);
  EXPECT_EQ(FreeSlots("a"), 1);
  EXPECT_EQ(FreeSlots("b"), 0);
  // Every holder heartbeats its own part of the gang; the non-leader cannot report the exit.
  EXPECT_TRUE(sched_.Heartbeat("a", {"wide"}).ok());
  EXPECT_EQ(sched_.ReportExit("a", "wide", ExitKind::kSucceeded).status().code(),
            StatusCode::kFailedPrecondition);
  EXPECT_TRUE(sched_.ReportExit("b", "wide", ExitKind::kSucceeded).ok());
  EXPECT_EQ(FreeSlots("a"), 2);
}

// AgentViews is GetAgent for every agent at once: a gang over two hosts, a GPU job, an idle
// agent and a silent one.
TEST_F(SchedulerTest, AgentViewsAgreeWithGetAgent) {
  AddAgent("a", 2);
  AddAgent("b", 3);
  AddAgent("g", 2, 2);
  AddAgent("idle", 1);
  AddJob("wide", 0, 4, /*multi_host=*/true);
  AddJob("gpu", 0, 1, false, 0, /*gpus_per_rank=*/2);
  ASSERT_EQ(Launched().size(), 2u);
  clock_.Advance(std::chrono::seconds(20));
  ASSERT_TRUE(sched_.Heartbeat("idle", {}).ok());
  clock_.Advance(std::chrono::seconds(15));  // past the lease for all but "idle"
  std::map<std::string, AgentView> views = sched_.AgentViews();
  ASSERT_EQ(views.size(), 4u);
  for (const std::string id : {"a", "b", "g", "idle"}) {
    std::optional<AgentView> one = sched_.GetAgent(id);
    ASSERT_TRUE(one.has_value());
    EXPECT_EQ(views.at(id).free_slots, one->free_slots) << id;
    EXPECT_EQ(views.at(id).free_gpus, one->free_gpus) << id;
    EXPECT_EQ(views.at(id).alive, one->alive) << id;
    ASSERT_TRUE(sched_.GetAgentSpec(id).has_value()) << id;
    EXPECT_EQ(sched_.GetAgentSpec(id)->slots, one->spec.slots) << id;
  }
  EXPECT_FALSE(sched_.GetAgentSpec("never-registered").has_value());
  EXPECT_EQ(views.at("b").free_slots, 0);
  EXPECT_EQ(views.at("g").free_gpus, 0);
  EXPECT_TRUE(views.at("idle").alive);
  EXPECT_FALSE(views.at("a").alive);
}

TEST_F(SchedulerTest, NoPartialGangWhenSlotsAreShort) {
  AddAgent("a", 2);
  AddAgent("b", 2);
  AddJob("single-host-only", 5, 4, /*multi_host=*/false);
  AddJob("too-big", 4, 5, /*multi_host=*/true);
  EXPECT_TRUE(Launched().empty());
  EXPECT_EQ(FreeSlots("a"), 2);
  EXPECT_EQ(FreeSlots("b"), 2);
  EXPECT_EQ(StateOf("single-host-only"), JobState::kPending);
  EXPECT_EQ(StateOf("too-big"), JobState::kPending);
  // A job that fits still runs behind the two that cannot.
  AddJob("small", 0, 2);
  EXPECT_EQ(Launched(), std::vector<std::string>{"small"});
}

TEST_F(SchedulerTest, GpuRanksNeedFreeGpus) {
  AddAgent("cpu-rich", 8, 2);
  AddJob("gpu-job", 0, 2, false, 0, /*gpus_per_rank=*/2);
  EXPECT_TRUE(Launched().empty()) << "2 ranks x 2 GPUs do not fit on 2 GPUs";
  AddAgent("gpu-host", 2, 4);
  std::vector<Action> actions;
  ASSERT_EQ(Launched(&actions), std::vector<std::string>{"gpu-job"});
  EXPECT_EQ(Only<Launch>(actions)[0].placements[0].agent_id, "gpu-host");
  EXPECT_EQ(Only<Launch>(actions)[0].placements[0].gpus, 4);
  EXPECT_EQ(sched_.GetAgent("gpu-host")->free_gpus, 0);
}

// Accelerator kinds (docs/gpu.md): a GPU job asking for a model runs only on agents whose GPUs
// are of that model, one asking for any GPU on any agent with GPUs, and never on an agent
// without; CPU jobs use any agent's CPU slots, next to GPU jobs on a GPU host.
TEST_F(SchedulerTest, GpuJobsMatchTheKindTheyAskForAndCpuJobsShareGpuHosts) {
  ASSERT_TRUE(sched_.RegisterAgent({"cpu", "host-cpu", 16, 0}).ok());
  ASSERT_TRUE(sched_.RegisterAgent({"a100", "host-a100", 4, 2, "NVIDIA A100"}).ok());
  auto gpu_job = [&](const std::string& id, const std::string& kind, int ranks) {
    JobSpec spec{id, 0, next_order_++, ranks, /*gpus_per_rank=*/1, false, 0, 0, kind};
    ASSERT_TRUE(sched_.AddJob(spec).ok());
  };
  gpu_job("wants-h200", "NVIDIA H200", 1);
  gpu_job("any-gpu", "", 2);
  std::vector<Action> actions;
  ASSERT_EQ(Launched(&actions), std::vector<std::string>{"any-gpu"});
  EXPECT_EQ(Only<Launch>(actions)[0].placements[0].agent_id, "a100");
  EXPECT_EQ(StateOf("wants-h200"), JobState::kPending) << "no H200 anywhere: it waits";
  // The A100 host's GPUs are taken, but its CPU slots still run a CPU job.
  AddJob("cpu-job", 0, 2);
  ASSERT_EQ(Launched(&actions), std::vector<std::string>{"cpu-job"});
  ASSERT_TRUE(sched_.RegisterAgent({"h200", "host-h200", 2, 1, "NVIDIA H200"}).ok());
  ASSERT_EQ(Launched(&actions), std::vector<std::string>{"wants-h200"});
  EXPECT_EQ(Only<Launch>(actions)[0].placements[0].agent_id, "h200");
  EXPECT_EQ(Only<Launch>(actions)[0].placements[0].gpu_indices, std::vector<int>{0});
}

// Jobs get GPUs by index, lowest free first, and two live leases never hold the same one; an
// index comes free when its job ends.
TEST_F(SchedulerTest, JobsGetDistinctGpuIndicesThatComeFreeWhenTheyEnd) {
  ASSERT_TRUE(sched_.RegisterAgent({"g", "host-g", 8, 4, "NVIDIA H200"}).ok());
  AddJob("one", 0, 1, false, 0, 1);
  AddJob("two", 0, 2, false, 0, 1);
  std::vector<Action> actions;
  ASSERT_EQ(Launched(&actions), (std::vector<std::string>{"one", "two"}));
  std::vector<Launch> launches = Only<Launch>(actions);
  EXPECT_EQ(launches[0].placements[0].gpu_indices, std::vector<int>{0});
  EXPECT_EQ(launches[1].placements[0].gpu_indices, (std::vector<int>{1, 2}));
  ASSERT_TRUE(sched_.ReportExit("g", "one", ExitKind::kSucceeded).ok());
  AddJob("three", 0, 2, false, 0, 1);
  ASSERT_EQ(Launched(&actions), std::vector<std::string>{"three"});
  EXPECT_EQ(Only<Launch>(actions)[0].placements[0].gpu_indices, (std::vector<int>{0, 3}));
  EXPECT_EQ(sched_.GetAgent("g")->free_gpus, 0);
}

// After a coordinator restart the restored placements know how many GPUs they hold but not
// which: the agent offers none to other jobs until its registration says (AdoptGpus), and then
// exactly the others.
TEST_F(SchedulerTest, RestoredGpuPlacementsBlockTheAgentsGpusUntilItNamesThem) {
  ASSERT_TRUE(sched_.RegisterAgent({"g", "host-g", 8, 4, "NVIDIA H200"}).ok());
  JobSpec running{"running", 0, 0, 2, 1, false, 0};
  ASSERT_TRUE(sched_.RestoreJob(running, JobState::kRunning, {{"g", "host-g", 2, 2}}).ok());
  AddJob("next", 0, 1, false, 0, 1);
  EXPECT_TRUE(Launched().empty()) << "which of the 4 GPUs are free is unknown";
  EXPECT_EQ(sched_.AdoptGpus("g", "running", {0, 9}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(sched_.AdoptGpus("g", "running", {1}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(sched_.AdoptGpus("g", "next", {0}).code(), StatusCode::kFailedPrecondition);
  ASSERT_TRUE(sched_.AdoptGpus("g", "running", {0, 2}).ok());
  std::vector<Action> actions;
  ASSERT_EQ(Launched(&actions), std::vector<std::string>{"next"});
  EXPECT_EQ(Only<Launch>(actions)[0].placements[0].gpu_indices, std::vector<int>{1});
}

// Out of memory with a smaller batch recorded is not a blind retry: the job is pending again at
// once, without a backoff and without using one of its retries.
TEST_F(SchedulerTest, AnOutOfMemoryExitRequeuesAtOnceWithoutUsingARetry) {
  AddAgent("a", 1);
  AddJob("big", 0, 1, false, /*retries=*/1);
  ASSERT_EQ(Launched(), std::vector<std::string>{"big"});
  std::vector<Action> actions = Must(sched_.ReportExit("a", "big", ExitKind::kOutOfMemory));
  std::vector<Transition> moves = Only<Transition>(actions);
  ASSERT_EQ(moves.size(), 1u);
  EXPECT_EQ(moves[0].reason, Reason::kOutOfMemory);
  EXPECT_EQ(moves[0].to, JobState::kPending);
  EXPECT_EQ(moves[0].retries_left, 1);
  EXPECT_STREQ(ReasonName(Reason::kOutOfMemory), "out_of_memory");
  EXPECT_EQ(Launched(), std::vector<std::string>{"big"}) << "no backoff";
  EXPECT_EQ(sched_.GetJob("big")->failures, 0);
}

TEST_F(SchedulerTest, ExpiredLeaseRequeuesWithoutCountingAFailure) {
  AddAgent("a", 1);
  AddJob("job", 0, 1, false, /*retries=*/1);
  ASSERT_EQ(Launched(), std::vector<std::string>{"job"});
  ASSERT_TRUE(sched_.ReportStarted("a", "job").ok());
  EXPECT_EQ(StateOf("job"), JobState::kRunning);
  AddAgent("b", 1);  // registers at t=0 too

  clock_.Advance(seconds(20));
  ASSERT_TRUE(sched_.Heartbeat("b", {}).ok());  // b stays alive; a falls silent
  clock_.Advance(seconds(9));
  EXPECT_TRUE(sched_.Schedule().empty()) << "the lease has 1 s left";

  clock_.Advance(seconds(1));
  std::vector<Action> actions;
  EXPECT_EQ(Launched(&actions), std::vector<std::string>{"job"});
  std::vector<Kill> kills = Only<Kill>(actions);
  ASSERT_EQ(kills.size(), 1u);
  EXPECT_EQ(kills[0].agent_ids, std::vector<std::string>{"a"});
  std::vector<Transition> moves = Only<Transition>(actions);
  ASSERT_EQ(moves.size(), 2u);
  EXPECT_EQ(moves[0].from, JobState::kRunning);
  EXPECT_EQ(moves[0].to, JobState::kPending);
  EXPECT_EQ(moves[0].reason, Reason::kLeaseLost);
  EXPECT_EQ(moves[1].to, JobState::kLeased);
  EXPECT_EQ(Leader("job"), "b") << "not on the silent agent";
  EXPECT_EQ(sched_.GetJob("job")->spec.retries_left, 1);
  EXPECT_EQ(sched_.GetJob("job")->failures, 0);
  EXPECT_FALSE(sched_.GetAgent("a")->alive);
}

TEST_F(SchedulerTest, OneSilentHolderBreaksTheWholeGang) {
  AddAgent("a", 2);
  AddAgent("b", 2);
  AddJob("gang", 0, 4, /*multi_host=*/true);
  ASSERT_EQ(Launched(), std::vector<std::string>{"gang"});
  clock_.Advance(seconds(20));
  ASSERT_TRUE(sched_.Heartbeat("a", {"gang"}).ok());  // b falls silent
  clock_.Advance(seconds(10));
  std::vector<Action> actions = sched_.Schedule();
  ASSERT_EQ(actions.size(), 2u) << "no relaunch: a alone has 2 of the 4 slots";
  ASSERT_TRUE(std::holds_alternative<Transition>(actions[0])) << "persist before commands";
  EXPECT_EQ(std::get<Transition>(actions[0]).reason, Reason::kLeaseLost);
  ASSERT_TRUE(std::holds_alternative<Kill>(actions[1]));
  EXPECT_EQ(std::get<Kill>(actions[1]).agent_ids, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(FreeSlots("a"), 2);
  EXPECT_EQ(StateOf("gang"), JobState::kPending);
}

TEST_F(SchedulerTest, HeartbeatExtendsTheLease) {
  AddAgent("a", 1);
  AddJob("job", 0, 1);
  ASSERT_EQ(Launched(), std::vector<std::string>{"job"});
  clock_.Advance(seconds(20));
  ASSERT_TRUE(sched_.Heartbeat("a", {"job"}).ok());
  EXPECT_EQ(sched_.GetJob("job")->holders[0].deadline, clock_.Now() + seconds(30));
  clock_.Advance(seconds(25));  // t=45: past the first deadline, before the extended one
  EXPECT_TRUE(sched_.Schedule().empty());
  EXPECT_EQ(StateOf("job"), JobState::kLeased);
  clock_.Advance(seconds(5));  // t=50
  sched_.Schedule();
  EXPECT_EQ(StateOf("job"), JobState::kPending);
}

TEST_F(SchedulerTest, HeartbeatForALeaseNotHeldIsRejectedAndChangesNothing) {
  AddAgent("a", 1);
  AddAgent("b", 1);
  AddJob("on-a", 0, 1);
  AddJob("on-b", 0, 1);
  ASSERT_EQ(Launched().size(), 2u);
  std::string job_on_a = Leader("on-a") == "a" ? "on-a" : "on-b";
  std::string job_on_b = job_on_a == "on-a" ? "on-b" : "on-a";
  clock_.Advance(seconds(10));
  TimePoint deadline_before = sched_.GetJob(job_on_a)->holders[0].deadline;
  TimePoint heartbeat_before = sched_.GetAgent("a")->last_heartbeat;

  // One held lease and one not: the whole heartbeat is refused.
  Status status = sched_.Heartbeat("a", {job_on_a, job_on_b});
  EXPECT_EQ(status.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(status.message().find(job_on_b), std::string::npos) << status.message();
  EXPECT_EQ(sched_.GetJob(job_on_a)->holders[0].deadline, deadline_before);
  EXPECT_EQ(sched_.GetAgent("a")->last_heartbeat, heartbeat_before);
  EXPECT_EQ(sched_.Heartbeat("a", {"no-such-job"}).code(), StatusCode::kFailedPrecondition);

  Status unknown = sched_.Heartbeat("aa", {});
  EXPECT_EQ(unknown.code(), StatusCode::kNotFound);
  EXPECT_NE(unknown.message().find("did you mean 'a'"), std::string::npos) << unknown.message();

  // A lease that ran out is no longer held: the agent that comes back late is refused.
  clock_.Advance(seconds(25));
  sched_.Schedule();
  EXPECT_EQ(sched_.Heartbeat("a", {job_on_a}).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(sched_.ReportExit("a", job_on_a, ExitKind::kSucceeded).status().code(),
            StatusCode::kFailedPrecondition);
  EXPECT_NE(StateOf(job_on_a), JobState::kSucceeded);
}

TEST_F(SchedulerTest, PreemptionPicksLowestPriorityMostRecentVictim) {
  AddAgent("a", 2);
  AddAgent("b", 2);
  AddAgent("c", 2);
  AddJob("mid", 1, 2);
  ASSERT_EQ(Launched(), std::vector<std::string>{"mid"});
  clock_.Advance(seconds(1));
  AddJob("low-older", 0, 2);
  ASSERT_EQ(Launched(), std::vector<std::string>{"low-older"});
  clock_.Advance(seconds(1));
  AddJob("low-newer", 0, 2);
  ASSERT_EQ(Launched(), std::vector<std::string>{"low-newer"});
  for (const char* job : {"mid", "low-older", "low-newer"}) {
    ASSERT_TRUE(sched_.ReportStarted(Leader(job), job).ok());
  }
  std::string victim_agent = Leader("low-newer");

  AddJob("urgent", 9, 2);
  std::vector<Action> actions;
  EXPECT_TRUE(Launched(&actions).empty()) << "the victim has not exited yet";
  std::vector<Signal> signals = Only<Signal>(actions);
  ASSERT_EQ(signals.size(), 1u);
  EXPECT_EQ(signals[0].job_id, "low-newer");
  EXPECT_EQ(signals[0].agent_id, victim_agent);
  EXPECT_EQ(signals[0].grace, seconds(60));
  EXPECT_EQ(StateOf("low-newer"), JobState::kPreempted);
  EXPECT_EQ(StateOf("low-older"), JobState::kRunning);
  EXPECT_EQ(StateOf("mid"), JobState::kRunning);

  // While the victim checkpoints, no one else is signalled.
  EXPECT_TRUE(Only<Signal>(sched_.Schedule()).empty());

  std::vector<Transition> requeue =
      Only<Transition>(Must(sched_.ReportExit(victim_agent, "low-newer", ExitKind::kPreempted)));
  ASSERT_EQ(requeue.size(), 1u);
  EXPECT_EQ(requeue[0].to, JobState::kPending);
  EXPECT_EQ(requeue[0].reason, Reason::kPreempted);
  EXPECT_EQ(Launched(), std::vector<std::string>{"urgent"});
  EXPECT_EQ(Leader("urgent"), victim_agent);
  EXPECT_EQ(StateOf("low-newer"), JobState::kPending);
  EXPECT_EQ(sched_.GetJob("low-newer")->failures, 0);
}

TEST_F(SchedulerTest, PreemptionPrefersLowerPriorityOverRecency) {
  AddAgent("a", 2);
  AddAgent("b", 2);
  AddJob("lowest", 0, 2);
  ASSERT_EQ(Launched(), std::vector<std::string>{"lowest"});
  clock_.Advance(seconds(1));
  AddJob("middle", 3, 2);
  ASSERT_EQ(Launched(), std::vector<std::string>{"middle"});
  AddJob("urgent", 9, 2);
  std::vector<Signal> signals = Only<Signal>(sched_.Schedule());
  ASSERT_EQ(signals.size(), 1u);
  EXPECT_EQ(signals[0].job_id, "lowest");
}

TEST_F(SchedulerTest, PreemptionSparesVictimsThatDoNotHelp) {
  AddAgent("small", 1);
  AddAgent("big", 2);
  AddJob("on-big", 1, 2);
  ASSERT_EQ(Launched(), std::vector<std::string>{"on-big"});
  clock_.Advance(seconds(1));
  AddJob("on-small", 0, 1);
  ASSERT_EQ(Launched(), std::vector<std::string>{"on-small"});
  // "on-small" is the first candidate (lowest priority) but its slot cannot hold 2 ranks.
  AddJob("urgent", 9, 2);
  std::vector<Signal> signals = Only<Signal>(sched_.Schedule());
  ASSERT_EQ(signals.size(), 1u);
  EXPECT_EQ(signals[0].job_id, "on-big");
  EXPECT_EQ(StateOf("on-small"), JobState::kLeased);
}

TEST_F(SchedulerTest, SlotsPromisedToAWaitingJobAreNotTakenByLowerPriority) {
  AddAgent("a", 4);
  AddJob("running", 0, 2);
  ASSERT_EQ(Launched(), std::vector<std::string>{"running"});
  AddJob("urgent", 9, 4);
  AddJob("filler", 0, 2);
  std::vector<Action> actions;
  EXPECT_TRUE(Launched(&actions).empty()) << "filler would take the 2 slots urgent waits for";
  EXPECT_EQ(Only<Signal>(actions).size(), 1u);
  EXPECT_TRUE(Launched().empty()) << "nor on the next pass, while the victim checkpoints";
  ASSERT_TRUE(sched_.ReportExit("a", "running", ExitKind::kPreempted).ok());
  EXPECT_EQ(Launched(), std::vector<std::string>{"urgent"});
}

TEST_F(SchedulerTest, EqualPriorityNeverPreempts) {
  AddAgent("a", 1);
  AddJob("first", 5, 1);
  ASSERT_EQ(Launched(), std::vector<std::string>{"first"});
  AddJob("second", 5, 1);
  std::vector<Action> actions = sched_.Schedule();
  EXPECT_TRUE(actions.empty());
}

// A host of the gang could not be reached: the job waits out the failure backoff, so that it is
// not placed on the same hosts again at once, but keeps its retries, even with none left.
TEST_F(SchedulerTest, AnUnreachableHostRequeuesWithoutUsingARetry) {
  AddAgent("a", 1);
  AddJob("far", 0, 1, false, /*retries=*/0);
  ASSERT_EQ(Launched(), std::vector<std::string>{"far"});
  std::vector<Transition> moves =
      Only<Transition>(Must(sched_.ReportExit("a", "far", ExitKind::kUnreachable)));
  ASSERT_EQ(moves.size(), 1u);
  EXPECT_EQ(moves[0].to, JobState::kPending);
  EXPECT_EQ(moves[0].reason, Reason::kHostUnreachable);
  EXPECT_EQ(moves[0].retries_left, 0);
  EXPECT_EQ(moves[0].eligible_at, clock_.Now() + seconds(10));
  clock_.Advance(seconds(10));
  ASSERT_EQ(Launched(), std::vector<std::string>{"far"});
}

// Only agents that see the coordinator's runs folder are spanned by a gang; any agent may run a
// job alone.
TEST_F(SchedulerTest, AGangSpansOnlyAgentsThatShareTheRunsFolder) {
  AddAgent("a", 1);
  AddAgent("b", 1);
  AgentSpec blind{"c", "c", 1, 0, "", /*shares_runs_dir=*/false};
  ASSERT_TRUE(sched_.RegisterAgent(blind).ok());
  AddJob("gang", 0, 3, /*multi_host=*/true);
  EXPECT_TRUE(Launched().empty()) << "a and b share the folder but have 2 slots, not 3";
  AddJob("solo", 0, 1);
  ASSERT_EQ(Launched(), std::vector<std::string>{"solo"});
  EXPECT_EQ(sched_.GetJob("solo")->holders.at(0).placement.agent_id, "a")
      << "the tightest fit, in id order";
}

TEST_F(SchedulerTest, FailuresRetryWithExponentialBackoff) {
  AddAgent("a", 1);
  AddJob("flaky", 0, 1, false, /*retries=*/3);
  ASSERT_EQ(Launched(), std::vector<std::string>{"flaky"});

  std::vector<Transition> moves =
      Only<Transition>(Must(sched_.ReportExit("a", "flaky", ExitKind::kFailed)));
  ASSERT_EQ(moves.size(), 1u);
  EXPECT_EQ(moves[0].reason, Reason::kRetry);
  EXPECT_EQ(moves[0].retries_left, 2);
  EXPECT_EQ(moves[0].eligible_at, clock_.Now() + seconds(10));
  clock_.Advance(seconds(9));
  EXPECT_TRUE(Launched().empty()) << "1 s of the first 10 s backoff left";
  clock_.Advance(seconds(1));
  ASSERT_EQ(Launched(), std::vector<std::string>{"flaky"});

  ASSERT_TRUE(sched_.ReportExit("a", "flaky", ExitKind::kFailed).ok());
  clock_.Advance(seconds(19));
  EXPECT_TRUE(Launched().empty()) << "the second backoff doubles to 20 s";
  clock_.Advance(seconds(1));
  ASSERT_EQ(Launched(), std::vector<std::string>{"flaky"});

  ASSERT_TRUE(sched_.ReportExit("a", "flaky", ExitKind::kFailed).ok());
  EXPECT_EQ(sched_.GetJob("flaky")->eligible_at, clock_.Now() + seconds(25)) << "capped";
  clock_.Advance(seconds(25));
  ASSERT_EQ(Launched(), std::vector<std::string>{"flaky"});

  moves = Only<Transition>(Must(sched_.ReportExit("a", "flaky", ExitKind::kFailed)));
  ASSERT_EQ(moves.size(), 1u);
  EXPECT_EQ(moves[0].to, JobState::kFailed) << "no retries left";
  EXPECT_EQ(moves[0].reason, Reason::kFailed);
  clock_.Advance(seconds(100));
  EXPECT_TRUE(Launched().empty());
  EXPECT_EQ(sched_.GetJob("flaky")->failures, 4);
}

TEST_F(SchedulerTest, ConfigurationErrorsAreNeverRetried) {
  AddAgent("a", 1);
  AddJob("bad-spec", 0, 1, false, /*retries=*/3);
  ASSERT_EQ(Launched(), std::vector<std::string>{"bad-spec"});
  std::vector<Transition> moves =
      Only<Transition>(Must(sched_.ReportExit("a", "bad-spec", ExitKind::kConfigError)));
  ASSERT_EQ(moves.size(), 1u);
  EXPECT_EQ(moves[0].to, JobState::kFailed);
  EXPECT_EQ(moves[0].reason, Reason::kConfigError);
  clock_.Advance(seconds(3600));
  EXPECT_TRUE(Launched().empty());
  EXPECT_EQ(sched_.GetJob("bad-spec")->spec.retries_left, 3);
  EXPECT_EQ(FreeSlots("a"), 1);
}

TEST_F(SchedulerTest, CancelFromEveryUnfinishedState) {
  AddAgent("a", 2);
  AddJob("running", 0, 1);
  AddJob("leased", 0, 1);
  ASSERT_EQ(Launched().size(), 2u);
  ASSERT_TRUE(sched_.ReportStarted("a", "running").ok());
  AddJob("pending", 0, 1);

  std::vector<Action> actions = Must(sched_.Cancel("pending"));
  EXPECT_TRUE(Only<Kill>(actions).empty()) << "nothing runs yet";
  EXPECT_EQ(StateOf("pending"), JobState::kCancelled);
  EXPECT_TRUE(sched_.PendingQueue().empty());

  actions = Must(sched_.Cancel("running"));
  ASSERT_EQ(Only<Kill>(actions).size(), 1u);
  EXPECT_EQ(Only<Kill>(actions)[0].agent_ids, std::vector<std::string>{"a"});
  EXPECT_EQ(Only<Transition>(actions)[0].from, JobState::kRunning);
  EXPECT_EQ(StateOf("running"), JobState::kCancelled);
  EXPECT_EQ(FreeSlots("a"), 0) << "slots stay held until the killed job has exited";
  EXPECT_TRUE(Must(sched_.ReportExit("a", "running", ExitKind::kFailed)).empty());
  EXPECT_EQ(StateOf("running"), JobState::kCancelled);
  EXPECT_EQ(FreeSlots("a"), 1);

  ASSERT_TRUE(sched_.Preempt("leased").ok());
  EXPECT_EQ(StateOf("leased"), JobState::kPreempted);
  actions = Must(sched_.Cancel("leased"));
  EXPECT_EQ(Only<Transition>(actions)[0].from, JobState::kPreempted);
  EXPECT_EQ(StateOf("leased"), JobState::kCancelled);

  EXPECT_EQ(sched_.Cancel("running").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(sched_.Cancel("missing").status().code(), StatusCode::kNotFound);
  // The killed job's agent falls silent: its slots come back when the lease runs out.
  clock_.Advance(seconds(30));
  EXPECT_TRUE(Only<Transition>(sched_.Schedule()).empty()) << "a cancelled job stays cancelled";
  EXPECT_EQ(StateOf("leased"), JobState::kCancelled);
}

TEST_F(SchedulerTest, UserPreemptRequeuesOnExit) {
  AddAgent("a", 1);
  AddJob("job", 0, 1, false, /*retries=*/0);
  ASSERT_EQ(Launched(), std::vector<std::string>{"job"});
  EXPECT_EQ(sched_.Preempt("missing").status().code(), StatusCode::kNotFound);
  std::vector<Action> actions = Must(sched_.Preempt("job"));
  ASSERT_EQ(Only<Signal>(actions).size(), 1u);
  EXPECT_TRUE(Must(sched_.Preempt("job")).empty()) << "a second preempt is a no-op";
  ASSERT_TRUE(sched_.ReportExit("a", "job", ExitKind::kPreempted).ok());
  EXPECT_EQ(StateOf("job"), JobState::kPending);
  EXPECT_EQ(Launched(), std::vector<std::string>{"job"}) << "resumes with no retry used";
  EXPECT_EQ(sched_.Preempt("job").status().code(), StatusCode::kOk);
  AddJob("queued", 0, 1);
  EXPECT_EQ(sched_.Preempt("queued").status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(SchedulerTest, RestoredLeasesSurviveOnlyIfTheirAgentsReturn) {
  JobSpec kept{"kept", 0, 1, 2, 0, false, 0};
  JobSpec lost{"lost", 0, 2, 1, 0, false, 0};
  ASSERT_TRUE(sched_.RestoreJob(kept, JobState::kRunning, {{"a", "host-a", 2, 0}}).ok());
  ASSERT_TRUE(sched_.RestoreJob(lost, JobState::kRunning, {{"b", "host-b", 1, 0}}).ok());
  EXPECT_EQ(sched_.RestoreJob(lost, JobState::kRunning, {{"b", "host-b", 1, 0}}).code(),
            StatusCode::kAlreadyExists);
  EXPECT_EQ(
      sched_.RestoreJob({"x", 0, 3, 2, 0, false, 0}, JobState::kRunning, {{"a", "host-a", 1, 0}})
          .code(),
      StatusCode::kInvalidArgument);
  AddAgent("a", 2);
  EXPECT_EQ(FreeSlots("a"), 0) << "the restored lease holds its slots";
  clock_.Advance(seconds(20));
  ASSERT_TRUE(sched_.Heartbeat("a", {"kept"}).ok());
  clock_.Advance(seconds(10));
  sched_.Schedule();
  EXPECT_EQ(StateOf("kept"), JobState::kRunning);
  EXPECT_EQ(StateOf("lost"), JobState::kPending);
}

// A stopping agent registers again with 0 slots while its jobs still run (docs/agent.md): its
// held ranks overcommit it, and that must never read as room elsewhere or as negative room.
TEST_F(SchedulerTest, AgentDrainingToZeroSlotsGetsNoWorkAndLendsNoRoom) {
  AddAgent("a", 2);
  AddAgent("b", 1);
  AddJob("on-b", 0, 1);
  ASSERT_EQ(Launched(), std::vector<std::string>{"on-b"});
  EXPECT_EQ(Leader("on-b"), "b");
  clock_.Advance(seconds(1));
  AddJob("on-a", 0, 2);
  ASSERT_EQ(Launched(), std::vector<std::string>{"on-a"});
  EXPECT_EQ(Leader("on-a"), "a");

  AddAgent("a", 0);  // draining: no new work, the job it holds keeps its lease
  ASSERT_TRUE(sched_.Heartbeat("a", {"on-a"}).ok());
  AddJob("small", 0, 1);
  EXPECT_TRUE(Launched().empty()) << "a holds more than its 0 slots; b is full";
  // The most recent, lowest-priority victim is "on-a", but preempting it frees nothing that a
  // 0-slot agent can offer: only "on-b" makes room for "urgent".
  AddJob("urgent", 9, 1);
  std::vector<Signal> signals = Only<Signal>(sched_.Schedule());
  ASSERT_EQ(signals.size(), 1u);
  EXPECT_EQ(signals[0].job_id, "on-b");
  EXPECT_EQ(StateOf("on-a"), JobState::kLeased);
  ASSERT_TRUE(sched_.ReportExit("b", "on-b", ExitKind::kPreempted).ok());
  EXPECT_EQ(Launched(), std::vector<std::string>{"urgent"});
  EXPECT_EQ(Leader("urgent"), "b");
  // Once a's job ends it offers nothing still; "small" and "on-b" wait.
  ASSERT_TRUE(sched_.ReportExit("a", "on-a", ExitKind::kPreempted).ok());
  EXPECT_TRUE(Launched().empty());
  EXPECT_EQ(FreeSlots("a"), 0);
}

// A stream of one-rank jobs keeps a 4-slot agent full: each freed slot would go to the next
// small job, and a 4-rank job would wait forever. After reserve_after its slots are kept.
TEST_F(SchedulerTest, BigJobIsNotStarvedByAStreamOfSmallJobs) {
  AddAgent("a", 4);
  std::deque<std::string> running;
  int next_small = 0;
  auto add_small = [&] {
    std::string id = "small-" + std::to_string(next_small++);
    AddJob(id, 0, 1);
    return id;
  };
  for (int i = 0; i < 4; ++i) running.push_back(add_small());
  ASSERT_EQ(Launched().size(), 4u);
  AddJob("big", 0, 4);
  // One small job ends every 20 s and another is submitted.
  auto next_small_ends = [&] {
    AdvanceWithHeartbeats(seconds(20), {"a"});
    ASSERT_TRUE(sched_.ReportExit("a", running.front(), ExitKind::kSucceeded).ok());
    running.pop_front();
    add_small();
  };
  for (int i = 0; i < 5; ++i) {  // t = 20 .. 100 s, under reserve_after (120 s)
    next_small_ends();
    std::vector<std::string> launched = Launched();
    ASSERT_EQ(launched.size(), 1u) << "before the bound the freed slot goes to a small job";
    running.push_back(launched[0]);
    EXPECT_TRUE(sched_.GetJob("big")->reservation.empty());
  }
  next_small_ends();  // t = 120 s: "big" has waited reserve_after
  EXPECT_TRUE(Launched().empty()) << "the freed slot is kept for big";
  std::vector<Placement> reservation = sched_.GetJob("big")->reservation;
  ASSERT_EQ(reservation.size(), 1u);
  EXPECT_EQ(reservation[0].agent_id, "a");
  EXPECT_EQ(reservation[0].ranks, 4);
  EXPECT_EQ(FreeSlots("a"), 1) << "reserved, not leased";
  while (running.size() > 1) {
    next_small_ends();
    EXPECT_TRUE(Launched().empty());
  }
  next_small_ends();  // the last small job that held a slot of "a" ends
  EXPECT_EQ(Launched(), std::vector<std::string>{"big"});
  EXPECT_TRUE(sched_.GetJob("big")->reservation.empty());
  ASSERT_TRUE(sched_.ReportExit("a", "big", ExitKind::kSucceeded).ok());
  EXPECT_EQ(Launched().size(), 4u) << "the small jobs that waited run again";
}

// The reservation holds only the hosts the waiting job will run on, and ends with the job.
TEST_F(SchedulerTest, ReservationKeepsOnlyTheHostsTheWaitingJobNeeds) {
  AddAgent("a", 2);
  AddAgent("b", 2);
  for (const char* id : {"a-0", "a-1", "b-0", "b-1"}) AddJob(id, 0, 1);
  ASSERT_EQ(Launched().size(), 4u);
  for (const char* id : {"a-0", "a-1", "b-0", "b-1"}) ASSERT_EQ(Leader(id), std::string(1, id[0]));
  AddJob("pair", 0, 2);  // one host's worth: on an idle cluster it would go to a
  AdvanceWithHeartbeats(seconds(120), {"a", "b"});
  AddJob("late", 0, 1);
  ASSERT_TRUE(sched_.ReportExit("b", "b-0", ExitKind::kSucceeded).ok());
  EXPECT_EQ(Launched(), std::vector<std::string>{"late"}) << "b is not held for pair";
  EXPECT_EQ(Leader("late"), "b");
  std::vector<Placement> reservation = sched_.GetJob("pair")->reservation;
  ASSERT_EQ(reservation.size(), 1u);
  EXPECT_EQ(reservation[0].agent_id, "a");
  EXPECT_EQ(reservation[0].ranks, 2);

  ASSERT_TRUE(sched_.ReportExit("a", "a-0", ExitKind::kSucceeded).ok());
  AddJob("later", 0, 1);
  EXPECT_TRUE(Launched().empty()) << "the slot freed on a is kept for pair";
  ASSERT_TRUE(sched_.Cancel("pair").ok());
  EXPECT_TRUE(sched_.GetJob("pair")->reservation.empty());
  EXPECT_EQ(Launched(), std::vector<std::string>{"later"}) << "cancelling ends the reservation";
  EXPECT_EQ(Leader("later"), "a");
}

TEST_F(SchedulerTest, JobTooBigForTheWholeClusterReservesNothing) {
  AddAgent("a", 2);
  AddJob("huge", 5, 3, /*multi_host=*/true);
  AddJob("single-host", 5, 2, /*multi_host=*/false, 0, /*gpus_per_rank=*/1);  // a has no GPU
  AddJob("small", 0, 1);
  ASSERT_EQ(Launched(), std::vector<std::string>{"small"});
  AdvanceWithHeartbeats(seconds(1000), {"a"});
  AddJob("small-2", 0, 1);
  EXPECT_EQ(Launched(), std::vector<std::string>{"small-2"});
  EXPECT_TRUE(sched_.GetJob("huge")->reservation.empty());
  EXPECT_TRUE(sched_.GetJob("single-host")->reservation.empty());
}

TEST(SchedulerOptionsTest, BadOptionsAreRefused) {
  FakeClock clock;
  SchedulerOptions options;
  options.lease_duration = seconds(0);
  EXPECT_EQ(Scheduler::Create(&clock, options).status().code(), StatusCode::kInvalidArgument);
  options = {};
  options.backoff_factor = 0.5;
  EXPECT_EQ(Scheduler::Create(&clock, options).status().code(), StatusCode::kInvalidArgument);
  options = {};
  options.reserve_after = seconds(-1);
  EXPECT_EQ(Scheduler::Create(&clock, options).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Scheduler::Create(nullptr).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Scheduler::Create(&clock).ok());
}

TEST(SchedulerSpecTest, BadJobsAndAgentsAreRefused) {
  FakeClock clock;
  Scheduler sched = Scheduler::Create(&clock).value();
  EXPECT_EQ(sched.AddJob({"", 0, 0, 1, 0, false, 0}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sched.AddJob({"j", 0, 0, 0, 0, false, 0}).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(sched.AddJob({"j", 0, 0, 1, 0, false, 0}).ok());
  EXPECT_EQ(sched.AddJob({"j", 0, 0, 1, 0, false, 0}).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(sched.RegisterAgent({"a", "", 1, 0}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(sched.RegisterAgent({"a", "h", -1, 0}).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace vitscale::coordinator
