// Runs the built `vitscale sweep` as a user would: exit statuses, stdout, stderr.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "cli/commands.h"

namespace {

namespace fs = std::filesystem;

const std::string kExperiments = std::string(VITSCALE_SOURCE_DIR) + "/experiments";

struct Outcome {
  int status = -1;
  std::string out;
  std::string err;
};

class SweepCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("vitscale-sweep-cli-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& content) {
    std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }

  static std::string Slurp(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  Outcome Vitscale(const std::string& args) {
    fs::path out = dir_ / "stdout", err = dir_ / "stderr";
    std::string command = std::string("'") + VITSCALE_BINARY + "' " + args + " >'" + out.string() +
                          "' 2>'" + err.string() + "'";
    int raw = std::system(command.c_str());
    Outcome run;
    run.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    run.out = Slurp(out);
    run.err = Slurp(err);
    return run;
  }

  fs::path dir_;
};

TEST_F(SweepCliTest, CheckPrintsEveryJob) {
  Outcome run = Vitscale("sweep check '" + kExperiments + "/paper/scaling-study.yaml'");
  ASSERT_EQ(run.status, vitscale::cli::kExitOk) << run.err;
  EXPECT_NE(run.out.find("sweep paper-scaling-study: 18 jobs (recipe jft-300m)"), std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("R50+ViT-L/16"), std::string::npos);
  EXPECT_NE(run.out.find("fine-tune imagenet: 20000 steps"), std::string::npos) << run.out;
  EXPECT_TRUE(run.err.empty()) << run.err;
}

TEST_F(SweepCliTest, CheckJsonCarriesCanonicalConfigsAndIds) {
  Outcome run = Vitscale("sweep check --json '" + kExperiments + "/fashion-mnist/study.yaml'");
  ASSERT_EQ(run.status, vitscale::cli::kExitOk) << run.err;
  nlohmann::json doc = nlohmann::json::parse(run.out);
  EXPECT_EQ(doc["sweep"], "fashion-mnist-study");
  ASSERT_GT(doc["jobs"].size(), 0u);
  for (const nlohmann::json& job : doc["jobs"]) {
    EXPECT_EQ(job["id"].get<std::string>().size(), 64u);
    EXPECT_EQ(job["config"]["dataset"], "fashion-mnist/0-4");
    EXPECT_TRUE(job.contains("family"));
    EXPECT_TRUE(job.contains("train_flops"));
    EXPECT_TRUE(job.contains("priority"));
  }
}

TEST_F(SweepCliTest, CostRowsAndTotals) {
  Outcome run = Vitscale("sweep cost --json '" + kExperiments + "/paper/scaling-study.yaml'");
  ASSERT_EQ(run.status, vitscale::cli::kExitOk) << run.err;
  nlohmann::json doc = nlohmann::json::parse(run.out);
  ASSERT_EQ(doc["jobs"].size(), 18u);
  double sum = 0;
  int64_t examples = 0;
  for (const nlohmann::json& row : doc["jobs"]) {
    for (const char* key :
         {"job", "model", "epochs", "examples", "exaflops", "fine_tune_exaflops"}) {
      EXPECT_TRUE(row.contains(key)) << key;
    }
    sum += row["exaflops"].get<double>();
    examples += row["examples"].get<int64_t>();
  }
  EXPECT_NEAR(doc["total"]["exaflops"].get<double>(), sum, 1e-6 * sum);
  EXPECT_EQ(doc["total"]["examples"].get<int64_t>(), examples);
  EXPECT_EQ(doc["total"]["jobs"], 18);
  EXPECT_GT(doc["total"]["fine_tune_exaflops"].get<double>(), 0.0);  // the study fine-tunes

  Outcome text = Vitscale("sweep cost '" + kExperiments + "/paper/scaling-study.yaml'");
  ASSERT_EQ(text.status, vitscale::cli::kExitOk) << text.err;
  EXPECT_NE(text.out.find("exaflops"), std::string::npos);
  EXPECT_NE(text.out.find("total"), std::string::npos);
}

TEST_F(SweepCliTest, BadSweepPrintsOnlyTheErrorAndExitsBadInput) {
  std::string path =
      Write("bad.yaml", "name: x\nrecipe: jft-300m\ngrid:\n  model: [ViT-B/16, ViT-B/61]\n");
  for (const char* action : {"check", "cost"}) {
    Outcome run = Vitscale(std::string("sweep ") + action + " '" + path + "'");
    EXPECT_EQ(run.status, vitscale::cli::kExitBadInput);
    EXPECT_TRUE(run.out.empty()) << run.out;  // nothing half-printed
    EXPECT_EQ(run.err.rfind(path + ":4:21: unknown model 'ViT-B/61'", 0), 0u) << run.err;
  }
}

TEST_F(SweepCliTest, EmptyAndBinaryFilesAreBadInput) {
  Outcome empty = Vitscale("sweep check '" + Write("empty.yaml", "") + "'");
  EXPECT_EQ(empty.status, vitscale::cli::kExitBadInput);
  EXPECT_NE(empty.err.find(":1:1: the file is empty"), std::string::npos) << empty.err;
  Outcome binary = Vitscale("sweep check '" +
                            Write("b.yaml", std::string("\x7f"
                                                        "ELF\x02\x01\x01\x00",
                                                        8)) +
                            "'");
  EXPECT_EQ(binary.status, vitscale::cli::kExitBadInput);
  EXPECT_NE(binary.err.find(":1:1: byte 0x7f is not text"), std::string::npos) << binary.err;
}

TEST_F(SweepCliTest, UsageAndMissingFiles) {
  EXPECT_EQ(Vitscale("sweep").status, vitscale::cli::kExitUsage);
  EXPECT_EQ(Vitscale("sweep chekc x.yaml").status, vitscale::cli::kExitUsage);
  EXPECT_EQ(Vitscale("sweep check").status, vitscale::cli::kExitUsage);
  EXPECT_EQ(Vitscale("sweep check a.yaml --jsn").status, vitscale::cli::kExitUsage);
  Outcome directory = Vitscale("sweep check '" + dir_.string() + "'");
  EXPECT_EQ(directory.status, vitscale::cli::kExitBadInput);
  EXPECT_NE(directory.err.find("is a directory"), std::string::npos) << directory.err;
  Outcome missing = Vitscale("sweep check '" + (dir_ / "nope.yaml").string() + "'");
  EXPECT_EQ(missing.status, vitscale::cli::kExitNotFound);
  EXPECT_NE(missing.err.find("nope.yaml"), std::string::npos);
}

}  // namespace
