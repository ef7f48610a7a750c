#include "data/split.h"

#include <utility>

#include "data/image_codec.h"

namespace vitscale::data {

Split Split::Dense(int height, int width, int channels, std::vector<uint8_t> pixels,
                   std::vector<int32_t> labels, int num_classes) {
  auto storage = std::make_shared<DenseStorage>();
  storage->height = height;
  storage->width = width;
  storage->channels = channels;
  storage->pixels = std::move(pixels);
  Split split;
  split.dense_ = std::move(storage);
  split.labels_ = std::move(labels);
  split.num_classes_ = num_classes;
  return split;
}

Split Split::Files(std::vector<std::string> paths, std::vector<int32_t> labels, int num_classes) {
  Split split;
  split.paths_ = std::make_shared<const std::vector<std::string>>(std::move(paths));
  split.labels_ = std::move(labels);
  split.num_classes_ = num_classes;
  return split;
}

int32_t Split::label(size_t i) const { return labels_[i]; }

std::string Split::path(size_t i) const { return paths_ ? (*paths_)[Storage(i)] : std::string(); }

Expected<ImageView> Split::Get(size_t i, Image* scratch) const {
  if (i >= size()) {
    return Internal("example " + std::to_string(i) + " of a split of " + std::to_string(size()));
  }
  if (dense_) {
    size_t bytes = static_cast<size_t>(dense_->height) * dense_->width * dense_->channels;
    return ImageView{dense_->pixels.data() + Storage(i) * bytes, dense_->height, dense_->width,
                     dense_->channels};
  }
  ASSIGN_OR_RETURN(*scratch, ReadImageFile((*paths_)[Storage(i)]));
  return ImageView{scratch->pixels.data(), scratch->height, scratch->width, scratch->channels};
}

Split Split::Select(const std::vector<uint32_t>& indices, const std::vector<int32_t>& label_map,
                    int num_classes) const {
  Split out;
  out.dense_ = dense_;
  out.paths_ = paths_;
  out.identity_ = false;
  out.indices_.reserve(indices.size());
  out.labels_.reserve(indices.size());
  for (uint32_t index : indices) {
    out.indices_.push_back(static_cast<uint32_t>(Storage(index)));
    int32_t label = labels_[index];
    out.labels_.push_back(label_map.empty() ? label : label_map[label]);
  }
  out.num_classes_ = label_map.empty() ? num_classes_ : num_classes;
  return out;
}

}  // namespace vitscale::data
