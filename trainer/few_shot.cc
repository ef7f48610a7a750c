#include "trainer/few_shot.h"

#include <torch/torch.h>

#include "data/order.h"

namespace vitscale::trainer {

Expected<std::vector<uint32_t>> KShotIndices(const std::vector<int32_t>& labels, int num_classes,
                                             int64_t shots, uint64_t seed) {
  if (shots <= 0) return InvalidArgument("shots must be > 0");
  std::vector<std::vector<uint32_t>> by_class(num_classes);
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes) {
      return InvalidArgument("label " + std::to_string(labels[i]) + " of example " +
                             std::to_string(i) + " is outside [0, " +
                             std::to_string(num_classes) + ")");
    }
    by_class[labels[i]].push_back(static_cast<uint32_t>(i));
  }
  std::vector<uint32_t> chosen;
  chosen.reserve(static_cast<size_t>(shots) * num_classes);
  for (int c = 0; c < num_classes; ++c) {
    const std::vector<uint32_t>& members = by_class[c];
    if (static_cast<int64_t>(members.size()) < shots) {
      return InvalidArgument("class " + std::to_string(c) + " has " +
                             std::to_string(members.size()) + " training examples, fewer than " +
                             std::to_string(shots) + " shots");
    }
    std::vector<uint32_t> order =
        data::SeededPermutation(members.size(), data::HashValues({seed, static_cast<uint64_t>(c)}));
    for (int64_t k = 0; k < shots; ++k) chosen.push_back(members[order[k]]);
  }
  return chosen;
}

namespace {

torch::Tensor Design(const RidgeClassifier& c, const torch::Tensor& features) {
  torch::Tensor x = (features.to(torch::kFloat64) - c.mean) / c.scale;
  return torch::cat({x, torch::ones({x.size(0), 1}, x.options())}, 1);
}

}  // namespace

RidgeClassifier FitRidge(const torch::Tensor& features, const torch::Tensor& labels,
                         int num_classes, double l2) {
  torch::NoGradGuard no_grad;
  RidgeClassifier c;
  torch::Tensor f = features.to(torch::kFloat64);
  c.mean = f.mean(0);
  c.scale = f.std(0, /*unbiased=*/false) + kStdEpsilon;
  torch::Tensor x = Design(c, f);
  torch::Tensor y = torch::full({x.size(0), num_classes}, -1.0, x.options());
  y.scatter_(1, labels.to(torch::kLong).unsqueeze(1), 1.0);
  const int64_t n = x.size(0), d = x.size(1);
  if (d <= n) {
    torch::Tensor gram = x.t().mm(x) + l2 * torch::eye(d, x.options());
    c.weights = torch::linalg_solve(gram, x.t().mm(y), /*left=*/true);
  } else {
    // (X^T X + l2 I)^-1 X^T = X^T (X X^T + l2 I)^-1: an n x n system instead of d x d.
    torch::Tensor gram = x.mm(x.t()) + l2 * torch::eye(n, x.options());
    c.weights = x.t().mm(torch::linalg_solve(gram, y, /*left=*/true));
  }
  return c;
}

torch::Tensor RidgeScores(const RidgeClassifier& classifier, const torch::Tensor& features) {
  torch::NoGradGuard no_grad;
  return Design(classifier, features).mm(classifier.weights);
}

double RidgeAccuracy(const RidgeClassifier& classifier, const torch::Tensor& features,
                     const torch::Tensor& labels) {
  if (features.size(0) == 0) return 0.0;
  torch::Tensor predicted = RidgeScores(classifier, features).argmax(1);
  return predicted.eq(labels.to(torch::kLong)).to(torch::kFloat64).mean().item<double>();
}

}  // namespace vitscale::trainer
