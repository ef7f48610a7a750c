// The architecture registry: every model name vitscale knows, decoded into a config, with its
// exact parameter count and forward multiply-adds. No LibTorch here: the coordinator, the CLI
// and sweep costing use it, and the LibTorch modules (models/zoo.h) are built from it.
//
// Names:
//   ViT-{size}/{patch}           e.g. ViT-B/16, ViT-Ti/7
//   R{depth}x{width_factor}      BiT ResNet-v2, e.g. R50x1, R152x2
//   R{depth}s[x{width_factor}]   small-image ResNet for 28x28-ish inputs, e.g. R20s
//   {resnet}+ViT-{size}/{stride} hybrid; stride = the backbone's total downsampling, e.g.
//                                R50+ViT-B/16 (option ii), R50+ViT-B/32 (option i)
// docs/models.md lists every name with its numbers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace vitscale::models {

enum class Family { kViT, kResNet, kHybrid };
const char* FamilyName(Family family);  // "ViT", "ResNet", "hybrid"

enum class Pooling { kClassToken, kGlobalAverage };

struct TransformerConfig {
  int depth = 0;    // L: encoder blocks
  int width = 0;    // D: hidden size
  int mlp_dim = 0;  // MLP hidden size
  int heads = 0;
  int patch = 0;    // P: patch side in input pixels (ViT); 1 for hybrids (over the feature map)
};

struct ResNetConfig {
  std::vector<int> blocks;     // bottleneck blocks per stage, e.g. {3, 4, 6, 3}
  int width_factor = 1;        // BiT's "x2": every channel count times this
  int base_width = 64;         // stem output channels before the width factor
  bool small_stem = false;     // 3x3 stride-1 stem without max-pool (small images) vs 7x7/2 + pool
  int groupnorm_groups = 32;
};

// How a model computes where the released codes and vitscale's own models differ
// (docs/models.md, "Conventions"). None of it changes a parameter's shape, so a model switches
// conventions in place (ModelImpl::SetConventions) and a checkpoint records them.
enum class Padding {
  kSymmetric,  // vitscale: every convolution pads kernel/2 on each side, the max-pool with -inf
  kSame,       // TensorFlow's SAME (the released ViT code's hybrids): the extra pixel of a strided
               // convolution or max-pool goes at the end
  kFixed,      // the released BiT code: symmetric, but the stem's max-pool pads with zeros
};
const char* PaddingName(Padding padding);  // "symmetric", "same", "fixed"

enum class Gelu { kExact, kTanh };  // the released ViT code uses the tanh approximation
const char* GeluName(Gelu gelu);    // "exact", "tanh"

// Weight standardisation divides a filter's deviations from its mean by
// sqrt(variance + eps) (kVariance) or by (standard deviation + eps) (kStd, the released ViT code).
enum class StdConvForm { kVariance, kStd };
const char* StdConvFormName(StdConvForm form);  // "variance", "std"

struct Conventions {
  Padding padding = Padding::kSymmetric;
  Gelu gelu = Gelu::kExact;
  double std_conv_eps = 1e-5;
  StdConvForm std_conv_form = StdConvForm::kVariance;
  double group_norm_eps = 1e-5;

  bool operator==(const Conventions& other) const;
  bool operator!=(const Conventions& other) const { return !(*this == other); }
};

// The paper's released ViT and hybrid code (vit_jax): SAME padding, tanh GELU, weight
// standardisation (w - mean) / (std + 1e-5), GroupNorm epsilon 1e-6.
Conventions ReleasedViTConventions();
// The released BiT code (big_transfer): symmetric convolutions and a zero-padded stem max-pool,
// weight standardisation (w - mean) / sqrt(var + 1e-10), GroupNorm epsilon 1e-5.
Conventions ReleasedBiTConventions();
// The released code's conventions for `family`'s files: BiT's for ResNets, vit_jax's otherwise.
Conventions ReleasedConventions(Family family);

struct ModelConfig {
  std::string name;
  Family family = Family::kViT;
  TransformerConfig transformer;  // ViT and hybrid
  ResNetConfig resnet;            // ResNet, and the hybrid's backbone
  Pooling pooling = Pooling::kClassToken;  // ViT and hybrid
  int pre_logits = 0;             // width of the tanh pre_logits layer; 0 = none
  double dropout = 0.0;           // after dense layers (not qkv) and after the position embedding
  Conventions conventions;        // vitscale's own unless the weights come from a released file
};

// Total downsampling of a ResNet config's feature map (4 x 2^(stages-1) with the BiT stem).
int ResNetStride(const ResNetConfig& resnet);
// Input pixels per token side (patch, times the backbone's stride for a hybrid): a ViT or
// hybrid's resolution must be a multiple of it. 1 for a ResNet.
int InputStride(const ModelConfig& config);
// Channels of the last stage's output.
int ResNetOutputChannels(const ResNetConfig& resnet);

// Decodes a registered name; unknown names get an error naming the nearest registered one.
Expected<ModelConfig> LookupModel(std::string_view name);
// Every registered name, the paper's first, in a stable order.
const std::vector<std::string>& ModelNames();

struct ModelCost {
  int64_t params = 0;        // every trainable parameter, head included
  int64_t forward_macs = 0;  // multiply-adds of one image's forward pass
};

// Checks that `config` can run at `resolution` with `num_classes` (e.g. resolution divisible by
// the patch size or backbone stride, classes > 0); the error names the value to fix.
Status CheckShape(const ModelConfig& config, int resolution, int num_classes);

// Exact counts for `config` at a square `resolution` with a `num_classes` head. MACs count every
// matmul, convolution and the two attention products (QK^T and AV); normalisation, activations,
// softmax, pooling, residual adds and biases are left out (docs/models.md).
// REQUIRES: CheckShape(config, resolution, num_classes).ok()
ModelCost ComputeCost(const ModelConfig& config, int resolution, int num_classes);

// The input a registered model is quoted at: 224x224 with 1000 classes for the paper's models,
// 28x28 with 10 classes for the small variants (ViTs with patches of 7 pixels or less,
// small-stem ResNets and their hybrids), which are sized for Fashion-MNIST-like data.
struct InputShape {
  int resolution = 224;
  int num_classes = 1000;
};
InputShape ReferenceInput(const ModelConfig& config);

// Tokens the transformer sees before the [class] token is added: (resolution / total stride)^2,
// where the total stride is the patch size (ViT) or the backbone stride (hybrid). 0 for ResNets.
// REQUIRES: CheckShape(config, resolution, any).ok()
int SequenceLength(const ModelConfig& config, int resolution);

// The paper's convention: a training step costs 3 forward passes, and a FLOP is half a MAC.
inline double TrainFlopsPerImage(int64_t forward_macs) { return 6.0 * static_cast<double>(forward_macs); }

}  // namespace vitscale::models
