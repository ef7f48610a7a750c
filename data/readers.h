// Readers from file formats into Splits. No LibTorch: the daemons and tools may use them too.
// Every reader checks what it reads and fails with a Status whose message names the file and
// what is wrong with it (kNotFound: missing file; kCorruption: wrong magic, truncated data,
// a label out of range). All functions are thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "data/split.h"

namespace vitscale::data {

// An IDX array of unsigned bytes (type 0x08): dims as stored, data row-major.
struct IdxArray {
  std::vector<uint32_t> dims;
  std::vector<uint8_t> data;
};

// Reads an IDX file of type 0x08 (ubyte), gzip-compressed or plain (detected from content).
Expected<IdxArray> ReadIdxFile(const std::string& path);

// Reads an images file (N x H x W, or N x H x W x C) and a labels file (N) into a Split; labels
// must lie in [0, num_classes).
Expected<Split> ReadIdxSplit(const std::string& images_path, const std::string& labels_path,
                             int num_classes);

// CIFAR binary records: CIFAR-10 is <1 label byte><3072 pixel bytes>, CIFAR-100
// <1 coarse label><1 fine label><3072 pixel bytes>; pixels are 32x32 planes R, G, B. CIFAR-100
// splits use the 100 fine labels. The files are concatenated in the order given.
enum class CifarKind { kCifar10, kCifar100 };
Expected<Split> ReadCifarFiles(const std::vector<std::string>& paths, CifarKind kind);
// The standard file names under the directory the archives unpack to:
// CIFAR-10 data_batch_{1..5}.bin / test_batch.bin; CIFAR-100 train.bin / test.bin.
std::vector<std::string> CifarFileNames(CifarKind kind, bool train);

// An image folder: one subfolder per class (classes sorted by name give labels 0..K-1), each
// holding .jpg/.jpeg/.png files (any case), sorted by name. Files are decoded lazily by Split.
// `class_names`, when non-empty, fixes the classes (a test folder must match its train folder);
// otherwise the folder's own subfolders are used and returned in *found_class_names. A class
// folder without images is an error naming it.
Expected<Split> ReadImageFolder(const std::string& dir, const std::vector<std::string>& class_names,
                                std::vector<std::string>* found_class_names);

// scikit-learn's digits.csv.gz: 1797 rows of 64 pixel values in 0..16 then the label 0..9. The
// pixels are scaled to 0..255 (round(v * 255 / 16)) and returned as one 8x8x1 split.
Expected<Split> ReadDigitsCsv(const std::string& path);

// Whole file, gunzipped when it starts with the gzip magic, read as-is otherwise.
Expected<std::string> ReadMaybeGzipFile(const std::string& path);

}  // namespace vitscale::data
