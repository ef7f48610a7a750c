// The packed dataset format (docs/data.md, "Packed datasets"): a directory holding
//   manifest.json                  counts, classes, and every file's size and SHA-256
//   <split>-NNNNNN.tar             a shard: ustar archive of <key>.jpg|.png + <key>.cls pairs
//   <split>-NNNNNN.idx             its index: where each sample's image lies in the tar, its
//                                  size and label, so any sample is read without a scan
// The tar is what WebDataset reads and plain `tar` lists; the index and the manifest are
// vitscale's. This file declares the manifest and index types with their encodings; packing,
// checking and reading live in data/shards.h. No JPEG, no LibTorch: the sweep catalog reads
// manifests too. Thread-safe (no shared state).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace vitscale::data {

inline constexpr const char* kManifestName = "manifest.json";
inline constexpr const char* kShardFormatName = "vitscale-shards";
inline constexpr int kShardFormatVersion = 1;

struct ShardInfo {
  std::string tar;    // file name inside the dataset directory, e.g. "train-000003.tar"
  std::string index;  // e.g. "train-000003.idx"
  int64_t samples = 0;
  int64_t tar_bytes = 0;
  std::string tar_sha256;  // hex
  int64_t index_bytes = 0;
  std::string index_sha256;  // hex
};

struct SplitManifest {
  int64_t samples = 0;
  std::vector<ShardInfo> shards;  // in sample order: shard k holds samples [k*S, k*S + n_k)
};

struct Manifest {
  std::string source;      // what was packed (a path or dataset reference), for people
  int64_t shard_size = 0;  // samples per shard (the last one of a split may hold fewer)
  int num_classes = 0;
  std::vector<std::string> class_names;
  // Set when every image has one shape (packed from IDX, CIFAR, digits): the loader then
  // treats the set like its source (stretch + padded crops) and normalises with these stats.
  int height = 0, width = 0, channels = 0;
  std::optional<std::array<float, 3>> mean, std;
  SplitManifest train, test;
};

std::string EncodeManifest(const Manifest& manifest);
// `origin` (the file's path) is named in errors; kCorruption says which field is wrong.
Expected<Manifest> DecodeManifest(const std::string& text, const std::string& origin);
// Reads <dir>/manifest.json; kNotFound when it is absent.
Expected<Manifest> ReadManifest(const std::string& dir);

// One index entry: the image member's data offset in the tar, its size and the label.
struct IndexEntry {
  uint64_t offset = 0;  // a multiple of 512, as every tar member's data
  uint32_t size = 0;
  int32_t label = 0;
  bool png = false;  // the member is <key>.png (else <key>.jpg)
};

// A shard's index file: "VSIDX001", the sample count, the tar's size and SHA-256, then one
// 16-byte little-endian record per sample: the data offset in 512-byte tar blocks (so shards
// up to 2 TiB), the size, the label and flags (1: PNG). Written after its tar, so a complete index
// is the shard's "finished" mark during packing.
struct ShardIndex {
  uint64_t tar_bytes = 0;
  std::array<uint8_t, 32> tar_sha256{};
  std::vector<IndexEntry> entries;
};

std::string EncodeIndex(const ShardIndex& index);
Expected<ShardIndex> DecodeIndex(const std::string& bytes, const std::string& origin);

// "train-000003" for split "train", shard 3.
std::string ShardStem(const std::string& split, size_t shard);
// The tar member name of sample `key` ("000000417.jpg" / ".cls").
std::string SampleKey(uint64_t sample);

std::string HexBytes(const uint8_t* bytes, size_t n);

}  // namespace vitscale::data
