// The agent end to end: real processes through real mpirun, against a scripted coordinator that
// speaks the agent half of docs/api.md (register, long poll, exit reports).
#include "worker/agent.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
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
#include "worker/gpus.h"

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
// Names an exit in the fake coordinator's records: "<job id>/<attempt>".
std::string ExitKey(const std::string& job_id, int attempt) {
  return job_id + "/" + std::to_string(attempt);
}

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
  // mpirun that got SIGTERM itself (from Slurm, say) exits 1 while its ranks checkpoint.
  EXPECT_EQ(ClassifyExit(exited(1), true, false), ExitOutcome::kPreempted);
  EXPECT_EQ(ClassifyExit(exited(78), true, false), ExitOutcome::kConfigError);
  EXPECT_EQ(ClassifyExit(exited(68), false, false), ExitOutcome::kUnreachable);
  EXPECT_STREQ(protocol::ExitOutcomeName(ExitOutcome::kUnreachable), "unreachable");
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
  EXPECT_EQ(MpirunCommand(options, 2, "localhost:2", "/w/spec.json", {"OMP_WAIT_POLICY"}),
            (std::vector<std::string>{"mpirun", "--allow-run-as-root", "--oversubscribe", "-x",
                                      "OMP_WAIT_POLICY", "-np", "2", "-H", "localhost:2",
                                      "/opt/bin/vitscale-train", "--spec", "/w/spec.json"}));
  options.allow_run_as_root = false;
  EXPECT_EQ(MpirunCommand(options, 1, "h:1", "s", {})[1], "--oversubscribe");
  options.bind_to = "none";
  options.network = "10.0.0.0/24";
  options.rsh_agent = "ssh -F /etc/vitscale/ssh_config";
  EXPECT_EQ(MpirunCommand(options, 2, "localhost:1,h2:1", "s", {"MKL_CBWR", "OMP_WAIT_POLICY"}),
            (std::vector<std::string>{
                "mpirun", "--oversubscribe", "--bind-to", "none", "--mca", "plm_rsh_agent",
                "ssh -F /etc/vitscale/ssh_config", "--mca", "btl_tcp_if_include", "10.0.0.0/24",
                "--mca", "oob_tcp_if_include", "10.0.0.0/24", "-x", "MKL_CBWR", "-x",
                "OMP_WAIT_POLICY", "-np", "2", "-H", "localhost:1,h2:1",
                "/opt/bin/vitscale-train", "--spec", "s"}));
}

TEST(ForwardEnvTest, NamesAndPrefixesSelectVariablesOfTheEnvironment) {
  Expected<std::vector<std::string>> patterns = ParseForwardEnv(kDefaultForwardEnv);
  ASSERT_TRUE(patterns.ok()) << patterns.status().ToString();
  EXPECT_EQ(ForwardedNames(*patterns, {"OMP_NUM_THREADS=2", "OPENBLAS_CORETYPE=Haswell",
                                       "HOME=/root", "PATH=/bin", "MKL_CBWR=AVX2", "PATHX=1",
                                       "OMP_NUM_THREADS=3", "LC_ALL=C"}),
            (std::vector<std::string>{"LC_ALL", "MKL_CBWR", "OMP_NUM_THREADS",
                                      "OPENBLAS_CORETYPE", "PATH"}));
  EXPECT_TRUE(ParseForwardEnv("")->empty());
  for (const char* bad : {"OMP_*,", "A B", "*", "1X", "X=1", "A,*B"}) {
    EXPECT_NE(ParseForwardEnv(bad).status().message().find("--forward-env"), std::string::npos)
        << bad;
  }
}

// In the form `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits`
// prints it, with a CRLF and a blank line that the parser must shrug off.
constexpr char kTwoH200s[] = "0, NVIDIA H200, 143771\n1, NVIDIA H200, 143771\r\n\n";

TEST(NvidiaSmiTest, ParsesTheQueryOutputAndNamesTheLineItCannotRead) {
  Expected<std::vector<GpuInfo>> gpus = ParseNvidiaSmiGpus(kTwoH200s);
  ASSERT_TRUE(gpus.ok()) << gpus.status().ToString();
  EXPECT_EQ(*gpus, (std::vector<GpuInfo>{{0, "NVIDIA H200", 143771}, {1, "NVIDIA H200", 143771}}));
  EXPECT_TRUE(ParseNvidiaSmiGpus("")->empty());
  // A name with a comma in it: the first and last commas split the fields.
  EXPECT_EQ(ParseNvidiaSmiGpus("0, Tesla V100-SXM2-32GB, rev 2, 32510\n")->at(0).name,
            "Tesla V100-SXM2-32GB, rev 2");
  struct Case {
    const char* text;
    const char* error;
  };
  for (const Case& c : {
           Case{"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n",
                "line 1: expected 'INDEX, NAME, MEMORY MiB'"},
           Case{"0, NVIDIA H200, 143771\n2, NVIDIA H200, 143771\n", "line 2: expected GPU 1 next"},
           Case{"0, NVIDIA H200, [N/A]\n", "line 1: the memory is not a number of MiB"},
           Case{"-1, NVIDIA H200, 1\n", "line 1: the index is not a GPU index"},
           Case{"0, cpu, 1\n", "line 1: the GPU has no usable name"},
       }) {
    Expected<std::vector<GpuInfo>> bad = ParseNvidiaSmiGpus(c.text);
    ASSERT_FALSE(bad.ok()) << c.text;
    EXPECT_NE(bad.status().message().find(c.error), std::string::npos) << bad.status().ToString();
  }
}

TEST(NvidiaSmiTest, ChoosesWhatTheAgentOffersFromItsFlagsAndWhatWasFound) {
  std::vector<GpuInfo> two = *ParseNvidiaSmiGpus(kTwoH200s);
  auto offer = [](const std::string& gpus, const std::string& kind,
                  const std::vector<GpuInfo>& found) { return ChooseGpuOffer(gpus, kind, found); };
  EXPECT_EQ(offer("auto", "", two)->count, 2);
  EXPECT_EQ(offer("auto", "", two)->kind, "NVIDIA H200");
  EXPECT_EQ(offer("1", "", two)->count, 1);
  EXPECT_EQ(offer("auto", "", {})->count, 0);
  EXPECT_EQ(offer("0", "", two)->kind, "");
  EXPECT_EQ(offer("2", "H200 (lab name)", two)->kind, "H200 (lab name)");  // the flag wins
  EXPECT_EQ(offer("4", "NVIDIA A100", {})->count, 4);  // no nvidia-smi: the flags are believed
  auto error = [&](const std::string& gpus, const std::string& kind,
                   const std::vector<GpuInfo>& found) {
    Expected<GpuOffer> chosen = offer(gpus, kind, found);
    return chosen.ok() ? std::string("ok") : chosen.status().message();
  };
  EXPECT_NE(error("3", "", two).find("nvidia-smi lists 2 GPUs"), std::string::npos);
  EXPECT_NE(error("2", "", {}).find("--gpu-kind"), std::string::npos);
  EXPECT_NE(error("2", "cpu", two).find("'cpu' is the kind of CPU slots"), std::string::npos);
  EXPECT_NE(error("two", "", two).find("--gpus"), std::string::npos);
  std::vector<GpuInfo> mixed = {{0, "NVIDIA H200", 1}, {1, "NVIDIA A100", 1}};
  EXPECT_NE(error("auto", "", mixed).find("GPU 1 is a NVIDIA A100"), std::string::npos);
  EXPECT_EQ(offer("1", "", mixed)->kind, "NVIDIA H200");
}

// The real thing, run as the agent runs it: a stand-in nvidia-smi (a test input, as a recorded
// answer would be) that prints the table, one that fails as a broken driver does, and none.
TEST(NvidiaSmiTest, DetectionRunsTheToolAndTellsAFailureFromAnAbsence) {
  fs::path dir = fs::temp_directory_path() / ("vitscale-smi-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string working = (dir / "nvidia-smi").string();
  std::string broken = (dir / "broken-nvidia-smi").string();
  ASSERT_TRUE(WriteFileAtomically(working, R"SH(#!/bin/sh
[ "$1 $2" = "--query-gpu=index,name,memory.total --format=csv,noheader,nounits" ] || exit 3
echo '0, NVIDIA H200, 143771'
)SH", 0755).ok());
  ASSERT_TRUE(WriteFileAtomically(broken,
                                  "#!/bin/sh\necho 'Failed to initialize NVML: Driver/library "
                                  "version mismatch'\nexit 18\n",
                                  0755)
                  .ok());
  Expected<std::vector<GpuInfo>> found = DetectGpus(working);
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  EXPECT_EQ(*found, (std::vector<GpuInfo>{{0, "NVIDIA H200", 143771}}));
  Expected<std::vector<GpuInfo>> failed = DetectGpus(broken);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(failed.status().message().find("Driver/library version mismatch"), std::string::npos);
  Expected<std::vector<GpuInfo>> absent = DetectGpus((dir / "no-such-tool").string());
  ASSERT_TRUE(absent.ok()) << absent.status().ToString();
  EXPECT_TRUE(absent->empty());
  fs::remove_all(dir);
}

TEST(MpirunCommandTest, AGpuGangGivesEachHostsRanksThatHostsGpus) {
  AgentOptions options;
  options.train_command = "/opt/bin/vitscale-train";
  EXPECT_EQ(MpirunGpuCommand(options, {{"localhost", 2}, {"agent-b", 1}},
                             {{"agent-a", {0, 1}}, {"agent-b", {3}}}, "/w/spec.json",
                             {"OMP_WAIT_POLICY"}),
            (std::vector<std::string>{
                "mpirun", "--oversubscribe", "-x", "OMP_WAIT_POLICY", "-np", "2", "-H",
                "localhost:2", "env", "CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=0,1",
                "/opt/bin/vitscale-train", "--spec", "/w/spec.json", ":", "-np", "1", "-H",
                "agent-b:1", "env", "CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=3",
                "/opt/bin/vitscale-train", "--spec", "/w/spec.json"}));
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
  // While set, exit batches get a 503, as from a coordinator that is busy or going away.
  void RefuseExits(bool refuse) {
    std::lock_guard<std::mutex> lock(mu_);
    refuse_exits_ = refuse;
  }
  // The next `n` exit batches are recorded, then their connections close without an answer,
  // as a coordinator killed after its commit and before its reply would leave them.
  void RecordExitsWithoutAnswering(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    unanswered_exits_ = n;
  }
  // While set, a poll with nothing to answer is held 20 s, as the real coordinator holds it,
  // instead of 200 ms.
  void HoldPolls(bool hold) {
    std::lock_guard<std::mutex> lock(mu_);
    hold_polls_ = hold;
    cv_.notify_all();
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
  // Each exit recorded, once, in the order recorded: (ExitKey, its outcome and exit status).
  std::vector<std::pair<std::string, json>> exits;
  std::vector<json> exit_batches;  // every exit batch as sent, refused ones too
  std::vector<std::string> exit_fates;  // for each: "refused", "unanswered" or "answered"
  int exit_attempts = 0;           // exit batches, refused ones too

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
      bool held = hold_polls_;
      cv_.wait_for(lock, held ? milliseconds(20000) : milliseconds(200),
                   [&] { return !replies_.empty() || held != hold_polls_; });
      json answer = {{"launch", json::array()}, {"signal", json::array()}, {"lease_seconds", 30}};
      if (!replies_.empty()) {
        json queued = replies_.front();
        replies_.pop_front();
        for (auto& [key, value] : queued.items()) answer[key] = value;
      }
      reply.body = answer.dump();
    } else if (request.target == "/api/v1/agents/agent-a/exits") {
      ++exit_attempts;
      exit_batches.push_back(body);
      cv_.notify_all();
      if (refuse_exits_) {
        exit_fates.push_back("refused");
        return TestReply{503, R"({"error": "busy"})"};
      }
      // As the coordinator answers: an exit recorded before is "ended" and changes nothing.
      json results = json::array();
      for (const json& entry : body["exits"]) {
        std::string key = ExitKey(entry["job"], entry["attempt"]);
        bool recorded = std::any_of(exits.begin(), exits.end(),
                                    [&](const auto& e) { return e.first == key; });
        json outcome = entry;
        outcome.erase("job");
        outcome.erase("attempt");
        if (!recorded) exits.emplace_back(key, outcome);
        results.push_back({{"job", entry["job"]},
                           {"attempt", entry["attempt"]},
                           {"result", recorded ? "ended" : "recorded"}});
      }
      if (unanswered_exits_ > 0) {
        --unanswered_exits_;
        exit_fates.push_back("unanswered");
        cv_.notify_all();
        TestReply dropped;
        dropped.no_answer = true;
        return dropped;
      }
      exit_fates.push_back("answered");
      reply.body = json{{"results", results}}.dump();
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
  bool hold_polls_ = false;
  int unanswered_exits_ = 0;
};

// The stand-in trainer: each rank reads its spec and behaves as its "mode" says.
constexpr const char* kTrainer = R"SH(#!/bin/sh
spec="$2"
echo "rank $OMPI_COMM_WORLD_RANK of $OMPI_COMM_WORLD_SIZE spec $spec isolated=$OMPI_MCA_ess_singleton_isolated omp=$OMP_WAIT_POLICY cuda=${CUDA_VISIBLE_DEVICES-unset} order=${CUDA_DEVICE_ORDER-unset}"
case "$(cat "$spec")" in
  *'"mode":"succeed"'*) exit 0 ;;
  *'"mode":"finish-later"'*) sleep 2; exit 0 ;;
  *'"mode":"checkpoint-on-term"'*) trap 'echo checkpointed; exit 75' TERM; sleep 60 & wait ;;
  *'"mode":"ignore-term"'*) trap '' TERM; sleep 60 & wait; sleep 60 ;;
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
                  const Clock* clock = nullptr, milliseconds max_backoff = milliseconds(200),
                  int gpus = 0) {
    AgentOptions options;
    options.gpus = gpus;
    if (gpus > 0) options.gpu_kind = "NVIDIA H200";
    options.gpu_devices = gpu_devices_;
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
    options.rsh_agent = rsh_agent_;
    options.control_tick = control_tick_;
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
  json WaitExit(const std::string& job, milliseconds timeout = milliseconds(30000),
               int attempt = 1) {
    json found;
    std::string want = ExitKey(Id(job), attempt);
    coordinator_.WaitFor(
        [&] {
          for (const auto& [path, body] : coordinator_.exits) {
            if (path == want) found = body;
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
  std::vector<std::string> gpu_devices_;  // AgentOptions::gpu_devices of the next StartAgent
  std::string trainer_;
  std::string rsh_agent_;  // AgentOptions::rsh_agent
  milliseconds control_tick_{50};  // AgentOptions::control_tick
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
  EXPECT_EQ(exit, (json{{"outcome", "succeeded"}, {"exit_status", 0}}));
  std::string log = Log("job1");
  EXPECT_NE(log.find("vitscale-agent: job " + Id("job1") + " attempt 1 on agent-a: mpirun"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("rank 0 of 2"), std::string::npos) << log;
  EXPECT_NE(log.find("rank 1 of 2"), std::string::npos) << log;
  EXPECT_NE(log.find("omp=passive"), std::string::npos) << log;
  fs::path spec = dir_ / "work" / "specs" / (Id("job1") + ".attempt-1.json");
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

// The control thread hears of an ended job from the launcher's exit descriptor, not from its
// tick: with a 30 s tick, and polls held 20 s so that no poll reply wakes it either, a job that
// ends at once is reported well before either could have woken it.
TEST_F(AgentTest, AnEndedJobIsReportedAtOnceNotOnTheControlTick) {
  ASSERT_GE(launcher_.ExitFd(), 0) << "this kernel has no epoll";
  control_tick_ = milliseconds(30000);
  coordinator_.HoldPolls(true);
  coordinator_.QueuePollReply(Launch("quick", "succeed", 30, /*ranks=*/1));
  StartAgent(coordinator_.url());
  json exit = WaitExit("quick", milliseconds(10000));
  EXPECT_EQ(exit, (json{{"outcome", "succeeded"}, {"exit_status", 0}})) << Log("quick");
  // Stopping wakes the control thread too, and nothing runs: the agent ends at once.
  coordinator_.HoldPolls(false);
  StopAgent();
}

// A spec is one file in specs/, made new for its attempt: a file or a link already at its path
// (left by an earlier agent, or put there) is replaced, never written through, and a specs
// folder removed while the agent runs is made again.
TEST_F(AgentTest, ASpecIsANewOwnerOnlyFileWhateverWasAtItsPath) {
  fs::path specs = dir_ / "work" / "specs";
  fs::create_directories(specs);
  fs::path outside = dir_ / "outside.json";
  ASSERT_TRUE(WriteFileAtomically(outside.string(), "untouched", 0644).ok());
  fs::path linked = specs / (Id("linked") + ".attempt-1.json");
  fs::create_symlink(outside, linked);
  coordinator_.QueuePollReply(Launch("linked", "succeed", 30, /*ranks=*/1));
  StartAgent(coordinator_.url());
  EXPECT_EQ(WaitExit("linked"), (json{{"outcome", "succeeded"}, {"exit_status", 0}}))
      << Log("linked");
  EXPECT_EQ(*ReadFile(outside.string()), "untouched");
  ASSERT_FALSE(fs::is_symlink(linked));
  EXPECT_EQ(fs::status(linked).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  json written = json::parse(*ReadFile(linked.string()));
  EXPECT_EQ(written, (json{{"job_id", "linked"}, {"mode", "succeed"}}));

  fs::remove_all(specs);
  coordinator_.QueuePollReply(Launch("again", "succeed", 30, /*ranks=*/1));
  EXPECT_EQ(WaitExit("again"), (json{{"outcome", "succeeded"}, {"exit_status", 0}}))
      << Log("again");
  EXPECT_TRUE(fs::is_regular_file(specs / (Id("again") + ".attempt-1.json")));
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
  EXPECT_EQ(exit, (json{{"outcome", "preempted"}, {"exit_status", 75}}))
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
  EXPECT_EQ(exit, (json{{"outcome", "preempted"}, {"exit_status", 75}}))
      << Log("job7");
  EXPECT_NE(Log("job7").find("checkpointed"), std::string::npos);
}

TEST_F(AgentTest, KillStopsTheJobAtOnceAndReportsKilled) {
  coordinator_.QueuePollReply(Launch("job3", "ignore-term"));
  StartAgent(coordinator_.url());
  WaitListed("job3");
  WaitRanksStarted("job3");
  coordinator_.QueuePollReply(
      {{"signal", json::array({{{"job", Id("job3")}, {"attempt", 1}, {"action", "kill"}}})}});
  json exit = WaitExit("job3", milliseconds(10000));
  EXPECT_EQ(exit, (json{{"outcome", "killed"}, {"exit_status", 137}}));
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
  EXPECT_EQ(exit, (json{{"outcome", "preempted"}, {"exit_status", 137}}));
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
  EXPECT_EQ(exit, (json{{"outcome", "succeeded"}, {"exit_status", 0}}))
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
            (json{{"outcome", "preempted"}, {"exit_status", 75}}));
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
      first = first || path == ExitKey(Id("job8"), 1);
      next = next || path == ExitKey(Id("job8"), 2);
    }
    return first && next;
  })) << "both attempts must run and report";
  auto lock = coordinator_.Lock();
  EXPECT_EQ(coordinator_.exits.front().first, ExitKey(Id("job8"), 1));
}

// The launch of a job's next attempt, as the coordinator sends it after the old one's lease ran
// out: the old attempt's processes must be gone before the new ones start.
json NextAttempt(json launch, int attempt, const std::string& mode, const fs::path& log) {
  json entry = launch["launch"][0];
  entry["attempt"] = attempt;
  entry["spec"]["mode"] = mode;
  entry["log"] = log.string();
  return entry;
}

// One poll reply with the kill of the old attempt and the launch of the next (the coordinator
// requeued the job and placed it here again in the same pass): the old one is killed, the new
// one runs once the old is gone, and both are reported.
TEST_F(AgentTest, AKillOfTheOldAttemptAndTheLaunchOfTheNextInOneReply) {
  coordinator_.QueuePollReply(Launch("job10", "ignore-term"));
  StartAgent(coordinator_.url());
  WaitListed("job10");
  WaitRanksStarted("job10");
  fs::path log2 = dir_ / "runs" / "job10" / "attempt-2.log";
  coordinator_.QueuePollReply(
      {{"launch", json::array({NextAttempt(Launch("job10", ""), 2, "succeed", log2)})},
       {"signal", json::array({{{"job", Id("job10")}, {"attempt", 1}, {"action", "kill"}}})}});
  EXPECT_EQ(WaitExit("job10", milliseconds(10000)),
            (json{{"outcome", "killed"}, {"exit_status", 137}}));
  EXPECT_EQ(WaitExit("job10", milliseconds(20000), 2),
            (json{{"outcome", "succeeded"}, {"exit_status", 0}}))
      << ReadFile(log2.string()).ok();
  Expected<std::string> log = ReadFile(log2.string());
  ASSERT_TRUE(log.ok());
  EXPECT_NE(log->find("rank 1 of 2"), std::string::npos) << *log;
  EXPECT_EQ(TrainerProcesses(), 0);
}

// A newer attempt's launch alone also ends the older one here: the coordinator has moved on.
TEST_F(AgentTest, ALaunchOfANewerAttemptStopsTheOlderOneFirst) {
  coordinator_.QueuePollReply(Launch("job11", "ignore-term"));
  StartAgent(coordinator_.url());
  WaitListed("job11");
  WaitRanksStarted("job11");
  fs::path log2 = dir_ / "runs" / "job11" / "attempt-2.log";
  coordinator_.QueuePollReply(
      {{"launch", json::array({NextAttempt(Launch("job11", ""), 2, "succeed", log2)})}});
  EXPECT_EQ(WaitExit("job11", milliseconds(10000))["outcome"], "killed");
  EXPECT_EQ(WaitExit("job11", milliseconds(20000), 2)["outcome"], "succeeded");
}

// A kill that names an attempt this agent does not run (one queued for this host before the
// agent restarted, say) leaves the attempt it runs alone.
TEST_F(AgentTest, AKillForAnotherAttemptIsIgnored) {
  json launch = Launch("job12", "finish-later");
  launch["launch"][0]["attempt"] = 3;
  launch["launch"][0]["log"] = LogPath("job12");
  coordinator_.QueuePollReply(launch);
  StartAgent(coordinator_.url());
  WaitListed("job12");
  coordinator_.QueuePollReply(
      {{"signal", json::array({{{"job", Id("job12")}, {"attempt", 2}, {"action", "kill"}},
                               {{"job", Id("job12")}, {"attempt", 4}, {"action", "kill"}}})}});
  EXPECT_EQ(WaitExit("job12", milliseconds(20000), 3),
            (json{{"outcome", "succeeded"}, {"exit_status", 0}}));
}

// A gang whose other host cannot be reached: the launch ends before mpirun starts anything,
// with the reason in the attempt's log, and is reported unreachable (the coordinator requeues
// the job without using a retry).
TEST_F(AgentTest, AGangWithAnUnreachableHostIsReportedUnreachable) {
  rsh_agent_ = (dir_ / "fake-ssh").string();
  ASSERT_TRUE(WriteFileAtomically(rsh_agent_,
                                  "#!/bin/sh\n"
                                  "[ \"$1\" = agent-c ] && exit 0\n"
                                  "echo \"ssh: connect to host $1 port 22: No route to host\" >&2\n"
                                  "exit 255\n",
                                  0755)
                  .ok());
  json launch = Launch("job13", "succeed");
  launch["launch"][0]["hosts"] = "agent-a:1,agent-c:1,agent-b:1";
  launch["launch"][0]["ranks"] = 3;
  coordinator_.QueuePollReply(launch);
  StartAgent(coordinator_.url());
  EXPECT_EQ(WaitExit("job13"),
            (json{{"outcome", "unreachable"}, {"exit_status", 68}}))
      << Log("job13");
  EXPECT_NE(Log("job13").find("cannot reach host agent-b with '" + rsh_agent_ +
                              "': ssh: connect to host agent-b port 22: No route to host"),
            std::string::npos)
      << Log("job13");
  EXPECT_EQ(Log("job13").find("rank 0"), std::string::npos) << "mpirun must not have started";
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
            (json{{"outcome", "preempted"}, {"exit_status", 137}}));
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
            (json{{"outcome", "succeeded"}, {"exit_status", 0}}));
  StopAgent();  // before the launcher and the clock go
}

// Launches of `names`, one rank each, in one poll reply.
json Launches(const std::vector<std::string>& names, const std::string& dir) {
  json launches = json::array();
  for (const std::string& name : names) {
    launches.push_back({{"job", Id(name)},
                        {"attempt", 1},
                        {"ranks", 1},
                        {"hosts", "agent-a:1"},
                        {"grace_seconds", 30},
                        {"log", dir + "/runs/" + name + "/attempt-1.log"},
                        {"spec", {{"job_id", name}, {"mode", "unused"}}}});
  }
  return {{"launch", launches}};
}

// The exits waiting when the reporter sends go in one request: six jobs that end while the
// coordinator is away are reported by one batch once it is back, and nothing more is sent.
TEST_F(AgentTest, ManyExitsGoInOneRequest) {
  FakeLauncher launcher;
  coordinator_.RefuseExits(true);
  std::vector<std::string> names = {"m1", "m2", "m3", "m4", "m5", "m6"};
  coordinator_.QueuePollReply(Launches(names, dir_.string()));
  StartAgent(coordinator_.url(), &launcher);
  ASSERT_TRUE(Eventually([&] { return launcher.started() == names.size(); }));
  for (pid_t pid = 4242; pid < 4242 + static_cast<pid_t>(names.size()); ++pid) {
    launcher.Exit(pid, 0);
  }
  ASSERT_TRUE(coordinator_.WaitFor([&] {
    return !coordinator_.exit_batches.empty() &&
           coordinator_.exit_batches.back()["exits"].size() == names.size();
  })) << "a refused batch is sent again with every exit waiting";
  coordinator_.RefuseExits(false);
  ASSERT_TRUE(coordinator_.WaitFor([&] { return coordinator_.exits.size() == names.size(); }));
  ASSERT_TRUE(Eventually([&] { return agent_->Jobs().empty(); }));
  std::this_thread::sleep_for(milliseconds(300));
  auto lock = coordinator_.Lock();
  EXPECT_EQ(coordinator_.exit_fates.back(), "answered");
  EXPECT_EQ(std::count(coordinator_.exit_fates.begin(), coordinator_.exit_fates.end(), "answered"),
            1)
      << "one request carried all six exits, and nothing was sent after it";
  EXPECT_EQ(coordinator_.exit_batches.back()["exits"].size(), names.size());
  for (const std::string& name : names) {
    auto exit = std::find_if(coordinator_.exits.begin(), coordinator_.exits.end(),
                             [&](const auto& e) { return e.first == ExitKey(Id(name), 1); });
    ASSERT_NE(exit, coordinator_.exits.end()) << name;
    EXPECT_EQ(exit->second, (json{{"outcome", "succeeded"}, {"exit_status", 0}}));
  }
  lock.unlock();
  StopAgent();  // before the launcher goes
}

// A batch the coordinator recorded but never answered (killed after its commit) is sent again,
// the same exits in it; the coordinator's answer that they have ended lets the agent drop
// them, and nothing is sent a third time.
TEST_F(AgentTest, AnExitBatchWithoutAnAnswerIsSentAgainUntilAnswered) {
  FakeLauncher launcher;
  coordinator_.RefuseExits(true);
  std::vector<std::string> names = {"u1", "u2"};
  coordinator_.QueuePollReply(Launches(names, dir_.string()));
  StartAgent(coordinator_.url(), &launcher);
  ASSERT_TRUE(Eventually([&] { return launcher.started() == names.size(); }));
  launcher.Exit(4242, 0);
  launcher.Exit(4243, 75);
  ASSERT_TRUE(coordinator_.WaitFor([&] {
    return !coordinator_.exit_batches.empty() &&
           coordinator_.exit_batches.back()["exits"].size() == names.size();
  }));
  coordinator_.RecordExitsWithoutAnswering(1);  // refused batches do not count
  coordinator_.RefuseExits(false);
  ASSERT_TRUE(coordinator_.WaitFor([&] { return coordinator_.exit_fates.back() == "answered"; }))
      << "the unanswered batch must be sent again";
  ASSERT_TRUE(Eventually([&] { return agent_->Jobs().empty(); }));
  std::this_thread::sleep_for(milliseconds(300));
  auto lock = coordinator_.Lock();
  size_t n = coordinator_.exit_fates.size();
  ASSERT_GE(n, 3u);
  EXPECT_EQ(coordinator_.exit_fates[n - 2], "unanswered") << "answered: nothing more is sent";
  EXPECT_EQ(coordinator_.exit_batches[n - 2], coordinator_.exit_batches[n - 1]);
  EXPECT_EQ(coordinator_.exit_batches[n - 1]["exits"].size(), 2u);
  ASSERT_EQ(coordinator_.exits.size(), 2u) << "each exit recorded once";
  EXPECT_EQ(coordinator_.exits[1].second["exit_status"], 75);
  lock.unlock();
  StopAgent();  // before the launcher goes
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
  EXPECT_EQ(WaitExit("job11"), (json{{"outcome", "failed"}}));
  EXPECT_EQ(WaitExit("job12"), (json{{"outcome", "failed"}}));
  EXPECT_EQ(launcher.started(), 0u);
  EXPECT_FALSE(fs::exists(dir_ / "elsewhere"));
  StopAgent();  // before the launcher goes
}

// GPUs: each job's ranks see only the GPUs the coordinator gave it, numbered as nvidia-smi
// numbers them; the agent lists them in its polls (a restarted coordinator learns them from
// its registration), and refuses a launch that would share one with a running job.
TEST_F(AgentTest, AGpuJobsRanksSeeOnlyItsGpusAndTwoJobsNeverShareOne) {
  json gpu_job = Launch("g1", "finish-later", 30, 2);
  gpu_job["launch"][0]["gpus"] = json::array({{{"host", "agent-a"}, {"gpus", {2, 3}}}});
  coordinator_.QueuePollReply(gpu_job);
  StartAgent(coordinator_.url(), nullptr, nullptr, milliseconds(200), /*gpus=*/4);
  WaitRanksStarted("g1");
  WaitListed("g1");
  json sharing = Launch("g2", "succeed", 30, 1);
  sharing["launch"][0]["gpus"] = json::array({{{"host", "agent-a"}, {"gpus", {3}}}});
  json other_gpu = Launch("g3", "succeed", 30, 1);
  other_gpu["launch"][0]["gpus"] = json::array({{{"host", "agent-a"}, {"gpus", {0}}}});
  json cpu_job = Launch("c1", "succeed", 30, 1);
  for (json* more : {&other_gpu, &cpu_job}) {
    sharing["launch"].push_back((*more)["launch"][0]);
  }
  coordinator_.QueuePollReply(sharing);

  EXPECT_EQ(WaitExit("g2"), (json{{"outcome", "failed"}}));
  EXPECT_EQ(Log("g2"), "") << "a job sharing a GPU never starts";
  EXPECT_EQ(WaitExit("g3")["outcome"], "succeeded");
  EXPECT_NE(Log("g3").find("cuda=0 order=PCI_BUS_ID"), std::string::npos) << Log("g3");
  EXPECT_EQ(WaitExit("c1")["outcome"], "succeeded");
  EXPECT_NE(Log("c1").find("cuda=unset order=unset"), std::string::npos) << Log("c1");
  EXPECT_EQ(WaitExit("g1")["outcome"], "succeeded");
  std::string log = Log("g1");
  EXPECT_NE(log.find("rank 0 of 2"), std::string::npos) << log;
  size_t ranks_with_their_gpus = 0;
  for (size_t at = 0; (at = log.find("cuda=2,3 order=PCI_BUS_ID", at)) != std::string::npos; ++at) {
    ++ranks_with_their_gpus;
  }
  EXPECT_EQ(ranks_with_their_gpus, 2u) << log;

  auto lock = coordinator_.Lock();
  ASSERT_FALSE(coordinator_.registers.empty());
  EXPECT_EQ(coordinator_.registers[0]["gpus"], 4);
  EXPECT_EQ(coordinator_.registers[0]["gpu_kind"], "NVIDIA H200");
  bool listed_with_gpus = false;
  for (const json& poll : coordinator_.polls) {
    for (const json& entry : poll["running"]) {
      if (entry["job"] == Id("g1") && entry.value("gpus", json()) == json({2, 3})) {
        listed_with_gpus = true;
      }
    }
  }
  EXPECT_TRUE(listed_with_gpus);
}

// An agent given some of the host's GPUs through its own CUDA_VISIBLE_DEVICES (Slurm, a
// container) hands its jobs those GPUs by the names it was given.
TEST_F(AgentTest, GpusGivenToTheAgentByNameReachItsJobsByThoseNames) {
  EXPECT_EQ(CudaVisibleDevices({2, 0}, {}), "2,0");
  EXPECT_EQ(CudaVisibleDevices({1}, {"GPU-5d2e", "GPU-77aa"}), "GPU-77aa");
  gpu_devices_ = {"5", "7"};
  json job = Launch("named", "succeed", 30, 1);
  job["launch"][0]["gpus"] = json::array({{{"host", "agent-a"}, {"gpus", {1}}}});
  coordinator_.QueuePollReply(job);
  StartAgent(coordinator_.url(), nullptr, nullptr, milliseconds(200), /*gpus=*/2);
  EXPECT_EQ(WaitExit("named")["outcome"], "succeeded");
  EXPECT_NE(Log("named").find("cuda=7 order=PCI_BUS_ID"), std::string::npos) << Log("named");
}

// A GPU gang whose ranks span hosts: one mpirun app context per host, each with its host's GPUs.
// Both "hosts" are this machine here (the second one named localhost), which is what lets real
// mpirun run it; the leader's own host's entry is matched by its name.
TEST_F(AgentTest, AGpuGangsRanksOnEachHostGetThatHostsGpus) {
  // The "other host" is this machine: its reachability check runs `true` here. mpirun starts
  // localhost's ranks itself, without the rsh agent.
  rsh_agent_ = (dir_ / "local-ssh").string();
  ASSERT_TRUE(WriteFileAtomically(rsh_agent_, "#!/bin/sh\nshift\nexec \"$@\"\n", 0755).ok());
  json gang = Launch("gang", "succeed", 30, 2);
  gang["launch"][0]["hosts"] = "agent-a:1,localhost:1";
  gang["launch"][0]["gpus"] = json::array(
      {{{"host", "agent-a"}, {"gpus", {1}}}, {{"host", "localhost"}, {"gpus", {0}}}});
  coordinator_.QueuePollReply(gang);
  StartAgent(coordinator_.url(), nullptr, nullptr, milliseconds(200), /*gpus=*/2);
  EXPECT_EQ(WaitExit("gang")["outcome"], "succeeded") << Log("gang");
  std::string log = Log("gang");
  EXPECT_NE(log.find("rank 0 of 2"), std::string::npos) << log;
  EXPECT_NE(log.find("rank 1 of 2"), std::string::npos) << log;
  for (const char* rank : {"rank 0 of 2", "rank 1 of 2"}) {
    size_t line = log.find(rank);
    ASSERT_NE(line, std::string::npos) << log;
    std::string text = log.substr(line, log.find('\n', line) - line);
    EXPECT_NE(text.find(std::string(rank) == "rank 0 of 2" ? "cuda=1 order=PCI_BUS_ID"
                                                          : "cuda=0 order=PCI_BUS_ID"),
              std::string::npos)
        << text;
  }
}

// The vitscale-agent binary end to end: with a stand-in nvidia-smi first on PATH (a test input,
// like a recorded answer), it registers the GPUs the tool lists and their kind; asked to offer
// more than there are, it refuses to start and says so.
TEST_F(AgentTest, TheAgentBinaryOffersTheGpusNvidiaSmiListsWithTheirKind) {
  auto ReadOr = [](const std::string& file) {
    Expected<std::string> text = ReadFile(file);
    return text.ok() ? *text : std::string();
  };
  fs::path bin = dir_ / "bin";
  fs::create_directories(bin);
  ASSERT_TRUE(WriteFileAtomically((bin / "nvidia-smi").string(),
                                  std::string("#!/bin/sh\nprintf '") + "0, NVIDIA H200, 143771\\n" +
                                      "1, NVIDIA H200, 143771\\n'\n",
                                  0755)
                  .ok());
  std::string token_file = (dir_ / "token").string();
  ASSERT_TRUE(WriteFileAtomically(token_file, "test-token\n", 0600).ok());
  std::string path = bin.string() + ":" + (std::getenv("PATH") ? std::getenv("PATH") : "/usr/bin:/bin");
  auto start = [&](const std::vector<std::string>& extra, const std::string& err,
                   const char* visible = nullptr) {
    std::vector<std::string> args = {VITSCALE_AGENT_BIN, "--coordinator", coordinator_.url(),
                                     "--token-file", token_file, "--host", "agent-a", "--slots",
                                     "2", "--work-dir", (dir_ / "work").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_t pid = ::fork();
    if (pid == 0) {
      ::setenv("PATH", path.c_str(), 1);
      ::unsetenv("CUDA_VISIBLE_DEVICES");
      if (visible != nullptr) ::setenv("CUDA_VISIBLE_DEVICES", visible, 1);
      FILE* redirected = std::freopen(err.c_str(), "w", stderr);
      (void)redirected;
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    return pid;
  };
  std::string err = (dir_ / "agent.err").string();
  pid_t agent = start({}, err);
  ASSERT_GT(agent, 0);
  bool registered = coordinator_.WaitFor([&] { return !coordinator_.registers.empty(); });
  ::kill(agent, SIGTERM);
  int status = 0;
  ::waitpid(agent, &status, 0);
  ASSERT_TRUE(registered) << ReadOr(err);
  {
    auto lock = coordinator_.Lock();
    EXPECT_EQ(coordinator_.registers[0]["gpus"], 2);
    EXPECT_EQ(coordinator_.registers[0]["gpu_kind"], "NVIDIA H200");
  }
  EXPECT_NE(ReadOr(err).find("offers 2 slots and 2 GPUs (NVIDIA H200)"),
            std::string::npos)
      << ReadOr(err);

  // Given one GPU by its own CUDA_VISIBLE_DEVICES (as under Slurm), it offers that one.
  {
    auto lock = coordinator_.Lock();
    coordinator_.registers.clear();
  }
  pid_t given_one = start({}, err, "GPU-5d2e");
  registered = coordinator_.WaitFor([&] { return !coordinator_.registers.empty(); });
  ::kill(given_one, SIGTERM);
  ::waitpid(given_one, &status, 0);
  ASSERT_TRUE(registered) << ReadOr(err);
  {
    auto lock = coordinator_.Lock();
    EXPECT_EQ(coordinator_.registers[0]["gpus"], 1);
    EXPECT_EQ(coordinator_.registers[0]["gpu_kind"], "NVIDIA H200");
  }

  pid_t refused = start({"--gpus", "3"}, err);
  ::waitpid(refused, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 2) << status;
  EXPECT_NE(ReadOr(err).find("--gpus 3: nvidia-smi lists 2 GPUs on this host"),
            std::string::npos)
      << ReadOr(err);
}

}  // namespace
}  // namespace vitscale::worker
