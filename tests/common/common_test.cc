#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "common/clock.h"
#include "common/files.h"
#include "common/flags.h"
#include "common/names.h"
#include "common/secrets.h"
#include "common/sha256.h"
#include "common/status.h"
#include "common/text.h"

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

namespace vitscale {
namespace {

TEST(TextTest, Utf8ValidityAndPrintable) {
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));  // é € 😀
  for (std::string bad : {std::string("\xff"), std::string("\xc0\xaf"), std::string("\xed\xa0\x80"),
                          std::string("\xf4\x90\x80\x80"), std::string("\xe2\x82")}) {
    EXPECT_FALSE(IsValidUtf8(bad)) << Printable(bad);
  }
  EXPECT_EQ(Printable(std::string("a\xff" "b\n", 4)), "a\xEF\xBF\xBD" "b\\x0A");
  EXPECT_EQ(Printable(std::string(10, 'x'), 4), "xxxx...");
  EXPECT_TRUE(HasControlCharacters("a\tb"));
  EXPECT_FALSE(HasControlCharacters("a b"));
}

TEST(SecretsTest, TokensAreRandomHexAndCompareInConstantTime) {
  Expected<std::string> a = RandomHexToken(32), b = RandomHexToken(32);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), 64u);
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(ConstantTimeEquals(*a, *a));
  EXPECT_FALSE(ConstantTimeEquals(*a, *b));
  EXPECT_FALSE(ConstantTimeEquals(*a, a->substr(1)));
  EXPECT_EQ(TokenHash("abc"), Sha256Hex("abc"));
}

TEST(ClockTest, FakeClockMovesBothTimesOnlyWhenTold) {
  FakeClock clock(TimePoint{}, 1000.0);
  TimePoint start = clock.Now();
  EXPECT_EQ(clock.WallSeconds(), 1000.0);
  clock.Advance(std::chrono::seconds(90));
  EXPECT_EQ(clock.Now() - start, std::chrono::seconds(90));
  EXPECT_DOUBLE_EQ(clock.WallSeconds(), 1090.0);
  EXPECT_EQ(IsoTime(0.5), "1970-01-01T00:00:00.500Z");
}

TEST(FlagsTest, ParsesValuesSwitchesAndNumbers) {
  std::vector<FlagSpec> specs = {{"--state-dir", true, "DIR", "where state lives"},
                                 {"--open-read", false, "", "open reading"},
                                 {"--lease-seconds", true, "N", "lease"}};
  Expected<ParsedArgs> parsed =
      ParseArgs({"--state-dir", "/x", "--open-read", "--lease-seconds=45", "pos"}, specs);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->Get("--state-dir"), "/x");
  EXPECT_TRUE(parsed->Has("--open-read"));
  EXPECT_EQ(*parsed->GetInt("--lease-seconds", 2, 3600, 30), 45);
  EXPECT_EQ(*parsed->GetInt("--absent", 2, 3600, 30), 30);
  EXPECT_EQ(parsed->positional, std::vector<std::string>{"pos"});
  EXPECT_FALSE(parsed->GetInt("--state-dir", 0, 10, 0).ok());
  Expected<ParsedArgs> typo = ParseArgs({"--lease-secnds", "4"}, specs);
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("did you mean '--lease-seconds'"), std::string::npos);
  EXPECT_FALSE(ParseArgs({"--state-dir"}, specs).ok());
  EXPECT_NE(FlagHelp(specs).find("--state-dir DIR"), std::string::npos);
}

TEST(NamesTest, SuggestionsStayCheapForHugeInput) {
  std::vector<std::string> many(100000, std::string(100, 'q'));
  many.push_back("fashion-mnist");
  EXPECT_EQ(NearestName(std::string(100000, 'x'), many), "");  // too long to suggest for
  EXPECT_EQ(NearestName("fashon-mnist", {"fashion-mnist", "digits"}), "fashion-mnist");
}

}  // namespace
}  // namespace vitscale
