// The one way to build a model: a registry name (or a decoded config), a class count and a
// square input resolution. The caller owns the returned module (a shared handle); it starts on
// the CPU in float32, in training mode.
#pragma once

#include <string_view>

#include "common/status.h"
#include "models/model.h"
#include "models/registry.h"

namespace vitscale::models {

// Unknown names get the nearest registered one; a resolution the patch size or backbone stride
// does not divide, or num_classes <= 0, gets an error naming the value.
Expected<Model> BuildModel(std::string_view name, int num_classes, int resolution);
Expected<Model> BuildModel(const ModelConfig& config, int num_classes, int resolution);

}  // namespace vitscale::models
