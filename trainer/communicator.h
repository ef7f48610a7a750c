// Communicator: the collectives that data-parallel training needs, behind one interface so that
// the trainer does not know whether MPI (CPU ranks) or NCCL (GPU ranks, trainer/nccl_communicator.h)
// carries them.
//
// MPI rules apply to every implementation: each rank calls the same collectives in the same
// order, with tensors of the same shapes and dtypes. A Communicator is used from one thread (the
// training loop); it is not thread-safe.
#pragma once

#include <torch/types.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace vitscale::trainer {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // Overwrites every rank's `tensors` with rank 0's, in place (parameters at start, so that all
  // ranks begin from one initialisation). Runs under no-grad, so leaf parameters are fine.
  virtual Status Broadcast(const std::vector<torch::Tensor>& tensors) = 0;

  // Replaces each tensor by its sum or mean over ranks, in place: the mean of gradients after
  // backward; the sum of zero-padded shards to gather evaluation features exactly. Tensors are
  // packed into flat buckets so that a model with hundreds of small tensors costs a few messages
  // instead of hundreds.
  enum class Reduce { kSum, kMean };
  virtual Status AllReduce(const std::vector<torch::Tensor>& tensors, Reduce reduce) = 0;

  // An all-reduce begun by StartAllReduce.
  class Pending {
   public:
    virtual ~Pending() = default;
    // Completes it: the result is in the tensor for whatever the caller does next on its device
    // (on a GPU, ordered before the current stream's next kernels, without the host waiting).
    virtual Status Wait() = 0;
  };

  // AllReduce of one flat tensor, begun so that it may run while the caller goes on computing:
  // the gradient buckets of a backward pass (trainer/gradient_reducer.h). Every rank starts the
  // same all-reduces in the same order. This default, which MPI uses, completes it before
  // returning (CPU ranks have no idle engine to overlap it with); NCCL runs it on a stream of
  // its own beside the backward pass.
  virtual Expected<std::unique_ptr<Pending>> StartAllReduce(const torch::Tensor& flat,
                                                            Reduce reduce);

  // Replaces each value by its sum over ranks (loss sums, correct counts, stop flags).
  virtual Status AllReduceScalars(std::vector<double>* values) = 0;

  virtual Status Barrier() = 0;

  // Ends every rank of the job with `exit_status`: for a failure one rank meets alone, which
  // would otherwise leave the others waiting in a collective forever.
  [[noreturn]] virtual void Abort(int exit_status) = 0;
};

// Open MPI over host float buffers. Supports float32 and float64 tensors; GPU tensors are staged
// through host memory (correct, not fast: GPU jobs use NCCL).
class MpiCommunicator final : public Communicator {
 public:
  static constexpr size_t kDefaultBucketBytes = 25u << 20;

  // Initialises MPI for this process on first use (later calls reuse it) and duplicates
  // MPI_COMM_WORLD, with errors returned instead of aborting. Started without mpirun, this is a
  // world of one rank.
  static Expected<std::unique_ptr<MpiCommunicator>> Create(
      size_t bucket_bytes = kDefaultBucketBytes);
  ~MpiCommunicator() override;

  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Status Broadcast(const std::vector<torch::Tensor>& tensors) override;
  Status AllReduce(const std::vector<torch::Tensor>& tensors, Reduce reduce) override;
  Status AllReduceScalars(std::vector<double>* values) override;
  Status Barrier() override;
  [[noreturn]] void Abort(int exit_status) override;

  // Overwrites every rank's `bytes` with rank 0's (which must have the same length everywhere):
  // how NCCL's unique id travels.
  Status BroadcastBytes(std::string* bytes);

 private:
  struct Impl;
  explicit MpiCommunicator(std::unique_ptr<Impl> impl, int rank, int size, size_t bucket_bytes);

  std::unique_ptr<Impl> impl_;
  int rank_ = 0;
  int size_ = 1;
  size_t bucket_bytes_ = kDefaultBucketBytes;
};

// Finalises MPI if it was initialised and is not finalised yet. Called once by whoever owns the
// process (the trainer's main, a test environment) after every communicator is destroyed.
void FinalizeMpi();

// Consecutive runs of `tensors` with one dtype and at most `bucket_bytes` together (a tensor
// larger than that forms a bucket of its own); each inner vector holds indices into `tensors`.
std::vector<std::vector<size_t>> PlanBuckets(const std::vector<torch::Tensor>& tensors,
                                             size_t bucket_bytes);

}  // namespace vitscale::trainer
