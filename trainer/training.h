// The data-parallel training loop shared by pretraining and fine-tuning, and the sharded
// evaluation passes (test accuracy, frozen features). Every rank calls these with the same
// arguments; collectives keep the ranks in step. Called from the training thread only.
#pragma once

#include <torch/torch.h>

#include <atomic>
#include <cstdint>
#include <functional>

#include "common/status.h"
#include "data/loader.h"
#include "models/model.h"
#include "trainer/communicator.h"
#include "trainer/optim.h"
#include "trainer/report.h"
#include "trainer/train_step.h"

namespace vitscale::trainer {

struct LoopOptions {
  int64_t total_steps = 0;    // the loop runs until `step` reaches this
  Schedule schedule;
  double clip_norm = 0.0;     // 0: measure the gradient norm, do not clip
  double label_smoothing = 0.0;
  int64_t micro_batch = 0;    // per-rank examples per forward/backward; 0: the whole rank batch
  uint64_t seed = 0;          // dropout streams: StepSeed(seed, step, rank)
  int64_t metrics_every = 10;
  std::string metric_prefix;  // "" for pretraining, e.g. "fine_tune/" for evaluations
  double train_flops_per_image = 0.0;
  bool verify_replicas = false;
  DeviceOptions device;       // precision and CUDA graphs when the model is on a GPU
};

struct LoopHooks {
  ReportSink* sink = nullptr;                          // rank 0's; null elsewhere
  const std::atomic<bool>* stop_requested = nullptr;   // set by the SIGTERM handler
  // Called on every rank after each step with the completed step count; returns whether a
  // checkpoint is due (only rank 0 writes it, inside the callback).
  std::function<Status(int64_t steps_done, bool stopping)> after_step;
};

enum class LoopEnd { kFinished, kStopped };

// Trains `model` from *step to options.total_steps on the loader's batches (the loader's next
// step must be *step), on the model's device (TrainStep; on a GPU the next batch is copied from
// pinned memory while the current step runs). Updates *step and *images_seen (global) as it
// goes. Returns kStopped when any rank saw stop_requested: all ranks stop after the same step,
// after the hook ran. Out of device memory is kResourceExhausted (trainer/train_step.h).
Expected<LoopEnd> RunTrainingLoop(models::ModelImpl& model, torch::optim::Optimizer& optimizer,
                                  Communicator& comm, data::Loader& loader,
                                  const LoopOptions& options, const LoopHooks& hooks,
                                  int64_t* step, int64_t* images_seen);

// Top-1 accuracy of `model` on `split` (evaluation transform), each rank taking a contiguous
// shard; the same value on every rank. Evaluations run in float32 on the model's device.
Expected<double> EvaluateAccuracy(models::ModelImpl& model, Communicator& comm,
                                  const data::Split& split, const data::AugmentOptions& augment,
                                  int64_t batch, int threads);

// Frozen pre-head features (n, FeatureDim) float32 of `split`'s examples `indices`, computed in
// shards and gathered exactly; the same tensor on every rank.
Expected<torch::Tensor> ExtractFeatures(models::ModelImpl& model, Communicator& comm,
                                        const data::Split& split,
                                        const std::vector<uint32_t>& indices,
                                        const data::AugmentOptions& augment, int64_t batch,
                                        int threads);

// A 60-bit digest of every parameter's bytes, for checking that ranks hold equal replicas.
uint64_t ParameterDigest(const torch::nn::Module& module);

}  // namespace vitscale::trainer
