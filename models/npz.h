// Weights in the released `.npz` layouts (models/npz_layout.h): the paper's ViT and hybrid files
// and BiT's ResNet files. Import into a model built by BuildModel, and export from one, so that
// released checkpoints initialise our models and ours go back.
#pragma once

#include <string>

#include "common/status.h"
#include "models/model.h"

namespace vitscale::models {

// Loads every parameter of `model` from `path` (attention kernels reshaped, dense and conv
// kernels transposed, float16/bfloat16 widened to the model's dtype) and switches the model to
// the released code's conventions (ReleasedConventions: SAME padding and tanh GELU for ViTs and
// hybrids, BiT's padding and epsilons for ResNets), so that it computes what the released code
// computes. Missing or unexpected keys and wrong shapes are one error that lists them all; the
// model is left unchanged on error.
Status ImportNpz(ModelImpl& model, const std::string& path);

// Writes `model` in its family's released layout (float32), atomically.
Status ExportNpz(ModelImpl& model, const std::string& path);

}  // namespace vitscale::models
