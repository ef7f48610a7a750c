// The decode pipeline on packed data: crop windows, region decoding at reduced DCT scale,
// determinism over threads, resumes and rank counts, bad samples, and the bounded buffers.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "data/batch_memory.h"
#include "data/datasets.h"
#include "data/loader.h"
#include "data/shards.h"
#include "tests/data/data_test_util.h"

namespace vitscale::data {
namespace {

using testing::Photo;
using testing::TempDir;
using testing::WriteBytes;
using testing::WritePhotoFolder;

AugmentOptions Inception(int resolution) {
  AugmentOptions options;
  options.resolution = resolution;
  options.resize = ResizeMode::kInceptionCrop;
  options.flip = true;
  return options;
}

TEST(InceptionCrop, WindowsFollowTheAreaAndRatioRangesAndTheKey) {
  const AugmentOptions options = Inception(224);
  std::set<std::pair<int, int>> sizes;
  int mirrored = 0;
  for (uint64_t example = 0; example < 500; ++example) {
    const uint64_t key = AugmentKey(7, 0, example);
    CropWindow w = ComputeCropWindow(375, 500, options, true, key);
    EXPECT_GE(w.top, 0);
    EXPECT_GE(w.left, 0);
    EXPECT_LE(w.top + w.height, 375);
    EXPECT_LE(w.left + w.width, 500);
    const double area = w.height * w.width / (375.0 * 500.0);
    EXPECT_GE(area, 0.079);
    EXPECT_LE(area, 1.0);
    const double ratio = w.width / w.height;
    EXPECT_GE(ratio, 0.74);
    EXPECT_LE(ratio, 1.35);
    sizes.insert({static_cast<int>(w.height), static_cast<int>(w.width)});
    mirrored += w.mirror;
    CropWindow again = ComputeCropWindow(375, 500, options, true, key);
    EXPECT_EQ(again.top, w.top);
    EXPECT_EQ(again.width, w.width);
  }
  EXPECT_GT(sizes.size(), 400u);
  EXPECT_GT(mirrored, 200);
  EXPECT_LT(mirrored, 300);
  // Evaluation: the centre crop of 1/1.14 of the shorter side, no draws.
  CropWindow eval = ComputeCropWindow(375, 500, options, false, 123);
  EXPECT_NEAR(eval.height, 375 / 1.14, 1.0);
  EXPECT_NEAR(eval.left + eval.width / 2, 250, 1.0);
  EXPECT_FALSE(eval.mirror);
}

// Decoding only the window, at 1/2, 1/4 or 1/8 scale, gives what decoding everything and then
// resizing gives, up to the resampling difference of the two routes.
TEST(RegionDecode, MatchesAFullDecodeAtEveryScale) {
  const std::string jpeg = *EncodeJpeg(Photo(300, 400, 3, 3), 95);
  Expected<Image> full = DecodeJpeg(jpeg, "photo");
  ASSERT_TRUE(full.ok());
  const ImageView view{full->pixels.data(), full->height, full->width, full->channels};
  for (int resolution : {160, 96, 48, 24}) {  // scales 1, 2 (window ~263), 4, 8
    for (bool train : {false, true}) {
      AugmentOptions options = Inception(resolution);
      options.min_area = 0.5;
      const size_t n = 3 * static_cast<size_t>(resolution) * resolution;
      for (uint64_t key = 0; key < 4; ++key) {
        std::vector<float> expected(n), got(n);
        AugmentInto(view, options, train, key, expected.data());
        DecodeScratch scratch;
        ASSERT_TRUE(
            DecodeAugmentInto(jpeg, "photo", options, train, key, got.data(), &scratch).ok());
        double sum = 0;
        for (size_t i = 0; i < n; ++i) sum += std::abs(expected[i] - got[i]);
        // Normalised with std 0.5: 0.04 is about 5 of 255 grey levels on average.
        EXPECT_LT(sum / n, 0.04) << "resolution " << resolution << " train " << train;
        if (resolution == 160 && !train) {
          EXPECT_LT(sum / n, 0.01);  // full scale: the same pixels
        }
      }
    }
  }
}

TEST(RegionDecode, CorruptAndTruncatedJpegsAreErrorsNamingTheSource) {
  const std::string jpeg = *EncodeJpeg(Photo(64, 64, 3, 1), 90);
  std::vector<float> out(3 * 32 * 32);
  DecodeScratch scratch;
  Status cut = DecodeAugmentInto(jpeg.substr(0, jpeg.size() / 2), "shard-7 sample 3", Inception(32),
                                 false, 0, out.data(), &scratch);
  EXPECT_EQ(cut.code(), StatusCode::kCorruption);
  EXPECT_NE(cut.message().find("shard-7 sample 3: not a readable JPEG"), std::string::npos)
      << cut.message();
  Status text =
      DecodeAugmentInto("not an image", "x.jpg", Inception(32), false, 0, out.data(), &scratch);
  EXPECT_NE(text.message().find("x.jpg: neither a JPEG nor a PNG"), std::string::npos);
}

class PackedPhotos : public ::testing::Test {
 protected:
  void SetUp() override {
    WritePhotoFolder(dir_ / "src", "train", 4, 12);
    source_ = *LoadPackSource(dir_ / "src", DataRoots());
    PackOptions options;
    options.shard_size = 10;
    ASSERT_TRUE(PackDataset(source_, "src", dir_ / "packed", options).ok());
    Expected<Dataset> packed = LoadDataset("shards:" + (dir_ / "packed"));
    ASSERT_TRUE(packed.ok()) << packed.status().ToString();
    packed_ = *packed;
    plan_ = std::make_unique<BatchPlan>(
        *BatchPlan::Create(*NestedSubset(packed_.train.size(), 40, 1), 8, 11, 2));
  }

  LoaderOptions Options(int threads) const {
    LoaderOptions options;
    options.augment = DefaultAugment(packed_, 24);
    options.threads = threads;
    options.prefetch = 2;
    return options;
  }

  std::vector<Batch> Collect(const Split& split, const BatchPlan& plan, int rank, size_t first,
                             size_t count, LoaderOptions options) {
    auto loader = Loader::Create(split, plan, rank, first, options);
    EXPECT_TRUE(loader.ok()) << loader.status().ToString();
    std::vector<Batch> batches;
    for (size_t i = 0; i < count; ++i) {
      Expected<Batch> batch = (*loader)->Next();
      EXPECT_TRUE(batch.ok()) << batch.status().ToString();
      if (!batch.ok()) break;
      // Copies: the loader reuses its buffers.
      batches.push_back({batch->step, batch->images.clone(), batch->labels.clone()});
    }
    return batches;
  }

  TempDir dir_;
  Dataset source_, packed_;
  std::unique_ptr<BatchPlan> plan_;
};

TEST_F(PackedPhotos, BatchesDependOnlyOnSeedStepAndRank) {
  std::vector<Batch> one = Collect(packed_.train, *plan_, 1, 0, 8, Options(1));
  std::vector<Batch> three = Collect(packed_.train, *plan_, 1, 0, 8, Options(3));
  std::vector<Batch> resumed = Collect(packed_.train, *plan_, 1, 5, 3, Options(2));
  std::vector<Batch> from_folder = Collect(source_.train, *plan_, 1, 0, 8, Options(2));
  ASSERT_EQ(one.size(), 8u);
  for (size_t s = 0; s < 8; ++s) {
    EXPECT_EQ(one[s].step, s);
    EXPECT_TRUE(at::equal(one[s].images, three[s].images)) << "step " << s;
    EXPECT_TRUE(at::equal(one[s].labels, three[s].labels));
    EXPECT_TRUE(at::equal(one[s].images, from_folder[s].images)) << "step " << s;
    if (s >= 5) {
      EXPECT_TRUE(at::equal(one[s].images, resumed[s - 5].images)) << "step " << s;
    }
  }
  // One rank with the whole batch sees both ranks' halves, in rank order.
  BatchPlan single =
      *BatchPlan::Create(*NestedSubset(packed_.train.size(), 40, 1), 8, 11, /*world_size=*/1);
  std::vector<Batch> whole = Collect(packed_.train, single, 0, 0, 8, Options(2));
  std::vector<Batch> rank0 = Collect(packed_.train, *plan_, 0, 0, 8, Options(2));
  for (size_t s = 0; s < 8; ++s) {
    EXPECT_TRUE(at::equal(whole[s].images, at::cat({rank0[s].images, one[s].images})));
  }
  // Epochs differ: step 5 (epoch 1) is not step 0 (epoch 0) again.
  EXPECT_FALSE(at::equal(one[0].images, one[5].images));
}

TEST_F(PackedPhotos, BuffersAreBoundedAndReused) {
  EXPECT_EQ(BatchMemoryIsPinned(), at::hasCUDA());
  auto loader = Loader::Create(packed_.train, *plan_, 0, 0, Options(2));
  ASSERT_TRUE(loader.ok());
  std::set<const void*> buffers;
  for (int i = 0; i < 12; ++i) {
    Expected<Batch> batch = (*loader)->Next();
    ASSERT_TRUE(batch.ok());
    buffers.insert(batch->images.data_ptr());
  }
  EXPECT_LE(buffers.size(), 4u);  // prefetch + 2
}

TEST_F(PackedPhotos, BadSamplesAreReplacedCountedAndLoggedUpToTheLimit) {
  // Two corrupt images in the source folder, repacked.
  const std::string good = *EncodeJpeg(Photo(40, 40, 3, 1));
  WriteBytes(dir_ / "src/train/class0/3.jpg", good.substr(0, 200) + std::string(300, 'x'));
  WriteBytes(dir_ / "src/train/class2/5.jpg", good.substr(0, 150));
  Dataset source = *LoadPackSource(dir_ / "src", DataRoots());
  ASSERT_TRUE(PackDataset(source, "src", dir_ / "bad", PackOptions()).ok());
  Dataset bad = *LoadDataset("shards:" + (dir_ / "bad"));
  BatchPlan plan = *BatchPlan::Create(*NestedSubset(bad.train.size(), 0, 1), 48, 11, 1);

  // No tolerance: the step that meets the first one fails, naming shard and sample.
  LoaderOptions strict = Options(2);
  auto loader = Loader::Create(bad.train, plan, 0, 0, strict);
  Expected<Batch> failed = (*loader)->Next();
  ASSERT_FALSE(failed.ok());
  EXPECT_NE(failed.status().message().find("train-000000.tar sample "), std::string::npos)
      << failed.status().message();
  EXPECT_NE(failed.status().message().find("not a readable JPEG"), std::string::npos);

  // Tolerance 2: replaced, counted, logged once each; the batch stays full and deterministic.
  std::vector<std::string> logged;
  LoaderOptions tolerant = Options(3);
  tolerant.max_bad_samples = 2;
  tolerant.log = [&](const std::string& line) { logged.push_back(line); };
  std::vector<Batch> a = Collect(bad.train, plan, 0, 0, 2, tolerant);
  tolerant.threads = 1;
  tolerant.log = nullptr;
  std::vector<Batch> b = Collect(bad.train, plan, 0, 0, 2, tolerant);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_TRUE(at::equal(a[0].images, b[0].images));
  EXPECT_TRUE(at::equal(a[1].images, b[1].images));
  ASSERT_EQ(logged.size(), 2u);  // each bad sample once, although both steps hold it
  EXPECT_NE(logged[0].find("skipped a bad sample (1 of at most 2)"), std::string::npos);
  // Class 0's "3.jpg" sorts sixth (0, 1, 10, 11, 2, 3, ...); class 2's "5.jpg" is 24 + 7.
  EXPECT_NE(logged[0].find("key 000000005"), std::string::npos) << logged[0];
  EXPECT_NE(logged[1].find("key 000000031"), std::string::npos) << logged[1];

  // Tolerance 1: the step that meets the second fails with both listed.
  tolerant.max_bad_samples = 1;
  auto limited = Loader::Create(bad.train, plan, 0, 0, tolerant);
  Expected<Batch> over = (*limited)->Next();
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.status().message().find("2 samples could not be read, more than "
                                         "run.max_bad_samples (1)"),
            std::string::npos)
      << over.status().message();
  EXPECT_NE(over.status().message().find("key 000000005"), std::string::npos);
  EXPECT_NE(over.status().message().find("key 000000031"), std::string::npos);
}

// A dense set packed and read back trains exactly as its source: same batches, bit for bit.
TEST(PackedDense, BatchesEqualTheSourceDataset) {
  TempDir dir;
  auto idx = [](std::vector<uint32_t> dims, const std::vector<uint8_t>& data) {
    std::string out = {0, 0, 8, static_cast<char>(dims.size())};
    for (uint32_t d : dims) {
      for (int shift : {24, 16, 8, 0}) out.push_back(static_cast<char>((d >> shift) & 0xFF));
    }
    out.append(data.begin(), data.end());
    return out;
  };
  for (const char* split : {"train", "t10k"}) {
    const uint32_t n = split[0] == 't' && split[1] == 'r' ? 60 : 20;
    std::vector<uint8_t> pixels(n * 28 * 28), labels(n);
    for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>((i * 37) % 251);
    for (uint32_t i = 0; i < n; ++i) labels[i] = static_cast<uint8_t>(i % 10);
    WriteBytes(dir / ("sets/fashion-mnist/" + std::string(split) + "-images-idx3-ubyte"),
               idx({n, 28, 28}, pixels));
    WriteBytes(dir / ("sets/fashion-mnist/" + std::string(split) + "-labels-idx1-ubyte"),
               idx({n}, labels));
  }
  DataRoots roots;
  roots.datasets_dir = dir / "sets";
  Dataset source = *LoadDataset("fashion-mnist", roots);
  ASSERT_TRUE(PackDataset(source, "fashion-mnist", dir / "packed", PackOptions()).ok());
  Dataset packed = *LoadDataset("shards:" + (dir / "packed"));
  const AugmentOptions augment = DefaultAugment(source, 28);
  const AugmentOptions packed_augment = DefaultAugment(packed, 28);
  EXPECT_EQ(packed_augment.crop_padding, augment.crop_padding);
  EXPECT_EQ(packed_augment.mean, augment.mean);
  BatchPlan plan = *BatchPlan::Create(*NestedSubset(60, 48, 2), 16, 3, 1);
  for (size_t step = 0; step < 6; ++step) {
    Batch a =
        *MakeBatch(source.train, plan.RankSlice(step, 0), augment, true, 3, plan.epoch_of(step), 2);
    Batch b = *MakeBatch(packed.train, plan.RankSlice(step, 0), packed_augment, true, 3,
                         plan.epoch_of(step), 1);
    EXPECT_TRUE(at::equal(a.images, b.images)) << "step " << step;
    EXPECT_TRUE(at::equal(a.labels, b.labels));
  }
}

}  // namespace
}  // namespace vitscale::data
