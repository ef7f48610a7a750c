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
#include <string_view>

#include "common/status.h"
#include "data/image_codec.h"
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
  // Training: Inception-style random-resized crop (as torchvision's RandomResizedCrop): a
  // window of min_area..1 of the image's area with aspect ratio in [3/4, 4/3] (log-uniform),
  // 10 tries, else the centre crop of the nearest allowed ratio; resized to resolution.
  // Evaluation: as kShorterSideCrop's centre crop. The pretraining recipe for photos.
  kInceptionCrop,
};

struct AugmentOptions {
  int resolution = 0;  // output side in pixels; REQUIRED > 0
  ResizeMode resize = ResizeMode::kStretch;
  double resize_ratio = 1.14;  // kShorterSideCrop only; >= 1
  // Training, kStretch only: pad the image by this many zero pixels on each side and crop a
  // window of its original size at a random offset (the CIFAR / Fashion-MNIST recipe).
  int crop_padding = 0;
  double min_area = 0.08;      // kInceptionCrop only: in (0, 1]
  bool flip = false;  // training: mirror left-right with probability 1/2
  // Applied to pixel/255 per output channel: (x - mean) / std.
  std::array<float, 3> mean = {0.5f, 0.5f, 0.5f};
  std::array<float, 3> std = {0.5f, 0.5f, 0.5f};
};

// Checks the options; the message names the field to fix.
Status ValidateAugmentOptions(const AugmentOptions& options);

uint64_t AugmentKey(uint64_t seed, uint64_t epoch, uint64_t example_index);

// The source rectangle an output is resampled from (pixel-edge coordinates of the image at full
// size, possibly reaching outside it for padded crops) and whether it is mirrored.
struct CropWindow {
  double top = 0, left = 0, height = 0, width = 0;
  bool mirror = false;
  bool zero_outside = false;  // padded crops: pixels outside the image read as 0
};

// The window of an image of height x width for these options; a pure function of its
// arguments (the draws come from CounterRng(key)).
CropWindow ComputeCropWindow(int height, int width, const AugmentOptions& options, bool train,
                             uint64_t key);

// Writes 3 * resolution * resolution floats (CHW) to `out`. `train` enables the random crop,
// flip and random crop placement; evaluation is deterministic and key-independent.
// REQUIRES: ValidateAugmentOptions(options).ok(); image.channels is 1 or 3. Thread-safe.
void AugmentInto(const ImageView& image, const AugmentOptions& options, bool train, uint64_t key,
                 float* out);

// Per-thread buffers that DecodeAugmentInto reuses between examples.
struct DecodeScratch {
  DecodedRegion region;
  Image image;
};

// AugmentInto for an encoded image (JPEG or PNG, told apart by their signatures): a JPEG is
// decoded only over the crop window, at the smallest power-of-two DCT scale that leaves the
// window at least `resolution` pixels on each side, so the resize after it shrinks by less than
// 2. The output is the same function of (bytes, options, train, key) on every thread.
// `source` (a path, or shard and sample) names the image in errors.
Status DecodeAugmentInto(std::string_view bytes, const std::string& source,
                         const AugmentOptions& options, bool train, uint64_t key, float* out,
                         DecodeScratch* scratch);

}  // namespace vitscale::data
