// Example order (subsets, batch plans, rank slices) and per-example augmentation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <vector>

#include "data/augment.h"
#include "data/order.h"

namespace vitscale::data {
namespace {

TEST(Permutation, IsAPermutationAndDependsOnTheSeed) {
  std::vector<uint32_t> a = SeededPermutation(1000, 1);
  std::vector<uint32_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (uint32_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[i], i);
  EXPECT_EQ(a, SeededPermutation(1000, 1));
  EXPECT_NE(a, SeededPermutation(1000, 2));
}

TEST(NestedSubset, SmallerSubsetsArePrefixesOfLargerOnes) {
  std::vector<uint32_t> small = *NestedSubset(60000, 3000, 7);
  std::vector<uint32_t> large = *NestedSubset(60000, 10000, 7);
  ASSERT_EQ(small.size(), 3000u);
  ASSERT_EQ(large.size(), 10000u);
  EXPECT_TRUE(std::equal(small.begin(), small.end(), large.begin()));
  std::set<uint32_t> unique(large.begin(), large.end());
  EXPECT_EQ(unique.size(), large.size());
  EXPECT_LT(*std::max_element(large.begin(), large.end()), 60000u);
  EXPECT_NE(small, *NestedSubset(60000, 3000, 8));
  EXPECT_EQ(NestedSubset(600, 0, 7)->size(), 600u);
  Expected<std::vector<uint32_t>> too_big = NestedSubset(600, 601, 7);
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.status().code(), StatusCode::kInvalidArgument);
}

std::vector<uint32_t> Iota(uint32_t n, uint32_t offset = 0) {
  std::vector<uint32_t> v(n);
  std::iota(v.begin(), v.end(), offset);
  return v;
}

TEST(BatchPlan, EachEpochVisitsEveryExampleOnceInAFreshOrder) {
  // 1000 subset entries that are not 0..n-1, to see that indices pass through the subset.
  BatchPlan plan = *BatchPlan::Create(Iota(1000, 5000), 100, 3, 1);
  ASSERT_EQ(plan.steps_per_epoch(), 10u);
  std::vector<uint32_t> epoch0, epoch1;
  for (size_t step = 0; step < 10; ++step) {
    std::vector<uint32_t> b = plan.GlobalBatch(step);
    epoch0.insert(epoch0.end(), b.begin(), b.end());
    b = plan.GlobalBatch(step + 10);
    epoch1.insert(epoch1.end(), b.begin(), b.end());
  }
  EXPECT_NE(epoch0, epoch1);
  EXPECT_NE(epoch0, Iota(1000, 5000));
  std::sort(epoch0.begin(), epoch0.end());
  std::sort(epoch1.begin(), epoch1.end());
  EXPECT_EQ(epoch0, Iota(1000, 5000));
  EXPECT_EQ(epoch1, Iota(1000, 5000));
}

TEST(BatchPlan, PartialLastBatchIsDroppedAndInputsAreChecked) {
  BatchPlan plan = *BatchPlan::Create(Iota(1050), 100, 3, 4 /* ranks */);
  EXPECT_EQ(plan.steps_per_epoch(), 10u);
  EXPECT_EQ(plan.per_rank_batch(), 25u);
  EXPECT_FALSE(BatchPlan::Create(Iota(1000), 100, 3, 3).ok());
  EXPECT_FALSE(BatchPlan::Create(Iota(50), 100, 3, 1).ok());
  EXPECT_FALSE(BatchPlan::Create(Iota(50), 0, 3, 1).ok());
}

TEST(BatchPlan, RankSlicesTileTheGlobalBatch) {
  for (int world : {1, 2, 4}) {
    BatchPlan plan = *BatchPlan::Create(Iota(777), 64, 11, world);
    for (size_t step : {0u, 5u, 12u, 40u}) {
      std::vector<uint32_t> joined;
      for (int rank = 0; rank < world; ++rank) {
        std::vector<uint32_t> slice = plan.RankSlice(step, rank);
        EXPECT_EQ(slice.size(), 64u / world);
        joined.insert(joined.end(), slice.begin(), slice.end());
      }
      EXPECT_EQ(joined, plan.GlobalBatch(step)) << "world " << world << " step " << step;
    }
  }
}

TEST(BatchPlan, GlobalOrderDoesNotDependOnWorldSize) {
  BatchPlan one = *BatchPlan::Create(Iota(500), 40, 9, 1);
  BatchPlan four = *BatchPlan::Create(Iota(500), 40, 9, 4);
  for (size_t step = 0; step < 30; ++step) EXPECT_EQ(one.GlobalBatch(step), four.GlobalBatch(step));
}

TEST(BatchPlan, ARecreatedPlanResumesWithTheSameBatches) {
  // A run restarted at step 17 builds its plan again from the spec; nothing else carries over.
  std::vector<uint32_t> subset = *NestedSubset(60000, 3000, 21);
  BatchPlan first = *BatchPlan::Create(subset, 128, 21, 2);
  std::vector<std::vector<uint32_t>> uninterrupted;
  for (size_t step = 0; step < 60; ++step) uninterrupted.push_back(first.RankSlice(step, 1));
  BatchPlan resumed = *BatchPlan::Create(*NestedSubset(60000, 3000, 21), 128, 21, 2);
  for (size_t step = 17; step < 60; ++step)
    EXPECT_EQ(resumed.RankSlice(step, 1), uninterrupted[step]);
}

ImageView View(const std::vector<uint8_t>& pixels, int h, int w, int c) {
  return ImageView{pixels.data(), h, w, c};
}

AugmentOptions Identity(int resolution) {
  AugmentOptions options;
  options.resolution = resolution;
  options.mean = {0.f, 0.f, 0.f};
  options.std = {1.f, 1.f, 1.f};
  return options;
}

TEST(Augment, SameSizeEvalIsAnExactCopyReplicatedToThreeChannels) {
  std::vector<uint8_t> pixels(6 * 5);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 8);
  AugmentOptions options = Identity(6);
  options.resolution = 6;
  // 6x5 -> 6x6 is a resize; use a square image for the copy.
  std::vector<uint8_t> square(36);
  for (size_t i = 0; i < 36; ++i) square[i] = static_cast<uint8_t>(i * 7);
  std::vector<float> out(3 * 36);
  AugmentInto(View(square, 6, 6, 1), options, false, 0, out.data());
  for (int c = 0; c < 3; ++c) {
    for (int i = 0; i < 36; ++i) ASSERT_FLOAT_EQ(out[c * 36 + i], square[i] / 255.f);
  }
}

TEST(Augment, NormalisesPerChannel) {
  std::vector<uint8_t> rgb = {255, 0, 51};  // one pixel
  AugmentOptions options;
  options.resolution = 1;
  options.mean = {0.5f, 0.f, 0.1f};
  options.std = {0.25f, 1.f, 0.5f};
  std::vector<float> out(3);
  AugmentInto(View(rgb, 1, 1, 3), options, false, 0, out.data());
  EXPECT_FLOAT_EQ(out[0], 2.f);
  EXPECT_FLOAT_EQ(out[1], 0.f);
  EXPECT_NEAR(out[2], 0.2f, 1e-6);
}

TEST(Augment, BilinearUpsamplingMatchesTorchOnARamp) {
  // A 1x2 row [0, 255] stretched to 4 wide: torch (align_corners=false) gives
  // [0, 0.25, 0.75, 1] * 255; the rows repeat.
  std::vector<uint8_t> ramp = {0, 255, 0, 255};
  std::vector<float> out(3 * 16);
  AugmentInto(View(ramp, 2, 2, 1), Identity(4), false, 0, out.data());
  const float expected[4] = {0.f, 0.25f, 0.75f, 1.f};
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 4; ++x) EXPECT_NEAR(out[y * 4 + x], expected[x], 1e-6) << y << "," << x;
  }
}

TEST(Augment, PaddedCropShiftsWithZerosAndFlipMirrors) {
  std::vector<uint8_t> image(16);
  for (int i = 0; i < 16; ++i) image[i] = static_cast<uint8_t>(10 + i);
  AugmentOptions options = Identity(4);
  options.crop_padding = 2;
  options.flip = true;
  std::set<std::vector<float>> distinct;
  for (uint64_t example = 0; example < 200; ++example) {
    std::vector<float> out(48);
    AugmentInto(View(image, 4, 4, 1), options, true, AugmentKey(1, 0, example), out.data());
    // Every output is the image shifted by (dy, dx) in [-2, 2] with zeros, maybe mirrored.
    bool matched = false;
    for (int dy = -2; dy <= 2 && !matched; ++dy) {
      for (int dx = -2; dx <= 2 && !matched; ++dx) {
        for (bool mirror : {false, true}) {
          bool all = true;
          for (int y = 0; y < 4 && all; ++y) {
            for (int x = 0; x < 4 && all; ++x) {
              int sx = (mirror ? 3 - x : x) + dx, sy = y + dy;
              float want =
                  (sy >= 0 && sy < 4 && sx >= 0 && sx < 4) ? image[sy * 4 + sx] / 255.f : 0.f;
              all = std::fabs(out[y * 4 + x] - want) < 1e-6;
            }
          }
          if (all) matched = true;
        }
      }
    }
    EXPECT_TRUE(matched) << "example " << example;
    distinct.insert(out);
  }
  EXPECT_GT(distinct.size(), 30u);  // 50 possible outcomes
}

TEST(Augment, RandomnessIsAPureFunctionOfSeedEpochAndExample) {
  std::vector<uint8_t> image(28 * 28);
  for (size_t i = 0; i < image.size(); ++i) image[i] = static_cast<uint8_t>(i % 251);
  AugmentOptions options = Identity(28);
  options.crop_padding = 4;
  options.flip = true;
  auto run = [&](uint64_t seed, uint64_t epoch, uint64_t example) {
    std::vector<float> out(3 * 28 * 28);
    AugmentInto(View(image, 28, 28, 1), options, true, AugmentKey(seed, epoch, example),
                out.data());
    return out;
  };
  EXPECT_EQ(run(1, 2, 3), run(1, 2, 3));
  int differing = 0;
  for (uint64_t e = 0; e < 10; ++e) differing += run(1, e, 3) != run(1, e + 10, 3);
  EXPECT_GT(differing, 5);
  // Evaluation ignores the key.
  std::vector<float> a(3 * 28 * 28), b(3 * 28 * 28);
  AugmentInto(View(image, 28, 28, 1), options, false, 1, a.data());
  AugmentInto(View(image, 28, 28, 1), options, false, 2, b.data());
  EXPECT_EQ(a, b);
}

TEST(Augment, ShorterSideCropKeepsAspectAndCentresInEval) {
  // 20 tall x 40 wide, value = column index * 6: after resizing the shorter side to 10 the
  // image is 10 x 20; the centre 10 x 10 crop covers source columns 10..29.
  std::vector<uint8_t> image(20 * 40);
  for (int y = 0; y < 20; ++y) {
    for (int x = 0; x < 40; ++x) image[y * 40 + x] = static_cast<uint8_t>(x * 6);
  }
  AugmentOptions options = Identity(10);
  options.resize = ResizeMode::kShorterSideCrop;
  options.resize_ratio = 1.0;
  std::vector<float> out(300);
  AugmentInto(View(image, 20, 40, 1), options, false, 0, out.data());
  // Output column x samples source column 10 + 2x + 0.5 -> (60 + 12x + 3) / 255.
  for (int x = 0; x < 10; ++x) EXPECT_NEAR(out[5 * 10 + x], (63 + 12 * x) / 255.f, 1e-5) << x;
  // Training crops vary along the long axis only.
  std::set<float> first_columns;
  for (uint64_t k = 0; k < 50; ++k) {
    AugmentInto(View(image, 20, 40, 1), options, true, AugmentKey(0, 0, k), out.data());
    first_columns.insert(out[0]);
  }
  EXPECT_GT(first_columns.size(), 5u);
}

TEST(Augment, OptionsAreValidated) {
  AugmentOptions options;
  EXPECT_FALSE(ValidateAugmentOptions(options).ok());
  options.resolution = 8;
  EXPECT_TRUE(ValidateAugmentOptions(options).ok());
  options.std[1] = 0.f;
  EXPECT_NE(ValidateAugmentOptions(options).message().find("augment.std"), std::string::npos);
}

}  // namespace
}  // namespace vitscale::data
