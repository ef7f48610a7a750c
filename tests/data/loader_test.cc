// The LibTorch loader: batches equal the pure MakeBatch of the plan's rank slice, whatever the
// thread count or the step a run resumes at; shutdown is clean while workers wait.
#include "data/loader.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "data/datasets.h"
#include "data/image_codec.h"

namespace vitscale::data {
namespace {

namespace fs = std::filesystem;

// 300 images of 12x12 gray, pixel values from the index; labels i % 10.
Split SyntheticSplit() {
  const int n = 300, side = 12;
  std::vector<uint8_t> pixels;
  std::vector<int32_t> labels;
  for (int i = 0; i < n; ++i) {
    for (int p = 0; p < side * side; ++p)
      pixels.push_back(static_cast<uint8_t>((i * 31 + p * 7) % 256));
    labels.push_back(i % 10);
  }
  return Split::Dense(side, side, 1, std::move(pixels), std::move(labels), 10);
}

LoaderOptions TrainOptions(int threads) {
  LoaderOptions options;
  options.augment.resolution = 16;  // a resize on top of the crop and flip
  options.augment.crop_padding = 2;
  options.augment.flip = true;
  options.threads = threads;
  options.prefetch = 3;
  return options;
}

std::vector<Batch> Collect(const Split& split, const BatchPlan& plan, int rank, size_t first,
                           size_t count, int threads) {
  auto loader = Loader::Create(split, plan, rank, first, TrainOptions(threads));
  EXPECT_TRUE(loader.ok()) << loader.status().ToString();
  std::vector<Batch> batches;
  for (size_t i = 0; i < count; ++i) {
    Expected<Batch> batch = (*loader)->Next();
    EXPECT_TRUE(batch.ok()) << batch.status().ToString();
    batches.push_back(*batch);
  }
  return batches;
}

TEST(MakeBatch, ShapesTypesAndLabels) {
  Split split = SyntheticSplit();
  AugmentOptions options;
  options.resolution = 16;
  Expected<Batch> batch = MakeBatch(split, {3, 14, 299}, options, false, 0, 0);
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  EXPECT_EQ(batch->images.sizes(), (std::vector<int64_t>{3, 3, 16, 16}));
  EXPECT_EQ(batch->images.scalar_type(), at::kFloat);
  EXPECT_EQ(batch->labels.scalar_type(), at::kLong);
  EXPECT_EQ(batch->labels[1].item<int64_t>(), 4);
  EXPECT_EQ(batch->labels[2].item<int64_t>(), 9);
  // Gray replicated into the three channels.
  EXPECT_TRUE(at::equal(batch->images.select(1, 0), batch->images.select(1, 2)));
  EXPECT_FALSE(MakeBatch(split, {300}, options, false, 0, 0).ok());
}

TEST(MakeBatch, ThreadCountDoesNotChangeTheResult) {
  Split split = SyntheticSplit();
  std::vector<uint32_t> indices;
  for (uint32_t i = 0; i < 100; ++i) indices.push_back((i * 37) % 300);
  AugmentOptions options = TrainOptions(1).augment;
  Batch one = *MakeBatch(split, indices, options, true, 5, 2, 1);
  Batch three = *MakeBatch(split, indices, options, true, 5, 2, 3);
  EXPECT_TRUE(at::equal(one.images, three.images));
  EXPECT_TRUE(at::equal(one.labels, three.labels));
}

TEST(Loader, BatchesArePureFunctionsOfTheStepAcrossThreadCounts) {
  Split split = SyntheticSplit();
  BatchPlan plan = *BatchPlan::Create(*NestedSubset(300, 200, 4), 32, 4, 2);
  // 6 steps per epoch: 14 steps cross two epoch boundaries.
  std::vector<Batch> serial = Collect(split, plan, 1, 0, 14, 1);
  std::vector<Batch> parallel = Collect(split, plan, 1, 0, 14, 3);
  for (size_t step = 0; step < 14; ++step) {
    EXPECT_EQ(serial[step].step, step);
    EXPECT_TRUE(at::equal(serial[step].images, parallel[step].images)) << step;
    EXPECT_TRUE(at::equal(serial[step].labels, parallel[step].labels)) << step;
    Batch direct = *MakeBatch(split, plan.RankSlice(step, 1), TrainOptions(1).augment, true,
                              plan.seed(), plan.epoch_of(step));
    EXPECT_TRUE(at::equal(serial[step].images, direct.images)) << step;
  }
  // Different epochs augment the same example differently.
  EXPECT_FALSE(at::equal(serial[0].images, serial[6].images));
}

TEST(Loader, ResumingAtAStepSeesTheUninterruptedBatches) {
  Split split = SyntheticSplit();
  BatchPlan plan = *BatchPlan::Create(*NestedSubset(300, 0, 8), 40, 8, 2);
  std::vector<Batch> uninterrupted = Collect(split, plan, 0, 0, 20, 2);
  BatchPlan again = *BatchPlan::Create(*NestedSubset(300, 0, 8), 40, 8, 2);
  std::vector<Batch> resumed = Collect(split, again, 0, 11, 9, 2);
  for (size_t i = 0; i < resumed.size(); ++i) {
    EXPECT_EQ(resumed[i].step, 11 + i);
    EXPECT_TRUE(at::equal(resumed[i].images, uninterrupted[11 + i].images)) << i;
    EXPECT_TRUE(at::equal(resumed[i].labels, uninterrupted[11 + i].labels)) << i;
  }
}

TEST(Loader, RankSlicesTogetherAreTheGlobalBatch) {
  Split split = SyntheticSplit();
  BatchPlan two = *BatchPlan::Create(*NestedSubset(300, 0, 1), 20, 1, 2);
  BatchPlan one = *BatchPlan::Create(*NestedSubset(300, 0, 1), 20, 1, 1);
  std::vector<Batch> rank0 = Collect(split, two, 0, 0, 5, 2);
  std::vector<Batch> rank1 = Collect(split, two, 1, 0, 5, 2);
  std::vector<Batch> global = Collect(split, one, 0, 0, 5, 2);
  for (size_t step = 0; step < 5; ++step) {
    at::Tensor joined = at::cat({rank0[step].images, rank1[step].images});
    EXPECT_TRUE(at::equal(joined, global[step].images)) << step;
  }
}

TEST(Loader, StopsCleanlyWithAFullQueueAndBeforeAnyNext) {
  Split split = SyntheticSplit();
  BatchPlan plan = *BatchPlan::Create(*NestedSubset(300, 0, 1), 10, 1, 1);
  for (int threads : {1, 4}) {
    auto loader = Loader::Create(split, plan, 0, 0, TrainOptions(threads));
    ASSERT_TRUE(loader.ok());
    ASSERT_TRUE((*loader)->Next().ok());
    loader->reset();  // joins workers blocked on the full prefetch queue
  }
  EXPECT_FALSE(Loader::Create(split, plan, 1, 0, TrainOptions(1)).ok());
}

TEST(Loader, ACorruptImageFileFailsItsStepWithThePath) {
  std::string dir = (fs::temp_directory_path() / "vitscale-loader-XXXXXX").string();
  ASSERT_NE(mkdtemp(dir.data()), nullptr);
  struct RemoveOnExit {
    std::string path;
    ~RemoveOnExit() {
      std::error_code error;
      fs::remove_all(path, error);
    }
  } cleanup{dir};
  Image image{8, 8, 3, std::vector<uint8_t>(192, 100)};
  for (const char* split : {"train", "test"}) {
    fs::create_directories(dir + "/" + split + "/a");
    for (int i = 0; i < 4; ++i) {
      std::ofstream(dir + "/" + split + "/a/" + std::to_string(i) + ".png", std::ios::binary)
          << *EncodePng(image);
    }
  }
  std::ofstream(dir + "/train/a/2.png", std::ios::trunc) << "broken";
  Expected<Dataset> dataset = LoadDataset("folder:" + dir);
  ASSERT_TRUE(dataset.ok()) << dataset.status().ToString();
  LoaderOptions options;
  options.augment.resolution = 6;
  options.augment.resize = ResizeMode::kShorterSideCrop;
  options.threads = 2;
  BatchPlan plan = *BatchPlan::Create({0, 1, 2, 3}, 4, 0, 1);
  auto loader = Loader::Create(dataset->train, plan, 0, 0, options);
  ASSERT_TRUE(loader.ok());
  Expected<Batch> batch = (*loader)->Next();
  ASSERT_FALSE(batch.ok());
  EXPECT_NE(batch.status().message().find("2.png"), std::string::npos);
  // The test split decodes fine as a whole.
  Expected<Batch> test = WholeSplit(dataset->test, options.augment, 2);
  ASSERT_TRUE(test.ok()) << test.status().ToString();
  EXPECT_EQ(test->images.size(0), 4);
}

TEST(RealData, WholeFashionMnistTestSplit) {
  Expected<Dataset> dataset = LoadDataset("fashion-mnist");
  ASSERT_TRUE(dataset.ok()) << dataset.status().ToString();
  AugmentOptions options;
  options.resolution = 28;
  options.mean = dataset->mean;
  options.std = dataset->std;
  Expected<Batch> test = WholeSplit(dataset->test, options, 2);
  ASSERT_TRUE(test.ok());
  EXPECT_EQ(test->images.sizes(), (std::vector<int64_t>{10000, 3, 28, 28}));
  EXPECT_EQ(at::bincount(test->labels).min().item<int64_t>(), 1000);
  // Normalised with the train statistics, the test split is near mean 0, std 1.
  EXPECT_NEAR(test->images.mean().item<float>(), 0.f, 0.05);
  EXPECT_NEAR(test->images.std().item<float>(), 1.f, 0.05);
}

}  // namespace
}  // namespace vitscale::data
