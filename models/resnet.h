// ResNet modules: BiT's ResNet-v2 (pre-activation bottlenecks, GroupNorm, weight-standardised
// convolutions, width factor) for the ResNet family, and the post-activation variant that the
// ViT paper's hybrids use as their patch embedding (models/vit.h takes it as its backbone).
// Submodule names are checkpoint keys: stem, stem_norm, stages.S.B.{conv1,norm1,...}, norm, head.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <utility>

#include "models/model.h"
#include "models/registry.h"

namespace vitscale::models {

// A bias-free convolution whose kernel is standardised (zero mean, unit variance per output
// channel) on every call. Padding and the standardisation's epsilon follow the model's
// Conventions: kernel/2 on each side, or TensorFlow's SAME (the odd pixel at the end).
class StdConv2dImpl : public torch::nn::Module {
 public:
  StdConv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);
  void SetConventions(const Conventions& conventions);

  torch::Tensor weight;  // (out, in, kernel, kernel)

 private:
  torch::Tensor Standardized() const;

  int64_t stride_;
  Padding padding_ = Padding::kSymmetric;
  StdConvForm form_ = StdConvForm::kVariance;
  double eps_ = 1e-5;
};
TORCH_MODULE(StdConv2d);

// One bottleneck (1x1 → 3x3 with the stride → 1x1 at 4x the middle width), with a 1x1
// projection on the shortcut when the shape changes. `preact`: BiT's v2 unit (norm + ReLU
// before each conv); otherwise the v1.5 unit of the hybrids (norm after each conv, ReLU after
// the sum), whose last norm starts with a zero scale as in the released code, so that each
// unit starts as its shortcut.
class BottleneckImpl : public torch::nn::Module {
 public:
  BottleneckImpl(int64_t in_channels, int64_t mid_channels, int64_t out_channels, int64_t stride,
                 int groups, bool preact);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  bool preact_;
  StdConv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr}, proj_{nullptr};
  torch::nn::GroupNorm norm1_{nullptr}, norm2_{nullptr}, norm3_{nullptr}, proj_norm_{nullptr};
};
TORCH_MODULE(Bottleneck);

// The convolutional trunk: stem and stages, producing a feature map of
// ResNetOutputChannels(config) channels at stride ResNetStride(config). `preact` as above; a
// pre-activation trunk ends with a GroupNorm + ReLU (BiT's pre-head norm).
class ResNetTrunkImpl : public torch::nn::Module {
 public:
  ResNetTrunkImpl(const ResNetConfig& config, bool preact);
  torch::Tensor forward(const torch::Tensor& images);
  // The stem max-pool's padding; the convolutions get theirs from StdConv2dImpl.
  void set_padding(Padding padding) { padding_ = padding; }

 private:
  ResNetConfig config_;
  bool preact_;
  Padding padding_ = Padding::kSymmetric;
  StdConv2d stem_{nullptr};
  torch::nn::GroupNorm stem_norm_{nullptr};  // post-activation trunks only
  torch::nn::ModuleList stages_{nullptr};
  torch::nn::GroupNorm norm_{nullptr};  // pre-activation trunks only
};
TORCH_MODULE(ResNetTrunk);

// BiT ResNet-v2 classifier: trunk, global average pooling, zero-initialised linear head.
class ResNetImpl : public ModelImpl {
 public:
  ResNetImpl(const ModelConfig& config, int num_classes, int resolution);

  torch::Tensor Forward(const torch::Tensor& images) override;
  torch::Tensor Features(const torch::Tensor& images) override;
  int FeatureDim() const override;
  Status ReplaceHead(int num_classes) override;
  Status ResizePositionEmbedding(int resolution) override;

 private:
  ResNetTrunk trunk_{nullptr};
  torch::nn::Linear head_{nullptr};
};

// TensorFlow's SAME padding of one spatial side: (before, after) for a window of `kernel` at
// `stride` over `size` pixels, so that the output has ceil(size / stride) pixels.
std::pair<int64_t, int64_t> SamePadding(int64_t size, int64_t kernel, int64_t stride);

// A zero-initialised linear layer: the fine-tuning head of every model in the zoo.
torch::nn::Linear ZeroLinear(int64_t in_features, int64_t out_features);
// A linear layer that adds its multiply-adds to the active MacCountScope.
torch::Tensor CountedLinear(torch::nn::Linear& layer, const torch::Tensor& x);

}  // namespace vitscale::models
