// End to end with real processes: `vitscale data pack` and `vitscale data check` on a folder of
// generated photos, then vitscale-train from the packed shards (Inception crops through the
// region decoder), and a job whose bad samples exceed run.max_bad_samples failing with the list.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "common/files.h"
#include "tests/data/data_test_util.h"

namespace vitscale::data {
namespace {

using testing::Photo;
using testing::TempDir;
using testing::WriteBytes;
using testing::WritePhotoFolder;

struct Ran {
  int status = -1;
  std::string out;  // stdout and stderr
};

Ran Shell(const std::string& command) {
  Ran ran;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) ran.out.append(buffer, n);
  const int status = pclose(pipe);
  ran.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return ran;
}

std::string Spec(const std::string& dataset, const std::string& run_dir, int max_bad) {
  nlohmann::json spec = nlohmann::json::parse(R"({
    "job": {"version": 1, "model": "ViT-Mu/7", "subset": 64, "subset_seed": 0, "seed": 5,
            "train": {"optimizer": "adam", "batch_size": 16, "epochs": 1.0, "lr": 0.001,
                      "weight_decay": 0.01, "beta1": 0.9, "beta2": 0.999, "warmup_steps": 1,
                      "lr_decay": "cosine", "grad_clip_norm": 1.0, "dropout": 0.0,
                      "resolution": 28},
            "few_shot": {"datasets": [], "shots": [], "seeds": 0, "l2": 1024.0},
            "fine_tune": []},
    "run": {"threads": 1, "loader_threads": 2, "stdout_report": false, "eval_batch": 64}
  })");
  spec["job"]["dataset"] = dataset;
  spec["run"]["dir"] = run_dir;
  spec["run"]["max_bad_samples"] = max_bad;
  const std::string path = run_dir + ".json";
  std::ofstream(path) << spec.dump(2);
  return path;
}

TEST(TrainFromShards, PackCheckAndTrain) {
  TempDir dir;
  WritePhotoFolder(dir / "photos", "train", 4, 20);
  WritePhotoFolder(dir / "photos", "test", 4, 4);
  const std::string cli = VITSCALE_CLI_BIN;
  Ran pack = Shell(cli + " data pack " + (dir / "photos") + " " + (dir / "packed") +
                   " --shard-size 16 --threads 2");
  ASSERT_EQ(pack.status, 0) << pack.out;
  EXPECT_NE(pack.out.find("packed 96 samples into 6 shards"), std::string::npos) << pack.out;
  Ran check = Shell(cli + " data check " + (dir / "packed") + " --decode");
  ASSERT_EQ(check.status, 0) << check.out;
  EXPECT_NE(check.out.find("ok, 6 shards, 96 samples, every image decoded"), std::string::npos)
      << check.out;

  // A sweep names it by path; its manifest gives the sizes a subset is checked against.
  WriteBytes(dir / "sweep.yaml",
             "name: packed\nrecipe: small-images\npretrain:\n  dataset: shards:" +
                 (dir / "packed") + "\n  model: ViT-Mu/7\n  subset: 80\n");
  Ran sweep = Shell(cli + " sweep check " + (dir / "sweep.yaml"));
  EXPECT_EQ(sweep.status, 0) << sweep.out;
  WriteBytes(dir / "big.yaml", "name: packed\nrecipe: small-images\npretrain:\n  dataset: shards:" +
                                   (dir / "packed") + "\n  model: ViT-Mu/7\n  subset: 81\n");
  Ran big = Shell(cli + " sweep check " + (dir / "big.yaml"));
  EXPECT_EQ(big.status, 3) << big.out;
  EXPECT_NE(big.out.find("80"), std::string::npos) << big.out;

  const std::string train = VITSCALE_TRAIN_BIN;
  Ran trained = Shell(train + " --spec " + Spec("shards:" + (dir / "packed"), dir / "run", 0));
  ASSERT_EQ(trained.status, 0) << trained.out;
  std::ifstream report(dir / "run/report.jsonl");
  std::string line;
  double images_seen = 0, accuracy = -1;
  while (std::getline(report, line)) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j["kind"] == "ledger") images_seen = j["images_seen"];
    if (j["kind"] == "result" && j["evaluation"] == "pretrain") accuracy = j["value"];
  }
  EXPECT_EQ(images_seen, 64);  // 4 steps of 16
  EXPECT_GE(accuracy, 0.0);    // evaluated on the 16 packed test images
}

TEST(TrainFromShards, TooManyBadSamplesFailTheJobWithTheList) {
  TempDir dir;
  WritePhotoFolder(dir / "photos", "train", 2, 32);
  WritePhotoFolder(dir / "photos", "test", 2, 2);
  const std::string broken = (*EncodeJpeg(Photo(40, 40, 3, 1))).substr(0, 150);
  WriteBytes(dir / "photos/train/class0/7.jpg", broken);
  WriteBytes(dir / "photos/train/class1/8.jpg", broken);
  const std::string cli = VITSCALE_CLI_BIN;
  ASSERT_EQ(Shell(cli + " data pack " + (dir / "photos") + " " + (dir / "packed")).status, 0);
  Ran check = Shell(cli + " data check " + (dir / "packed") + " --decode");
  EXPECT_EQ(check.status, 1);
  EXPECT_NE(check.out.find("2 problems"), std::string::npos) << check.out;

  const std::string train = VITSCALE_TRAIN_BIN;
  // A whole-set subset of 64 in batches of 16: every epoch meets both bad samples.
  Ran tolerated = Shell(train + " --spec " + Spec("shards:" + (dir / "packed"), dir / "ok", 2));
  EXPECT_EQ(tolerated.status, 0) << tolerated.out;
  EXPECT_NE(tolerated.out.find("skipped a bad sample (2 of at most 2)"), std::string::npos)
      << tolerated.out;
  Ran failed = Shell(train + " --spec " + Spec("shards:" + (dir / "packed"), dir / "bad", 1));
  EXPECT_EQ(failed.status, 1) << failed.out;
  EXPECT_NE(failed.out.find("2 samples could not be read, more than run.max_bad_samples (1)"),
            std::string::npos)
      << failed.out;
}

}  // namespace
}  // namespace vitscale::data
