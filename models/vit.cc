#include "models/vit.h"

#include <torch/nn/functional/upsampling.h>
#include <torch/nn/init.h>

#include <cmath>
#include <string>

#include "models/macs.h"
#include "models/torch_compat.h"

namespace vitscale::models {
namespace {

// The paper's code uses LayerNorm epsilon 1e-6.
constexpr double kLayerNormEps = 1e-6;

torch::nn::LayerNorm MakeLayerNorm(int64_t width) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(kLayerNormEps));
}

// Xavier-uniform kernels; biases zero, or N(0, 1e-6) in the MLP, as the paper's code does.
torch::nn::Linear MakeLinear(int64_t in_features, int64_t out_features, double bias_std = 0.0) {
  torch::nn::Linear layer(in_features, out_features);
  torch::NoGradGuard no_grad;
  torch::nn::init::xavier_uniform_(layer->weight);
  if (bias_std > 0) {
    layer->bias.normal_(0.0, bias_std);
  } else {
    layer->bias.zero_();
  }
  return layer;
}

torch::Tensor MaybeDropout(const torch::Tensor& x, double p, bool training) {
  return (p > 0 && training) ? torch::dropout(x, p, true) : x;
}

}  // namespace

TransformerBlockImpl::TransformerBlockImpl(int64_t width, int64_t mlp_dim, int64_t heads,
                                           double dropout)
    : heads_(heads), dropout_(dropout) {
  norm1_ = register_module("norm1", MakeLayerNorm(width));
  qkv_ = register_module("qkv", MakeLinear(width, 3 * width));
  {
    // Xavier's bound from each projection's own D x D shape, not from the fused 3D x D.
    torch::NoGradGuard no_grad;
    for (int64_t part = 0; part < 3; ++part) {
      torch::Tensor slice = qkv_->weight.narrow(0, part * width, width);
      torch::nn::init::xavier_uniform_(slice);
    }
  }
  proj_ = register_module("proj", MakeLinear(width, width));
  norm2_ = register_module("norm2", MakeLayerNorm(width));
  fc1_ = register_module("fc1", MakeLinear(width, mlp_dim, 1e-6));
  fc2_ = register_module("fc2", MakeLinear(mlp_dim, width, 1e-6));
}

torch::Tensor TransformerBlockImpl::Attention(const torch::Tensor& x, torch::Tensor* weights) {
  const int64_t batch = x.size(0), tokens = x.size(1), width = x.size(2);
  const int64_t head_dim = width / heads_;
  // (B, T, 3D) → (3, B, heads, T, head_dim)
  torch::Tensor qkv =
      CountedLinear(qkv_, x).view({batch, tokens, 3, heads_, head_dim}).permute({2, 0, 3, 1, 4});
  // QK^T and AV: tokens x tokens x head_dim each, per head.
  CountMacs(2 * batch * heads_ * tokens * tokens * head_dim);
  torch::Tensor out;
  if (weights == nullptr) {
    out = compat::DotProductAttention(qkv[0], qkv[1], qkv[2]);
  } else {
    // Spelled out, for the weights themselves.
    const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
    *weights = torch::matmul(qkv[0], qkv[1].transpose(-2, -1)).mul(scale).softmax(-1);
    out = torch::matmul(*weights, qkv[2]);
  }
  out = out.transpose(1, 2).reshape({batch, tokens, width});
  return MaybeDropout(CountedLinear(proj_, out), dropout_, is_training());
}

torch::Tensor TransformerBlockImpl::ForwardKeepingAttention(const torch::Tensor& x,
                                                            torch::Tensor* weights) {
  torch::Tensor y = x + Attention(norm1_(x), weights);
  torch::Tensor h = CountedLinear(fc1_, norm2_(y));
  h = MaybeDropout(gelu_ == Gelu::kTanh ? torch::gelu(h, "tanh") : torch::gelu(h), dropout_,
                   is_training());
  return y + MaybeDropout(CountedLinear(fc2_, h), dropout_, is_training());
}

torch::Tensor TransformerBlockImpl::forward(const torch::Tensor& x) {
  return ForwardKeepingAttention(x, nullptr);
}

ViTImpl::ViTImpl(const ModelConfig& config, int num_classes, int resolution, ResNetTrunk backbone)
    : ModelImpl(config, num_classes, resolution) {
  const TransformerConfig& t = config.transformer;
  int64_t in_channels = 3;
  if (backbone) {
    backbone_ = register_module("backbone", backbone);
    in_channels = ResNetOutputChannels(config.resnet);
  }
  embedding_ = register_module(
      "embedding",
      torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels, t.width, t.patch).stride(t.patch)));
  {
    torch::NoGradGuard no_grad;
    // LeCun normal, as the paper's code initialises the patch projection.
    const double fan_in = static_cast<double>(in_channels) * t.patch * t.patch;
    embedding_->weight.normal_(0.0, 1.0 / std::sqrt(fan_in));
    embedding_->bias.zero_();
  }
  const int64_t grid = GridSize(resolution);
  int64_t tokens = grid * grid;
  if (config.pooling == Pooling::kClassToken) {
    cls = register_parameter("cls", torch::zeros({1, 1, t.width}));
    ++tokens;
  }
  pos_embedding = register_parameter("pos_embedding", torch::randn({1, tokens, t.width}) * 0.02);
  blocks_ = register_module("blocks", torch::nn::ModuleList());
  for (int i = 0; i < t.depth; ++i) {
    blocks_->push_back(TransformerBlock(t.width, t.mlp_dim, t.heads, config.dropout));
  }
  norm_ = register_module("norm", MakeLayerNorm(t.width));
  if (config.pre_logits > 0) {
    pre_logits_ = register_module("pre_logits", MakeLinear(t.width, config.pre_logits));
  }
  head_ = register_module("head", ZeroLinear(FeatureDim(), num_classes));
}

int64_t ViTImpl::GridSize(int resolution) const {
  return resolution / InputStride(config());
}

int ViTImpl::FeatureDim() const {
  return has_pre_logits() ? config().pre_logits : config().transformer.width;
}

torch::Tensor ViTImpl::Tokens(const torch::Tensor& images) {
  torch::Tensor x = backbone_ ? backbone_(images) : images;
  x = embedding_(x);  // (B, D, g, g)
  CountMacs(x.numel() * embedding_->weight.size(1) * embedding_->weight.size(2) *
            embedding_->weight.size(3));
  x = x.flatten(2).transpose(1, 2);  // (B, g*g, D)
  if (cls.defined()) x = torch::cat({cls.expand({x.size(0), -1, -1}), x}, 1);
  return MaybeDropout(x + pos_embedding, config().dropout, is_training());
}

torch::Tensor ViTImpl::Pool(const torch::Tensor& tokens) {
  torch::Tensor x = norm_(tokens);
  x = cls.defined() ? x.select(1, 0) : x.mean(1);
  if (has_pre_logits()) x = torch::tanh(CountedLinear(pre_logits_, x));
  return x;
}

torch::Tensor ViTImpl::Features(const torch::Tensor& images) {
  torch::Tensor x = Tokens(images);
  for (const auto& block : *blocks_) x = block->as<TransformerBlock>()->forward(x);
  return Pool(x);
}

std::vector<torch::Tensor> ViTImpl::AttentionWeights(const torch::Tensor& images) {
  std::vector<torch::Tensor> weights;
  torch::Tensor x = Tokens(images);
  for (const auto& block : *blocks_) {
    weights.emplace_back();
    x = block->as<TransformerBlock>()->ForwardKeepingAttention(x, &weights.back());
  }
  return weights;
}

torch::Tensor ViTImpl::Forward(const torch::Tensor& images) {
  return CountedLinear(head_, Features(images));
}

Status ViTImpl::ReplaceHead(int num_classes) {
  RETURN_IF_ERROR(CheckShape(config(), resolution(), num_classes));
  if (has_pre_logits()) {
    unregister_module("pre_logits");
    pre_logits_ = nullptr;
    clear_pre_logits();
  }
  torch::nn::Linear head = ZeroLinear(FeatureDim(), num_classes);
  head->to(head_->weight.device(), head_->weight.scalar_type());
  head_ = replace_module("head", head);
  set_num_classes(num_classes);
  return Status::Ok();
}

Status ViTImpl::ResizePositionEmbedding(int resolution) {
  RETURN_IF_ERROR(CheckShape(config(), resolution, num_classes()));
  torch::NoGradGuard no_grad;
  // set_data keeps the registered parameter (and so its checkpoint key) while changing shape.
  pos_embedding.set_data(
      ResizePositionGrid(pos_embedding, cls.defined() ? 1 : 0, GridSize(resolution)));
  set_resolution(resolution);
  return Status::Ok();
}

torch::Tensor ResizePositionGrid(const torch::Tensor& pos_embedding, int64_t prefix,
                                 int64_t new_grid) {
  const int64_t width = pos_embedding.size(2);
  const int64_t old_grid =
      static_cast<int64_t>(std::lround(std::sqrt(pos_embedding.size(1) - prefix)));
  torch::Tensor grid = pos_embedding.narrow(1, prefix, old_grid * old_grid)
                           .reshape({1, old_grid, old_grid, width})
                           .permute({0, 3, 1, 2});
  namespace F = torch::nn::functional;
  grid = F::interpolate(grid, F::InterpolateFuncOptions()
                                  .size(std::vector<int64_t>{new_grid, new_grid})
                                  .mode(torch::kBilinear)
                                  .align_corners(false));
  grid = grid.permute({0, 2, 3, 1}).reshape({1, new_grid * new_grid, width});
  return torch::cat({pos_embedding.narrow(1, 0, prefix), grid}, 1);
}

}  // namespace vitscale::models
