// The agent end to end: real processes through real mpirun, against a scripted coordinator that
// speaks the agent half of docs/api.md (register, long poll, exit reports).
#include "worker/agent.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

#include "common/clock.h"
#include "common/files.h"
#include "common/sha256.h"
#include "tests/worker/test_server.h"

namespace vitscale::worker {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;
using testing::TestReply;
using testing::TestRequest;
using testing::TestServer;
namespace fs = std::filesystem;

using protocol::ExitOutcome;

// Job ids are 64 hex digits (protocol/json.h); the tests name jobs and hash the names.
std::string Id(const std::string& name) { return Sha256Hex(name); }

TEST(ClassifyExitTest, FollowsTheTrainersStatusesAndWhoSentTheKill) {
  auto exited = [](int code) { return ProcessExit{1, false, code, 0}; };
  ProcessExit sigkill{1, true, 0, SIGKILL};
  ProcessExit segv{1, true, 0, SIGSEGV};
  EXPECT_EQ(ClassifyExit(exited(0), false, false), ExitOutcome::kSucceeded);
  EXPECT_EQ(ClassifyExit(exited(75), true, false), ExitOutcome::kPreempted);
  EXPECT_EQ(ClassifyExit(exited(78), false, false), ExitOutcome::kConfigError);
  EXPECT_EQ(ClassifyExit(exited(1), false, false), ExitOutcome::kFailed);
  EXPECT_EQ(ClassifyExit(sigkill, false, true), ExitOutcome::kKilled);
  EXPECT_EQ(ClassifyExit(sigkill, true, false), ExitOutcome::kPreempted);
  EXPECT_EQ(ClassifyExit(sigkill, false, false), ExitOutcome::kFailed);
  EXPECT_EQ(ClassifyExit(segv, true, false), ExitOutcome::kFailed);
  EXPECT_STREQ(protocol::ExitOutcomeName(ExitOutcome::kConfigError), "config_error");
}

TEST(MpirunHostsTest, NamesThisHostLocalhostAndKeepsTheOthers) {
  EXPECT_EQ(MpirunHosts({{"agent-a", 2}}, "agent-a"), "localhost:2");
  EXPECT_EQ(MpirunHosts({{"agent-a", 2}, {"agent-b", 4}}, "agent-a"), "localhost:2,agent-b:4");
  EXPECT_EQ(MpirunHosts({{"b", 1}, {"a", 3}}, "a"), "b:1,localhost:3");
}

TEST(PathWithinTest, OnlyInsideTheGivenFolders) {
  EXPECT_TRUE(PathWithin("/w/logs/x.log", {"/w"}));
  EXPECT_TRUE(PathWithin("/runs/j/attempt-1.log", {"/w", "/runs/"}));
  EXPECT_FALSE(PathWithin("/w", {"/w"}));
  EXPECT_FALSE(PathWithin("/wx/a.log", {"/w"}));
  EXPECT_FALSE(PathWithin("/etc/cron.d/x", {"/w", ""}));
}

TEST(MpirunCommandTest, RunsTheTrainerWithItsSpecOnTheGivenHosts) {
  AgentOptions options;
  options.train_command = "/opt/bin/vitscale-train";
  options.allow_run_as_root = true;
  EXPECT_EQ(MpirunCommand(options, 2, "localhost:2", "/w/spec.json"),
            (std::vector<std::string>{"mpirun", "--allow-run-as-root", "--oversubscribe", "-x",
                                      "OMP_WAIT_POLICY", "-np", "2", "-H", "localhost:2",
                                      "/opt/bin/vitscale-train", "--spec", "/w/spec.json"}));
  options.allow_run_as_root = false;
  EXPECT_EQ(MpirunCommand(options, 1, "h:1", "s")[1], "--oversubscribe");
}

// A coordinator that records what the agent sends and answers polls from a queue.
class ScriptedCoordinator {
 public:
  explicit ScriptedCoordinator(uint16_t port = 0) { Start(port); }

  void Start(uint16_t port) {
    server_ =
        std::make_unique<TestServer>([this](const TestRequest& r) { return Handle(r); }, port);
  }
  // Drops every connection and stops listening, as a killed coordinator does.
  void Kill() { server_.reset(); }
  uint16_t port() const { return server_->port(); }
  std::string url() const { return server_->url(); }

  void QueuePollReply(json reply) {
    std::lock_guard<std::mutex> lock(mu_);
    replies_.push_back(std::move(reply));
    cv_.notify_all();
  }
  // While set, exit reports get a 503, as from a coordinator that is busy or going away.
  void RefuseExits(bool refuse) {
    std::lock_guard<std::mutex> lock(mu_);
    refuse_exits_ = refuse;
  }
  // Answers the next poll that lists `job` with a 409 naming it.
  void RefuseNextPollWith(const std::string& job) {
    std::lock_guard<std::mutex> lock(mu_);
    refuse_job_ = job;
  }

  bool WaitFor(const std::function<bool()>& done, milliseconds timeout = milliseconds(20000)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, done);
  }
  // Access to the records; call inside WaitFor's predicate or under Lock().
  std::unique_lock<std::mutex> Lock() { return std::unique_lock<std::mutex>(mu_); }
  std::vector<json> registers;
  std::vector<json> polls;
  std::vector<std::pair<std::string, json>> exits;  // (path, body), accepted ones
  int exit_attempts = 0;                             // every exit report, refused ones too

  bool PollListed(const std::string& job) const {
    for (const json& poll : polls) {
      for (const json& entry : poll["running"]) {
        if (entry["job"] == Id(job)) return true;
      }
    }
    return false;
  }

 private:
  TestReply Handle(const TestRequest& request) {
    EXPECT_EQ(request.authorization, "Bearer test-token");
    std::unique_lock<std::mutex> lock(mu_);
    json body = json::parse(request.body, nullptr, false);
    TestReply reply;
    if (request.target == "/api/v1/agents/register") {
      registers.push_back(body);
      reply.body =
          json{{"agent", body["host"]}, {"lease_seconds", 30}, {"not_held", json::array()}}.dump();
    } else if (request.target == "/api/v1/agents/agent-a/poll") {
      polls.push_back(body);
      cv_.notify_all();
      if (!refuse_job_.empty()) {
        for (const json& entry : body["running"]) {
          if (entry["job"] == refuse_job_) {
            json not_held = json::array({entry});
            refuse_job_.clear();
            return TestReply{409, json{{"error", "not held"}, {"not_held", not_held}}.dump()};
          }
        }
      }
      // A short long poll keeps the tests quick; the real one holds up to 20 s.
      cv_.wait_for(lock, milliseconds(200), [this] { return !replies_.empty(); });
      json answer = {{"launch", json::array()}, {"signal", json::array()}, {"lease_seconds", 30}};
      if (!replies_.empty()) {
        json queued = replies_.front();
        replies_.pop_front();
        for (auto& [key, value] : queued.items()) answer[key] = value;
      }
      reply.body = answer.dump();
    } else if (request.target.find("/exit") != std::string::npos) {
      ++exit_attempts;
      cv_.notify_all();
      if (refuse_exits_) return TestReply{503, R"({"error": "busy"})"};
      exits.emplace_back(request.target, body);
    } else {
      reply = TestReply{404, R"({"error": "unknown route"})"};
    }
    cv_.notify_all();
    return reply;
  }

  std::unique_ptr<TestServer> server_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<json> replies_;
  std::string refuse_job_;
  bool refuse_exits_ = false;
};

// The stand-in trainer: each rank reads its spec and behaves as its "mode" says.
constexpr const char* kTrainer = R"SH(#!/bin/sh
spec="$2"
echo "rank $OMPI_COMM_WORLD_RANK of $OMPI_COMM_WORLD_SIZE spec $spec isolated=$OMPI_MCA_ess_singleton_isolated omp=$OMP_WAIT_POLICY"
case "$(cat "$spec")" in
  *'"mode": "succeed"'*) exit 0 ;;
  *'"mode": "finish-later"'*) sleep 2; exit 0 ;;
  *'"mode": "checkpoint-on-term"'*) trap 'echo checkpointed; exit 75' TERM; sleep 60 & wait ;;
  *'"mode": "ignore-term"'*) trap '' TERM; sleep 60 & wait; sleep 60 ;;
esac
exit 1
)SH";

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("vitscale-agent-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    trainer_ = (dir_ / "fake-train").string();
    ASSERT_TRUE(WriteFileAtomically(trainer_, kTrainer, 0755).ok());
  }
  void TearDown() override {
    if (agent_) {
      agent_->RequestStop();
      if (run_thread_.joinable()) run_thread_.join();
    }
    fs::remove_all(dir_);
  }

  void StartAgent(const std::string& url, Launcher* launcher = nullptr,
                  const Clock* clock = nullptr, milliseconds max_backoff = milliseconds(200)) {
    AgentOptions options;
    options.coordinator_url = url;
    options.token = "test-token";
    options.host = "agent-a";
    options.slots = 2;
    options.work_dir = (dir_ / "work").string();
    options.runs_dir = (dir_ / "runs").string();
    options.train_command = trainer_;
    options.allow_run_as_root = ::geteuid() == 0;
    options.max_backoff = max_backoff;
    options.clock = clock;
    Expected<std::unique_ptr<Agent>> agent =
        Agent::Create(options, launcher ? *launcher : static_cast<Launcher&>(launcher_));
    ASSERT_TRUE(agent.ok()) << agent.status().ToString();
    agent_ = std::move(agent).value();
    run_thread_ = std::thread([this] { ASSERT_TRUE(agent_->Run().ok()); });
  }
  void StopAgent() {
    agent_->RequestStop();
    run_thread_.join();
  }

  json Launch(const std::string& job, const std::string& mode, int grace = 30, int ranks = 2) {
    json spec = {{"job_id", job}, {"mode", mode}};
    return {{"launch", json::array({{{"job", Id(job)},
                                     {"attempt", 1},
                                     {"ranks", ranks},
                                     {"hosts", "agent-a:" + std::to_string(ranks)},
                                     {"grace_seconds", grace},
                                     {"log", LogPath(job)},
                                     {"spec", spec}}})}};
  }
  std::string LogPath(const std::string& job) const {
    return (dir_ / "runs" / job / "attempt-1.log").string();
  }
  std::string Log(const std::string& job) const {
    Expected<std::string> text = ReadFile(LogPath(job));
    return text.ok() ? *text : "";
  }
  // Waits for the exit report of `job` and returns its body.
  json WaitExit(const std::string& job, milliseconds timeout = milliseconds(30000)) {
    json found;
    coordinator_.WaitFor(
        [&] {
          for (const auto& [path, body] : coordinator_.exits) {
            if (path == "/api/v1/jobs/" + Id(job) + "/attempts/1/exit") found = body;
          }
          return !found.is_null();
        },
        timeout);
    return found;
  }
  // Waits until both ranks of `job` have started (each prints a line first).
  void WaitRanksStarted(const std::string& job) {
    for (int i = 0; i < 1000; ++i) {
      std::string log = Log(job);
      if (log.find("rank 0 of 2") != std::string::npos &&
          log.find("rank 1 of 2") != std::string::npos) {
        std::this_thread::sleep_for(milliseconds(200));  // and reached their traps
        return;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    FAIL() << "the ranks of " << job << " did not start: " << Log(job);
  }
  // Live processes running the stand-in trainer, found by their command lines.
  int TrainerProcesses() const {
    int count = 0;
    for (const auto& entry : fs::directory_iterator("/proc")) {
      Expected<std::string> cmdline = ReadFile((entry.path() / "cmdline").string());
      Expected<std::string> stat = ReadFile((entry.path() / "stat").string());
      if (!cmdline.ok() || !stat.ok() || cmdline->find(trainer_) == std::string::npos) continue;
      if (stat->find(") Z ") == std::string::npos) ++count;
    }
    return count;
  }
  void WaitListed(const std::string& job) {
    ASSERT_TRUE(coordinator_.WaitFor([&] { return coordinator_.PollListed(job); }));
  }

  fs::path dir_;
  std::string trainer_;
  ScriptedCoordinator coordinator_;
  ProcessLauncher launcher_;
  std::unique_ptr<Agent> agent_;
  std::thread run_thread_;
};

TEST_F(AgentTest, RegistersRunsALaunchThroughMpirunAndReportsSuccess) {
  coordinator_.QueuePollReply(Launch("job1", "succeed"));
  StartAgent(coordinator_.url());
  json exit = WaitExit("job1");
  ASSERT_FALSE(exit.is_null()) << Log("job1");
  EXPECT_EQ(exit, (json{{"agent", "agent-a"}, {"outcome", "succeeded"}, {"exit_status", 0}}));
  std::string log = Log("job1");
  EXPECT_NE(log.find("vitscale-agent: job " + Id("job1") + " attempt 1 on agent-a: mpirun"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("rank 0 of 2"), std::string::npos) << log;
  EXPECT_NE(log.find("rank 1 of 2"), std::string::npos) << log;
  EXPECT_NE(log.find("omp=passive"), std::string::npos) << log;
  fs::path spec = dir_ / "work" / "specs" / Id("job1") / "attempt-1.json";
  EXPECT_TRUE(fs::exists(spec));
  // The spec carries the attempt's report token: its owner alone reads it, and the log too.
  EXPECT_EQ(fs::status(spec).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(fs::status(LogPath("job1")).permissions() & (fs::perms::group_all | fs::perms::others_all),
            fs::perms::none);
  auto lock = coordinator_.Lock();
  ASSERT_FALSE(coordinator_.registers.empty());
  EXPECT_EQ(coordinator_.registers[0],
            (json{{"host", "agent-a"}, {"slots", 2}, {"gpus", 0}, {"running", json::array()}}));
}

TEST_F(AgentTest, PreemptSendsSigtermAndReportsPreempted) {
  coordinator_.QueuePollReply(Launch("job2", "checkpoint-on-term"));
  StartAgent(coordinator_.url());
  WaitListed("job2");
  WaitRanksStarted("job2");
  coordinator_.QueuePollReply(
      {{"signal",
        json::array(
            {{{"job", Id("job2")}, {"attempt", 1}, {"action", "preempt"}, {"grace_seconds", 20}}})}});
  json exit = WaitExit("job2");
  EXPECT_EQ(exit, (json{{"agent", "agent-a"}, {"outcome", "preempted"}, {"exit_status", 75}}))
      << Log("job2");
  EXPECT_NE(Log("job2").find("checkpointed"), std::string::npos);
}

TEST_F(AgentTest, OneRankRunsTheTrainerWithoutMpirunAndPreemptsIt) {
  coordinator_.QueuePollReply(Launch("job7", "checkpoint-on-term", 20, /*ranks=*/1));
  StartAgent(coordinator_.url());
  WaitListed("job7");
  for (int i = 0; i < 1000 && Log("job7").find("isolated=1") == std::string::npos; ++i) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  ASSERT_NE(Log("job7").find("rank  of  spec"), std::string::npos) << Log("job7");
  std::this_thread::sleep_for(milliseconds(200));  // and reached its trap
  EXPECT_NE(Log("job7").find("on agent-a: " + trainer_ + " --spec "), std::string::npos)
      << Log("job7");
  EXPECT_EQ(TrainerProcesses(), 1);  // no mpirun in front of it
  coordinator_.QueuePollReply(
      {{"signal",
        json::array(
            {{{"job", Id("job7")}, {"attempt", 1}, {"action", "preempt"}, {"grace_seconds", 20}}})}});
  json exit = WaitExit("job7");
  EXPECT_EQ(exit, (json{{"agent", "agent-a"}, {"outcome", "preempted"}, {"exit_status", 75}}))
      << Log("job7");
  EXPECT_NE(Log("job7").find("checkpointed"), std::string::npos);
}

TEST_F(AgentTest, KillStopsTheJobAtOnceAndReportsKilled) {
  coordinator_.QueuePollReply(Launch("job3", "ignore-term"));
  StartAgent(coordinator_.url());
  WaitListed("job3");
  WaitRanksStarted("job3");
  coordinator_.QueuePollReply({{"signal", json::array({{{"job", Id("job3")}, {"action", "kill"}}})}});
  json exit = WaitExit("job3", milliseconds(10000));
  EXPECT_EQ(exit, (json{{"agent", "agent-a"}, {"outcome", "killed"}, {"exit_status", 137}}));
  EXPECT_EQ(TrainerProcesses(), 0);
}

TEST_F(AgentTest, APreemptedJobThatOutlivesItsGraceIsKilledAndCountsAsPreempted) {
  coordinator_.QueuePollReply(Launch("job4", "ignore-term", /*grace=*/1));
  StartAgent(coordinator_.url());
  WaitListed("job4");
  WaitRanksStarted("job4");
  auto start = std::chrono::steady_clock::now();
  coordinator_.QueuePollReply(
      {{"signal", json::array({{{"job", Id("job4")}, {"attempt", 1}, {"action", "preempt"}}})}});
  json exit = WaitExit("job4");
  EXPECT_EQ(exit, (json{{"agent", "agent-a"}, {"outcome", "preempted"}, {"exit_status", 137}}));
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(900));
}

TEST_F(AgentTest, AJobOutlivesACoordinatorRestartAndItsExitIsReportedAfterwards) {
  coordinator_.QueuePollReply(Launch("job5", "finish-later"));
  StartAgent(coordinator_.url());
  WaitListed("job5");
  uint16_t port = coordinator_.port();
  coordinator_.Kill();
  std::this_thread::sleep_for(milliseconds(3000));  // the job ends while nobody listens
  coordinator_.Start(port);
  json exit = WaitExit("job5");
  EXPECT_EQ(exit, (json{{"agent", "agent-a"}, {"outcome", "succeeded"}, {"exit_status", 0}}))
      << Log("job5");
  auto lock = coordinator_.Lock();
  // It registered again after the restart, still listing the job it had not reported.
  json listed = json::array({{{"job", Id("job5")}, {"attempt", 1}}});
  EXPECT_TRUE(std::any_of(coordinator_.registers.begin(), coordinator_.registers.end(),
                          [&](const json& r) { return r["running"] == listed; }));
}

TEST_F(AgentTest, ANotHeldJobIsKilledAndDroppedWithoutAReport) {
  coordinator_.QueuePollReply(Launch("job6", "ignore-term"));
  StartAgent(coordinator_.url());
  WaitListed("job6");
  WaitRanksStarted("job6");
  EXPECT_EQ(TrainerProcesses(), 3);  // mpirun and its two ranks
  coordinator_.RefuseNextPollWith(Id("job6"));
  ASSERT_TRUE(coordinator_.WaitFor([&] {
    // Polls after the refusal no longer list it.
    return !coordinator_.polls.empty() && coordinator_.polls.back()["running"].empty();
  }));
  for (int i = 0; i < 100 && !agent_->Jobs().empty(); ++i) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_TRUE(agent_->Jobs().empty());
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(TrainerProcesses(), 0);
  auto lock = coordinator_.Lock();
  EXPECT_TRUE(coordinator_.exits.empty());
}

TEST_F(AgentTest, StoppingTheAgentPreemptsItsJobsReportsThemAndTakesNoMoreWork) {
  coordinator_.QueuePollReply(Launch("job7", "checkpoint-on-term"));
  StartAgent(coordinator_.url());
  WaitListed("job7");
  WaitRanksStarted("job7");
  StopAgent();
  auto lock = coordinator_.Lock();
  ASSERT_EQ(coordinator_.exits.size(), 1u);
  EXPECT_EQ(coordinator_.exits[0].second,
            (json{{"agent", "agent-a"}, {"outcome", "preempted"}, {"exit_status", 75}}));
  ASSERT_GE(coordinator_.registers.size(), 2u);
  EXPECT_EQ(coordinator_.registers.back()["slots"], 0);
}

// The coordinator places a job again as soon as it has an exit report, often on the same agent,
// and the new launch may arrive before the agent has seen that report acknowledged: the newer
// attempt must run, and the older attempt's report still goes out.
TEST_F(AgentTest, ANewAttemptRunsWhileTheOldOnesReportIsStillQueued) {
  coordinator_.RefuseExits(true);
  coordinator_.QueuePollReply(Launch("job8", "succeed"));
  StartAgent(coordinator_.url());
  WaitListed("job8");
  ASSERT_TRUE(
      coordinator_.WaitFor([&] { return Log("job8").find("rank 1 of 2") != std::string::npos; }));
  json second = Launch("job8", "succeed")["launch"][0];
  second["attempt"] = 2;
  second["log"] = (dir_ / "runs" / "job8" / "attempt-2.log").string();
  std::this_thread::sleep_for(milliseconds(500));  // attempt 1 has ended; its report waits
  coordinator_.QueuePollReply({{"launch", json::array({second})}});
  std::this_thread::sleep_for(milliseconds(500));
  coordinator_.RefuseExits(false);
  ASSERT_TRUE(coordinator_.WaitFor([&] {
    bool first = false, next = false;
    for (const auto& [path, body] : coordinator_.exits) {
      first = first || path == "/api/v1/jobs/" + Id("job8") + "/attempts/1/exit";
      next = next || path == "/api/v1/jobs/" + Id("job8") + "/attempts/2/exit";
    }
    return first && next;
  })) << "both attempts must run and report";
  auto lock = coordinator_.Lock();
  EXPECT_EQ(coordinator_.exits.front().first, "/api/v1/jobs/" + Id("job8") + "/attempts/1/exit");
}


// A Launcher that runs nothing: it records what the agent asks, and its processes end when the
// test says so (or when they are SIGKILLed). With a FakeClock, grace periods and backoff pass
// without waiting for them.
class FakeLauncher : public Launcher {
 public:
  Expected<pid_t> Start(const LaunchRequest& request) override {
    std::lock_guard<std::mutex> lock(mu_);
    started_.push_back(request);
    return next_pid_++;
  }
  Status Signal(pid_t pid, int signal) override {
    std::lock_guard<std::mutex> lock(mu_);
    signals_.emplace_back(pid, signal);
    if (signal == SIGKILL) ended_.push_back(ProcessExit{pid, true, 0, SIGKILL});
    return Status::Ok();
  }
  std::vector<ProcessExit> Reap() override {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(ended_, {});
  }
  void Exit(pid_t pid, int code) {
    std::lock_guard<std::mutex> lock(mu_);
    ended_.push_back(ProcessExit{pid, false, code, 0});
  }
  size_t started() {
    std::lock_guard<std::mutex> lock(mu_);
    return started_.size();
  }
  std::vector<int> SignalsSent() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<int> sent;
    for (const auto& [pid, signal] : signals_) sent.push_back(signal);
    return sent;
  }

 private:
  std::mutex mu_;
  std::vector<LaunchRequest> started_;
  std::vector<std::pair<pid_t, int>> signals_;
  std::vector<ProcessExit> ended_;
  pid_t next_pid_ = 4242;
};

bool Eventually(const std::function<bool()>& done, milliseconds timeout = milliseconds(5000)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return done();
}

TEST_F(AgentTest, APreemptionsGraceRunsOnTheAgentsClock) {
  FakeLauncher launcher;
  FakeClock clock;
  coordinator_.QueuePollReply(Launch("job9", "unused", /*grace=*/600, /*ranks=*/1));
  StartAgent(coordinator_.url(), &launcher, &clock);
  ASSERT_TRUE(Eventually([&] { return launcher.started() == 1; }));
  WaitListed("job9");
  coordinator_.QueuePollReply(
      {{"signal", json::array({{{"job", Id("job9")}, {"attempt", 1}, {"action", "preempt"}}})}});
  ASSERT_TRUE(Eventually([&] { return launcher.SignalsSent() == std::vector<int>{SIGTERM}; }));
  // Ten minutes of grace: nothing happens while the clock stands still...
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(launcher.SignalsSent(), std::vector<int>{SIGTERM});
  clock.Advance(std::chrono::seconds(599));
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(launcher.SignalsSent(), std::vector<int>{SIGTERM});
  // ...and the SIGKILL follows as soon as the clock passes the grace.
  clock.Advance(std::chrono::seconds(2));
  ASSERT_TRUE(Eventually([&] { return launcher.SignalsSent().size() == 2; }));
  EXPECT_EQ(launcher.SignalsSent().back(), SIGKILL);
  EXPECT_EQ(WaitExit("job9"),
            (json{{"agent", "agent-a"}, {"outcome", "preempted"}, {"exit_status", 137}}));
  StopAgent();  // before the launcher and the clock go
}

TEST_F(AgentTest, ExitReportsRetryWithABackoffOnTheAgentsClock) {
  FakeLauncher launcher;
  FakeClock clock;
  coordinator_.RefuseExits(true);
  coordinator_.QueuePollReply(Launch("job10", "unused", 30, /*ranks=*/1));
  StartAgent(coordinator_.url(), &launcher, &clock, /*max_backoff=*/milliseconds(60000));
  ASSERT_TRUE(Eventually([&] { return launcher.started() == 1; }));
  launcher.Exit(4242, 0);
  auto attempts = [&] {
    auto lock = coordinator_.Lock();
    return coordinator_.exit_attempts;
  };
  ASSERT_TRUE(Eventually([&] { return attempts() == 1; }));
  // The retry waits for its backoff (100 ms, then 200 ms, ...) on the clock, not in real time.
  std::this_thread::sleep_for(milliseconds(400));
  EXPECT_EQ(attempts(), 1);
  clock.Advance(milliseconds(100));
  ASSERT_TRUE(Eventually([&] { return attempts() == 2; }));
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(attempts(), 2);
  coordinator_.RefuseExits(false);
  clock.Advance(milliseconds(200));
  EXPECT_EQ(WaitExit("job10"),
            (json{{"agent", "agent-a"}, {"outcome", "succeeded"}, {"exit_status", 0}}));
  StopAgent();  // before the launcher and the clock go
}

// A launch whose log or run folder lies outside the agent's own folders is refused, and
// reported as failed without running anything.
TEST_F(AgentTest, LogsAndRunFoldersOutsideItsOwnFoldersAreRefused) {
  FakeLauncher launcher;
  json launch = Launch("job11", "unused", 30, 1);
  launch["launch"][0]["log"] = (dir_ / "elsewhere" / "x.log").string();
  json escape = Launch("job12", "unused", 30, 1);
  escape["launch"][0]["spec"]["run"] = {{"dir", "/etc/cron.d"}};
  coordinator_.QueuePollReply(launch);
  coordinator_.QueuePollReply(escape);
  StartAgent(coordinator_.url(), &launcher);
  EXPECT_EQ(WaitExit("job11"), (json{{"agent", "agent-a"}, {"outcome", "failed"}}));
  EXPECT_EQ(WaitExit("job12"), (json{{"agent", "agent-a"}, {"outcome", "failed"}}));
  EXPECT_EQ(launcher.started(), 0u);
  EXPECT_FALSE(fs::exists(dir_ / "elsewhere"));
  StopAgent();  // before the launcher goes
}

}  // namespace
}  // namespace vitscale::worker
