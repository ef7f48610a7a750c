// The arithmetic of GPU training steps (docs/gpu.md); the CPU always trains in float32.
#pragma once

#include <string>

#include "common/names.h"
#include "common/status.h"

namespace vitscale::trainer {

enum class Precision { kAuto, kFloat32, kBFloat16 };  // auto: bf16 autocast on a GPU

inline const char* PrecisionName(Precision precision) {
  switch (precision) {
    case Precision::kAuto:
      return "auto";
    case Precision::kFloat32:
      return "fp32";
    case Precision::kBFloat16:
      return "bf16";
  }
  return "?";
}

// The error says "is 'NAME'; use ...", to follow a field name.
inline Expected<Precision> ParsePrecision(const std::string& name) {
  for (Precision p : {Precision::kAuto, Precision::kFloat32, Precision::kBFloat16}) {
    if (name == PrecisionName(p)) return p;
  }
  return InvalidArgument("is '" + name + "'; use auto, fp32 or bf16" +
                         DidYouMean(name, {"auto", "fp32", "bf16"}));
}

}  // namespace vitscale::trainer
