// The paper's views into a trained ViT or hybrid (Sec. 4.5 and App. D.7, D.8: Fig. 6, 7, 11 and
// 14), written as files named from the job (docs/train-spec.md, "Inspection"):
//
//   <prefix>-filters.json / .png              the principal components of the patch-embedding
//                                             filters, each drawn as a patch (ViTs: a hybrid's
//                                             1x1 embedding over feature maps has no image
//                                             filters, so hybrids skip it)
//   <prefix>-position-similarity.json / .png  the cosine similarity of each patch's position
//                                             embedding with every other's, one map per patch
//   <prefix>-attention-distance.json / .svg   the mean attention distance in input pixels, per
//                                             head and layer, over a set of images
//   <prefix>-attention-rollout.json / .png    attention rollout (Abnar & Zuidema 2020) for a few
//                                             images: the images and the [class] token's
//                                             rolled-out attention over them
//
// The JSON files hold the arrays the pictures draw. Every file is written atomically. Runs on
// one thread of one rank; no collectives.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "common/status.h"
#include "models/vit.h"

namespace vitscale::trainer {

struct InspectionOptions {
  std::string dir;               // where the files go (created if missing)
  std::string prefix;            // the start of every file name, e.g. the job id's first 12 digits
  int64_t components = 28;       // principal components drawn (the paper shows 28)
  int64_t distance_images = 32;  // images the attention distances average over
  int64_t rollout_images = 4;
};

// One view's name ("filters", "position-similarity", "attention-distance",
// "attention-rollout") and the files it wrote.
struct InspectionView {
  std::string name;
  std::vector<std::string> files;
};

// Computes every view that applies to `model` on `images` ((n, 3, r, r) as the model takes them,
// r = model.resolution(); at least one) and writes its files. `before_view(i, count)` runs before
// each of the `count` views (progress reports); an error from it stops the inspection.
Expected<std::vector<InspectionView>> Inspect(
    models::ViTImpl& model, const torch::Tensor& images, const InspectionOptions& options,
    const std::function<Status(int index, int count)>& before_view);

// The views Inspect writes for `model`, in order.
std::vector<std::string> InspectionViewNames(const models::ModelImpl& model);

// Mean attention distance (App. D.7) of one layer's attention weights (batch, heads, tokens,
// tokens) over a grid x grid token map with `stride` input pixels per token, `prefix` leading
// tokens ([class]) left out: per head, the attention-weighted mean distance between query and
// key patch centres, the weights renormalised over the patches, averaged over queries and
// images. Returns (heads) float64.
torch::Tensor MeanAttentionDistance(const torch::Tensor& weights, int64_t grid, int64_t prefix,
                                    double stride);

// Attention rollout (App. D.8) of per-layer attention weights: heads averaged, the identity
// added for the residual, rows renormalised, multiplied from the first layer to the last.
// Returns (batch, tokens, tokens) float64.
torch::Tensor AttentionRollout(const std::vector<torch::Tensor>& weights);

}  // namespace vitscale::trainer
