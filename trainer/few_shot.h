// Linear few-shot evaluation (PAPER.md Sec. 4.1, big_vision's recipe): frozen features of a
// k-shot training subset, standardised per dimension with the subset's own statistics, a bias
// column, closed-form ridge regression onto {-1, 1}^K targets, accuracy on the test features.
// Pure functions over CPU tensors; the solve runs in float64.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "common/status.h"

namespace vitscale::trainer {

// The k-shot subset of a split with `labels`: for each class in order, the first `shots`
// examples of a seeded permutation of that class's examples (keyed by (seed, class)), so the
// 5-shot subset of a seed contains its 1-shot subset. kInvalidArgument when a class has fewer
// than `shots` examples (the message names the class).
Expected<std::vector<uint32_t>> KShotIndices(const std::vector<int32_t>& labels, int num_classes,
                                             int64_t shots, uint64_t seed);

struct RidgeClassifier {
  torch::Tensor mean;     // (d) float64: the training features' per-dimension mean
  torch::Tensor scale;    // (d) float64: their standard deviation plus kStdEpsilon
  torch::Tensor weights;  // (d + 1, K) float64, the bias row last
};

// Added to every standard deviation: a feature that is constant over a tiny k-shot subset
// (e.g. a dead ReLU) becomes zero instead of a division by zero.
inline constexpr double kStdEpsilon = 1e-6;

// W = argmin |X W - Y|^2 + l2 |W|^2 with X = [standardised features, 1] and Y the {-1, 1}
// one-hot targets; solved in the primal (d+1 square) or the dual (n square) form, whichever is
// smaller. features: (n, d); labels: (n) class ids in [0, num_classes).
RidgeClassifier FitRidge(const torch::Tensor& features, const torch::Tensor& labels,
                         int num_classes, double l2);

// (n, K) float64 scores of `features` (n, d).
torch::Tensor RidgeScores(const RidgeClassifier& classifier, const torch::Tensor& features);

// Fraction of rows whose arg-max score is the label.
double RidgeAccuracy(const RidgeClassifier& classifier, const torch::Tensor& features,
                     const torch::Tensor& labels);

}  // namespace vitscale::trainer
