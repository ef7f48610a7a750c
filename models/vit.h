// The Vision Transformer (PAPER.md, "Models"), and the hybrid: the same module with a ResNet
// trunk injected as the input of its patch embedding (patch size 1 over the feature map).
// Submodule and parameter names are checkpoint keys: backbone.*, embedding, cls, pos_embedding,
// blocks.I.{norm1,qkv,proj,norm2,fc1,fc2}, norm, pre_logits, head.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <vector>

#include "models/model.h"
#include "models/registry.h"
#include "models/resnet.h"

namespace vitscale::models {

// Pre-LayerNorm encoder block: x + MSA(LN(x)), then x + MLP(LN(x)), MLP = Dense, GELU, Dense.
// Dropout (when > 0) after the attention output projection and after each MLP dense layer.
class TransformerBlockImpl : public torch::nn::Module {
 public:
  TransformerBlockImpl(int64_t width, int64_t mlp_dim, int64_t heads, double dropout);
  torch::Tensor forward(const torch::Tensor& x);
  // forward, also returning the softmax attention weights (batch, heads, tokens, tokens) in
  // *weights; for the inspection evaluators.
  torch::Tensor ForwardKeepingAttention(const torch::Tensor& x, torch::Tensor* weights);
  void set_gelu(Gelu gelu) { gelu_ = gelu; }

 private:
  torch::Tensor Attention(const torch::Tensor& x, torch::Tensor* weights);

  int64_t heads_;
  double dropout_;
  Gelu gelu_ = Gelu::kExact;
  torch::nn::LayerNorm norm1_{nullptr}, norm2_{nullptr};
  // q, k and v as one (3D x D) matmul: rows [0,D) query, [D,2D) key, [2D,3D) value, each
  // initialised as its own D x D projection, as the released code's three kernels are.
  torch::nn::Linear qkv_{nullptr}, proj_{nullptr}, fc1_{nullptr}, fc2_{nullptr};
};
TORCH_MODULE(TransformerBlock);

class ViTImpl : public ModelImpl {
 public:
  // `backbone`: empty for a ViT (the embedding reads pixels); for a hybrid, the ResNet trunk
  // whose feature map the embedding reads.
  // REQUIRES: CheckShape(config, resolution, num_classes).ok()
  ViTImpl(const ModelConfig& config, int num_classes, int resolution, ResNetTrunk backbone);

  torch::Tensor Forward(const torch::Tensor& images) override;
  torch::Tensor Features(const torch::Tensor& images) override;
  int FeatureDim() const override;
  Status ReplaceHead(int num_classes) override;
  Status ResizePositionEmbedding(int resolution) override;

  // The softmax attention weights of every block for `images`, in order, each
  // (batch, heads, tokens, tokens) with the [class] token first when the model has one.
  std::vector<torch::Tensor> AttentionWeights(const torch::Tensor& images);

  // Patches per side at `resolution`.
  int64_t GridSize(int resolution) const;
  bool has_pre_logits() const { return !pre_logits_.is_empty(); }

  torch::Tensor cls;            // (1, 1, D); undefined with global average pooling
  torch::Tensor pos_embedding;  // (1, [1 +] grid^2, D)

 private:
  // The token sequence entering the first block: embedded patches, [class], position embeddings.
  torch::Tensor Tokens(const torch::Tensor& images);
  // The final LayerNorm, pooling and pre_logits after the last block.
  torch::Tensor Pool(const torch::Tensor& x);

  ResNetTrunk backbone_{nullptr};
  torch::nn::Conv2d embedding_{nullptr};
  torch::nn::ModuleList blocks_{nullptr};
  torch::nn::LayerNorm norm_{nullptr};
  torch::nn::Linear pre_logits_{nullptr};
  torch::nn::Linear head_{nullptr};
};

// Bilinear interpolation of position embeddings (1, prefix + g*g, D) onto a new_grid x new_grid
// grid; the first `prefix` entries ([class]) are kept as they are.
torch::Tensor ResizePositionGrid(const torch::Tensor& pos_embedding, int64_t prefix,
                                 int64_t new_grid);

}  // namespace vitscale::models
