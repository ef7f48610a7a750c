#include "data/split.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "common/files.h"
#include "data/image_codec.h"
#include "data/shard_format.h"

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

Split Split::Shards(ShardSamples samples, std::vector<int32_t> labels, int num_classes) {
  Split split;
  split.shards_ = std::make_shared<const ShardSamples>(std::move(samples));
  split.labels_ = std::move(labels);
  split.num_classes_ = num_classes;
  return split;
}

int32_t Split::label(size_t i) const { return labels_[i]; }

namespace {

// The shard holding storage sample `sample`.
size_t ShardOf(const ShardSamples& shards, size_t sample) {
  auto it = std::upper_bound(shards.first_sample.begin(), shards.first_sample.end(), sample);
  return static_cast<size_t>(it - shards.first_sample.begin()) - 1;
}

}  // namespace

std::string Split::source(size_t i) const {
  if (paths_) return (*paths_)[Storage(i)];
  if (!shards_) return std::string();
  const size_t sample = Storage(i);
  const size_t shard = ShardOf(*shards_, sample);
  return (std::filesystem::path(shards_->dir) / shards_->tars[shard]).string() + " sample " +
         std::to_string(sample - shards_->first_sample[shard]) + " (key " + SampleKey(sample) +
         ")";
}

Status Split::ReadEncoded(size_t i, std::string* bytes) const {
  if (i >= size()) {
    return Internal("example " + std::to_string(i) + " of a split of " + std::to_string(size()));
  }
  if (paths_) {
    ASSIGN_OR_RETURN(*bytes, ReadFile((*paths_)[Storage(i)]));
    return Status::Ok();
  }
  if (!shards_) return Internal("ReadEncoded on a dense split");
  const size_t sample = Storage(i);
  const size_t shard = ShardOf(*shards_, sample);
  const std::string path = (std::filesystem::path(shards_->dir) / shards_->tars[shard]).string();
  const size_t size = shards_->bytes[sample];
  const off_t offset = static_cast<off_t>(shards_->block[sample]) * 512;
  bytes->resize(size);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int error = errno;
    if (error == ENOENT) return NotFound(path + ": shard missing (needed for " + source(i) + ")");
    return IOError(path + ": cannot open: " + std::strerror(error));
  }
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, bytes->data() + done, size - done, offset + done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = errno;
      ::close(fd);
      if (n == 0) {
        return Corruption(source(i) + ": the shard ends before the sample's " +
                          std::to_string(size) + " bytes at offset " + std::to_string(offset) +
                          " (truncated shard; `vitscale data check " + shards_->dir +
                          "` lists every damaged one)");
      }
      return IOError(source(i) + ": read failed: " + std::strerror(error));
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return Status::Ok();
}

Expected<ImageView> Split::Get(size_t i, Image* scratch) const {
  if (i >= size()) {
    return Internal("example " + std::to_string(i) + " of a split of " + std::to_string(size()));
  }
  if (dense_) {
    size_t bytes = static_cast<size_t>(dense_->height) * dense_->width * dense_->channels;
    return ImageView{dense_->pixels.data() + Storage(i) * bytes, dense_->height, dense_->width,
                     dense_->channels};
  }
  if (paths_) {
    ASSIGN_OR_RETURN(*scratch, ReadImageFile((*paths_)[Storage(i)]));
  } else {
    std::string bytes;
    RETURN_IF_ERROR(ReadEncoded(i, &bytes));
    ASSIGN_OR_RETURN(*scratch, DecodeImage(bytes, source(i)));
  }
  return ImageView{scratch->pixels.data(), scratch->height, scratch->width, scratch->channels};
}

Split Split::Select(const std::vector<uint32_t>& indices, const std::vector<int32_t>& label_map,
                    int num_classes) const {
  Split out;
  out.dense_ = dense_;
  out.paths_ = paths_;
  out.shards_ = shards_;
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
