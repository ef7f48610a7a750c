// Weights in the ViT paper's published .npz layout (PAPER.md, "Published checkpoints"): import
// into a ViT or hybrid built by BuildModel, and export from one, so that checkpoints released
// with the paper (and by big_vision / timm conversions) initialise our models and ours go back.
// Hybrids also carry their ResNet trunk under the released code's names (conv_root, gn_root,
// block{S}/unit{U}/{conv,gn}{1,2,3}, conv_proj, gn_proj). BiT ResNets use another layout and
// are refused.
#pragma once

#include <string>

#include "common/status.h"
#include "models/model.h"

namespace vitscale::models {

// Loads every parameter of `model` from `path`: attention kernels reshaped, dense and conv
// kernels transposed, float16/bfloat16 widened to the model's dtype. Missing or unexpected keys
// and wrong shapes are one error that lists them all; the model is left unchanged on error.
Status ImportNpz(ModelImpl& model, const std::string& path);

// Writes `model` in the same layout (float32), atomically.
Status ExportNpz(ModelImpl& model, const std::string& path);

}  // namespace vitscale::models
