#include "models/init_from.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <filesystem>

#include "models/checkpoint.h"
#include "models/npy.h"
#include "models/npz.h"
#include "models/npz_layout.h"
#include "models/zoo.h"

namespace vitscale::models {
namespace {

// The model a released .npz holds: `config`'s architecture with the file's head, pre_logits and
// (ViT, hybrid) resolution, and the released code's conventions; its weights loaded.
Expected<Model> LoadReleased(const std::string& path, const ModelImpl& like) {
  ASSIGN_OR_RETURN(auto shapes, ReadNpzShapes(path));
  ASSIGN_OR_RETURN(ReleasedFileShape shape,
                   InferReleasedShape(like.config(), shapes, path, like.resolution()));
  ModelConfig config = like.config();
  config.pre_logits = shape.pre_logits;
  config.conventions = ReleasedConventions(config.family);
  ASSIGN_OR_RETURN(Model source, BuildModel(config, shape.num_classes, shape.resolution));
  RETURN_IF_ERROR(ImportNpz(*source, path));
  return source;
}

}  // namespace

Status InitializeFrom(const std::string& path, ModelImpl& model) {
  Model source{nullptr};
  if (std::filesystem::path(path).extension() == ".npz") {
    ASSIGN_OR_RETURN(source, LoadReleased(path, model));
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
  // Same architecture and shape now: copy by name, after checking every tensor matches. A
  // pre_logits layer the model has and the source does not (pretraining released weights
  // further with a new one) keeps its initialisation.
  auto from = source->named_parameters(/*recurse=*/true);
  auto to = model.named_parameters(/*recurse=*/true);
  for (const auto& item : to) {
    const torch::Tensor* match = from.find(item.key());
    if (match == nullptr && item.key().rfind("pre_logits.", 0) == 0) continue;
    if (match == nullptr || !match->sizes().equals(item.value().sizes())) {
      return InvalidArgument(fmt::format("{} does not fit {}: parameter '{}' differs", path,
                                         model.name(), item.key()));
    }
  }
  torch::NoGradGuard no_grad;
  for (auto& item : to) {
    if (const torch::Tensor* match = from.find(item.key())) item.value().copy_(*match);
  }
  auto from_buffers = source->named_buffers(/*recurse=*/true);
  for (auto& item : model.named_buffers(/*recurse=*/true)) {
    if (const torch::Tensor* match = from_buffers.find(item.key())) item.value().copy_(*match);
  }
  // The weights compute what they were trained to compute only under their conventions.
  model.SetConventions(source->config().conventions);
  return Status::Ok();
}

}  // namespace vitscale::models
