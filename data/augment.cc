#include "data/augment.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "data/order.h"

namespace vitscale::data {
namespace {

// One output coordinate's two source taps along an axis. A tap outside the image (padding)
// has weight 0 and a clamped index, so the inner loop never branches.
struct Tap {
  int i0 = 0, i1 = 0;
  float w0 = 1.f, w1 = 0.f;
};

// Output index o in [0, out_len) samples the source window [start, start + length) (source
// pixel units, pixel-centre convention as in torch's bilinear with align_corners=false).
// Source pixels outside [0, src_len) read as 0 when `zero_outside`, else clamp to the edge.
void BuildAxis(int src_len, int out_len, double start, double length, bool mirror,
               bool zero_outside, std::vector<Tap>* taps) {
  taps->resize(out_len);
  const double scale = length / out_len;
  for (int o = 0; o < out_len; ++o) {
    double w = (o + 0.5) * scale - 0.5;
    w = std::clamp(w, 0.0, std::max(0.0, length - 1.0));
    double s = start + w;
    double floor_s = std::floor(s);
    double frac = s - floor_s;
    // Snap near-integers so that unscaled copies are exact.
    if (frac < 1e-6) frac = 0.0;
    if (frac > 1.0 - 1e-6) {
      floor_s += 1.0;
      frac = 0.0;
    }
    Tap tap;
    tap.i0 = static_cast<int>(floor_s);
    tap.i1 = tap.i0 + 1;
    tap.w0 = static_cast<float>(1.0 - frac);
    tap.w1 = static_cast<float>(frac);
    if (tap.w1 == 0.f) tap.i1 = tap.i0;
    if (zero_outside) {
      if (tap.i0 < 0 || tap.i0 >= src_len) tap.w0 = 0.f;
      if (tap.i1 < 0 || tap.i1 >= src_len) tap.w1 = 0.f;
    }
    tap.i0 = std::clamp(tap.i0, 0, src_len - 1);
    tap.i1 = std::clamp(tap.i1, 0, src_len - 1);
    (*taps)[mirror ? out_len - 1 - o : o] = tap;
  }
}

}  // namespace

Status ValidateAugmentOptions(const AugmentOptions& options) {
  if (options.resolution <= 0) {
    return InvalidArgument("augment.resolution must be a positive pixel count, not " +
                           std::to_string(options.resolution));
  }
  if (options.crop_padding < 0) {
    return InvalidArgument("augment.crop_padding must be >= 0, not " +
                           std::to_string(options.crop_padding));
  }
  if (options.resize == ResizeMode::kShorterSideCrop && !(options.resize_ratio >= 1.0)) {
    return InvalidArgument(
        "augment.resize_ratio must be >= 1 (the shorter side is resized to "
        "resolution * ratio before cropping)");
  }
  for (float s : options.std) {
    if (!(s > 0.f)) return InvalidArgument("augment.std entries must be > 0");
  }
  return Status::Ok();
}

uint64_t AugmentKey(uint64_t seed, uint64_t epoch, uint64_t example_index) {
  return HashValues({seed, epoch, example_index, 0xa06ULL});
}

void AugmentInto(const ImageView& image, const AugmentOptions& options, bool train, uint64_t key,
                 float* out) {
  thread_local std::vector<Tap> rows, cols;
  const int r = options.resolution;
  const int h = image.height, w = image.width;
  CounterRng rng(key);
  // Draw in a fixed order whatever the options, so that turning one augmentation on does not
  // change another's draws.
  const uint64_t draw_y = rng.Next(), draw_x = rng.Next();
  const bool mirror = train && options.flip && (rng.Next() & 1);

  double y0 = 0, x0 = 0, y_len = h, x_len = w;
  bool zero_outside = false;
  if (options.resize == ResizeMode::kStretch) {
    if (train && options.crop_padding > 0) {
      const uint64_t span = 2 * static_cast<uint64_t>(options.crop_padding) + 1;
      y0 = static_cast<double>(draw_y % span) - options.crop_padding;
      x0 = static_cast<double>(draw_x % span) - options.crop_padding;
      zero_outside = true;
    }
  } else {
    const int shorter = std::max(1, static_cast<int>(std::lround(r * options.resize_ratio)));
    const double scale = static_cast<double>(shorter) / std::min(h, w);
    const int resized_h = std::max(r, static_cast<int>(std::lround(h * scale)));
    const int resized_w = std::max(r, static_cast<int>(std::lround(w * scale)));
    const int slack_y = resized_h - r, slack_x = resized_w - r;
    const int off_y = train ? static_cast<int>(draw_y % (slack_y + 1)) : slack_y / 2;
    const int off_x = train ? static_cast<int>(draw_x % (slack_x + 1)) : slack_x / 2;
    const double sy = static_cast<double>(resized_h) / h, sx = static_cast<double>(resized_w) / w;
    y0 = off_y / sy;
    x0 = off_x / sx;
    y_len = r / sy;
    x_len = r / sx;
  }
  BuildAxis(h, r, y0, y_len, false, zero_outside, &rows);
  BuildAxis(w, r, x0, x_len, mirror, zero_outside, &cols);

  const int c_in = image.channels;
  const size_t plane = static_cast<size_t>(r) * r;
  const size_t row_stride = static_cast<size_t>(w) * c_in;
  float scale[3], shift[3];
  for (int c = 0; c < 3; ++c) {
    scale[c] = 1.f / (255.f * options.std[c]);
    shift[c] = -options.mean[c] / options.std[c];
  }
  for (int oy = 0; oy < r; ++oy) {
    const Tap& ty = rows[oy];
    const uint8_t* row0 = image.pixels + ty.i0 * row_stride;
    const uint8_t* row1 = image.pixels + ty.i1 * row_stride;
    float* dst = out + static_cast<size_t>(oy) * r;
    for (int ox = 0; ox < r; ++ox) {
      const Tap& tx = cols[ox];
      const size_t a = static_cast<size_t>(tx.i0) * c_in, b = static_cast<size_t>(tx.i1) * c_in;
      if (c_in == 1) {
        const float v = ty.w0 * (tx.w0 * row0[a] + tx.w1 * row0[b]) +
                        ty.w1 * (tx.w0 * row1[a] + tx.w1 * row1[b]);
        for (int c = 0; c < 3; ++c) dst[c * plane + ox] = v * scale[c] + shift[c];
      } else {
        for (int c = 0; c < 3; ++c) {
          const float v = ty.w0 * (tx.w0 * row0[a + c] + tx.w1 * row0[b + c]) +
                          ty.w1 * (tx.w0 * row1[a + c] + tx.w1 * row1[b + c]);
          dst[c * plane + ox] = v * scale[c] + shift[c];
        }
      }
    }
  }
}

}  // namespace vitscale::data
