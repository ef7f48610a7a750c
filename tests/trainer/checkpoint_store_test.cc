#include "trainer/checkpoint_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/sha256.h"

namespace vitscale::trainer {
namespace {

namespace fs = std::filesystem;

class CheckpointStoreTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() /
            ("vitscale_ckpt_" + std::to_string(getpid()) + "_" +
             testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static std::map<std::string, std::string> Blobs(int64_t step) {
    std::string big(10000, '\0');
    for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 31 + step) & 0xff);
    return {{"model.pt", big}, {"state.json", "{\"step\": " + std::to_string(step) + "}"}};
  }

  std::string dir_;
};

TEST_F(CheckpointStoreTest, RoundTripIsByteIdentical) {
  auto store = CheckpointStore::Open(dir_, 3);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ(store->LoadNewest(nullptr).status().code(), StatusCode::kNotFound);
  Expected<std::string> manifest_sha = store->Save(5, Blobs(5));
  ASSERT_TRUE(manifest_sha.ok()) << manifest_sha.status().ToString();
  // What it returns is the hash of the manifest it wrote.
  EXPECT_EQ(*manifest_sha, *Sha256File(store->PathOf(5) + "/MANIFEST.json"));
  std::vector<std::string> warnings;
  auto checkpoint = store->LoadNewest(&warnings);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status().ToString();
  EXPECT_EQ(checkpoint->step, 5);
  EXPECT_EQ(checkpoint->blobs, Blobs(5));
  EXPECT_TRUE(warnings.empty());
}

TEST_F(CheckpointStoreTest, KeepsTheLastK) {
  auto store = CheckpointStore::Open(dir_, 2);
  ASSERT_TRUE(store.ok());
  for (int64_t step : {10, 20, 30, 40}) ASSERT_TRUE(store->Save(step, Blobs(step)).ok());
  EXPECT_EQ(store->Steps(), (std::vector<int64_t>{30, 40}));
  EXPECT_FALSE(fs::exists(store->PathOf(10)));
  // Saving a step again replaces it in place.
  ASSERT_TRUE(store->Save(40, Blobs(41)).ok());
  EXPECT_EQ(store->LoadNewest(nullptr)->blobs, Blobs(41));
}

TEST_F(CheckpointStoreTest, TruncatedNewestIsSkippedWithAWarning) {
  auto store = CheckpointStore::Open(dir_, 3);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(store->Save(1, Blobs(1)).ok());
  ASSERT_TRUE(store->Save(2, Blobs(2)).ok());
  fs::resize_file(fs::path(store->PathOf(2)) / "model.pt", 100);
  std::vector<std::string> warnings;
  auto checkpoint = store->LoadNewest(&warnings);
  ASSERT_TRUE(checkpoint.ok());
  EXPECT_EQ(checkpoint->step, 1);
  EXPECT_EQ(checkpoint->blobs, Blobs(1));
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("truncated"), std::string::npos) << warnings[0];
}

TEST_F(CheckpointStoreTest, CorruptOrTornCheckpointsAreSkipped) {
  auto store = CheckpointStore::Open(dir_, 5);
  ASSERT_TRUE(store.ok());
  for (int64_t step : {1, 2, 3, 4}) ASSERT_TRUE(store->Save(step, Blobs(step)).ok());
  {  // step 4: one flipped byte, same size
    std::fstream f(fs::path(store->PathOf(4)) / "model.pt",
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(1234);
    f.put('\x7f');
  }
  fs::remove(fs::path(store->PathOf(3)) / "MANIFEST.json");  // step 3: no manifest
  {                                                          // step 2: garbled manifest
    std::ofstream f(fs::path(store->PathOf(2)) / "MANIFEST.json", std::ios::trunc);
    f << "{\"step\": 2, \"blo";
  }
  std::vector<std::string> warnings;
  auto checkpoint = store->LoadNewest(&warnings);
  ASSERT_TRUE(checkpoint.ok());
  EXPECT_EQ(checkpoint->step, 1);
  ASSERT_EQ(warnings.size(), 3u);
  EXPECT_NE(warnings[0].find("SHA-256"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[1].find("MANIFEST.json"), std::string::npos) << warnings[1];
  EXPECT_NE(warnings[2].find("not a valid manifest"), std::string::npos) << warnings[2];
}

TEST_F(CheckpointStoreTest, OpenRemovesPartialCheckpointsOfAKilledWriter) {
  fs::create_directories(fs::path(dir_) / ".partial-step-0000000007-123");
  auto store = CheckpointStore::Open(dir_, 1);
  ASSERT_TRUE(store.ok());
  EXPECT_FALSE(fs::exists(fs::path(dir_) / ".partial-step-0000000007-123"));
  EXPECT_TRUE(store->Steps().empty());
}

TEST_F(CheckpointStoreTest, RejectsBadArguments) {
  EXPECT_EQ(CheckpointStore::Open(dir_, 0).status().code(), StatusCode::kInvalidArgument);
  auto store = CheckpointStore::Open(dir_, 1);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ(store->Save(1, {{"../escape", "x"}}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store->Save(1, {{"MANIFEST.json", "x"}}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(store->Steps().empty());
}

// Manifests the fuzzer (fuzz/manifest_fuzz.cc) and a hostile or damaged disk can produce: each
// is refused with the field named, and none may name a file outside the checkpoint.
TEST(ParseManifestTest, RefusesWhatIsNotAManifestAndNamesTheField) {
  const std::string sha(64, 'a');
  auto refused = [](const std::string& text) {
    Expected<Manifest> manifest = ParseManifest(text, "ckpt/MANIFEST.json");
    EXPECT_EQ(manifest.status().code(), StatusCode::kCorruption) << text;
    return manifest.ok() ? std::string() : manifest.status().message();
  };
  // Found by the fuzzer: a size beyond 64 bits parses as a double, and converting that to an
  // integer was undefined behaviour.
  EXPECT_NE(refused(R"({"step": 1200, "blobs": {"model.pt": {"bytes": 33333733333333333333322,
                                                 "sha256": ")" +
                    sha + R"("}}})")
                .find("'bytes'"),
            std::string::npos);
  EXPECT_NE(refused(R"({"step": 1e300, "blobs": {}})").find("'step'"), std::string::npos);
  EXPECT_NE(refused(R"({"step": -1, "blobs": {}})").find("'step'"), std::string::npos);
  EXPECT_NE(refused(R"({"step": 9223372036854775808, "blobs": {}})").find("'step'"),
            std::string::npos);
  EXPECT_NE(refused(R"({"step": 1, "blobs": {"m": {"bytes": -3, "sha256": ")" + sha + R"("}}})")
                .find("'bytes'"),
            std::string::npos);
  EXPECT_NE(
      refused(R"({"step": 1, "blobs": {"m": {"bytes": 3, "sha256": "abc"}}})").find("'sha256'"),
      std::string::npos);
  EXPECT_NE(refused(R"({"step": 1, "blobs": []})").find("'blobs'"), std::string::npos);
  EXPECT_NE(refused(R"({"step": 1, "blobs": {"m": 3}})").find("'bytes'"), std::string::npos);
  for (const std::string& name :
       {std::string("../escape"), std::string("/etc/passwd"), std::string(".hidden"),
        std::string("MANIFEST.json"), std::string("a\0b", 3), std::string()}) {
    nlohmann::json manifest = {{"step", 1}, {"blobs", {{name, {{"bytes", 1}, {"sha256", sha}}}}}};
    EXPECT_NE(refused(manifest.dump()).find("not a plain file name"), std::string::npos) << name;
  }
  EXPECT_NE(refused("[1, 2]").find("not a JSON object"), std::string::npos);
  EXPECT_NE(refused("{\"step\": 2, \"blo").find("not JSON"), std::string::npos);
  EXPECT_NE(refused("").find("ckpt/MANIFEST.json"), std::string::npos);

  Expected<Manifest> good = ParseManifest(
      R"({"step": 7, "blobs": {"model.pt": {"bytes": 10, "sha256": ")" + sha + R"("}}, "x": 1})",
      "m");
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_EQ(good->step, 7);
  EXPECT_EQ(good->blobs.at("model.pt").bytes, 10u);
}

TEST_F(CheckpointStoreTest, AManifestNamingAFileOutsideIsSkipped) {
  auto store = CheckpointStore::Open(dir_, 3);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(store->Save(1, Blobs(1)).ok());
  ASSERT_TRUE(store->Save(2, Blobs(2)).ok());
  // Step 2's manifest names a file outside the checkpoint, with its true size and checksum.
  const std::string outside = "outside";
  std::ofstream(fs::path(dir_) / outside) << "secret";
  nlohmann::json manifest = {
      {"step", 2}, {"blobs", {{"../" + outside, {{"bytes", 6}, {"sha256", Sha256Hex("secret")}}}}}};
  std::ofstream(fs::path(store->PathOf(2)) / "MANIFEST.json", std::ios::trunc) << manifest.dump();
  std::vector<std::string> warnings;
  auto checkpoint = store->LoadNewest(&warnings);
  ASSERT_TRUE(checkpoint.ok());
  EXPECT_EQ(checkpoint->step, 1);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("not a plain file name"), std::string::npos) << warnings[0];
}

}  // namespace
}  // namespace vitscale::trainer
