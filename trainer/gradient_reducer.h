// GradientReducer: averages a model's gradients over the ranks while the backward pass is still
// running. Parameters are grouped into buckets of about `bucket_bytes` in reverse registration
// order (roughly the order backward produces their gradients); a hook on each parameter copies
// its finished gradient into its bucket's flat buffer, and a bucket whose gradients are all in
// is handed to Communicator::StartAllReduce at once — on a GPU with NCCL that all-reduce runs on
// its own stream while backward computes the layers below. Buckets start strictly in order, so
// every rank issues the same collectives in the same sequence whatever order its hooks fire in.
//
// The logic is the same for every Communicator; MPI completes each bucket inside the hook.
//
// Use, per optimisation step: Arm() before the backward pass that completes the step's gradient
// (the last micro-batch's; earlier micro-batches accumulate locally as usual), then Finish()
// after it. Not thread-safe beyond what that implies: the hooks run on LibTorch's autograd
// thread while the training thread waits in backward().
#pragma once

#include <torch/torch.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "common/status.h"
#include "trainer/communicator.h"

namespace vitscale::trainer {

class GradientReducer {
 public:
  static constexpr size_t kDefaultBucketBytes = 25u << 20;

  // Registers a hook on each of `params` (leaf tensors that require grad, float32 or float64)
  // for the reducer's lifetime. `comm` must outlive it.
  GradientReducer(std::vector<torch::Tensor> params, Communicator& comm,
                  size_t bucket_bytes = kDefaultBucketBytes);
  ~GradientReducer();
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // The next backward pass completes this step's gradients: its hooks fill and start buckets.
  void Arm();

  // After the armed backward pass: starts the buckets still open (a parameter the forward did
  // not reach counts as a zero gradient, as on every other rank), completes every all-reduce,
  // and leaves each parameter's .grad() holding the mean over ranks. Issues no host-device
  // synchronisation, so a CUDA graph can capture it.
  Status Finish();

  // Forgets an armed pass that was abandoned before Finish (a CUDA graph capture that failed:
  // it recorded collectives but ran none).
  void Reset();

  size_t bucket_count() const { return buckets_.size(); }

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_
    std::vector<int64_t> offsets;
    torch::Tensor buffer;        // flat, on the parameters' device
    size_t ready = 0;            // gradients copied in during the armed pass
  };

  void OnGradient(size_t param, const torch::Tensor& grad);
  void StartReadyBuckets();
  void StartBucket(Bucket& bucket);

  std::vector<torch::Tensor> params_;
  Communicator& comm_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;  // param index -> bucket index
  std::vector<size_t> slot_of_;    // param index -> position within its bucket
  std::vector<bool> seen_;         // param index -> its hook ran in the armed pass
  std::vector<unsigned> hooks_;    // hook handles, to remove them again
  std::vector<std::unique_ptr<Communicator::Pending>> pending_;
  bool armed_ = false;
  size_t next_to_start_ = 0;       // buckets start in index order
  Status status_;                  // the first error a hook met
};

}  // namespace vitscale::trainer
