// TrainStep: one data-parallel optimisation step — forward and backward over the rank's batch
// in micro-batches, the gradient averaged over ranks (GradientReducer, overlapped with the
// backward pass), global-norm clipping, the optimiser update — on the model's device.
//
// On the CPU it is the float32 step the trainer has always taken. On a GPU it adds what makes
// GPUs fast: bf16 autocast, channels-last images for ResNet trunks, a fused AdamW, and, with a
// CUDA build of LibTorch 2.x, the whole step captured once as a CUDA graph and replayed after
// (shapes are static within a training loop); the first step of a TrainStep always runs eagerly
// and is what the capture is checked against. A capture that fails falls back to eager steps
// with a warning on stderr.
//
// Out of memory (GPU or CPU) comes back as kResourceExhausted whose message names the model,
// the micro-batch and the device's memory. Not thread-safe; the model and optimiser are the
// caller's and must outlive the TrainStep.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "models/model.h"
#include "trainer/communicator.h"
#include "trainer/gradient_reducer.h"
#include "trainer/precision.h"

namespace vitscale::trainer {

// How steps run on the model's device; the CPU ignores all but precision (always float32).
struct DeviceOptions {
  Precision precision = Precision::kAuto;  // auto: bf16 autocast on a GPU, float32 on the CPU
  bool cuda_graphs = true;                 // capture the step when LibTorch and the optimiser allow
};

struct StepOptions {
  double clip_norm = 0.0;        // 0: measure the gradient norm, do not clip
  double label_smoothing = 0.0;
  int64_t micro_batch = 0;       // per-rank examples per forward/backward; 0: the whole batch
  DeviceOptions device;
};

struct StepResult {
  double loss_sum = 0.0;  // this rank's mean loss over its batch
  double correct = 0.0;   // this rank's correctly classified examples
  double grad_norm = 0.0; // the global gradient norm before clipping (the same on every rank)
};

class TrainStep {
 public:
  TrainStep(models::ModelImpl& model, torch::optim::Optimizer& optimizer, Communicator& comm,
            StepOptions options);
  ~TrainStep();
  TrainStep(const TrainStep&) = delete;
  TrainStep& operator=(const TrainStep&) = delete;

  // One step on this rank's `images` (B, 3, R, R) float and `labels` (B) int64, both on the
  // model's device, at learning rate `lr`. `while_running`, if set, is called once the step's
  // work is queued and before the host waits for its results (on a GPU the next batch's copy
  // starts there); its errors are its own to keep.
  Expected<StepResult> Run(const torch::Tensor& images, const torch::Tensor& labels, double lr,
                           const std::function<void()>& while_running = {});

  // Whether steps are now replays of a captured CUDA graph.
  bool replaying() const;

 private:
  struct Graph;  // the captured step (CUDA builds only)

  // Queues the whole step on the device (GPU path); results land in the device scalars below.
  // `capturing`: inside a CUDA graph capture, which records the update without its learning rate.
  Status Enqueue(const torch::Tensor& images, const torch::Tensor& labels, bool capturing);
  Status Capture(const torch::Tensor& images, const torch::Tensor& labels);
  Status OutOfMemory(const c10::Error& error, int64_t rank_batch) const;
  Expected<StepResult> RunOnCpu(const torch::Tensor& images, const torch::Tensor& labels,
                                double lr);

  models::ModelImpl& model_;
  torch::optim::Optimizer& optimizer_;
  Communicator& comm_;
  const StepOptions options_;
  const torch::Device device_;
  const bool bf16_;           // autocast to bf16 (GPU only)
  const bool channels_last_;  // ResNet trunks on a GPU
  std::vector<torch::Tensor> params_;
  std::unique_ptr<GradientReducer> reducer_;  // with more than one rank
  int64_t steps_run_ = 0;
  bool graphs_allowed_;
  std::unique_ptr<Graph> graph_;
  // GPU results of the last Enqueue: float32 loss sum and correct count, float64 norm.
  torch::Tensor loss_sum_, correct_, grad_norm_;
};

}  // namespace vitscale::trainer
