// End to end with real processes on loopback: vitscale-coordinator, two vitscale-agent daemons,
// Open MPI's mpirun and vitscale-train on tiny Fashion-MNIST jobs. What dies here dies by
// SIGKILL, as in a crash; the checks are on the coordinator's attempts table and on the
// trainer's own report.jsonl, compared with an uninterrupted run of the same spec.
//
// Skipped when vitscale-train is not built (set VITSCALE_TRAIN to use another build's).
#include <fstream>
#include <regex>
#include <set>

#include "tests/coordinator/cluster.h"

namespace vitscale::testing {
namespace {

using std::chrono::seconds;

// `epochs` sets the job's length: 256 examples at batch 32 are 8 steps per epoch.
std::string SweepYaml(const std::string& name, const std::string& subsets, int epochs) {
  return "name: " + name + R"(
recipe: small-images
pretrain:
  dataset: fashion-mnist/0-4
  epochs: )" +
         std::to_string(epochs) +
         R"(
  batch_size: 32
  warmup_steps: 2
  subset_seed: 0
grid:
  model: [ViT-Mu/7]
  subset: [)" +
         subsets +
         R"(]
transfer:
  few_shot:
    datasets: [digits]
    shots: [1, 5]
    seeds: 1
resources:
  ranks: 1
  gpus_per_rank: 0
)";
}

// The trainer's report.jsonl reduced to what a run computes: its results (by evaluation,
// dataset, shots, seed) and its last loss. Wall-clock figures are left out.
struct RunOutcome {
  std::map<std::string, double> results;
  double last_loss = -1;
  int64_t last_step = -1;
  int ledger_lines = 0;
  std::vector<std::string> phases;  // "few-shot 1/2", in the order entered
};

RunOutcome ReadReport(const std::string& dir) {
  RunOutcome outcome;
  std::ifstream in(dir + "/report.jsonl");
  std::string line;
  while (std::getline(in, line)) {
    json record = json::parse(line, nullptr, false);
    if (!record.is_object()) continue;
    std::string kind = record.value("kind", "");
    if (kind == "result") {
      std::string key = record.value("evaluation", "") + " " + record.value("dataset", "") +
                        " shots=" + std::to_string(record.value("shots", 0)) +
                        " seed=" + std::to_string(record.value("seed", 0)) + " " +
                        record.value("metric", "");
      outcome.results[key] = record.value("value", -1.0);
    } else if (kind == "metric" && record.value("name", "") == "loss") {
      // A resumed attempt may repeat a step's metrics; the last one counts.
      if (record.value("step", int64_t{-1}) >= outcome.last_step) {
        outcome.last_step = record.value("step", int64_t{-1});
        outcome.last_loss = record.value("value", -1.0);
      }
    } else if (kind == "ledger") {
      ++outcome.ledger_lines;
    } else if (kind == "phase") {
      std::string phase = record.value("phase", "");
      if (record.value("count", 0) > 0) {
        phase += " " + std::to_string(record.value("index", 0)) + "/" +
                 std::to_string(record.value("count", 0));
      }
      outcome.phases.push_back(phase);
    }
  }
  return outcome;
}

class E2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    trainer_ = TrainerPath();
    if (trainer_.empty()) GTEST_SKIP() << "vitscale-train is not built; set VITSCALE_TRAIN";
    coordinator_ = std::make_unique<Coordinator>(
        dir_.File("state"),
        std::vector<std::string>{"--lease-seconds", "5", "--grace-seconds", "30",
                                 "--checkpoint-every-steps", "2", "--max-retries", "0"});
    ASSERT_TRUE(coordinator_->Start());
    client_ = coordinator_->Client();
    ASSERT_TRUE(client_);
  }

  void TearDown() override {
    // Agents first, so that their jobs die with them (PR_SET_PDEATHSIG) before the temp dir goes.
    for (auto& [name, agent] : agents_) {
      agent->Signal(SIGKILL);
      agent->Wait(seconds(10));
    }
    if (HasFailure() && coordinator_) {
      std::fprintf(stderr, "--- coordinator log\n%s\n",
                   Slurp(dir_.File("state/coordinator.log")).c_str());
      for (auto& [name, agent] : agents_) {
        std::fprintf(stderr, "--- agent %s log\n%s\n", name.c_str(), Slurp(agent->log()).c_str());
      }
    }
  }

  void StartAgent(const std::string& name, int slots = 1) {
    std::string work = dir_.File("agent-" + name);
    std::filesystem::create_directories(work);
    agents_[name] = std::make_unique<Process>(
        std::vector<std::string>{BinPath("vitscale-agent"), "--coordinator", coordinator_->url(),
                                 "--token-file", coordinator_->AgentTokenFile(name), "--host",
                                 name, "--slots", std::to_string(slots), "--gpus", "0",
                                 "--work-dir", work, "--runs-dir", coordinator_->runs_dir(),
                                 "--train-command", trainer_},
        work + ".log");
  }

  // Waits until every agent in `names` is registered and alive.
  bool AgentsUp(const std::vector<std::string>& names) {
    return WaitFor(
        [&] {
          Expected<HttpReply> reply = client_->Get("/api/v1/agents");
          if (!reply.ok() || reply->status != 200) return false;
          std::set<std::string> alive;
          json agents = JsonOf(*reply);
          for (const json& a : agents["agents"]) {
            if (a.value("alive", false)) alive.insert(a.value("id", ""));
          }
          for (const std::string& name : names) {
            if (!alive.count(name)) return false;
          }
          return true;
        },
        seconds(20));
  }

  std::vector<std::string> Submit(const std::string& yaml) { return SubmitSweep(*client_, yaml); }

  // The job's detail, or null while the coordinator is unreachable.
  json Job(const std::string& id) {
    Expected<HttpReply> reply = client_->Get("/api/v1/jobs/" + id);
    if (!reply.ok() || reply->status != 200) return nullptr;
    return JsonOf(*reply);
  }

  bool WaitForState(const std::string& id, const std::string& state, seconds timeout) {
    return WaitFor(
        [&] {
          json job = Job(id);
          return job.is_object() && job["state"] == state;
        },
        timeout);
  }

  // The newest checkpoint step the trainer has written for the job, or -1.
  int64_t NewestCheckpoint(const std::string& id) {
    int64_t newest = -1;
    std::error_code error;
    std::filesystem::path dir = RunDir(id) + "/checkpoints";
    for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
      std::string name = entry.path().filename().string();
      if (name.rfind("step-", 0) == 0)
        newest = std::max<int64_t>(newest, std::stoll(name.substr(5)));
    }
    return newest;
  }

  std::string RunDir(const std::string& id) { return dir_.File("state/runs/" + id); }

  // Runs the spec the coordinator gave `agent` for `attempt` again, alone and uninterrupted, in a
  // fresh directory without reporting to the coordinator: the result every resumed run must match.
  RunOutcome ReferenceRun(const std::string& agent, const std::string& id, int attempt) {
    std::string spec_path = dir_.File("agent-" + agent + "/specs/" + id + ".attempt-" +
                                      std::to_string(attempt) + ".json");
    json spec = json::parse(Slurp(spec_path), nullptr, false);
    EXPECT_TRUE(spec.is_object()) << "no spec at " << spec_path;
    if (!spec.is_object()) return {};
    std::string dir = dir_.File("reference");
    spec["run"]["dir"] = dir;
    for (const char* key : {"report_url", "report_token", "attempt"}) spec["run"].erase(key);
    std::ofstream(dir_.File("reference.json")) << spec.dump(2);
    Process train({trainer_, "--spec", dir_.File("reference.json")}, dir_.File("reference.log"));
    int status = train.Wait(seconds(240));
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the reference run failed:\n"
                                                               << Slurp(dir_.File("reference.log"));
    return ReadReport(dir);
  }

  static int SucceededAttempts(const json& job) {
    int n = 0;
    for (const json& a : job["attempts"]) n += a["outcome"] == "succeeded";
    return n;
  }

  // The job's results as the coordinator stored them (the trainer's HTTP sink).
  static std::map<std::string, double> StoredResults(const json& job) {
    std::map<std::string, double> out;
    for (const json& r : job["results"]) {
      std::string key =
          r.value("evaluation", "") + " " + r.value("dataset", "") +
          " shots=" + std::to_string(r["shots"].is_null() ? 0 : r["shots"].get<int>()) +
          " seed=" + std::to_string(r["seed"].is_null() ? -1 : r["seed"].get<int>()) + " " +
          r.value("metric", "");
      out[key] = r.value("value", -1.0);
    }
    return out;
  }

  std::string trainer_;
  TempDir dir_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<HttpClient> client_;
  std::map<std::string, std::unique_ptr<Process>> agents_;
};

TEST_F(E2eTest, SweepRunsToCompletionThroughTwoAgents) {
  StartAgent("host-a");
  StartAgent("host-b");
  ASSERT_TRUE(AgentsUp({"host-a", "host-b"}));
  std::vector<std::string> ids = Submit(SweepYaml("e2e-two-agents", "256, 320", 1));
  ASSERT_EQ(ids.size(), 2u);
  for (const std::string& id : ids) ASSERT_TRUE(WaitForState(id, "succeeded", seconds(240))) << id;

  std::set<std::string> agents_used;
  for (const std::string& id : ids) {
    json job = Job(id);
    ASSERT_EQ(job["attempts"].size(), 1u) << job.dump(2);
    EXPECT_EQ(job["attempts"][0]["outcome"], "succeeded");
    EXPECT_EQ(job["attempts"][0]["exit_status"], 0);
    agents_used.insert(job["attempts"][0]["agent"].get<std::string>());
    RunOutcome run = ReadReport(RunDir(id));
    EXPECT_EQ(run.ledger_lines, 1);
    EXPECT_TRUE(run.results.count("few_shot digits shots=5 seed=-1 accuracy")) << id;
    // The trainer reported to the coordinator: its results are in the database, every seed's
    // (the coordinator averages over seeds itself, so the trainer's means may be left out).
    std::map<std::string, double> stored = StoredResults(job);
    for (const auto& [key, value] : run.results) {
      if (key.find("seed=-1") == std::string::npos) {
        EXPECT_TRUE(stored.count(key)) << key << " is missing from " << job["results"].dump();
      }
    }
    for (const auto& [key, value] : stored) {
      ASSERT_TRUE(run.results.count(key)) << key << " is not in report.jsonl";
      EXPECT_DOUBLE_EQ(value, run.results.at(key)) << key;
    }
    EXPECT_GT(job["ledger"]["images_seen"].get<int64_t>(), 0);
    // Its phases, in order; each went to the coordinator too, which accepted every report (the
    // sink says on the attempt's log when one is refused).
    EXPECT_EQ(run.phases, (std::vector<std::string>{"pretraining", "few-shot 1/1"}));
    std::string log = Slurp(RunDir(id) + "/attempt-1.log");
    EXPECT_EQ(log.find("coordinator refused"), std::string::npos) << log;
    // A finished job has no phase: it went with its attempt.
    EXPECT_TRUE(job["phase"].is_null()) << job.dump();
  }
  // One slot each: the two jobs ran side by side on the two hosts.
  EXPECT_EQ(agents_used, (std::set<std::string>{"host-a", "host-b"}));
  json study = JsonOf(Call(*client_, "GET", "/api/v1/study/e2e-two-agents"));
  EXPECT_EQ(study["rows"].size(), 2u);
}

TEST_F(E2eTest, KilledAgentsJobResumesFromItsCheckpointElsewhere) {
  StartAgent("host-a");
  ASSERT_TRUE(AgentsUp({"host-a"}));
  std::vector<std::string> ids = Submit(SweepYaml("e2e-agent-dies", "256", 5));
  ASSERT_EQ(ids.size(), 1u);
  const std::string& id = ids[0];
  ASSERT_TRUE(WaitFor([&] { return NewestCheckpoint(id) >= 4; }, seconds(120)))
      << "no checkpoint appeared";
  StartAgent("host-b");
  agents_["host-a"]->Signal(SIGKILL);
  agents_["host-a"]->Wait(seconds(10));

  ASSERT_TRUE(WaitForState(id, "succeeded", seconds(240)));
  json job = Job(id);
  ASSERT_EQ(job["attempts"].size(), 2u) << job.dump(2);
  EXPECT_EQ(job["attempts"][0]["agent"], "host-a");
  EXPECT_EQ(job["attempts"][0]["outcome"], "lost");
  EXPECT_EQ(job["attempts"][1]["agent"], "host-b");
  EXPECT_EQ(job["attempts"][1]["outcome"], "succeeded");
  EXPECT_EQ(SucceededAttempts(job), 1);
  // The second attempt started from a checkpoint of the first, not from scratch.
  std::string log = Slurp(RunDir(id) + "/attempt-2.log");
  std::smatch resumed;
  ASSERT_TRUE(std::regex_search(log, resumed, std::regex("resuming from .* at step (\\d+)")))
      << log;
  // mpirun dies with the agent at once; its rank notices a moment later (measured here: under a
  // second), so it may add a checkpoint or two, never past the end (5 epochs of 8 steps).
  EXPECT_GE(std::stoll(resumed[1]), 4);
  EXPECT_LT(std::stoll(resumed[1]), 40);

  RunOutcome resumed_run = ReadReport(RunDir(id));
  RunOutcome reference = ReferenceRun("host-b", id, 2);
  EXPECT_FALSE(reference.results.empty());
  EXPECT_EQ(resumed_run.results, reference.results);
  EXPECT_EQ(resumed_run.last_step, reference.last_step);
  EXPECT_EQ(resumed_run.last_loss, reference.last_loss);
}

TEST_F(E2eTest, CoordinatorKilledMidSweepCompletesEveryJobExactlyOnce) {
  StartAgent("host-a");
  StartAgent("host-b");
  ASSERT_TRUE(AgentsUp({"host-a", "host-b"}));
  std::string sweep = SweepYaml("e2e-coordinator-dies", "256, 288, 320", 5);
  std::vector<std::string> ids = Submit(sweep);
  ASSERT_EQ(ids.size(), 3u);
  // Kill it while jobs run and one still waits.
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const std::string& id : ids) {
          if (NewestCheckpoint(id) >= 2) return true;
        }
        return false;
      },
      seconds(120)));
  coordinator_->Kill();
  int unfinished = 0;
  for (const std::string& id : ids) unfinished += ReadReport(RunDir(id)).ledger_lines == 0;
  EXPECT_GE(unfinished, 2) << "the coordinator should die mid-sweep";
  std::this_thread::sleep_for(seconds(2));
  ASSERT_TRUE(coordinator_->Start());
  client_ = coordinator_->Client();

  for (const std::string& id : ids) ASSERT_TRUE(WaitForState(id, "succeeded", seconds(300))) << id;
  for (const std::string& id : ids) {
    json job = Job(id);
    EXPECT_EQ(SucceededAttempts(job), 1) << job.dump(2);
    for (const json& attempt : job["attempts"]) {
      EXPECT_FALSE(attempt["ended_at"].is_null()) << job.dump(2);
    }
    EXPECT_EQ(ReadReport(RunDir(id)).ledger_lines, 1) << "the job ran to its end more than once";
    // Reports retried across the restart are stored once.
    EXPECT_EQ(StoredResults(job).size(), job["results"].size()) << job["results"].dump(2);
    EXPECT_FALSE(job["results"].empty());
  }
  // Submitting the finished sweep again runs nothing.
  HttpReply again = Call(*client_, "POST", "/api/v1/sweeps", sweep, "application/yaml");
  EXPECT_EQ(JsonOf(again)["jobs_added"], 0);
  for (const std::string& id : ids) EXPECT_EQ(Job(id)["state"], "succeeded");
}

TEST_F(E2eTest, PreemptCheckpointsRequeuesAndResumes) {
  StartAgent("host-a");
  ASSERT_TRUE(AgentsUp({"host-a"}));
  std::vector<std::string> ids = Submit(SweepYaml("e2e-preempt", "256", 5));
  ASSERT_EQ(ids.size(), 1u);
  const std::string& id = ids[0];
  ASSERT_TRUE(WaitFor([&] { return NewestCheckpoint(id) >= 2; }, seconds(120)));
  HttpReply preempted = Call(*client_, "POST", "/api/v1/jobs/" + id + "/preempt");
  ASSERT_EQ(preempted.status, 200) << preempted.body;

  ASSERT_TRUE(WaitForState(id, "succeeded", seconds(240)));
  json job = Job(id);
  ASSERT_EQ(job["attempts"].size(), 2u) << job.dump(2);
  EXPECT_EQ(job["attempts"][0]["outcome"], "preempted");
  EXPECT_EQ(job["attempts"][0]["exit_status"], 75) << "the trainer checkpoints and exits 75";
  EXPECT_EQ(job["attempts"][1]["outcome"], "succeeded");
  std::string log = Slurp(RunDir(id) + "/attempt-2.log");
  EXPECT_TRUE(std::regex_search(log, std::regex("resuming from .* at step \\d+"))) << log;

  RunOutcome resumed = ReadReport(RunDir(id));
  RunOutcome reference = ReferenceRun("host-a", id, 2);
  EXPECT_FALSE(reference.results.empty());
  EXPECT_EQ(resumed.results, reference.results);
  EXPECT_EQ(resumed.last_loss, reference.last_loss);
}

// SIGTERM to an agent: it offers 0 slots, preempts its job (checkpoint, exit 75), reports it and
// exits 0; the job resumes on the other agent.
TEST_F(E2eTest, StoppedAgentHandsItsJobOver) {
  StartAgent("host-a");
  ASSERT_TRUE(AgentsUp({"host-a"}));
  std::vector<std::string> ids = Submit(SweepYaml("e2e-agent-stops", "256", 5));
  ASSERT_EQ(ids.size(), 1u);
  const std::string& id = ids[0];
  ASSERT_TRUE(WaitFor([&] { return NewestCheckpoint(id) >= 2; }, seconds(120)));
  StartAgent("host-b");
  ASSERT_TRUE(AgentsUp({"host-b"}));
  agents_["host-a"]->Signal(SIGTERM);
  int status = agents_["host-a"]->Wait(seconds(60));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;

  ASSERT_TRUE(WaitForState(id, "succeeded", seconds(240)));
  json job = Job(id);
  ASSERT_EQ(job["attempts"].size(), 2u) << job.dump(2);
  EXPECT_EQ(job["attempts"][0]["agent"], "host-a");
  EXPECT_EQ(job["attempts"][0]["outcome"], "preempted");
  EXPECT_EQ(job["attempts"][1]["agent"], "host-b");
  EXPECT_EQ(job["attempts"][1]["outcome"], "succeeded");
  EXPECT_TRUE(std::regex_search(Slurp(RunDir(id) + "/attempt-2.log"),
                                std::regex("resuming from .* at step \\d+")));
}

TEST_F(E2eTest, CancelStopsARunningJob) {
  StartAgent("host-a");
  ASSERT_TRUE(AgentsUp({"host-a"}));
  std::vector<std::string> ids = Submit(SweepYaml("e2e-cancel", "256", 5));
  ASSERT_EQ(ids.size(), 1u);
  const std::string& id = ids[0];
  ASSERT_TRUE(WaitFor([&] { return NewestCheckpoint(id) >= 2; }, seconds(120)));
  HttpReply cancelled = Call(*client_, "POST", "/api/v1/jobs/" + id + "/cancel");
  ASSERT_EQ(cancelled.status, 200) << cancelled.body;
  EXPECT_EQ(JsonOf(cancelled)["state"], "cancelled");

  // The agent kills it and gets its slot back; the job never finishes.
  ASSERT_TRUE(WaitFor(
      [&] {
        Expected<HttpReply> agents = client_->Get("/api/v1/agents");
        if (!agents.ok()) return false;
        json list = JsonOf(*agents)["agents"];
        return !list.empty() && list[0]["free_slots"] == 1;
      },
      seconds(30)));
  std::this_thread::sleep_for(seconds(3));
  json job = Job(id);
  EXPECT_EQ(job["state"], "cancelled");
  ASSERT_EQ(job["attempts"].size(), 1u);
  EXPECT_EQ(job["attempts"][0]["outcome"], "cancelled");
  EXPECT_EQ(ReadReport(RunDir(id)).ledger_lines, 0) << "a cancelled job ran to its end";
  EXPECT_EQ(Call(*client_, "POST", "/api/v1/jobs/" + id + "/cancel").status, 409);
}

}  // namespace
}  // namespace vitscale::testing
