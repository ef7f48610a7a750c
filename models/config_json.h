// A ModelConfig as JSON: how vitscale's model files and the trainer's checkpoints record the
// architecture and its conventions (docs/checkpoints.md). No LibTorch.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "common/status.h"
#include "models/registry.h"

namespace vitscale::models {

nlohmann::json ModelConfigToJson(const ModelConfig& config);
// `what` names the source in errors. Files written before conventions existed have no
// "conventions" object: they get vitscale's own.
Expected<ModelConfig> ModelConfigFromJson(const nlohmann::json& json, std::string_view what);

nlohmann::json ConventionsToJson(const Conventions& conventions);
Expected<Conventions> ConventionsFromJson(const nlohmann::json& json, std::string_view what);

}  // namespace vitscale::models
