// JPEG (libjpeg-turbo) and PNG (libpng) decoding into Image, and encoding for tests and tools.
// Decoded images keep their colour kind: grayscale stays 1 channel, anything in colour becomes
// RGB (3 channels); PNG alpha is composited onto black and 16-bit samples become 8-bit.
// All functions are thread-safe (no shared state).
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"
#include "data/split.h"

namespace vitscale::data {

// `source` names the bytes' origin (a path) in error messages.
Expected<Image> DecodeJpeg(std::string_view bytes, const std::string& source);
Expected<Image> DecodePng(std::string_view bytes, const std::string& source);
// Reads a file and decodes it as JPEG or PNG according to its leading signature bytes.
Expected<Image> ReadImageFile(const std::string& path);

// REQUIRES: image.channels is 1 or 3 and pixels has height * width * channels bytes.
Expected<std::string> EncodeJpeg(const Image& image, int quality = 95);
Expected<std::string> EncodePng(const Image& image);

}  // namespace vitscale::data
