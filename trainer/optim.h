// Optimisers, learning-rate schedules, clipping and the loss, per PAPER.md's recipe: AdamW
// (0.9, 0.999) with decoupled weight decay for pretraining, SGD with momentum 0.9 and no weight
// decay for fine-tuning; linear warm-up, then linear or cosine decay; global-norm clipping;
// optional label smoothing. Plain functions over LibTorch types; no state of their own.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace vitscale::trainer {

enum class Decay { kLinear, kCosine, kConstant };
const char* DecayName(Decay decay);  // "linear", "cosine", "constant"
Expected<Decay> ParseDecay(const std::string& name);

struct Schedule {
  double base_lr = 1e-3;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  Decay decay = Decay::kLinear;
  double end_lr = 0.0;  // where linear and cosine decay arrive at total_steps
};

// The learning rate of 0-based `step`. Warm-up ramps base_lr * (step + 1) / warmup_steps, so
// the first step already moves and step warmup_steps - 1 uses base_lr; decay then runs from
// base_lr at step warmup_steps to end_lr at total_steps (and stays there after).
double LearningRate(const Schedule& schedule, int64_t step);

// kAdamW is the paper's "Adam" with decoupled weight decay; its job-config name is "adam".
enum class OptimizerKind { kAdamW, kSgd };
const char* OptimizerName(OptimizerKind kind);  // "adam", "sgd"
Expected<OptimizerKind> ParseOptimizer(const std::string& name);

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::kAdamW;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double momentum = 0.9;      // SGD only
  double weight_decay = 0.0;  // decoupled (AdamW); applied to tensors of rank >= 2 only
};

// Two parameter groups: weight matrices and kernels (rank >= 2) decay, biases and norm scales do
// not. The optimiser's lr is set per step by SetLearningRate. AdamW over GPU parameters is a
// FusedAdamW where LibTorch has the fused kernel (2.x); on the CPU it is torch::optim::AdamW.
std::unique_ptr<torch::optim::Optimizer> MakeOptimizer(const OptimizerConfig& config,
                                                       const std::vector<torch::Tensor>& params);

// torch::optim::AdamW's update, state and checkpoint format, computed by ATen's fused multi-tensor
// kernel: one launch per parameter group instead of about ten per parameter. Its learning rates
// and step counts live on the device, so the update can be captured in a CUDA graph and replayed
// at a new learning rate. REQUIRES: every parameter has a gradient when Apply runs (the trainer
// fills missing ones with zeros), all on one GPU; LibTorch 2.x.
class FusedAdamW final : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;

  // UpdateLearningRates, then Apply.
  torch::Tensor step(LossClosure closure = nullptr) override;
  // Copies each group's lr (set by SetLearningRate) into the device scalar Apply reads.
  void UpdateLearningRates();
  // The update itself: no host reads or writes of device memory, so a CUDA graph can capture it.
  void Apply();

  // The checkpoint format is torch::optim::AdamW's; save first brings the host copy of the step
  // counts up to date, load rebuilds the device state from the file.
  void save(torch::serialize::OutputArchive& archive) const override;
  void load(torch::serialize::InputArchive& archive) override;

 private:
  struct GroupTensors {
    std::vector<torch::Tensor> params, exp_avgs, exp_avg_sqs, steps;
    torch::Tensor lr;  // float32 scalar on the parameters' device
  };
  // Creates missing AdamW state and the device tensors of each group, once.
  void Prepare();

  std::vector<GroupTensors> groups_;  // empty until Prepare
};

void SetLearningRate(torch::optim::Optimizer& optimizer, double lr);

// ClipGradGlobalNorm for GPU training: the same arithmetic (per-tensor norms combined in float64,
// scaled by max_norm / norm only when the norm exceeds max_norm), computed on the device without
// a read-back, so that a CUDA graph can capture it. Returns the norm as a float64 device scalar.
// REQUIRES: every parameter has a gradient.
torch::Tensor ClipGradGlobalNormOnDevice(const std::vector<torch::Tensor>& params,
                                         double max_norm);

// The global L2 norm of the gradients of `params` (undefined gradients count as zero), before
// clipping; when max_norm > 0 and the norm exceeds it, every gradient is scaled by
// max_norm / norm so that the global norm becomes max_norm.
double ClipGradGlobalNorm(const std::vector<torch::Tensor>& params, double max_norm);

// Mean cross-entropy of `logits` (N, K) against class ids `labels` (N), with the target
// distribution (1 - smoothing) * one_hot + smoothing / K.
torch::Tensor SmoothedCrossEntropy(const torch::Tensor& logits, const torch::Tensor& labels,
                                   double smoothing);

}  // namespace vitscale::trainer
