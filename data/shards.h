// Packed datasets (data/shard_format.h, docs/data.md): packing a dataset into tar shards,
// checking a packed directory, and loading one as a Dataset whose splits read samples straight
// from the shards. No LibTorch.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"
#include "data/datasets.h"
#include "data/shard_format.h"

namespace vitscale::data {

// Loads <dir>/manifest.json and every shard's index. A missing index or shard, an index that
// does not match its manifest entry (sample count, tar size) or a label out of range is an
// error naming the file (and sample); checksums are `CheckPacked`'s job, not every load's.
Expected<Dataset> LoadPacked(const std::string& dir, const std::string& reference);

struct PackProgress {
  int64_t samples_done = 0, samples_total = 0;
  int64_t shards_done = 0, shards_total = 0;
  int64_t shards_kept = 0;  // finished by an earlier, interrupted run
  int64_t bytes_written = 0;
};

struct PackOptions {
  int64_t shard_size = 1000;  // samples per shard (ImageNet-sized JPEGs: ~110 MB)
  int threads = 2;            // shards built at once; memory is about threads x shard bytes
  // Called after each shard, from the packing threads one at a time.
  std::function<void(const PackProgress&)> progress;
};

struct PackResult {
  Manifest manifest;
  PackProgress progress;
};

// Packs both splits of `dataset` into `dest` (created if needed). Image files (JPEG, PNG) are
// stored byte for byte; dense images (IDX, CIFAR, digits) as lossless PNG, with their shape and
// statistics in the manifest so the packed set trains exactly as its source. Shard k of a split
// holds its samples [k * shard_size, ...), in the dataset's order.
//
// Resumable: every file is written to a temp name and renamed; a shard counts as finished when
// its index (written after its tar) is complete and matches the tar's size. Run again after a
// crash or kill, it keeps finished shards and redoes the rest; the manifest comes last. `dest`
// must be empty or hold an unfinished pack of the same source and settings (checked against the
// plan it wrote first).
Expected<PackResult> PackDataset(const Dataset& dataset, const std::string& source,
                                 const std::string& dest, const PackOptions& options);

// What `vitscale data pack SRC` reads: a directory of class subfolders (or one with train/ and
// test/ or val/ image folders; the test split may be missing), else any dataset reference
// LoadDataset knows.
Expected<Dataset> LoadPackSource(const std::string& source, const DataRoots& roots);

struct CheckOptions {
  bool decode = false;  // also decode every image (slower; finds corrupt JPEGs and PNGs)
  int threads = 2;
  size_t max_problems = 100;  // stop listing after this many
  std::function<void(int64_t shards_done, int64_t shards_total)> progress;
};

struct CheckReport {
  int64_t shards = 0, samples = 0;
  // One line per problem, each naming the file and, where it applies, the sample:
  // "<dir>/train-000003.tar sample 17 (key 000003017): label 12 is out of range [0, 10)".
  std::vector<std::string> problems;
};

// Verifies a packed dataset: the manifest; each shard's size and SHA-256 and its index's; that
// the index matches the tar's members entry by entry (names, offsets, sizes, the .cls labels);
// labels in range; with `decode`, every image. Fails (non-ok) only when the manifest itself is
// unreadable; problems with shards are listed in the report.
Expected<CheckReport> CheckPacked(const std::string& dir, const CheckOptions& options);

}  // namespace vitscale::data
