#include "models/resnet.h"

#include <torch/nn/functional/pooling.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/container/sequential.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "models/macs.h"

namespace vitscale::models {
namespace {

// Built with vitscale's own conventions; BuildModel then applies the config's.
torch::nn::GroupNorm MakeGroupNorm(int groups, int64_t channels) {
  return torch::nn::GroupNorm(
      torch::nn::GroupNormOptions(groups, channels).eps(Conventions{}.group_norm_eps));
}

// Pads the last two dimensions of x (N, C, H, W) by TensorFlow's SAME for the window, with
// `value` (0 before a convolution, -inf before a max-pool).
torch::Tensor PadSame(const torch::Tensor& x, int64_t kernel, int64_t stride, double value) {
  auto [top, bottom] = SamePadding(x.size(2), kernel, stride);
  auto [left, right] = SamePadding(x.size(3), kernel, stride);
  if (top == 0 && bottom == 0 && left == 0 && right == 0) return x;
  return torch::constant_pad_nd(x, {left, right, top, bottom}, value);
}

}  // namespace

std::pair<int64_t, int64_t> SamePadding(int64_t size, int64_t kernel, int64_t stride) {
  const int64_t out = (size + stride - 1) / stride;
  const int64_t total = std::max<int64_t>(0, (out - 1) * stride + kernel - size);
  return {total / 2, total - total / 2};
}

torch::nn::Linear ZeroLinear(int64_t in_features, int64_t out_features) {
  torch::nn::Linear layer(in_features, out_features);
  torch::NoGradGuard no_grad;
  layer->weight.zero_();
  layer->bias.zero_();
  return layer;
}

torch::Tensor CountedLinear(torch::nn::Linear& layer, const torch::Tensor& x) {
  CountMacs(x.numel() / x.size(-1) * layer->weight.size(0) * layer->weight.size(1));
  return layer->forward(x);
}

StdConv2dImpl::StdConv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel,
                             int64_t stride)
    : stride_(stride) {
  weight = register_parameter("weight", torch::empty({out_channels, in_channels, kernel, kernel}));
  torch::nn::init::kaiming_normal_(weight, 0.0, torch::kFanOut, torch::kReLU);
  SetConventions(Conventions{});
}

void StdConv2dImpl::SetConventions(const Conventions& conventions) {
  padding_ = conventions.padding;
  form_ = conventions.std_conv_form;
  eps_ = conventions.std_conv_eps;
}

torch::Tensor StdConv2dImpl::Standardized() const {
  if (form_ == StdConvForm::kStd) {
    auto [variance, mean] = torch::var_mean(weight, {1, 2, 3}, /*unbiased=*/false,
                                            /*keepdim=*/true);
    return (weight - mean) / (variance.sqrt() + eps_);
  }
  // batch_norm over (1, out, in*k*k) standardises each output filter in one fused kernel.
  const int64_t out_channels = weight.size(0);
  return torch::batch_norm(weight.reshape({1, out_channels, -1}), {}, {}, {}, {},
                           /*training=*/true, /*momentum=*/0.0, eps_, /*cudnn_enabled=*/true)
      .reshape_as(weight);
}

torch::Tensor StdConv2dImpl::forward(const torch::Tensor& x) {
  const int64_t kernel = weight.size(2);
  const bool same = padding_ == Padding::kSame;
  torch::Tensor y = torch::conv2d(same ? PadSame(x, kernel, stride_, 0.0) : x, Standardized(), {},
                                  stride_, same ? 0 : kernel / 2);
  CountMacs(y.numel() * weight.size(1) * weight.size(2) * weight.size(3));
  return y;
}

BottleneckImpl::BottleneckImpl(int64_t in_channels, int64_t mid_channels, int64_t out_channels,
                               int64_t stride, int groups, bool preact)
    : preact_(preact) {
  conv1_ = register_module("conv1", StdConv2d(in_channels, mid_channels, 1, 1));
  conv2_ = register_module("conv2", StdConv2d(mid_channels, mid_channels, 3, stride));
  conv3_ = register_module("conv3", StdConv2d(mid_channels, out_channels, 1, 1));
  norm1_ = register_module("norm1", MakeGroupNorm(groups, preact ? in_channels : mid_channels));
  norm2_ = register_module("norm2", MakeGroupNorm(groups, mid_channels));
  norm3_ = register_module("norm3", MakeGroupNorm(groups, preact ? mid_channels : out_channels));
  if (stride != 1 || in_channels != out_channels) {
    proj_ = register_module("proj", StdConv2d(in_channels, out_channels, 1, stride));
    if (!preact) proj_norm_ = register_module("proj_norm", MakeGroupNorm(groups, out_channels));
  }
  if (!preact) {
    torch::NoGradGuard no_grad;
    norm3_->weight.zero_();
  }
}

torch::Tensor BottleneckImpl::forward(const torch::Tensor& x) {
  if (preact_) {
    // BiT: the shortcut projection reads the pre-activated input.
    torch::Tensor pre = torch::relu(norm1_(x));
    torch::Tensor shortcut = proj_ ? proj_(pre) : x;
    torch::Tensor y = conv1_(pre);
    y = conv2_(torch::relu(norm2_(y)));
    y = conv3_(torch::relu(norm3_(y)));
    return y.add_(shortcut);
  }
  torch::Tensor shortcut = proj_ ? proj_norm_(proj_(x)) : x;
  torch::Tensor y = torch::relu(norm1_(conv1_(x)));
  y = torch::relu(norm2_(conv2_(y)));
  y = norm3_(conv3_(y));
  return torch::relu(y.add_(shortcut));
}

ResNetTrunkImpl::ResNetTrunkImpl(const ResNetConfig& config, bool preact)
    : config_(config), preact_(preact) {
  const int64_t stem_width = int64_t{config.base_width} * config.width_factor;
  stem_ = register_module(
      "stem", StdConv2d(3, stem_width, config.small_stem ? 3 : 7, config.small_stem ? 1 : 2));
  if (!preact)
    stem_norm_ = register_module("stem_norm", MakeGroupNorm(config.groupnorm_groups, stem_width));
  stages_ = register_module("stages", torch::nn::ModuleList());
  int64_t in_channels = stem_width;
  for (size_t s = 0; s < config.blocks.size(); ++s) {
    const int64_t mid_channels = stem_width << s;
    const int64_t out_channels = 4 * mid_channels;
    torch::nn::Sequential stage;
    for (int b = 0; b < config.blocks[s]; ++b) {
      const int64_t stride = (b == 0 && s > 0) ? 2 : 1;
      stage->push_back(std::to_string(b), Bottleneck(in_channels, mid_channels, out_channels,
                                                     stride, config.groupnorm_groups, preact));
      in_channels = out_channels;
    }
    stages_->push_back(stage);
  }
  if (preact) norm_ = register_module("norm", MakeGroupNorm(config.groupnorm_groups, in_channels));
}

torch::Tensor ResNetTrunkImpl::forward(const torch::Tensor& images) {
  torch::Tensor x = stem_(images);
  if (!preact_) x = torch::relu(stem_norm_(x));
  if (!config_.small_stem) {
    switch (padding_) {
      case Padding::kSymmetric:
        x = torch::max_pool2d(x, 3, 2, 1);
        break;
      case Padding::kSame:
        x = torch::max_pool2d(PadSame(x, 3, 2, -std::numeric_limits<double>::infinity()), 3, 2);
        break;
      case Padding::kFixed:
        x = torch::max_pool2d(torch::constant_pad_nd(x, {1, 1, 1, 1}, 0.0), 3, 2);
        break;
    }
  }
  for (const auto& stage : *stages_) x = stage->as<torch::nn::Sequential>()->forward(x);
  if (preact_) x = torch::relu(norm_(x));
  return x;
}

ResNetImpl::ResNetImpl(const ModelConfig& config, int num_classes, int resolution)
    : ModelImpl(config, num_classes, resolution) {
  trunk_ = register_module("trunk", ResNetTrunk(config.resnet, /*preact=*/true));
  head_ = register_module("head", ZeroLinear(ResNetOutputChannels(config.resnet), num_classes));
}

torch::Tensor ResNetImpl::Features(const torch::Tensor& images) {
  return trunk_(images).mean({2, 3});
}

torch::Tensor ResNetImpl::Forward(const torch::Tensor& images) {
  return CountedLinear(head_, Features(images));
}

int ResNetImpl::FeatureDim() const { return ResNetOutputChannels(config().resnet); }

Status ResNetImpl::ReplaceHead(int num_classes) {
  RETURN_IF_ERROR(CheckShape(config(), resolution(), num_classes));
  torch::nn::Linear head = ZeroLinear(FeatureDim(), num_classes);
  head->to(head_->weight.device(), head_->weight.scalar_type());
  head_ = replace_module("head", head);
  set_num_classes(num_classes);
  return Status::Ok();
}

Status ResNetImpl::ResizePositionEmbedding(int resolution) {
  // Convolutions run at any size; only the stride has to divide it.
  RETURN_IF_ERROR(CheckShape(config(), resolution, num_classes()));
  set_resolution(resolution);
  return Status::Ok();
}

}  // namespace vitscale::models
