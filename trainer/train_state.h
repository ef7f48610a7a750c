// The training state a checkpoint holds, as named blobs for CheckpointStore:
//   model.pt      every parameter and buffer of the module, by its registered name
//   optimizer.pt  the optimiser's per-parameter state (Adam moments and step, SGD momentum)
//   state.json    step, images seen, seed, the schedule, the model name and conventions, and
//                 early stopping's best validation so far
// RNG streams need no blob: the trainer reseeds every step from (seed, step, rank) and the data
// order is a pure function of (seed, epoch, step, rank, world), so step and seed restore both.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>

#include "common/status.h"
#include "models/registry.h"
#include "trainer/optim.h"

namespace vitscale::trainer {

inline constexpr char kModelBlob[] = "model.pt";
inline constexpr char kOptimizerBlob[] = "optimizer.pt";
inline constexpr char kStateBlob[] = "state.json";

struct TrainProgress {
  int64_t step = 0;         // steps completed
  int64_t images_seen = 0;  // over all ranks
  uint64_t seed = 0;
  std::string model;        // registry name, to refuse a checkpoint of another model
  Schedule schedule;
  // How the model computes: vitscale's own, or a released file's when the job started from one
  // (models/registry.h); a resumed run must compute as the first attempt did.
  models::Conventions conventions;
  // Early stopping: the best validation accuracy so far and its step; -1 before any.
  double best_validation = -1;
  int64_t best_step = -1;
};

Expected<std::string> SerializeModule(const torch::nn::Module& module);
// Copies the checkpoint's tensors into `module`'s; every parameter and buffer must be present
// with the same shape (the error names the first one that is not: "a checkpoint of another
// model" is a configuration error).
Status LoadModule(const std::string& bytes, torch::nn::Module& module);

Expected<std::string> SerializeOptimizer(torch::optim::Optimizer& optimizer);
Status LoadOptimizer(const std::string& bytes, torch::optim::Optimizer& optimizer);

std::string SerializeProgress(const TrainProgress& progress);
Expected<TrainProgress> ParseProgress(const std::string& text);

// All three blobs of a checkpoint.
Expected<std::map<std::string, std::string>> SnapshotTraining(const torch::nn::Module& module,
                                                              torch::optim::Optimizer& optimizer,
                                                              const TrainProgress& progress);

// The per-step seed of `rank`'s generator: training randomness (dropout) is a function of
// (seed, step, rank), so a resumed run draws what the uninterrupted run drew.
uint64_t StepSeed(uint64_t seed, int64_t step, int rank);

}  // namespace vitscale::trainer
