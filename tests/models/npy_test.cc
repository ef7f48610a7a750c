// The .npy/.npz reader and writer, without LibTorch.
#include "models/npy.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace vitscale::models {
namespace {

namespace fs = std::filesystem;

// numpy 1.24's np.save header for np.zeros((2, 3), dtype='<f2', order='F'), byte for byte.
std::string NumpyHeaderF2Fortran() {
  std::string header = "{'descr': '<f2', 'fortran_order': True, 'shape': (2, 3), }";
  header.append(117 - header.size(), ' ');
  header += '\n';
  return std::string("\x93NUMPY\x01\x00\x76\x00", 10) + header;
}

TEST(NpyTest, ParsesWhatNumpyWrites) {
  const std::string bytes = NumpyHeaderF2Fortran() + std::string(12, '\x01');
  ASSERT_EQ(bytes.size() % 64, 12u);
  Expected<NpyArray> array = ParseNpy(bytes, "x");
  ASSERT_TRUE(array.ok()) << array.status().ToString();
  EXPECT_EQ(array->dtype, NpyDtype::kFloat16);
  EXPECT_TRUE(array->fortran_order);
  EXPECT_EQ(array->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(array->data.size(), 12u);
}

TEST(NpyTest, RoundTripsEveryDtypeAndShape) {
  for (NpyDtype dtype : {NpyDtype::kFloat32, NpyDtype::kFloat16, NpyDtype::kBFloat16}) {
    for (const std::vector<int64_t>& shape :
         {std::vector<int64_t>{}, {5}, {3, 4}, {2, 3, 4}, {0, 7}}) {
      NpyArray array;
      array.dtype = dtype;
      array.shape = shape;
      array.fortran_order = shape.size() == 2;
      for (int64_t i = 0; i < array.numel() * NpyItemSize(dtype); ++i) {
        array.data += static_cast<char>(i * 7);
      }
      const std::string bytes = SerializeNpy(array);
      EXPECT_EQ((bytes.size() - array.data.size()) % 64, 0u);  // numpy's alignment
      Expected<NpyArray> back = ParseNpy(bytes, "x");
      ASSERT_TRUE(back.ok()) << back.status().ToString();
      EXPECT_EQ(back->dtype, dtype);
      EXPECT_EQ(back->shape, shape);
      EXPECT_EQ(back->fortran_order, array.fortran_order);
      EXPECT_EQ(back->data, array.data);
    }
  }
}

TEST(NpyTest, AcceptsTheSpellingsOfBfloat16) {
  for (const char* descr : {"<V2", "|V2", "bfloat16"}) {
    std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
    const std::string header =
        std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (2,), }\n";
    bytes += static_cast<char>(header.size());
    bytes += '\0';
    bytes += header + "abcd";
    Expected<NpyArray> array = ParseNpy(bytes, "x");
    ASSERT_TRUE(array.ok()) << descr << ": " << array.status().ToString();
    EXPECT_EQ(array->dtype, NpyDtype::kBFloat16);
  }
}

TEST(NpyTest, VersionTwoHeaders) {
  NpyArray array;
  array.shape = {2};
  array.data = std::string(8, 'x');
  std::string v1 = SerializeNpy(array);
  const size_t header_len = static_cast<uint8_t>(v1[8]) | (static_cast<uint8_t>(v1[9]) << 8);
  std::string v2 = std::string("\x93NUMPY\x02\x00", 8) + std::string(1, char(header_len)) +
                   std::string(3, '\0') + v1.substr(10);
  Expected<NpyArray> parsed = ParseNpy(v2, "x");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->shape, (std::vector<int64_t>{2}));
}

TEST(NpyTest, BadArraysAreErrorsNamingTheArray) {
  NpyArray array;
  array.shape = {4, 4};
  array.data = std::string(64, '\0');
  const std::string good = SerializeNpy(array);

  Expected<NpyArray> truncated = ParseNpy(good.substr(0, good.size() - 5), "head/kernel");
  ASSERT_FALSE(truncated.ok());
  EXPECT_EQ(truncated.status().code(), StatusCode::kCorruption);
  EXPECT_NE(truncated.status().message().find("head/kernel"), std::string::npos);
  EXPECT_NE(truncated.status().message().find("(4, 4)"), std::string::npos);

  EXPECT_FALSE(ParseNpy("PK\x03\x04 not npy", "x").ok());
  EXPECT_FALSE(ParseNpy(good.substr(0, 30), "x").ok());

  for (const char* dtype : {"<f8", ">f4", "<i4"}) {
    std::string other = good;
    other.replace(other.find("<f4"), 3, dtype);
    Expected<NpyArray> refused = ParseNpy(other, "cls");
    ASSERT_FALSE(refused.ok()) << dtype;
    EXPECT_NE(refused.status().message().find(std::string("'") + dtype + "'"), std::string::npos)
        << refused.status().message();
    EXPECT_NE(refused.status().message().find("cls"), std::string::npos);
  }
}

// Inputs the fuzzer (fuzz/npz_fuzz.cc) found or that were built to break the reader; each is
// also in fuzz/corpus/npz/.
std::string CorpusFile(const std::string& name) {
  std::ifstream in(std::string(VITSCALE_FUZZ_CORPUS) + "/npz/" + name, std::ios::binary);
  EXPECT_TRUE(in) << name;
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

std::string HeaderOnly(const std::string& shape) {
  const std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }\n";
  return std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(header.size()) + '\0' + header;
}

TEST(NpyTest, ShapesWhoseSizeOverflowsAreRefused) {
  // Found by the fuzzer: the element count overflowed int64 (undefined behaviour).
  Expected<NpyArray> fuzzed = ParseNpy(CorpusFile("shape-product-overflows.npy"), "x");
  EXPECT_EQ(fuzzed.status().code(), StatusCode::kCorruption);
  // 2^31 x 2^31 floats are 2^64 bytes, which wrapped to 0: an empty file passed for 2^62
  // elements.
  for (const char* shape : {"(2147483648, 2147483648)", "(1099511627776, 1099511627776, 9)"}) {
    Expected<NpyArray> refused = ParseNpy(HeaderOnly(shape), "pos_embedding");
    ASSERT_FALSE(refused.ok()) << shape;
    EXPECT_EQ(refused.status().code(), StatusCode::kCorruption);
    EXPECT_NE(refused.status().message().find("more than 2^64 data bytes"), std::string::npos)
        << refused.status().message();
  }
}

class NpzTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("vitscale_npz_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string Path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

TEST_F(NpzTest, WritesAndReadsArchives) {
  std::map<std::string, NpyArray> arrays;
  for (int i = 0; i < 3; ++i) {
    NpyArray a;
    a.shape = {i + 1, 2};
    a.data = std::string(4 * 2 * (i + 1), static_cast<char>('a' + i));
    arrays["Transformer/encoderblock_" + std::to_string(i) + "/LayerNorm_0/scale"] = a;
  }
  ASSERT_TRUE(WriteNpz(Path("a.npz"), arrays).ok());
  EXPECT_FALSE(fs::exists(Path("a.npz.tmp")));
  Expected<std::map<std::string, NpyArray>> read = ReadNpz(Path("a.npz"));
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->size(), 3u);
  for (const auto& [key, a] : arrays) {
    ASSERT_TRUE(read->count(key)) << key;
    EXPECT_EQ(read->at(key).shape, a.shape);
    EXPECT_EQ(read->at(key).data, a.data);
  }
}

TEST_F(NpzTest, BrokenArchivesAreErrors) {
  std::map<std::string, NpyArray> arrays;
  NpyArray a;
  a.shape = {1000};
  a.data = std::string(4000, 'z');
  arrays["cls"] = a;
  ASSERT_TRUE(WriteNpz(Path("good.npz"), arrays).ok());
  std::ifstream in(Path("good.npz"), std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  std::ofstream(Path("cut.npz"), std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  std::ofstream(Path("text.npz"), std::ios::binary) << "hello";

  for (const char* name : {"cut.npz", "text.npz"}) {
    Expected<std::map<std::string, NpyArray>> read = ReadNpz(Path(name));
    ASSERT_FALSE(read.ok()) << name;
    EXPECT_EQ(read.status().code(), StatusCode::kCorruption) << read.status().ToString();
    EXPECT_NE(read.status().message().find(name), std::string::npos);
  }
  EXPECT_EQ(ReadNpz(Path("nothing.npz")).status().code(), StatusCode::kNotFound);
}

// A member whose header claims 3 GiB, in a 130-byte file: the reader used to allocate (and
// zero) the claimed size before reading. It must fail with little memory used; the peak is
// measured in a child process, which has nothing else to inflate it.
TEST_F(NpzTest, ASizeClaimedByAMemberIsNotAllocatedBeforeTheDataIsThere) {
  std::ofstream(Path("liar.npz"), std::ios::binary)
      << CorpusFile("deflated-member-claims-3gib.npz");
  pid_t child = ::fork();
  if (child == 0) {
    Expected<std::map<std::string, NpyArray>> read = ReadNpz(Path("liar.npz"));
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    const bool refused = !read.ok() && read.status().code() == StatusCode::kCorruption &&
                         read.status().message().find("truncated or corrupt") != std::string::npos;
    ::_exit(refused && usage.ru_maxrss < 1024 * 1024 ? 0 : 1);  // ru_maxrss is in KiB
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the reader accepted the file or peaked above 1 GiB";
}

}  // namespace
}  // namespace vitscale::models
