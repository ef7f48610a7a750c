#include "trainer/optim.h"

#include <cmath>

#include "models/torch_compat.h"

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
  const bool on_gpu = !params.empty() && params.front().is_cuda();
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
    if (on_gpu && models::compat::kHasFusedAdamW) {
      return std::make_unique<FusedAdamW>(std::move(groups), torch::optim::AdamWOptions(0.0));
    }
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

torch::Tensor ClipGradGlobalNormOnDevice(const std::vector<torch::Tensor>& params,
                                         double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  grads.reserve(params.size());
  for (const torch::Tensor& p : params) grads.push_back(p.grad());
  torch::Tensor norm =
      torch::stack(models::compat::Norms(grads)).to(torch::kFloat64).square().sum().sqrt();
  if (max_norm > 0.0) {
    // 1 where the norm is within bounds (or not finite), as ClipGradGlobalNorm leaves those.
    torch::Tensor factor = torch::where(norm > max_norm, max_norm / norm, torch::ones_like(norm));
    models::compat::MulByDeviceScalar(grads, factor.to(torch::kFloat32));
  }
  return norm;
}

torch::Tensor FusedAdamW::step(LossClosure closure) {
  TORCH_CHECK(!closure, "FusedAdamW takes no closure");
  UpdateLearningRates();
  Apply();
  return {};
}

void FusedAdamW::Prepare() {
  if (!groups_.empty()) return;
  for (torch::optim::OptimizerParamGroup& group : param_groups()) {
    GroupTensors tensors;
    for (const torch::Tensor& p : group.params()) {
      auto key = models::compat::OptimizerStateKey(p);
      auto found = state().find(key);
      if (found == state().end()) {
        auto fresh = std::make_unique<torch::optim::AdamWParamState>();
        fresh->step(0);
        fresh->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        fresh->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        found = state().emplace(key, std::move(fresh)).first;
      }
      auto& adam = static_cast<torch::optim::AdamWParamState&>(*found->second);
      // A loaded checkpoint's moments arrive on the CPU.
      adam.exp_avg(adam.exp_avg().to(p.device()));
      adam.exp_avg_sq(adam.exp_avg_sq().to(p.device()));
      tensors.params.push_back(p);
      tensors.exp_avgs.push_back(adam.exp_avg());
      tensors.exp_avg_sqs.push_back(adam.exp_avg_sq());
      tensors.steps.push_back(torch::full({}, static_cast<double>(adam.step()),
                                          p.options().dtype(torch::kFloat32)));
    }
    if (!tensors.params.empty()) {
      tensors.lr = torch::zeros({}, tensors.params.front().options().dtype(torch::kFloat32));
    }
    groups_.push_back(std::move(tensors));
  }
}

void FusedAdamW::UpdateLearningRates() {
  Prepare();
  torch::NoGradGuard no_grad;
  for (size_t g = 0; g < groups_.size(); ++g) {
    if (groups_[g].lr.defined()) groups_[g].lr.fill_(param_groups()[g].options().get_lr());
  }
}

void FusedAdamW::Apply() {
  Prepare();
  torch::NoGradGuard no_grad;
  for (size_t g = 0; g < groups_.size(); ++g) {
    GroupTensors& t = groups_[g];
    if (t.params.empty()) continue;
    const auto& options = static_cast<const torch::optim::AdamWOptions&>(param_groups()[g].options());
    std::vector<torch::Tensor> grads;
    grads.reserve(t.params.size());
    for (const torch::Tensor& p : t.params) grads.push_back(p.grad());
    torch::_foreach_add_(t.steps, 1.0);
    models::compat::FusedAdamW(t.params, grads, t.exp_avgs, t.exp_avg_sqs, t.steps, t.lr,
                               std::get<0>(options.betas()), std::get<1>(options.betas()),
                               options.weight_decay(), options.eps());
  }
}

void FusedAdamW::save(torch::serialize::OutputArchive& archive) const {
  // The host step counts are a copy of the device's, brought up to date only here: saving
  // is the one reader, and a read-back every step would stall the GPU.
  auto& self = const_cast<FusedAdamW&>(*this);
  for (GroupTensors& t : self.groups_) {
    for (size_t i = 0; i < t.params.size(); ++i) {
      auto& adam = static_cast<torch::optim::AdamWParamState&>(
          *self.state().at(models::compat::OptimizerStateKey(t.params[i])));
      adam.step(static_cast<int64_t>(t.steps[i].item<float>()));
    }
  }
  torch::optim::AdamW::save(archive);
}

void FusedAdamW::load(torch::serialize::InputArchive& archive) {
  torch::optim::AdamW::load(archive);
  groups_.clear();  // Prepare rebuilds them from the loaded state
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
