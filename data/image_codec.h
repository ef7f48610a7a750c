// JPEG (libjpeg-turbo) and PNG (libpng) decoding into Image, and encoding for tests and tools.
// Decoded images keep their colour kind: grayscale stays 1 channel, anything in colour becomes
// RGB (3 channels); PNG alpha is composited onto black and 16-bit samples become 8-bit.
// All functions are thread-safe (no shared state).
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "data/split.h"

namespace vitscale::data {

// Signatures: PNG's 8 bytes, JPEG's SOI marker.
bool IsPng(std::string_view bytes);
bool IsJpeg(std::string_view bytes);

// `source` names the bytes' origin (a path) in error messages.
Expected<Image> DecodeJpeg(std::string_view bytes, const std::string& source);
Expected<Image> DecodePng(std::string_view bytes, const std::string& source);
// Decodes `bytes` as JPEG or PNG according to their leading signature bytes.
Expected<Image> DecodeImage(std::string_view bytes, const std::string& source);
// Reads a file and decodes it as JPEG or PNG according to its leading signature bytes.
Expected<Image> ReadImageFile(const std::string& path);

// Part of a JPEG decoded at reduced size, for crops: what DecodeJpegRegion produced.
struct DecodedRegion {
  Image image;          // the decoded rows and columns (channels 1 or 3)
  int scale = 1;        // 1, 2, 4 or 8: each image pixel stands for scale x scale source pixels
  int top = 0;          // image row 0 is row `top` of the whole picture at that scale
  int left = 0;         // image column 0 likewise (a multiple of the JPEG's block width)
  int full_height = 0;  // the picture's size at full scale
  int full_width = 0;
};

// Which source rows [*top, *top + *height) and columns [*left, *left + *width), in pixels of
// the scaled picture, to decode at which *scale (1, 2, 4 or 8), given the picture's full size.
using RegionChooser = std::function<void(int full_height, int full_width, int* scale, int* top,
                                         int* left, int* height, int* width)>;

// Decodes only the rows and columns `choose` asks for, using libjpeg-turbo's DCT-domain
// scaling (1/2, 1/4, 1/8 cost a fraction of a full decode), skipping the rows above the
// region and stopping after its last row. `out`'s buffer is reused between calls.
Status DecodeJpegRegion(std::string_view bytes, const std::string& source,
                        const RegionChooser& choose, DecodedRegion* out);

// REQUIRES: image.channels is 1 or 3 and pixels has height * width * channels bytes.
Expected<std::string> EncodeJpeg(const Image& image, int quality = 95);
Expected<std::string> EncodePng(const Image& image);

}  // namespace vitscale::data
