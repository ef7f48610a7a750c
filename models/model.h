// The interface the trainer and evaluators use for every model in the zoo (ViT, ResNet-BiT,
// hybrid). Build one with BuildModel (models/zoo.h); the concrete modules live in vit.h and
// resnet.h. A Model is a torch::nn::Module: its registered submodule names are the checkpoint
// keys (models/checkpoint.h). Not thread-safe: one thread drives a model at a time.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <string>

#include "common/status.h"
#include "models/registry.h"

namespace vitscale::models {

class ModelImpl : public torch::nn::Module {
 public:
  ModelImpl(ModelConfig config, int num_classes, int resolution)
      : config_(std::move(config)), num_classes_(num_classes), resolution_(resolution) {}

  // images: (batch, 3, resolution, resolution) float → logits (batch, num_classes).
  virtual torch::Tensor Forward(const torch::Tensor& images) = 0;
  // The pre-head representation (after pre_logits when the model has it) used by few-shot
  // evaluation: (batch, FeatureDim()).
  virtual torch::Tensor Features(const torch::Tensor& images) = 0;
  virtual int FeatureDim() const = 0;
  // Removes the whole head (pre_logits included) and puts one zero-initialised linear layer
  // with `num_classes` outputs in its place, as fine-tuning does.
  virtual Status ReplaceHead(int num_classes) = 0;
  // Makes the model run at `resolution`: ViT and hybrids interpolate their position embeddings
  // bilinearly on the 2-D grid (the [class] entry kept); ResNets only check the shape.
  virtual Status ResizePositionEmbedding(int resolution) = 0;

  // Switches how the model computes (padding, GELU, epsilons; see Conventions) without touching
  // a weight: importing a released file sets the released code's conventions.
  void SetConventions(const Conventions& conventions);

  // Same as Forward, so that the module works with torch::nn::ModuleHolder::operator().
  torch::Tensor forward(const torch::Tensor& images) { return Forward(images); }

  const ModelConfig& config() const { return config_; }
  const std::string& name() const { return config_.name; }
  int num_classes() const { return num_classes_; }
  int resolution() const { return resolution_; }

 protected:
  void set_num_classes(int num_classes) { num_classes_ = num_classes; }
  void set_resolution(int resolution) { resolution_ = resolution; }
  // ReplaceHead drops pre_logits; the config follows so that checkpoints rebuild the same shape.
  void clear_pre_logits() { config_.pre_logits = 0; }

 private:
  ModelConfig config_;
  int num_classes_;
  int resolution_;
};

TORCH_MODULE(Model);

}  // namespace vitscale::models
