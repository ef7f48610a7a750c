// Packed datasets: packing (folders, dense sets), reading back byte for byte, plain-tar
// compatibility, resuming after a kill -9, checking, and clear errors for damaged packs.
#include "data/shards.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "common/files.h"
#include "data/datasets.h"
#include "data/order.h"
#include "data/readers.h"
#include "sweep/datasets.h"
#include "tests/data/data_test_util.h"

namespace vitscale::data {
namespace {

namespace fs = std::filesystem;
using testing::Photo;
using testing::TempDir;
using testing::WriteBytes;
using testing::WritePhotoFolder;

PackOptions Options(int64_t shard_size, int threads = 1) {
  PackOptions options;
  options.shard_size = shard_size;
  options.threads = threads;
  return options;
}

Dataset PackAndLoad(const std::string& source_dir, const std::string& dest, int64_t shard_size) {
  Expected<Dataset> source = LoadPackSource(source_dir, DataRoots());
  EXPECT_TRUE(source.ok()) << source.status().ToString();
  Expected<PackResult> packed = PackDataset(*source, source_dir, dest, Options(shard_size, 2));
  EXPECT_TRUE(packed.ok()) << packed.status().ToString();
  Expected<Dataset> loaded = LoadDataset("shards:" + dest);
  EXPECT_TRUE(loaded.ok()) << loaded.status().ToString();
  return loaded.ok() ? *loaded : Dataset();
}

std::string Shell(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  pclose(pipe);
  return out;
}

TEST(Pack, FolderSamplesReadBackByteForByteAndPlainTarListsThem) {
  TempDir dir;
  WritePhotoFolder(dir / "src", "train", 3, 7);
  WritePhotoFolder(dir / "src", "val", 3, 2);
  Expected<Dataset> source = LoadPackSource(dir / "src", DataRoots());
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  Dataset packed = PackAndLoad(dir / "src", dir / "packed", 4);
  ASSERT_EQ(packed.train.size(), 21u);
  ASSERT_EQ(packed.test.size(), 6u);
  EXPECT_EQ(packed.class_names, source->class_names);
  EXPECT_EQ(packed.train.labels(), source->train.labels());
  EXPECT_EQ(packed.test.labels(), source->test.labels());
  EXPECT_EQ(packed.height, 0);  // photos of varying size
  for (size_t i = 0; i < packed.train.size(); ++i) {
    std::string a, b;
    ASSERT_TRUE(packed.train.ReadEncoded(i, &a).ok());
    ASSERT_TRUE(source->train.ReadEncoded(i, &b).ok());
    EXPECT_EQ(a, b) << packed.train.source(i);
  }
  // 21 train samples in shards of 4: six shards, the last of one sample.
  Expected<Manifest> manifest = ReadManifest(dir / "packed");
  ASSERT_TRUE(manifest.ok());
  ASSERT_EQ(manifest->train.shards.size(), 6u);
  EXPECT_EQ(manifest->train.shards.back().samples, 1);
  EXPECT_EQ(manifest->test.shards.size(), 2u);
  // WebDataset's layout: <key>.jpg and <key>.cls pairs that plain tar lists and extracts.
  const std::string listing = Shell("tar -tf " + (dir / "packed/train-000001.tar"));
  EXPECT_EQ(listing,
            "000000004.jpg\n000000004.cls\n000000005.jpg\n000000005.cls\n000000006.jpg\n"
            "000000006.cls\n000000007.jpg\n000000007.cls\n");
  EXPECT_EQ(Shell("tar -xOf " + (dir / "packed/train-000001.tar") + " 000000005.cls"),
            std::to_string(source->train.label(5)));
  std::string image;
  ASSERT_TRUE(source->train.ReadEncoded(5, &image).ok());
  EXPECT_EQ(Shell("tar -xOf " + (dir / "packed/train-000001.tar") + " 000000005.jpg"), image);
  Expected<CheckReport> report = CheckPacked(dir / "packed", {true, 2, 100, nullptr});
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_TRUE(report->problems.empty()) << report->problems.front();
  EXPECT_EQ(report->samples, 27);
}

TEST(Pack, DenseDatasetsBecomeLosslessPngWithTheirShapeAndStatistics) {
  TempDir dir;
  // A CIFAR-10-format catalog dataset under a datasets dir the test owns.
  std::string records;
  for (int split = 0; split < 2; ++split) {
    for (int i = 0; i < 6; ++i) {
      records.push_back(static_cast<char>(i % 10));
      for (int p = 0; p < 3072; ++p) records.push_back(static_cast<char>((p * 7 + i * 13) % 256));
    }
  }
  for (const std::string& name : CifarFileNames(CifarKind::kCifar10, true)) {
    WriteBytes(dir / ("sets/cifar10/" + name), records.substr(0, 6 * 3073));
  }
  WriteBytes(dir / "sets/cifar10/test_batch.bin", records.substr(6 * 3073));
  DataRoots roots;
  roots.datasets_dir = dir / "sets";
  Expected<Dataset> source = LoadPackSource("cifar10", roots);
  ASSERT_TRUE(source.ok()) << source.status().ToString();
  ASSERT_EQ(source->train.size(), 30u);
  ASSERT_TRUE(PackDataset(*source, "cifar10", dir / "packed", Options(8)).ok());
  Expected<Dataset> packed = LoadDataset("shards:" + (dir / "packed"));
  ASSERT_TRUE(packed.ok()) << packed.status().ToString();
  EXPECT_EQ(packed->height, 32);
  EXPECT_EQ(packed->channels, 3);
  EXPECT_EQ(packed->mean, source->mean);
  EXPECT_EQ(packed->std, source->std);
  EXPECT_EQ(DefaultAugment(*packed, 32).resize, ResizeMode::kStretch);
  EXPECT_EQ(DefaultAugment(*packed, 32).crop_padding, DefaultAugment(*source, 32).crop_padding);
  Image a, b;
  for (size_t i = 0; i < source->train.size(); ++i) {
    Expected<ImageView> x = source->train.Get(i, &a);
    Expected<ImageView> y = packed->train.Get(i, &b);
    ASSERT_TRUE(x.ok() && y.ok());
    ASSERT_EQ(y->height * y->width * y->channels, 32 * 32 * 3);
    EXPECT_TRUE(std::equal(x->pixels, x->pixels + 3072, y->pixels)) << "sample " << i;
  }
  // A packed copy at the catalog's place takes precedence over the release's layout.
  fs::rename(dir / "packed", dir / "sets/cifar10/packed-copy");
  for (const auto& entry : fs::directory_iterator(dir / "sets/cifar10/packed-copy")) {
    fs::rename(entry.path(), dir / ("sets/cifar10/" + entry.path().filename().string()));
  }
  Expected<Dataset> by_name = LoadDataset("cifar10", roots);
  ASSERT_TRUE(by_name.ok()) << by_name.status().ToString();
  EXPECT_FALSE(by_name->train.dense());
  EXPECT_EQ(by_name->train.labels(), source->train.labels());
}

// kill -9 in the middle of a pack, then the same command again: the finished shards stay
// as they are (same inode), the half-written one and the rest are written, and the result is
// byte for byte what one uninterrupted pack makes.
TEST(Pack, ResumesAfterKillKeepingFinishedShards) {
  TempDir dir;
  WritePhotoFolder(dir / "src", "train", 2, 10);
  Expected<Dataset> source = LoadPackSource(dir / "src", DataRoots());
  ASSERT_TRUE(source.ok());
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    PackOptions options = Options(3);
    options.progress = [](const PackProgress& p) {
      if (p.shards_done == 2) raise(SIGKILL);
    };
    (void)PackDataset(*source, dir / "src", dir / "packed", options);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_FALSE(fs::exists(dir / "packed/manifest.json"));
  EXPECT_TRUE(fs::exists(dir / "packed/pack-plan.json"));
  // What a kill a moment later leaves: the third shard's tar renamed but no index, and a
  // fourth's temp file.
  WriteBytes(dir / "packed/train-000002.tar", "half");
  WriteBytes(dir / "packed/train-000003.tar.tmp.999", "half");
  struct stat first_before, first_after;
  ASSERT_EQ(stat((dir / "packed/train-000000.tar").c_str(), &first_before), 0);

  Expected<PackResult> resumed = PackDataset(*source, dir / "src", dir / "packed", Options(3, 2));
  ASSERT_TRUE(resumed.ok()) << resumed.status().ToString();
  EXPECT_EQ(resumed->progress.shards_kept, 2);
  EXPECT_EQ(resumed->progress.shards_total, 7);
  ASSERT_EQ(stat((dir / "packed/train-000000.tar").c_str(), &first_after), 0);
  EXPECT_EQ(first_before.st_ino, first_after.st_ino);
  EXPECT_FALSE(fs::exists(dir / "packed/train-000003.tar.tmp.999"));
  EXPECT_FALSE(fs::exists(dir / "packed/pack-plan.json"));

  ASSERT_TRUE(PackDataset(*source, dir / "src", dir / "fresh", Options(3)).ok());
  EXPECT_EQ(*ReadFile(dir / "packed/manifest.json"), *ReadFile(dir / "fresh/manifest.json"));
  Expected<CheckReport> report = CheckPacked(dir / "packed", CheckOptions());
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report->problems.empty());
}

TEST(Pack, RefusesToMixSourcesOrOverwrite) {
  TempDir dir;
  WritePhotoFolder(dir / "a", "train", 2, 3);
  WritePhotoFolder(dir / "b", "train", 2, 4);
  Expected<Dataset> a = LoadPackSource(dir / "a", DataRoots());
  Expected<Dataset> b = LoadPackSource(dir / "b", DataRoots());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->test.size(), 0u);  // no test/ or val/: one split
  // An unfinished pack of a, continued with b.
  WriteBytes(dir / "dest/pack-plan.json", "{}");
  Expected<PackResult> mixed = PackDataset(*b, dir / "b", dir / "dest", Options(2));
  ASSERT_FALSE(mixed.ok());
  EXPECT_EQ(mixed.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(mixed.status().message().find("another source"), std::string::npos);
  WriteBytes(dir / "other/notes.txt", "mine");
  Expected<PackResult> not_empty = PackDataset(*a, dir / "a", dir / "other", Options(2));
  ASSERT_FALSE(not_empty.ok());
  EXPECT_NE(not_empty.status().message().find("notes.txt"), std::string::npos);
  ASSERT_TRUE(PackDataset(*a, dir / "a", dir / "done", Options(2)).ok());
  Expected<PackResult> again = PackDataset(*a, dir / "a", dir / "done", Options(2));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists);
}

class DamagedPack : public ::testing::Test {
 protected:
  void SetUp() override {
    WritePhotoFolder(dir_ / "src", "train", 2, 5);
    Expected<Dataset> source = LoadPackSource(dir_ / "src", DataRoots());
    ASSERT_TRUE(source.ok());
    ASSERT_TRUE(PackDataset(*source, "src", packed(), Options(4)).ok());
  }
  std::string packed() const { return dir_ / "packed"; }
  std::vector<std::string> Problems(bool decode = false) {
    CheckOptions options;
    options.decode = decode;
    Expected<CheckReport> report = CheckPacked(packed(), options);
    EXPECT_TRUE(report.ok()) << report.status().ToString();
    return report.ok() ? report->problems : std::vector<std::string>{};
  }
  TempDir dir_;
};

TEST_F(DamagedPack, TruncatedShardIsNamedByLoadAndCheck) {
  const std::string tar = packed() + "/train-000001.tar";
  fs::resize_file(tar, fs::file_size(tar) / 2);
  Expected<Dataset> loaded = LoadDataset("shards:" + packed());
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kCorruption);
  EXPECT_NE(loaded.status().message().find("train-000001.tar: truncated"), std::string::npos)
      << loaded.status().message();
  std::vector<std::string> problems = Problems();
  ASSERT_FALSE(problems.empty());
  EXPECT_NE(problems[0].find("train-000001.tar"), std::string::npos) << problems[0];
}

TEST_F(DamagedPack, MissingIndexIsNamed) {
  fs::remove(packed() + "/train-000002.idx");
  Expected<Dataset> loaded = LoadDataset("shards:" + packed());
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kNotFound);
  EXPECT_NE(loaded.status().message().find("train-000002.idx: missing index of shard "
                                           "train-000002.tar"),
            std::string::npos)
      << loaded.status().message();
  std::vector<std::string> problems = Problems();
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("train-000002.idx: missing"), std::string::npos) << problems[0];
}

TEST_F(DamagedPack, FlippedByteAndLabelOutOfRangeAreNamedWithTheSample) {
  // A bit flip inside shard 0's second image: the checksum catches it.
  const std::string tar = packed() + "/train-000000.tar";
  std::string bytes = *ReadFile(tar);
  Expected<ShardIndex> index = DecodeIndex(*ReadFile(packed() + "/train-000000.idx"), "idx");
  ASSERT_TRUE(index.ok());
  bytes[index->entries[1].offset + 300] ^= 0x40;
  ASSERT_TRUE(WriteFileAtomically(tar, bytes).ok());
  // Shard 1's third label rewritten to 7 in its index (2 classes).
  ShardIndex relabelled = *DecodeIndex(*ReadFile(packed() + "/train-000001.idx"), "idx");
  relabelled.entries[2].label = 7;
  ASSERT_TRUE(WriteFileAtomically(packed() + "/train-000001.idx", EncodeIndex(relabelled)).ok());

  std::vector<std::string> problems = Problems();
  auto has = [&](const std::string& text) {
    for (const std::string& p : problems) {
      if (p.find(text) != std::string::npos) return true;
    }
    return false;
  };
  EXPECT_TRUE(has("train-000000.tar: SHA-256 differs")) << ::testing::PrintToString(problems);
  EXPECT_TRUE(has("train-000001.tar sample 2 (key 000000006): label 7 is out of range [0, 2)"))
      << ::testing::PrintToString(problems);
  EXPECT_TRUE(has("train-000001.idx: does not match its checksum"));

  Expected<Dataset> loaded = LoadDataset("shards:" + packed());
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find(
                "train-000001.tar sample 2 (key 000000006): label 7 is out of range [0, 2)"),
            std::string::npos)
      << loaded.status().message();
}

TEST(CheckDecode, CorruptJpegInsideAShardIsNamed) {
  TempDir dir;
  WritePhotoFolder(dir / "src", "train", 2, 3);
  // Valid JPEG start, then garbage: packs (the signature is right), fails to decode.
  std::string good = *EncodeJpeg(Photo(40, 40, 3, 1));
  WriteBytes(dir / "src/train/class1/9.jpg", good.substr(0, 200) + std::string(300, 'x'));
  Expected<Dataset> source = LoadPackSource(dir / "src", DataRoots());
  ASSERT_TRUE(source.ok());
  ASSERT_TRUE(PackDataset(*source, "src", dir / "packed", Options(10)).ok());
  CheckOptions options;
  EXPECT_TRUE(CheckPacked(dir / "packed", options)->problems.empty());
  options.decode = true;
  std::vector<std::string> problems = CheckPacked(dir / "packed", options)->problems;
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("train-000000.tar sample 6 (key 000000006): not a readable JPEG"),
            std::string::npos)
      << problems[0];
}

TEST(ImageFolder, EmptyClassFolderIsNamed) {
  TempDir dir;
  WritePhotoFolder(dir / "src", "train", 2, 2);
  fs::create_directories(dir / "src/train/class2");
  Expected<Dataset> source = LoadPackSource(dir / "src", DataRoots());
  ASSERT_FALSE(source.ok());
  EXPECT_NE(source.status().message().find("class2: an empty class folder"), std::string::npos)
      << source.status().message();
}

TEST(Catalog, SweepsNameAPackedDatasetByPath) {
  TempDir dir;
  WritePhotoFolder(dir / "src", "train", 3, 4);
  WritePhotoFolder(dir / "src", "test", 3, 1);
  Expected<Dataset> source = LoadPackSource(dir / "src", DataRoots());
  ASSERT_TRUE(PackDataset(*source, "src", dir / "packed", Options(5)).ok());
  Expected<sweep::DatasetInfo> info = sweep::LookupDataset("shards:" + (dir / "packed"));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->train_size, 12);
  EXPECT_EQ(info->test_size, 3);
  EXPECT_EQ(info->num_classes, 3);
  Expected<sweep::DatasetInfo> missing = sweep::LookupDataset("shards:" + (dir / "nothing"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("vitscale data pack"), std::string::npos);
}

// Nested subsets over a packed dataset: the n-subset is a prefix of the larger ones, and
// (seed, step, rank) order does not depend on the world size, as for any split.
TEST(Catalog, NestedSubsetsAndBatchOrderOverShards) {
  TempDir dir;
  WritePhotoFolder(dir / "src", "train", 4, 10);
  Expected<Dataset> source = LoadPackSource(dir / "src", DataRoots());
  ASSERT_TRUE(PackDataset(*source, "src", dir / "packed", Options(7)).ok());
  Expected<Dataset> packed = LoadDataset("shards:" + (dir / "packed"));
  ASSERT_TRUE(packed.ok());
  std::vector<uint32_t> small = *NestedSubset(packed->train.size(), 12, 3);
  std::vector<uint32_t> large = *NestedSubset(packed->train.size(), 30, 3);
  EXPECT_TRUE(std::equal(small.begin(), small.end(), large.begin()));
  EXPECT_FALSE(NestedSubset(packed->train.size(), 41, 3).ok());
  BatchPlan one = *BatchPlan::Create(large, 8, 5, 1);
  BatchPlan two = *BatchPlan::Create(large, 8, 5, 2);
  for (size_t step = 0; step < 7; ++step) {
    std::vector<uint32_t> joined = two.RankSlice(step, 0);
    std::vector<uint32_t> second = two.RankSlice(step, 1);
    joined.insert(joined.end(), second.begin(), second.end());
    EXPECT_EQ(joined, one.RankSlice(step, 0));
  }
}

}  // namespace
}  // namespace vitscale::data
