#include "models/init_from.h"

#include <cmath>
#include <filesystem>

#include <fmt/format.h>
#include <torch/torch.h>

#include "models/checkpoint.h"
#include "models/npy.h"
#include "models/npz.h"
#include "models/zoo.h"

namespace vitscale::models {
namespace {

// The class count, resolution and pre_logits width an `.npz` was saved with, read from the
// shapes of its head and position embeddings.
Expected<CheckpointInfo> NpzInfo(const std::string& path, const ModelConfig& config) {
  ASSIGN_OR_RETURN(auto arrays, ReadNpz(path));
  auto head = arrays.find("head/kernel");
  auto position = arrays.find("Transformer/posembed_input/pos_embedding");
  if (head == arrays.end() || head->second.shape.size() != 2) {
    return InvalidArgument(path + " has no 2-D 'head/kernel'");
  }
  if (position == arrays.end() || position->second.shape.size() != 3) {
    return InvalidArgument(path + " has no 3-D 'Transformer/posembed_input/pos_embedding'");
  }
  CheckpointInfo info;
  info.config = config;
  auto pre_logits = arrays.find("pre_logits/kernel");
  info.config.pre_logits =
      pre_logits == arrays.end() ? 0 : static_cast<int>(pre_logits->second.shape.back());
  info.num_classes = static_cast<int>(head->second.shape[1]);
  int64_t tokens = position->second.shape[1] - (config.pooling == Pooling::kClassToken ? 1 : 0);
  int64_t grid = std::llround(std::sqrt(static_cast<double>(tokens)));
  if (grid * grid != tokens) {
    return InvalidArgument(fmt::format("{}: {} position embeddings do not form a square grid", path,
                                       position->second.shape[1]));
  }
  info.resolution = static_cast<int>(grid) * InputStride(config);
  return info;
}

}  // namespace

Status InitializeFrom(const std::string& path, ModelImpl& model) {
  Model source{nullptr};
  if (std::filesystem::path(path).extension() == ".npz") {
    ASSIGN_OR_RETURN(CheckpointInfo info, NpzInfo(path, model.config()));
    ASSIGN_OR_RETURN(source, BuildModel(info.config, info.num_classes, info.resolution));
    RETURN_IF_ERROR(ImportNpz(*source, path));
  } else {
    ASSIGN_OR_RETURN(source, LoadModel(path));  // reads and decodes the file once
    if (source->name() != model.name()) {
      return InvalidArgument(fmt::format("{} holds a {}, not a {}", path, source->name(),
                                         model.name()));
    }
  }
  if (source->num_classes() != model.num_classes() ||
      source->config().pre_logits != model.config().pre_logits) {
    RETURN_IF_ERROR(source->ReplaceHead(model.num_classes()));
  }
  if (source->resolution() != model.resolution()) {
    RETURN_IF_ERROR(source->ResizePositionEmbedding(model.resolution()));
  }
  // Same architecture and shape now: copy by name, after checking every tensor matches.
  auto from = source->named_parameters(/*recurse=*/true);
  auto to = model.named_parameters(/*recurse=*/true);
  for (const auto& item : to) {
    const torch::Tensor* match = from.find(item.key());
    if (match == nullptr || !match->sizes().equals(item.value().sizes())) {
      return InvalidArgument(fmt::format("{} does not fit {}: parameter '{}' differs", path,
                                         model.name(), item.key()));
    }
  }
  torch::NoGradGuard no_grad;
  for (auto& item : to) item.value().copy_(*from.find(item.key()));
  auto from_buffers = source->named_buffers(/*recurse=*/true);
  for (auto& item : model.named_buffers(/*recurse=*/true)) {
    if (const torch::Tensor* match = from_buffers.find(item.key())) item.value().copy_(*match);
  }
  return Status::Ok();
}

}  // namespace vitscale::models
