// Split: one split (train or test) of an image classification dataset held in memory, as either
//  - dense: N images of one shape, HWC uint8 in one contiguous array (IDX, CIFAR, digits), or
//  - files: N image file paths decoded on demand (image folders, whose images vary in size).
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

class Split {
 public:
  Split() = default;

  // REQUIRES: pixels.size() == labels.size() * height * width * channels; labels in range
  // (the readers check this and report a Corruption before they get here).
  static Split Dense(int height, int width, int channels, std::vector<uint8_t> pixels,
                     std::vector<int32_t> labels, int num_classes);
  static Split Files(std::vector<std::string> paths, std::vector<int32_t> labels, int num_classes);

  size_t size() const { return labels_.size(); }
  int num_classes() const { return num_classes_; }
  int32_t label(size_t i) const;
  const std::vector<int32_t>& labels() const { return labels_; }

  bool dense() const { return dense_ != nullptr; }
  // Shape of every image of a dense split; 0 for a file split.
  int height() const { return dense_ ? dense_->height : 0; }
  int width() const { return dense_ ? dense_->width : 0; }
  int channels() const { return dense_ ? dense_->channels : 0; }
  // Path of example i of a file split ("" for dense).
  std::string path(size_t i) const;

  // Example i's pixels: a view into the split for dense splits; for file splits the file is
  // decoded into *scratch and the view points there (errors name the file).
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
  // Example i of this split is storage example Storage(i); labels_ are this split's own.
  bool identity_ = true;
  std::vector<uint32_t> indices_;
  std::vector<int32_t> labels_;
  int num_classes_ = 0;
};

}  // namespace vitscale::data
