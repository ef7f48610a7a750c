// vitscale-train end to end, as the agent runs it: real mpirun, real ranks, real Fashion-MNIST
// (skipped where /usr/share/datasets/fashion-mnist is missing). CPU, 1 thread per rank.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "models/checkpoint.h"
#include "models/npz.h"
#include "models/vit.h"
#include "models/zoo.h"
#include "sweep/job_config.h"
#include "trainer/job_spec.h"

namespace vitscale::trainer {
namespace {

namespace fs = std::filesystem;

const char* const kFashionMnist = "/usr/share/datasets/fashion-mnist";

class TrainE2eTest : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ =
        (fs::temp_directory_path() / ("vitscale_train_e2e_" + std::to_string(getpid()))).string();
    fs::create_directories(root_);
  }
  static void TearDownTestSuite() { fs::remove_all(root_); }
  void SetUp() override {
    if (!fs::exists(kFashionMnist)) GTEST_SKIP() << "needs " << kFashionMnist;
  }

  // A 32-step ViT-Mu/7 job on 1024 Fashion-MNIST images, no evaluations.
  static nlohmann::json Spec(const std::string& name) {
    nlohmann::json spec = nlohmann::json::parse(R"({
      "job": {"version": 1, "model": "ViT-Mu/7", "dataset": "fashion-mnist/0-4", "subset": 1024,
              "subset_seed": 0, "seed": 5,
              "train": {"optimizer": "adam", "batch_size": 32, "epochs": 1.0, "lr": 0.001,
                        "weight_decay": 0.01, "beta1": 0.9, "beta2": 0.999, "warmup_steps": 4,
                        "lr_decay": "cosine", "grad_clip_norm": 1.0, "dropout": 0.0,
                        "resolution": 28},
              "few_shot": {"datasets": [], "shots": [], "seeds": 0, "l2": 1024.0},
              "fine_tune": []},
      "run": {"threads": 1, "loader_threads": 1, "stdout_report": false,
              "checkpoint_every_steps": 4, "metrics_every_steps": 1, "eval_batch": 512}
    })");
    spec["run"]["dir"] = root_ + "/" + name;
    return spec;
  }

  static std::string WriteSpec(const nlohmann::json& spec, const std::string& name) {
    const std::string path = spec_path_of(name);
    std::ofstream(path) << spec.dump(2);
    return path;
  }

  // Starts `ranks` ranks under mpirun (0: one rank without mpirun) in a process group of their
  // own, their output appended to <root>/<name>.log; returns the pid of mpirun (or of the rank).
  static pid_t Start(int ranks, const std::string& spec_path, const std::string& name) {
    const std::string log = LogPath(name);
    pid_t pid = fork();
    if (pid == 0) {
      setpgid(0, 0);
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
      }
      setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
      if (ranks == 0) {
        execl(VITSCALE_TRAIN_BIN, VITSCALE_TRAIN_BIN, "--spec", spec_path.c_str(), nullptr);
        _exit(127);
      }
      std::string n = std::to_string(ranks);
      std::vector<const char*> argv = {VITSCALE_MPIEXEC, "-np", n.c_str(), "--oversubscribe"};
      if (getuid() == 0) argv.push_back("--allow-run-as-root");
      argv.insert(argv.end(), {VITSCALE_TRAIN_BIN, "--spec", spec_path.c_str(), nullptr});
      execv(argv[0], const_cast<char* const*>(argv.data()));
      _exit(127);
    }
    setpgid(pid, pid);
    return pid;
  }

  static std::string LogPath(const std::string& name) { return root_ + "/" + name + ".log"; }
  // What the run `name` wrote to stdout and stderr.
  static std::string Output(const std::string& name) {
    std::ifstream in(LogPath(name));
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  static int Wait(pid_t pid) {
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  // Runs the job, its spec written to <root>/<name>.json and its output to <root>/<name>.log.
  static int Train(int ranks, const nlohmann::json& spec, const std::string& name) {
    return Wait(Start(ranks, WriteSpec(spec, name), name));
  }

  // Starts the job and, once the checkpoint of `step` exists, sends `signal` to the whole job.
  // Returns the exit status; fails the test if the job ended before the signal.
  static int SignalAt(int ranks, const nlohmann::json& spec, const std::string& name, int64_t step,
                      int signal) {
    pid_t pid = Start(ranks, WriteSpec(spec, name), name);
    const fs::path checkpoint = CheckpointDir(spec, step);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(3);
    while (!fs::exists(checkpoint) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, WNOHANG), 0) << "the job ended before it could be signalled";
    kill(-pid, signal);
    const int exit_status = Wait(pid);
    if (signal == SIGKILL) WaitUntilNoProcessRuns(spec_path_of(name));
    return exit_status;
  }

  static std::string spec_path_of(const std::string& name) { return root_ + "/" + name + ".json"; }

  // Open MPI may start ranks in process groups of their own: a rank that outlives a killed
  // mpirun can still write a checkpoint until it notices. Waits until no process runs the spec.
  static void WaitUntilNoProcessRuns(const std::string& spec_path) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(1);
    while (std::chrono::steady_clock::now() < deadline) {
      bool running = false;
      for (const auto& entry : fs::directory_iterator("/proc")) {
        std::ifstream in(entry.path() / "cmdline");
        std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
        if (cmdline.find(spec_path) != std::string::npos) running = true;
      }
      if (!running) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "a process still runs " << spec_path << " a minute after mpirun was killed";
  }

  static fs::path CheckpointDir(const nlohmann::json& spec, int64_t step) {
    char dir[32];
    std::snprintf(dir, sizeof(dir), "step-%010lld", static_cast<long long>(step));
    return fs::path(spec["run"]["dir"].get<std::string>()) / "checkpoints" / dir;
  }

  // Steps of the checkpoints in the job's directory, oldest first.
  static std::vector<int64_t> CheckpointSteps(const nlohmann::json& spec) {
    std::vector<int64_t> steps;
    for (const auto& e :
         fs::directory_iterator(fs::path(spec["run"]["dir"].get<std::string>()) / "checkpoints")) {
      // A kill during a write leaves its temporary directory, which is not a checkpoint.
      const std::string name = e.path().filename().string();
      if (name.rfind("step-", 0) == 0) steps.push_back(std::stoll(name.substr(5)));
    }
    std::sort(steps.begin(), steps.end());
    return steps;
  }

  // The steps of the metric points in the job's report.jsonl, which is then moved aside, so
  // that the next attempt's report holds only that attempt's lines.
  static std::vector<int64_t> TakeReportedSteps(const nlohmann::json& spec) {
    const fs::path report = fs::path(spec["run"]["dir"].get<std::string>()) / "report.jsonl";
    std::ifstream in(report);
    std::set<int64_t> steps;
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line);
      if (j["kind"] == "metric") steps.insert(j["step"].get<int64_t>());
    }
    in.close();
    fs::rename(report, report.string() + ".taken");
    return {steps.begin(), steps.end()};
  }

  static std::vector<torch::Tensor> FinalParameters(const std::string& name) {
    Expected<models::Model> model = models::LoadModel(root_ + "/" + name + "/final.pt");
    EXPECT_TRUE(model.ok()) << model.status().ToString();
    if (!model.ok()) return {};
    return (*model)->parameters();
  }

  static void ExpectBitIdentical(const std::string& a, const std::string& b) {
    auto pa = FinalParameters(a), pb = FinalParameters(b);
    ASSERT_EQ(pa.size(), pb.size());
    ASSERT_FALSE(pa.empty());
    for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << i;
  }

  static std::string root_;
};

std::string TrainE2eTest::root_;

TEST_F(TrainE2eTest, TwoRanksStayIdenticalAndMatchOneRankWithTheWholeBatch) {
  nlohmann::json spec = Spec("two");
  spec["run"]["verify_replicas"] = true;  // exits 1 at the first step where ranks differ
  ASSERT_EQ(Train(2, spec, "two"), kExitDone);
  ASSERT_EQ(Train(1, Spec("one"), "one"), kExitDone);
  auto two = FinalParameters("two"), one = FinalParameters("one");
  ASSERT_EQ(two.size(), one.size());
  for (size_t i = 0; i < two.size(); ++i) {
    // Summation order differs (two half-batch means vs one mean), and Adam's normalised update
    // can turn rounding in a near-zero gradient into a step of up to lr (1e-3): the tolerance is
    // half of one such step (measured: at most 7e-5 after 32 steps).
    const double diff = (two[i] - one[i]).abs().max().item<double>();
    EXPECT_LT(diff, 5e-4) << "parameter " << i << " differs by " << diff;
  }
  // The report holds the curve, the pretraining accuracy and the ledger.
  std::ifstream report(root_ + "/two/report.jsonl");
  int metrics = 0, results = 0, ledgers = 0;
  for (std::string line; std::getline(report, line);) {
    auto j = nlohmann::json::parse(line);
    metrics += j["kind"] == "metric";
    results += j["kind"] == "result";
    ledgers += j["kind"] == "ledger";
    if (j["kind"] == "ledger") {
      EXPECT_EQ(j["images_seen"], 1024);
    }
  }
  EXPECT_GT(metrics, 0);
  EXPECT_EQ(results, 1);
  EXPECT_EQ(ledgers, 1);
}

// The resumed run must continue from the newest good checkpoint, not start over: a
// deterministic run restarted from step 0 would end with the same weights. So the test checks
// what the trainer says and does: the torn checkpoint skipped with its warning, the step it
// resumed from, and that it trained only the steps after it.
TEST_F(TrainE2eTest, KilledRunResumesBitIdenticalToUninterruptedRun) {
  ASSERT_EQ(Train(2, Spec("whole"), "whole"), kExitDone);
  EXPECT_EQ(Output("whole").find("resuming from"), std::string::npos) << Output("whole");
  nlohmann::json spec = Spec("killed");
  EXPECT_EQ(SignalAt(2, spec, "killed", 8, SIGKILL), 128 + SIGKILL);
  EXPECT_FALSE(fs::exists(root_ + "/killed/final.pt"));
  // A torn newest checkpoint, as a kill during a write on another filesystem might leave.
  std::vector<int64_t> steps = CheckpointSteps(spec);
  ASSERT_GE(steps.size(), 2u);
  const int64_t torn = steps.back(), good = steps[steps.size() - 2];
  fs::resize_file(CheckpointDir(spec, torn) / "model.pt", 10);
  TakeReportedSteps(spec);

  ASSERT_EQ(Train(2, spec, "killed-resumed"), kExitDone);
  const std::string output = Output("killed-resumed");
  EXPECT_NE(output.find("warning: skipping checkpoint " + CheckpointDir(spec, torn).string() +
                        ": " + (CheckpointDir(spec, torn) / "model.pt").string() + " has 10 bytes"),
            std::string::npos)
      << output;
  EXPECT_NE(output.find("resuming from " + CheckpointDir(spec, good).string() + " at step " +
                        std::to_string(good) + "\n"),
            std::string::npos)
      << output;
  std::vector<int64_t> trained = TakeReportedSteps(spec);
  ASSERT_FALSE(trained.empty());
  EXPECT_EQ(trained.front(), good + 1) << "the resumed attempt trains from the step after " << good;
  EXPECT_EQ(trained.back(), 32);
  EXPECT_EQ(trained.size(), static_cast<size_t>(32 - good));
  ExpectBitIdentical("whole", "killed");
}

TEST_F(TrainE2eTest, SigtermCheckpointsAndExitsPreempted) {
  ASSERT_EQ(Train(1, Spec("whole1"), "whole1"), kExitDone);
  nlohmann::json spec = Spec("term");
  // SIGTERM straight to a rank started without mpirun (mpirun's own signal handling is the
  // agent's concern).
  EXPECT_EQ(SignalAt(0, spec, "term", 4, SIGTERM), kExitPreempted);
  EXPECT_FALSE(fs::exists(root_ + "/term/final.pt"));
  // The trainer names the step it checkpointed at on the way out; that is the newest checkpoint.
  const std::string stopped = Output("term");
  const std::string said = "preempted: checkpoint at step ";
  const size_t at = stopped.find(said);
  ASSERT_NE(at, std::string::npos) << stopped;
  const int64_t step = std::stoll(stopped.substr(at + said.size()));
  EXPECT_GE(step, 4);
  EXPECT_LT(step, 32);
  EXPECT_EQ(CheckpointSteps(spec).back(), step);
  TakeReportedSteps(spec);

  ASSERT_EQ(Train(1, spec, "term-resumed"), kExitDone);
  const std::string output = Output("term-resumed");
  EXPECT_NE(output.find("resuming from " + CheckpointDir(spec, step).string() + " at step " +
                        std::to_string(step) + "\n"),
            std::string::npos)
      << output;
  EXPECT_EQ(output.find("warning: skipping checkpoint"), std::string::npos) << output;
  std::vector<int64_t> trained = TakeReportedSteps(spec);
  ASSERT_FALSE(trained.empty());
  EXPECT_EQ(trained.front(), step + 1) << "the resumed attempt trains from the step after " << step;
  EXPECT_EQ(trained.size(), static_cast<size_t>(32 - step));
  ExpectBitIdentical("whole1", "term");
}

TEST_F(TrainE2eTest, ConfigurationErrorsExit78) {
  nlohmann::json spec = Spec("bad");
  spec["job"]["train"].erase("lr");
  EXPECT_EQ(Train(1, spec, "bad"), kExitConfigError);
  spec = Spec("bad");
  spec["job"]["subset"] = 999999;  // larger than the split
  EXPECT_EQ(Train(1, spec, "bad"), kExitConfigError);
  spec = Spec("bad");
  spec["job"]["dataset"] = "cifar10:/nonexistent";
  EXPECT_EQ(Train(1, spec, "bad"), kExitConfigError);
  // A checkpoint directory of another model.
  ASSERT_EQ(Train(1, Spec("other"), "other"), kExitDone);
  spec = Spec("other");
  spec["job"]["model"] = "ViT-Mi/7";
  EXPECT_EQ(Train(1, spec, "other"), kExitConfigError);
}

// A failure one rank meets alone (its spec or its dataset missing on its host) ends every rank
// with that rank's status instead of leaving the others in a collective forever; mpirun's
// MPMD form gives rank 1 a spec of its own. Each case used to hang rank 0 in its first
// all-reduce (CTest's timeout is what would end this test then).
TEST_F(TrainE2eTest, RankLocalConfigErrorEndsEveryRankWith78) {
  const std::string good = WriteSpec(Spec("local"), "local");
  nlohmann::json without_data = Spec("local");
  without_data["run"]["datasets_dir"] = root_ + "/no-datasets-here";
  const std::vector<std::string> rank1_specs = {root_ + "/no-such-spec.json",
                                                WriteSpec(without_data, "local-without-data")};
  for (const std::string& rank1_spec : rank1_specs) {
    pid_t pid = fork();
    if (pid == 0) {
      setpgid(0, 0);
      setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
      std::vector<const char*> argv = {VITSCALE_MPIEXEC, "--oversubscribe"};
      if (getuid() == 0) argv.push_back("--allow-run-as-root");
      argv.insert(argv.end(), {"-np", "1", VITSCALE_TRAIN_BIN, "--spec", good.c_str(), ":",
                               "-np", "1", VITSCALE_TRAIN_BIN, "--spec", rank1_spec.c_str(),
                               nullptr});
      execv(argv[0], const_cast<char* const*>(argv.data()));
      _exit(127);
    }
    setpgid(pid, pid);
    EXPECT_EQ(Wait(pid), kExitConfigError) << "rank 1's spec: " << rank1_spec;
  }
}

// Out of memory, for real: one rank under an address-space limit that a 1024-image micro-batch
// of ViT-Mu/4 exceeds (about 2.8 GB of address space here) and a 256-image one fits (1.6 GB;
// 512 is near the limit and may go either way). Each attempt that runs out exits 79 naming the
// model and micro-batch, and the next attempt of the same run directory trains with half of it,
// until one finishes.
TEST_F(TrainE2eTest, OutOfMemoryEndsTheAttemptAndTheRetryHalvesTheMicroBatch) {
#if defined(__SANITIZE_ADDRESS__)
  // The out-of-memory comes from an address-space limit, and AddressSanitizer needs terabytes
  // of address space for its shadow memory before main() runs.
  GTEST_SKIP() << "an address-space limit cannot be set under AddressSanitizer";
#endif
  nlohmann::json spec = Spec("oom");
  spec["job"]["model"] = "ViT-Mu/4";
  spec["job"]["train"]["batch_size"] = 1024;
  spec["job"]["train"]["epochs"] = 2.0;  // two steps
  spec["job"]["train"]["warmup_steps"] = 1;
  spec["run"]["checkpoint_every_steps"] = 0;
  const std::string spec_path = WriteSpec(spec, "oom");
  const std::string limits = root_ + "/oom/out_of_memory.json";
  int64_t failed_micro_batch = 1024 * 2;  // the first attempt runs the whole rank batch
  int status = -1;
  for (int attempt = 1; attempt <= 4 && status != kExitDone; ++attempt) {
    const std::string log = root_ + "/oom-" + std::to_string(attempt) + ".log";
    pid_t pid = fork();
    if (pid == 0) {
      const rlim_t bytes = 2100ull << 20;
      struct rlimit limit = {bytes, bytes};
      setrlimit(RLIMIT_AS, &limit);
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 2);
      setenv("OMPI_MCA_ess_singleton_isolated", "1", 1);
      execl(VITSCALE_TRAIN_BIN, VITSCALE_TRAIN_BIN, "--spec", spec_path.c_str(), nullptr);
      _exit(127);
    }
    status = Wait(pid);
    std::ifstream in(log);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (attempt == 1) {
      ASSERT_EQ(status, kExitOutOfMemory) << text;
    }
    if (status == kExitOutOfMemory) {
      const int64_t micro = failed_micro_batch / 2;
      EXPECT_NE(text.find("out of memory training ViT-Mu/4 at 28 px with micro-batch " +
                          std::to_string(micro) + " of this rank's 1024 images"),
                std::string::npos) << text;
      EXPECT_NE(text.find("the next attempt will train with run.micro_batch " +
                          std::to_string(micro / 2)), std::string::npos) << text;
      std::ifstream recorded(limits);
      ASSERT_TRUE(recorded.good()) << "no " << limits;
      EXPECT_EQ(nlohmann::json::parse(recorded)["micro_batch"], micro);
      failed_micro_batch = micro;
    } else {
      ASSERT_EQ(status, kExitDone) << text;
      EXPECT_NE(text.find("training with micro-batch " + std::to_string(failed_micro_batch / 2)),
                std::string::npos) << text;
    }
  }
  EXPECT_EQ(status, kExitDone) << "still out of memory after 4 attempts";
}

TEST_F(TrainE2eTest, ShippedExampleSpecRuns) {
  Expected<JobSpec> example = LoadJobSpec(VITSCALE_EXAMPLE_SPEC);
  ASSERT_TRUE(example.ok()) << example.status().ToString();
  std::ifstream example_file(VITSCALE_EXAMPLE_SPEC);
  nlohmann::json spec = nlohmann::json::parse(example_file);
  spec["run"]["dir"] = root_ + "/example";
  ASSERT_EQ(Train(2, spec, "example"), kExitDone);
  std::ifstream report(root_ + "/example/report.jsonl");
  int few_shot = 0;
  for (std::string line; std::getline(report, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["kind"] == "result" && j["evaluation"] == "few_shot") ++few_shot;
  }
  EXPECT_GT(few_shot, 0);
}

// A job started from a released hybrid file computes with the released code's conventions (SAME
// padding differs from vitscale's on the backbone's strided layers), its model files say so, and
// a preempted attempt resumes computing the same way: bit-identical to the uninterrupted run.
TEST_F(TrainE2eTest, ReleasedWeightsKeepTheirConventionsAcrossAResume) {
  const std::string released = root_ + "/released-hybrid.npz";
  {
    torch::manual_seed(3);
    models::Model source = *models::BuildModel("R11s+ViT-Mu/4", 1000, 28);
    torch::NoGradGuard no_grad;
    for (auto& p : source->parameters()) p.add_(torch::randn_like(p) * 0.05);
    ASSERT_TRUE(models::ExportNpz(*source, released).ok());
  }
  auto spec_of = [&](const std::string& name) {
    nlohmann::json spec = Spec(name);
    spec["job"]["model"] = "R11s+ViT-Mu/4";
    spec["job"]["dataset"] = "digits";  // 450 test images: a cheap final evaluation
    spec["job"]["subset"] = 256;        // 8 steps
    spec["run"]["init_from"] = released;
    return spec;
  };
  ASSERT_EQ(Train(0, spec_of("released-whole"), "released-whole"), kExitDone);
  Expected<models::CheckpointInfo> info =
      models::ReadCheckpointInfo(root_ + "/released-whole/final.pt");
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->config.conventions, models::ReleasedViTConventions());

  nlohmann::json spec = spec_of("released-term");
  EXPECT_EQ(SignalAt(0, spec, "released-term", 4, SIGTERM), kExitPreempted);
  ASSERT_EQ(Train(0, spec, "released-term"), kExitDone);
  ExpectBitIdentical("released-whole", "released-term");
}

// The paper's protocol in one small job: the tanh pretraining head, early stopping (validation
// tracked, the best-validated model evaluated), fine-tuning with a grid, a held-out slice, a
// final run at the chosen rate and Polyak averaging, and the inspection views; every phase is
// reported. Then `--inspect` redraws the views of the finished job.
TEST_F(TrainE2eTest, PaperProtocolEarlyStoppingFineTuneAndInspection) {
  nlohmann::json spec = Spec("protocol");
  // digits: its 450 test images make the validations cheap.
  spec["job"]["dataset"] = "digits";
  spec["job"]["train"]["pre_logits"] = 32;
  spec["job"]["train"]["early_stopping_every"] = 8;
  spec["job"]["train"]["lr"] = 0.004;  // a bumpy curve, so that the best step is often not the last
  spec["job"]["inspect"] = true;
  spec["job"]["fine_tune"] = nlohmann::json::parse(
      R"([{"dataset": "digits", "steps": 12, "resolution": 28, "lrs": [0.01, 0.03],
           "batch_size": 32, "holdout": 0.2, "final_run": true, "polyak": 0.9}])");
  ASSERT_EQ(Train(1, spec, "protocol"), kExitDone);

  const std::string dir = root_ + "/protocol";
  std::vector<std::string> phases;
  std::map<int64_t, double> validation;
  std::map<std::string, double> results;
  std::ifstream report(dir + "/report.jsonl");
  for (std::string line; std::getline(report, line);) {
    auto j = nlohmann::json::parse(line);
    if (j["kind"] == "phase") {
      std::string phase = j["phase"].get<std::string>();
      if (j["count"].get<int64_t>() > 0) {
        phase += " " + std::to_string(j["index"].get<int64_t>()) + "/" +
                 std::to_string(j["count"].get<int64_t>());
      }
      phases.push_back(phase + " " + j["detail"].get<std::string>());
    }
    if (j["kind"] == "metric" && j["name"] == "val_accuracy") {
      validation[j["step"].get<int64_t>()] = j["value"].get<double>();
    }
    if (j["kind"] == "result") {
      results[j["evaluation"].get<std::string>() + " " + j["metric"].get<std::string>()] =
          j["value"].get<double>();
    }
  }
  EXPECT_EQ(phases,
            (std::vector<std::string>{
                "pretraining ", "fine-tune 1/3 digits lr=0.01", "fine-tune 2/3 digits lr=0.03",
                "fine-tune 3/3 digits final lr=" +
                    std::string(results["fine_tune chosen_lr"] == 0.01 ? "0.01" : "0.03"),
                "inspection 1/4 filters", "inspection 2/4 position-similarity",
                "inspection 3/4 attention-distance", "inspection 4/4 attention-rollout"}));

  // Validation every 8 of the 32 steps; the best one is reported and kept.
  ASSERT_EQ(validation.size(), 4u);
  EXPECT_EQ(validation.begin()->first, 8);
  auto best = std::max_element(validation.begin(), validation.end(),
                               [](const auto& a, const auto& b) { return a.second < b.second; });
  EXPECT_EQ(results["pretrain best_validation_accuracy"], best->second);
  EXPECT_EQ(results["pretrain best_step"], static_cast<double>(best->first));
  EXPECT_TRUE(results.count("fine_tune accuracy"));
  EXPECT_TRUE(results.count("fine_tune holdout_accuracy@lr=0.01"));

  // The pretraining head is part of the trained model.
  Expected<models::Model> final_model = models::LoadModel(dir + "/final.pt");
  ASSERT_TRUE(final_model.ok()) << final_model.status().ToString();
  EXPECT_EQ((*final_model)->config().pre_logits, 32);
  Expected<models::Model> best_model = models::LoadModel(dir + "/best.pt");
  ASSERT_TRUE(best_model.ok()) << best_model.status().ToString();

  // The inspection drew the best-validated model: its position embeddings' similarity.
  Expected<sweep::JobConfig> job = sweep::JobConfigFromJson(spec["job"]);
  ASSERT_TRUE(job.ok());
  const std::string prefix = dir + "/inspection/" + sweep::JobId(*job).substr(0, 12) + "-";
  auto similarity_of = [](models::Model& model) {
    auto* vit = dynamic_cast<models::ViTImpl*>(model.get());
    torch::Tensor pos = vit->pos_embedding.detach()[0].narrow(0, 1, 16).to(torch::kDouble);
    pos = pos / pos.norm(2, 1, true);
    return pos.matmul(pos.t());
  };
  auto drawn = [&]() {
    std::ifstream in(prefix + "position-similarity.json");
    nlohmann::json j = nlohmann::json::parse(in);
    torch::Tensor t = torch::zeros({16, 16}, torch::kDouble);
    for (int i = 0; i < 16; ++i) {
      for (int k = 0; k < 16; ++k) t[i][k] = j["similarity"][i][k].get<double>();
    }
    return t;
  };
  EXPECT_TRUE(torch::allclose(drawn(), similarity_of(*best_model), 1e-9, 1e-9));
  if (best->first != 32) {
    EXPECT_FALSE(torch::allclose(drawn(), similarity_of(*final_model), 1e-6, 1e-6));
  }
  for (const char* file :
       {"filters.json", "filters.png", "position-similarity.png", "attention-distance.json",
        "attention-distance.svg", "attention-rollout.json", "attention-rollout.png"}) {
    EXPECT_TRUE(fs::exists(prefix + file)) << file;
  }

  // A finished job's views again, from its run directory alone.
  fs::remove(prefix + "attention-distance.svg");
  const std::string spec_path = root_ + "/protocol.json";
  pid_t pid = fork();
  if (pid == 0) {
    execl(VITSCALE_TRAIN_BIN, VITSCALE_TRAIN_BIN, "--spec", spec_path.c_str(), "--inspect",
          nullptr);
    _exit(127);
  }
  EXPECT_EQ(Wait(pid), kExitDone);
  EXPECT_TRUE(fs::exists(prefix + "attention-distance.svg"));
  // Nothing of the job itself changed: no new results.
  std::ifstream again(dir + "/report.jsonl");
  int ledgers = 0;
  for (std::string line; std::getline(again, line);)
    ledgers += nlohmann::json::parse(line)["kind"] == "ledger";
  EXPECT_EQ(ledgers, 1);
}

}  // namespace
}  // namespace vitscale::trainer
