#include "trainer/train_state.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "trainer/checkpoint_store.h"

namespace vitscale::trainer {
namespace {

struct NetImpl : torch::nn::Module {
  explicit NetImpl(int hidden) {
    fc1 = register_module("fc1", torch::nn::Linear(5, hidden));
    norm = register_module("norm", torch::nn::BatchNorm1d(hidden));  // has buffers
    fc2 = register_module("fc2", torch::nn::Linear(hidden, 3));
  }
  torch::Tensor forward(torch::Tensor x) { return fc2(torch::relu(norm(fc1(x)))); }
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
  torch::nn::BatchNorm1d norm{nullptr};
};
TORCH_MODULE(Net);

void TrainSteps(Net& net, torch::optim::Optimizer& optimizer, int64_t first, int64_t count) {
  for (int64_t step = first; step < first + count; ++step) {
    torch::manual_seed(StepSeed(3, step, 0));
    torch::Tensor x = torch::randn({8, 5});
    torch::Tensor y = torch::randint(0, 3, {8});
    optimizer.zero_grad();
    SmoothedCrossEntropy(net->forward(torch::dropout(x, 0.2, true)), y, 0.1).backward();
    SetLearningRate(optimizer, 1e-2);
    optimizer.step();
  }
}

class TrainStateTest : public testing::TestWithParam<OptimizerKind> {};

TEST_P(TrainStateTest, ResumedRunIsBitIdenticalToUninterruptedRun) {
  const std::string dir =
      (std::filesystem::temp_directory_path() / ("vitscale_train_state_" + std::to_string(getpid())))
          .string();
  OptimizerConfig config;
  config.kind = GetParam();
  config.weight_decay = 0.1;

  torch::manual_seed(1);
  Net uninterrupted(7);
  auto optimizer = MakeOptimizer(config, uninterrupted->parameters());
  TrainSteps(uninterrupted, *optimizer, 0, 3);

  TrainProgress progress;
  progress.step = 3;
  progress.images_seen = 24;
  progress.seed = 3;
  progress.model = "test-net";
  progress.schedule = {1e-2, 1, 10, Decay::kCosine, 0.0};
  auto blobs = SnapshotTraining(*uninterrupted, *optimizer, progress);
  ASSERT_TRUE(blobs.ok()) << blobs.status().ToString();
  auto store = CheckpointStore::Open(dir, 2);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(store->Save(progress.step, *blobs).ok());
  TrainSteps(uninterrupted, *optimizer, 3, 4);

  // A fresh process: other initial weights, empty optimizer state, then the checkpoint.
  torch::manual_seed(2);
  Net resumed(7);
  auto resumed_optimizer = MakeOptimizer(config, resumed->parameters());
  std::vector<std::string> warnings;
  auto checkpoint = store->LoadNewest(&warnings);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
  EXPECT_TRUE(warnings.empty());
  ASSERT_TRUE(LoadModule(checkpoint->blobs.at(kModelBlob), *resumed).ok());
  Status loaded = LoadOptimizer(checkpoint->blobs.at(kOptimizerBlob), *resumed_optimizer);
  ASSERT_TRUE(loaded.ok()) << loaded.ToString();
  auto restored = ParseProgress(checkpoint->blobs.at(kStateBlob));
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_EQ(restored->step, 3);
  EXPECT_EQ(restored->images_seen, 24);
  EXPECT_EQ(restored->model, "test-net");
  EXPECT_EQ(restored->schedule.decay, Decay::kCosine);
  TrainSteps(resumed, *resumed_optimizer, restored->step, 4);

  auto expected = uninterrupted->named_parameters();
  for (const auto& item : resumed->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), expected[item.key()])) << item.key();
  }
  auto expected_buffers = uninterrupted->named_buffers();
  for (const auto& item : resumed->named_buffers()) {
    EXPECT_TRUE(torch::equal(item.value(), expected_buffers[item.key()])) << item.key();
  }
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(BothOptimizers, TrainStateTest,
                         testing::Values(OptimizerKind::kAdamW, OptimizerKind::kSgd));

TEST(LoadModuleTest, CheckpointOfAnotherModelNamesTheTensor) {
  Net small(4), large(6);
  auto bytes = SerializeModule(*small);
  ASSERT_TRUE(bytes.ok());
  Status status = LoadModule(*bytes, *large);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("fc1.weight"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("another model"), std::string::npos);
  EXPECT_EQ(LoadModule("not an archive", *small).code(), StatusCode::kCorruption);
}

// A job started from a released file computes with its conventions, and so must every resumed
// attempt: the checkpoint's state.json carries them, and early stopping's best so far.
TEST(ProgressTest, CarriesConventionsAndTheBestValidation) {
  TrainProgress progress;
  progress.step = 12;
  progress.model = "R50+ViT-B/16";
  progress.conventions = models::ReleasedViTConventions();
  progress.best_validation = 0.75;
  progress.best_step = 8;
  Expected<TrainProgress> back = ParseProgress(SerializeProgress(progress));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->conventions, models::ReleasedViTConventions());
  EXPECT_EQ(back->best_validation, 0.75);
  EXPECT_EQ(back->best_step, 8);

  // A state.json written before these fields: vitscale's own conventions, no best yet.
  nlohmann::json old = nlohmann::json::parse(SerializeProgress(progress));
  old.erase("conventions");
  old.erase("best_validation");
  old.erase("best_step");
  back = ParseProgress(old.dump());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->conventions, models::Conventions{});
  EXPECT_EQ(back->best_step, -1);

  old = nlohmann::json::parse(SerializeProgress(progress));
  old["conventions"]["padding"] = "reflect";
  EXPECT_EQ(ParseProgress(old.dump()).status().code(), StatusCode::kCorruption);
}

TEST(StepSeedTest, DependsOnEveryInput) {
  EXPECT_EQ(StepSeed(1, 2, 3), StepSeed(1, 2, 3));
  EXPECT_NE(StepSeed(1, 2, 3), StepSeed(0, 2, 3));
  EXPECT_NE(StepSeed(1, 2, 3), StepSeed(1, 3, 3));
  EXPECT_NE(StepSeed(1, 2, 3), StepSeed(1, 2, 0));
}

}  // namespace
}  // namespace vitscale::trainer
