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
  if (!(options.min_area > 0.0 && options.min_area <= 1.0)) {
    return InvalidArgument("augment.min_area must lie in (0, 1]");
  }
  for (float s : options.std) {
    if (!(s > 0.f)) return InvalidArgument("augment.std entries must be > 0");
  }
  return Status::Ok();
}

uint64_t AugmentKey(uint64_t seed, uint64_t epoch, uint64_t example_index) {
  return HashValues({seed, epoch, example_index, 0xa06ULL});
}

CropWindow ComputeCropWindow(int height, int width, const AugmentOptions& options, bool train,
                             uint64_t key) {
  const int r = options.resolution;
  const int h = height, w = width;
  CounterRng rng(key);
  // Draw in a fixed order whatever the options, so that turning one augmentation on does not
  // change another's draws.
  const uint64_t draw_y = rng.Next(), draw_x = rng.Next();
  CropWindow window;
  window.mirror = train && options.flip && (rng.Next() & 1);
  window.height = h;
  window.width = w;
  if (options.resize == ResizeMode::kStretch) {
    if (train && options.crop_padding > 0) {
      const uint64_t span = 2 * static_cast<uint64_t>(options.crop_padding) + 1;
      window.top = static_cast<double>(draw_y % span) - options.crop_padding;
      window.left = static_cast<double>(draw_x % span) - options.crop_padding;
      window.zero_outside = true;
    }
    return window;
  }
  if (options.resize == ResizeMode::kInceptionCrop && train) {
    // torchvision's RandomResizedCrop.get_params, on our counter-based draws.
    const double area = static_cast<double>(h) * w;
    const double log_low = std::log(3.0 / 4.0), log_high = std::log(4.0 / 3.0);
    for (int attempt = 0; attempt < 10; ++attempt) {
      const double target = area * (options.min_area + (1.0 - options.min_area) * rng.Uniform());
      const double ratio = std::exp(log_low + (log_high - log_low) * rng.Uniform());
      const int crop_w = static_cast<int>(std::lround(std::sqrt(target * ratio)));
      const int crop_h = static_cast<int>(std::lround(std::sqrt(target / ratio)));
      if (crop_w > 0 && crop_w <= w && crop_h > 0 && crop_h <= h) {
        window.top = static_cast<double>(rng.Below(static_cast<uint64_t>(h - crop_h) + 1));
        window.left = static_cast<double>(rng.Below(static_cast<uint64_t>(w - crop_w) + 1));
        window.height = crop_h;
        window.width = crop_w;
        return window;
      }
    }
    // Ten misses (very elongated images): the centre crop of the nearest allowed ratio.
    const double in_ratio = static_cast<double>(w) / h;
    int crop_w = w, crop_h = h;
    if (in_ratio < 3.0 / 4.0) {
      crop_h = std::min(h, static_cast<int>(std::lround(w / (3.0 / 4.0))));
    } else if (in_ratio > 4.0 / 3.0) {
      crop_w = std::min(w, static_cast<int>(std::lround(h * (4.0 / 3.0))));
    }
    window.top = (h - crop_h) / 2;
    window.left = (w - crop_w) / 2;
    window.height = crop_h;
    window.width = crop_w;
    return window;
  }
  // kShorterSideCrop, and kInceptionCrop's evaluation transform.
  const bool random_place = train && options.resize == ResizeMode::kShorterSideCrop;
  const int shorter = std::max(1, static_cast<int>(std::lround(r * options.resize_ratio)));
  const double scale = static_cast<double>(shorter) / std::min(h, w);
  const int resized_h = std::max(r, static_cast<int>(std::lround(h * scale)));
  const int resized_w = std::max(r, static_cast<int>(std::lround(w * scale)));
  const int slack_y = resized_h - r, slack_x = resized_w - r;
  const int off_y = random_place ? static_cast<int>(draw_y % (slack_y + 1)) : slack_y / 2;
  const int off_x = random_place ? static_cast<int>(draw_x % (slack_x + 1)) : slack_x / 2;
  const double sy = static_cast<double>(resized_h) / h, sx = static_cast<double>(resized_w) / w;
  window.top = off_y / sy;
  window.left = off_x / sx;
  window.height = r / sy;
  window.width = r / sx;
  return window;
}

namespace {

// Bilinear resampling of `window` (in `image`'s pixel coordinates) to resolution^2, gray to 3
// channels, normalised, CHW into `out`.
void ResampleInto(const ImageView& image, const CropWindow& window, const AugmentOptions& options,
                  float* out) {
  thread_local std::vector<Tap> rows, cols;
  const int r = options.resolution;
  BuildAxis(image.height, r, window.top, window.height, false, window.zero_outside, &rows);
  BuildAxis(image.width, r, window.left, window.width, window.mirror, window.zero_outside, &cols);

  // Separable: each source row is resampled horizontally once (into planar floats), and each
  // output row mixes two of those vertically, a loop the compiler vectorises. The sums are the
  // same as tap by tap: w0y * (w0x * a + w1x * b) + w1y * (w0x * c + w1x * d).
  const int c_in = image.channels;
  const size_t plane = static_cast<size_t>(r) * r;
  const size_t row_stride = static_cast<size_t>(image.width) * c_in;
  float scale[3], shift[3];
  for (int c = 0; c < 3; ++c) {
    scale[c] = 1.f / (255.f * options.std[c]);
    shift[c] = -options.mean[c] / options.std[c];
  }
  struct Row {
    int y = -1;
    std::vector<float> h;  // c_in planes of r floats
  };
  thread_local Row cache[2];
  for (Row& row : cache) {
    row.y = -1;
    row.h.resize(static_cast<size_t>(c_in) * r);
  }
  auto horizontal = [&](int y, int keep) -> const float* {
    for (Row& row : cache) {
      if (row.y == y) return row.h.data();
    }
    Row& row = cache[0].y == keep ? cache[1] : cache[0];
    row.y = y;
    const uint8_t* src = image.pixels + y * row_stride;
    for (int ox = 0; ox < r; ++ox) {
      const Tap& tx = cols[ox];
      const size_t a = static_cast<size_t>(tx.i0) * c_in, b = static_cast<size_t>(tx.i1) * c_in;
      for (int c = 0; c < c_in; ++c) row.h[c * r + ox] = tx.w0 * src[a + c] + tx.w1 * src[b + c];
    }
    return row.h.data();
  };
  for (int oy = 0; oy < r; ++oy) {
    const Tap& ty = rows[oy];
    const float* h0 = horizontal(ty.i0, ty.i1);
    const float* h1 = horizontal(ty.i1, ty.i0);
    for (int c = 0; c < 3; ++c) {
      const int source = c_in == 1 ? 0 : c;
      const float* a = h0 + source * r;
      const float* b = h1 + source * r;
      float* dst = out + c * plane + static_cast<size_t>(oy) * r;
      const float w0 = ty.w0, w1 = ty.w1, k = scale[c], d = shift[c];
      for (int ox = 0; ox < r; ++ox) dst[ox] = (w0 * a[ox] + w1 * b[ox]) * k + d;
    }
  }
}

}  // namespace

void AugmentInto(const ImageView& image, const AugmentOptions& options, bool train, uint64_t key,
                 float* out) {
  ResampleInto(image, ComputeCropWindow(image.height, image.width, options, train, key), options,
               out);
}

Status DecodeAugmentInto(std::string_view bytes, const std::string& source,
                         const AugmentOptions& options, bool train, uint64_t key, float* out,
                         DecodeScratch* scratch) {
  if (IsPng(bytes)) {
    ASSIGN_OR_RETURN(scratch->image, DecodePng(bytes, source));
    const Image& image = scratch->image;
    AugmentInto({image.pixels.data(), image.height, image.width, image.channels}, options, train,
                key, out);
    return Status::Ok();
  }
  if (!IsJpeg(bytes)) {
    return Corruption(source + ": neither a JPEG nor a PNG image (unknown leading bytes)");
  }
  CropWindow window;
  const int r = options.resolution;
  auto choose = [&](int full_height, int full_width, int* scale, int* top, int* left, int* height,
                    int* width) {
    window = ComputeCropWindow(full_height, full_width, options, train, key);
    *scale = 1;
    if (window.zero_outside) {  // padded crops read the whole image at full size
      *top = *left = 0;
      *height = full_height;
      *width = full_width;
      return;
    }
    for (int s : {8, 4, 2}) {
      if (window.height / s >= r && window.width / s >= r) {
        *scale = s;
        break;
      }
    }
    // The scaled rows and columns the bilinear taps touch, with one pixel to spare.
    const double s = *scale;
    *top = static_cast<int>(std::floor(window.top / s)) - 1;
    *left = static_cast<int>(std::floor(window.left / s)) - 1;
    *height = static_cast<int>(std::ceil((window.top + window.height) / s)) + 1 - *top;
    *width = static_cast<int>(std::ceil((window.left + window.width) / s)) + 1 - *left;
  };
  DecodedRegion& region = scratch->region;
  RETURN_IF_ERROR(DecodeJpegRegion(bytes, source, choose, &region));
  const Image& image = region.image;
  CropWindow local = window;
  if (!window.zero_outside) {
    local.top = window.top / region.scale - region.top;
    local.left = window.left / region.scale - region.left;
    local.height = window.height / region.scale;
    local.width = window.width / region.scale;
  }
  ResampleInto({image.pixels.data(), image.height, image.width, image.channels}, local, options,
               out);
  return Status::Ok();
}

}  // namespace vitscale::data
