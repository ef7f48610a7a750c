// The released .npz layouts, worked out from a ModelConfig alone (no LibTorch): which arrays a
// released file of an architecture holds, their shapes, and which vitscale parameter each one
// fills. models/npz.h moves the values with this; `vitscale models import` checks a file against
// a model with it, reading only the arrays' headers.
//
//   ViT and hybrid: the paper's code (PAPER.md, "Published checkpoints"); a hybrid adds its trunk
//     as conv_root, gn_root, block{S}/unit{U}/{conv1,conv2,conv3,conv_proj}/kernel and
//     block{S}/unit{U}/{gn1,gn2,gn3,gn_proj}/{scale,bias} (S and U from 1).
//   ResNet: BiT's release (BiT-S and BiT-M files), resnet/root_block/standardized_conv2d/kernel,
//     resnet/block{S}/unit{UU}/{a,b,c}/standardized_conv2d/kernel,
//     resnet/block{S}/unit{UU}/{a,b,c}/group_norm/{gamma,beta} (the norm before each conv),
//     resnet/block{S}/unit{UU}/a/proj/standardized_conv2d/kernel, resnet/group_norm/{gamma,beta},
//     resnet/head/conv2d/{kernel,bias} (UU two digits from 01).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "models/registry.h"

namespace vitscale::models {

// How a released array is laid out relative to the vitscale parameter it fills.
enum class NpzLayout {
  kPlain,  // the same elements in the same order, maybe another shape (q/k/v biases: (heads, dh))
  kDense,  // flax (in..., out...) kernel against torch's (out, in): the first in_dims are input
  kConv,   // HWIO against torch's OIHW
};

struct NpzEntry {
  std::string key;             // in the .npz, without ".npy"
  std::vector<int64_t> shape;  // as the released files have it
  std::string parameter;       // vitscale's parameter, e.g. "blocks.0.qkv.weight"
  NpzLayout layout = NpzLayout::kPlain;
  int in_dims = 1;        // kDense
  int64_t first_row = 0;  // the parameter's rows [first_row, first_row + rows) this key fills:
  int64_t rows = -1;      // one of q, k, v in the fused qkv; -1 = the whole parameter
};

// Every array a released file for `config` with a `num_classes` head at `resolution` holds.
// REQUIRES: CheckShape(config, resolution, num_classes).ok()
std::vector<NpzEntry> ReleasedLayout(const ModelConfig& config, int num_classes, int resolution);

// What a released file's shapes say about the model it holds.
struct ReleasedFileShape {
  int num_classes = 0;
  int resolution = 0;  // ViT and hybrid: from the position embeddings' grid
  int pre_logits = 0;  // the pre_logits width; 0 = none
};

// Reads the class count, pre_logits width and (ViT and hybrid) resolution from the head's and
// the position embeddings' shapes in `shapes` (ReadNpzShapes). ResNets run at any resolution:
// they take `resnet_resolution`. A file of the other layout (a BiT file for a ViT, say) or
// without a head is an error naming what the file holds.
Expected<ReleasedFileShape> InferReleasedShape(
    const ModelConfig& config, const std::map<std::string, std::vector<int64_t>>& shapes,
    const std::string& path, int resnet_resolution);

// The differences between a file's arrays and a layout; empty when the file fits.
struct NpzMismatch {
  std::vector<std::string> missing;      // keys the layout has and the file lacks
  std::vector<std::string> unexpected;   // keys the file has and the layout lacks
  std::vector<std::string> wrong_shape;  // "key is (a, b) in the file, (c, d) in the model"
  bool empty() const { return missing.empty() && unexpected.empty() && wrong_shape.empty(); }
  // "missing keys: ...; unexpected keys: ...; wrong shapes: ..." (a dozen of each at most).
  std::string Describe() const;
};

NpzMismatch CompareWithLayout(const std::vector<NpzEntry>& layout,
                              const std::map<std::string, std::vector<int64_t>>& shapes);

}  // namespace vitscale::models
