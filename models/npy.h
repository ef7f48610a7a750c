// The .npy array format (numpy's NEP 1) as far as ViT checkpoints need it: little-endian
// float32 ('<f4'), float16 ('<f2') and bfloat16 (written by numpy as a 2-byte void, '<V2' or
// '|V2', or spelled 'bfloat16' by some writers), any shape, C or Fortran order.
// No LibTorch here; models/npz.h maps arrays onto a model's parameters.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace vitscale::models {

enum class NpyDtype { kFloat32, kFloat16, kBFloat16 };
const char* NpyDtypeName(NpyDtype dtype);  // "float32", "float16", "bfloat16"
int NpyItemSize(NpyDtype dtype);

struct NpyArray {
  NpyDtype dtype = NpyDtype::kFloat32;
  std::vector<int64_t> shape;  // () for a scalar
  bool fortran_order = false;
  std::string data;  // little-endian elements, exactly numel * item size bytes

  int64_t numel() const;
};

// Parses a whole .npy file. `what` names it in errors, e.g. "vit.npz: head/kernel".
Expected<NpyArray> ParseNpy(std::string_view bytes, std::string_view what);

// A version 1.0 .npy file; bfloat16 is written as '<V2', as numpy itself writes it.
std::string SerializeNpy(const NpyArray& array);

// "(768, 12, 64)", numpy's spelling of a shape.
std::string ShapeString(const std::vector<int64_t>& shape);

// An .npz archive (numpy.savez: a zip of "<key>.npy" members) as key → array, the ".npy"
// suffix dropped. A missing, non-zip or truncated file, or a bad member, is an error naming it.
Expected<std::map<std::string, NpyArray>> ReadNpz(const std::string& path);

// The shape of every array of an .npz, reading only the members' headers (a released ViT-H file
// is 2.5 GB): for checking a file against a model without loading it. Errors as ReadNpz's.
Expected<std::map<std::string, std::vector<int64_t>>> ReadNpzShapes(const std::string& path);

// Writes `arrays` as an uncompressed .npz, atomically (temp file, fsync, rename).
Status WriteNpz(const std::string& path, const std::map<std::string, NpyArray>& arrays);

}  // namespace vitscale::models
