#include "trainer/optim.h"

#include <cmath>

namespace vitscale::trainer {

const char* DecayName(Decay decay) {
  switch (decay) {
    case Decay::kLinear:
      return "linear";
    case Decay::kCosine:
      return "cosine";
    case Decay::kConstant:
      return "constant";
  }
  return "?";
}

Expected<Decay> ParseDecay(const std::string& name) {
  for (Decay d : {Decay::kLinear, Decay::kCosine, Decay::kConstant}) {
    if (name == DecayName(d)) return d;
  }
  return InvalidArgument("unknown decay '" + name + "'; use linear, cosine or constant");
}

double LearningRate(const Schedule& s, int64_t step) {
  if (step < s.warmup_steps) {
    return s.base_lr * static_cast<double>(step + 1) / static_cast<double>(s.warmup_steps);
  }
  if (s.decay == Decay::kConstant) return s.base_lr;
  const int64_t decay_steps = s.total_steps - s.warmup_steps;
  if (decay_steps <= 0) return s.end_lr;
  double progress = static_cast<double>(step - s.warmup_steps) / static_cast<double>(decay_steps);
  progress = std::min(1.0, std::max(0.0, progress));
  const double fraction =
      s.decay == Decay::kLinear ? 1.0 - progress : 0.5 * (1.0 + std::cos(M_PI * progress));
  return s.end_lr + (s.base_lr - s.end_lr) * fraction;
}

const char* OptimizerName(OptimizerKind kind) {
  return kind == OptimizerKind::kAdamW ? "adam" : "sgd";
}

Expected<OptimizerKind> ParseOptimizer(const std::string& name) {
  for (OptimizerKind k : {OptimizerKind::kAdamW, OptimizerKind::kSgd}) {
    if (name == OptimizerName(k)) return k;
  }
  return InvalidArgument("unknown optimizer '" + name + "'; use adam or sgd");
}

std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const OptimizerConfig& config,
                                                       const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> decayed, plain;
  for (const torch::Tensor& p : params) (p.dim() >= 2 ? decayed : plain).push_back(p);
  if (config.kind == OptimizerKind::kAdamW) {
    auto options = [&](double wd) {
      return std::make_unique<torch::optim::AdamWOptions>(
          torch::optim::AdamWOptions(0.0)
              .betas({config.beta1, config.beta2})
              .eps(config.eps)
              .weight_decay(wd));
    };
    std::vector<torch::optim::OptimizerParamGroup> groups;
    if (!decayed.empty()) groups.emplace_back(decayed, options(config.weight_decay));
    if (!plain.empty()) groups.emplace_back(plain, options(0.0));
    return std::make_unique<torch::optim::AdamW>(std::move(groups),
                                                 torch::optim::AdamWOptions(0.0));
  }
  auto options = [&](double wd) {
    return std::make_unique<torch::optim::SGDOptions>(
        torch::optim::SGDOptions(0.0).momentum(config.momentum).weight_decay(wd));
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (!decayed.empty()) groups.emplace_back(decayed, options(config.weight_decay));
  if (!plain.empty()) groups.emplace_back(plain, options(0.0));
  return std::make_unique<torch::optim::SGD>(std::move(groups), torch::optim::SGDOptions(0.0));
}

void SetLearningRate(torch::optim::Optimizer& optimizer, double lr) {
  for (torch::optim::OptimizerParamGroup& group : optimizer.param_groups()) {
    group.options().set_lr(lr);
  }
}

double ClipGradGlobalNorm(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const torch::Tensor& p : params) {
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return 0.0;
  // One norm per tensor, combined in double, and one read-back in all: a read-back
  // per tensor, or converting every gradient to double, costs more than the arithmetic for the
  // small models (about 50 parameter tensors).
  std::vector<torch::Tensor> norms;
  for (const torch::Tensor& g : grads) norms.push_back(g.norm());
  const double norm =
      std::sqrt(torch::stack(norms).to(torch::kFloat64).square().sum().item<double>());
  if (max_norm > 0.0 && norm > max_norm) torch::_foreach_mul_(grads, max_norm / norm);
  return norm;
}

torch::Tensor SmoothedCrossEntropy(const torch::Tensor& logits, const torch::Tensor& labels,
                                   double smoothing) {
  torch::Tensor log_probs = torch::log_softmax(logits, /*dim=*/1);
  torch::Tensor nll = -log_probs.gather(1, labels.to(torch::kLong).unsqueeze(1)).squeeze(1);
  if (smoothing <= 0.0) return nll.mean();
  torch::Tensor uniform = -log_probs.mean(1);
  return ((1.0 - smoothing) * nll + smoothing * uniform).mean();
}

}  // namespace vitscale::trainer
