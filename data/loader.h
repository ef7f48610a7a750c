// Batches as LibTorch tensors: float images [B, 3, R, R] (normalised) and int64 labels [B].
//
// Loader serves one rank's slice of a BatchPlan, step after step: a pool of threads reads and
// decodes (JPEGs only over their crop window, data/augment.h) and augments each example
// straight into one of a fixed set of batch buffers (data/batch_memory.h: pinned when CUDA is
// there), all threads working on the oldest unfinished batch first. Each batch is a pure
// function of (plan, rank, step): MakeBatch(split, plan.RankSlice(step, rank), ...) with the
// augmentation keyed by (seed, epoch, example); the thread count changes only the speed.
#pragma once

#include <ATen/core/Tensor.h>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
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
// AugmentKey(seed, epoch, i) when `train`; evaluation ignores seed and epoch. A sample that
// cannot be read or decoded fails the batch with its file (or shard and sample) named.
Expected<Batch> MakeBatch(const Split& split, const std::vector<uint32_t>& indices,
                          const AugmentOptions& options, bool train, uint64_t seed, uint64_t epoch,
                          int threads = 1);

// The whole split with the evaluation transform (for test accuracy and few-shot features).
Expected<Batch> WholeSplit(const Split& split, const AugmentOptions& options, int threads = 1);

struct LoaderOptions {
  AugmentOptions augment;
  bool train = true;
  int threads = 2;  // decode/augment threads, >= 1
  // Batches finished or in progress ahead of the consumer, >= 1. The loader keeps prefetch + 2
  // batch buffers, allocated once and reused (more only while the consumer holds more).
  int prefetch = 2;
  // A sample that cannot be read or decoded is replaced by the next good sample of its batch
  // (with its own crop), counted and logged, while at most this many distinct samples have
  // failed; one more fails Next() with the list. 0: the first bad sample fails its step.
  int64_t max_bad_samples = 0;
  // Told once about each replaced sample (on the consumer's thread, inside Next()).
  std::function<void(const std::string&)> log;
};

// Thread safety: Next() from one thread at a time. A Batch's images live in one of the
// loader's buffers, which returns to the loader for reuse when the last tensor sharing it is
// freed (buffers outlive the loader while batches do). So with a non_blocking copy to a GPU,
// wait for the copy before dropping the batch. A consumer that keeps batches gets new buffers
// for them; the loader itself never holds more than prefetch + 2. The destructor stops and
// joins the workers.
class Loader {
 public:
  // Rank `rank` of plan.world_size(); the first Next() returns step `first_step`.
  static Expected<std::unique_ptr<Loader>> Create(Split split, BatchPlan plan, int rank,
                                                  size_t first_step, LoaderOptions options);
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // The batch of the next step (first_step, first_step + 1, ...); blocks until it is ready.
  // An unreadable sample (past max_bad_samples) comes back at the step that needed it.
  Expected<Batch> Next();
  size_t next_step() const { return consumer_step_; }
  // Distinct samples replaced so far.
  size_t bad_samples() const { return bad_seen_.size(); }

 private:
  struct Buffers;  // shared with the tensors handed out
  struct BadSample {
    uint32_t index;
    std::string message;
  };
  struct InFlight {
    size_t step = 0;
    int buffer = -1;
    std::vector<uint32_t> indices;
    at::Tensor labels;
    size_t chunks = 0, next_chunk = 0, chunks_done = 0;
    std::vector<Status> chunk_status;
    std::vector<BadSample> bad;
  };
  struct Finished {
    Expected<Batch> batch;
    std::vector<BadSample> bad;
  };

  Loader(Split split, BatchPlan plan, int rank, size_t first_step, LoaderOptions options,
         std::shared_ptr<Buffers> buffers);
  void Work();
  // Fills examples [begin, end) of `job` into `images`; bad samples go to *bad.
  Status FillChunk(const InFlight& job, size_t begin, size_t end, float* images, int64_t* labels,
                   std::vector<BadSample>* bad) const;

  const Split split_;
  const BatchPlan plan_;
  const int rank_;
  const LoaderOptions options_;
  const size_t chunk_size_;
  std::shared_ptr<Buffers> buffers_;  // its mutex guards everything below marked "guarded"

  size_t consumer_step_;               // the step Next() returns next; guarded
  size_t produce_step_;                // the next step to start; guarded
  bool stopping_ = false;              // guarded
  std::list<InFlight> in_flight_;      // started, not finished, by step (stable addresses); guarded
  std::map<size_t, Finished> done_;    // finished steps not yet taken; guarded
  std::set<uint32_t> bad_seen_;        // consumer thread only
  std::vector<std::string> bad_list_;  // consumer thread only
  std::vector<std::thread> workers_;
};

}  // namespace vitscale::data
