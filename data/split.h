// Split: one split (train or test) of an image classification dataset, as one of
//  - dense: N images of one shape, HWC uint8 in one contiguous array (IDX, CIFAR, digits),
//  - files: N image file paths decoded on demand (image folders, whose images vary in size),
//  - shards: N images inside the tar shards of a packed dataset, located by their indexes.
// Labels are always in memory, as class ids in [0, num_classes).
//
// A Split is immutable after construction and shares its storage between copies (Select() and
// copies are cheap), so any number of threads may read one Split at the same time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace vitscale::data {

// A decoded image: HWC uint8, channels 1 (gray) or 3 (RGB).
struct Image {
  int height = 0;
  int width = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;  // height * width * channels
};

// A non-owning view of HWC uint8 pixels; valid while its Split (or scratch Image) lives.
struct ImageView {
  const uint8_t* pixels = nullptr;
  int height = 0;
  int width = 0;
  int channels = 0;
};

// Where each sample of one split of a packed dataset lies (data/shard_format.h): 8 bytes per
// sample in memory (its labels are the Split's).
struct ShardSamples {
  std::string dir;                      // the packed dataset's directory
  std::vector<std::string> tars;        // file names, one per shard
  std::vector<uint64_t> first_sample;   // per shard, then the total: shard k holds
                                        // [first_sample[k], first_sample[k + 1])
  std::vector<uint32_t> block;          // per sample: data offset / 512 in its shard
  std::vector<uint32_t> bytes;          // per sample: the encoded image's size
};

class Split {
 public:
  Split() = default;

  // REQUIRES: pixels.size() == labels.size() * height * width * channels; labels in range
  // (the readers check this and report a Corruption before they get here).
  static Split Dense(int height, int width, int channels, std::vector<uint8_t> pixels,
                     std::vector<int32_t> labels, int num_classes);
  static Split Files(std::vector<std::string> paths, std::vector<int32_t> labels, int num_classes);
  // REQUIRES: labels.size() == samples.block.size().
  static Split Shards(ShardSamples samples, std::vector<int32_t> labels, int num_classes);

  size_t size() const { return labels_.size(); }
  int num_classes() const { return num_classes_; }
  int32_t label(size_t i) const;
  const std::vector<int32_t>& labels() const { return labels_; }

  bool dense() const { return dense_ != nullptr; }
  // Shape of every image of a dense split; 0 for a file split.
  int height() const { return dense_ ? dense_->height : 0; }
  int width() const { return dense_ ? dense_->width : 0; }
  int channels() const { return dense_ ? dense_->channels : 0; }
  // Files and shards hold encoded images (JPEG or PNG), dense splits pixels.
  bool encoded() const { return !dense(); }
  // Names example i in messages: its file, or its shard, position and key; "" for dense.
  std::string source(size_t i) const;

  // Example i's encoded bytes into *bytes (a file's content, or its slice of a shard, read
  // with one pread). kNotFound / kCorruption name the file or shard and sample.
  // REQUIRES: encoded().
  Status ReadEncoded(size_t i, std::string* bytes) const;

  // Example i's pixels: a view into the split for dense splits; for others the image is read
  // and decoded into *scratch and the view points there (errors name the source).
  Expected<ImageView> Get(size_t i, Image* scratch) const;

  // The examples at `indices` (into this split), in that order, with labels passed through
  // `label_map` when it is non-empty (label_map[old] = new, or -1 for "must not occur").
  // REQUIRES: every index < size().
  Split Select(const std::vector<uint32_t>& indices, const std::vector<int32_t>& label_map = {},
               int num_classes = 0) const;

 private:
  struct DenseStorage {
    int height = 0, width = 0, channels = 0;
    std::vector<uint8_t> pixels;
  };
  size_t Storage(size_t i) const { return identity_ ? i : indices_[i]; }

  std::shared_ptr<const DenseStorage> dense_;
  std::shared_ptr<const std::vector<std::string>> paths_;
  std::shared_ptr<const ShardSamples> shards_;
  // Example i of this split is storage example Storage(i); labels_ are this split's own.
  bool identity_ = true;
  std::vector<uint32_t> indices_;
  std::vector<int32_t> labels_;
  int num_classes_ = 0;
};

}  // namespace vitscale::data
