// Batches as LibTorch tensors: float images [B, 3, R, R] (normalised) and int64 labels [B].
//
// Loader serves one rank's slice of a BatchPlan, step after step, decoded and augmented on
// background threads (std::thread) into a bounded queue of prefetched batches. Each batch is a
// pure function of (plan, rank, step): MakeBatch(split, plan.RankSlice(step, rank), ...) with
// the augmentation keyed by (seed, epoch, example); the thread count changes only the speed.
#pragma once

#include <ATen/core/Tensor.h>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/status.h"
#include "data/augment.h"
#include "data/order.h"
#include "data/split.h"

namespace vitscale::data {

struct Batch {
  size_t step = 0;
  at::Tensor images;  // float32 [B, 3, R, R], contiguous
  at::Tensor labels;  // int64 [B]
};

// The examples `indices` of `split` as one batch, written straight into freshly allocated
// tensors, by `threads` threads (1 = the caller's). Augmentation of example i uses
// AugmentKey(seed, epoch, i) when `train`; evaluation ignores seed and epoch.
Expected<Batch> MakeBatch(const Split& split, const std::vector<uint32_t>& indices,
                          const AugmentOptions& options, bool train, uint64_t seed, uint64_t epoch,
                          int threads = 1);

// The whole split with the evaluation transform (for test accuracy and few-shot features).
Expected<Batch> WholeSplit(const Split& split, const AugmentOptions& options, int threads = 1);

struct LoaderOptions {
  AugmentOptions augment;
  bool train = true;
  int threads = 2;   // background decode/augment threads, >= 1
  int prefetch = 4;  // batches computed ahead of the consumer, >= threads
};

// Thread safety: Next() from one thread at a time. The destructor stops and joins the workers,
// also while they wait on a full queue.
class Loader {
 public:
  // Rank `rank` of plan.world_size(); the first Next() returns step `first_step`.
  static Expected<std::unique_ptr<Loader>> Create(Split split, BatchPlan plan, int rank,
                                                  size_t first_step, LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The batch of the next step (first_step, first_step + 1, ...); blocks until it is ready.
  // A decode error (e.g. a corrupt image file) comes back at the step that needed it.
  Expected<Batch> Next();
  size_t next_step() const { return consumer_step_; }

 private:
  Loader(Split split, BatchPlan plan, int rank, size_t first_step, LoaderOptions options);
  void Work();

  const Split split_;
  const BatchPlan plan_;
  const int rank_;
  const LoaderOptions options_;

  std::mutex mutex_;
  std::condition_variable work_;   // a worker may take the next step, or stop
  std::condition_variable ready_;  // a batch was finished
  size_t consumer_step_;           // the step Next() returns next; guarded by mutex_
  size_t produce_step_;            // the step the next idle worker takes; guarded by mutex_
  bool stopping_ = false;          // guarded by mutex_
  std::map<size_t, Expected<Batch>> done_;  // finished steps not yet taken; guarded by mutex_
  std::vector<std::thread> workers_;
};

}  // namespace vitscale::data
