// Per-example preprocessing: crop/flip augmentation, resize to the model's resolution,
// gray -> 3 channels, normalisation, written as CHW float into memory the caller owns (a
// preallocated batch tensor's storage), without intermediate images.
//
// Randomness is keyed by AugmentKey(seed, epoch, example index): the same example in the same
// epoch gets the same crop and flip on every rank, thread and resumed run.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "common/status.h"
#include "data/split.h"

namespace vitscale::data {

enum class ResizeMode {
  // Bilinear resize of the whole image to resolution x resolution (small images, e.g. digits
  // 8x8 -> 28x28, Fashion-MNIST 28x28 -> 224x224 for a ViT/16).
  kStretch,
  // Resize the shorter side to round(resolution * resize_ratio), keeping the aspect ratio, then
  // crop resolution x resolution: at a random place in training, in the centre otherwise
  // (image folders of any size).
  kShorterSideCrop,
};

struct AugmentOptions {
  int resolution = 0;  // output side in pixels; REQUIRED > 0
  ResizeMode resize = ResizeMode::kStretch;
  double resize_ratio = 1.14;  // kShorterSideCrop only; >= 1
  // Training, kStretch only: pad the image by this many zero pixels on each side and crop a
  // window of its original size at a random offset (the CIFAR / Fashion-MNIST recipe).
  int crop_padding = 0;
  bool flip = false;  // training: mirror left-right with probability 1/2
  // Applied to pixel/255 per output channel: (x - mean) / std.
  std::array<float, 3> mean = {0.5f, 0.5f, 0.5f};
  std::array<float, 3> std = {0.5f, 0.5f, 0.5f};
};

// Checks the options; the message names the field to fix.
Status ValidateAugmentOptions(const AugmentOptions& options);

uint64_t AugmentKey(uint64_t seed, uint64_t epoch, uint64_t example_index);

// Writes 3 * resolution * resolution floats (CHW) to `out`. `train` enables the random crop,
// flip and random crop placement; evaluation is deterministic and key-independent.
// REQUIRES: ValidateAugmentOptions(options).ok(); image.channels is 1 or 3. Thread-safe.
void AugmentInto(const ImageView& image, const AugmentOptions& options, bool train, uint64_t key,
                 float* out);

}  // namespace vitscale::data
