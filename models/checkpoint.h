// vitscale's own model weights file (docs/checkpoints.md): a torch.save-compatible zip holding
// one dict {format, name, config (JSON), num_classes, resolution, state: {key: tensor}}, where
// the keys are the module's parameter names. Python reads it with torch.load(path).
// The trainer embeds EncodeModel's bytes in its own checkpoints (optimizer, step, RNG); this
// file knows only the model.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"
#include "models/model.h"
#include "models/registry.h"

namespace vitscale::models {

inline constexpr std::string_view kCheckpointFormat = "vitscale-model/1";

struct CheckpointInfo {
  ModelConfig config;
  int num_classes = 0;
  int resolution = 0;
};

// Weights (copied to the CPU) plus the model's name, config, class count and resolution.
Expected<std::string> EncodeModel(ModelImpl& model);
// Writes EncodeModel's bytes atomically (temp file, fsync, rename).
Status SaveModel(ModelImpl& model, const std::string& path);

// `what` names the bytes in errors (a path, or "checkpoint of job X").
Expected<CheckpointInfo> DecodeInfo(std::string_view bytes, std::string_view what);
// Copies the weights into `model`, onto its device and dtype. A file for another architecture
// is refused, naming the first key that differs and both shapes; the model is left unchanged.
Status DecodeWeights(std::string_view bytes, std::string_view what, ModelImpl& model);

Expected<CheckpointInfo> ReadCheckpointInfo(const std::string& path);
Status LoadWeights(const std::string& path, ModelImpl& model);
// Builds the model the file describes (BuildModel with its config) and loads its weights.
Expected<Model> LoadModel(const std::string& path);

}  // namespace vitscale::models
