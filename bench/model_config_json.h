// The flat model description the benchmarks hand to their Python twins (bench/*.py build the
// same architecture from it).
#pragma once

#include <nlohmann/json.hpp>

#include "models/registry.h"

namespace vitscale::bench {

inline nlohmann::json ModelConfigJson(const models::ModelConfig& c) {
  return nlohmann::json{{"family", models::FamilyName(c.family)},
                        {"depth", c.transformer.depth},
                        {"width", c.transformer.width},
                        {"mlp_dim", c.transformer.mlp_dim},
                        {"heads", c.transformer.heads},
                        {"patch", c.transformer.patch},
                        {"blocks", c.resnet.blocks},
                        {"width_factor", c.resnet.width_factor},
                        {"base_width", c.resnet.base_width},
                        {"small_stem", c.resnet.small_stem},
                        {"groups", c.resnet.groupnorm_groups}};
}

}  // namespace vitscale::bench
