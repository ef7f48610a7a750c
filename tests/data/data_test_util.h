// Files the data tests make: temp directories, images, image folders and packed datasets.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "data/image_codec.h"

namespace vitscale::data::testing {

class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "vitscale-data-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code error;
    std::filesystem::remove_all(path_, error);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const {
    return (std::filesystem::path(path_) / name).string();
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void WriteBytes(const std::string& path, const std::string& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// A smooth, photo-like picture (gradients and a soft disc) that differs with `seed`.
inline Image Photo(int height, int width, int channels, int seed) {
  Image image;
  image.height = height;
  image.width = width;
  image.channels = channels;
  image.pixels.resize(static_cast<size_t>(height) * width * channels);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const double dy = y - height * 0.4, dx = x - width * (0.3 + 0.05 * (seed % 7));
      const double disc = std::exp(-(dx * dx + dy * dy) / (0.05 * height * width + 1));
      for (int c = 0; c < channels; ++c) {
        const double v = 40 + 120.0 * x / width + 60.0 * y / height * (c + 1) / 3 +
                         80 * disc * ((seed + c) % 3) + 10 * (seed % 5);
        image.pixels[(static_cast<size_t>(y) * width + x) * channels + c] =
            static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
      }
    }
  }
  return image;
}

// <dir>/<split>/<class>/<n>.jpg: `per_class` photos of varying size for each of `classes`
// classes (class c is named "class<c>"); every fifth one gray.
inline void WritePhotoFolder(const std::string& dir, const std::string& split, int classes,
                             int per_class) {
  for (int c = 0; c < classes; ++c) {
    for (int i = 0; i < per_class; ++i) {
      const int seed = c * 101 + i;
      Image image = Photo(30 + (seed * 7) % 23, 36 + (seed * 5) % 29, i % 5 == 4 ? 1 : 3, seed);
      WriteBytes(
          dir + "/" + split + "/class" + std::to_string(c) + "/" + std::to_string(i) + ".jpg",
          *EncodeJpeg(image, 90));
    }
  }
}

}  // namespace vitscale::data::testing
