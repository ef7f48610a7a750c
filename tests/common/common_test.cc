#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "common/files.h"
#include "common/names.h"
#include "common/sha256.h"
#include "common/status.h"

namespace vitscale {
namespace {

TEST(StatusTest, ExpectedCarriesValueOrError) {
  Expected<int> good = 7;
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 7);
  Expected<int> bad = InvalidArgument("field 'x' must be > 0");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().ToString(), "invalid argument: field 'x' must be > 0");
}

Expected<int> Twice(Expected<int> in) {
  ASSIGN_OR_RETURN(int v, std::move(in));
  return 2 * v;
}

TEST(StatusTest, AssignOrReturnPropagates) {
  EXPECT_EQ(*Twice(4), 8);
  EXPECT_EQ(Twice(NotFound("nope")).status().code(), StatusCode::kNotFound);
}

TEST(NamesTest, SuggestsNearestWithinTypoDistance) {
  std::vector<std::string> names = {"ViT-B/16", "ViT-B/32", "R50x1"};
  EXPECT_EQ(EditDistance("ViT-B/61", "ViT-B/16"), 1);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3);
  EXPECT_EQ(NearestName("vit-b/61", names), "ViT-B/16");
  EXPECT_EQ(NearestName("R50x", names), "R50x1");
  EXPECT_EQ(NearestName("completely-different", names), "");
  EXPECT_EQ(DidYouMean("R05x1", names), "; did you mean 'R50x1'?");
}

TEST(Sha256Test, KnownDigests) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(FilesTest, AtomicWriteReplacesAndLeavesNoTemp) {
  auto dir = std::filesystem::temp_directory_path() / ("vitscale-files-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "f.txt").string();
  ASSERT_TRUE(WriteFileAtomically(path, "first").ok());
  ASSERT_TRUE(WriteFileAtomically(path, "second").ok());
  EXPECT_EQ(*ReadFile(path), "second");
  EXPECT_EQ(*Sha256File(path), Sha256Hex("second"));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 1);
  EXPECT_EQ(ReadFile((dir / "missing").string()).status().code(), StatusCode::kNotFound);
  Expected<std::string> directory = ReadFile(dir.string());
  EXPECT_EQ(directory.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(directory.status().message().find("is a directory"), std::string::npos);

  ASSERT_TRUE(WriteFileAtomically(path, "  abc123\r\n").ok());
  EXPECT_EQ(*ReadTokenFile(path), "abc123");
  ASSERT_TRUE(WriteFileAtomically(path, " \n").ok());
  EXPECT_EQ(ReadTokenFile(path).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadTokenFile((dir / "missing").string()).status().code(), StatusCode::kNotFound);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace vitscale
