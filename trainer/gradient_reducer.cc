#include "trainer/gradient_reducer.h"

#include <algorithm>

namespace vitscale::trainer {

GradientReducer::GradientReducer(std::vector<torch::Tensor> params, Communicator& comm,
                                 size_t bucket_bytes)
    : params_(std::move(params)), comm_(comm) {
  const size_t n = params_.size();
  // Backward reaches the last-registered layers first: bucket them first.
  std::vector<torch::Tensor> reversed(params_.rbegin(), params_.rend());
  bucket_of_.resize(n);
  slot_of_.resize(n);
  seen_.assign(n, false);
  for (const std::vector<size_t>& planned : PlanBuckets(reversed, bucket_bytes)) {
    Bucket bucket;
    int64_t numel = 0;
    for (size_t r : planned) {
      const size_t i = n - 1 - r;
      bucket_of_[i] = buckets_.size();
      slot_of_[i] = bucket.params.size();
      bucket.params.push_back(i);
      bucket.offsets.push_back(numel);
      numel += params_[i].numel();
    }
    const torch::Tensor& first = params_[bucket.params.front()];
    bucket.buffer = torch::zeros({numel}, first.options().requires_grad(false));
    buckets_.push_back(std::move(bucket));
  }
  hooks_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    hooks_.push_back(params_[i].register_hook([this, i](torch::Tensor grad) { OnGradient(i, grad); }));
  }
}

GradientReducer::~GradientReducer() {
  for (size_t i = 0; i < hooks_.size(); ++i) params_[i].remove_hook(hooks_[i]);
}

void GradientReducer::Arm() { armed_ = true; }

void GradientReducer::OnGradient(size_t param, const torch::Tensor& grad) {
  if (!armed_ || seen_[param]) return;
  seen_[param] = true;
  Bucket& bucket = buckets_[bucket_of_[param]];
  const torch::Tensor& p = params_[param];
  torch::NoGradGuard no_grad;
  torch::Tensor slot = bucket.buffer.narrow(0, bucket.offsets[slot_of_[param]], p.numel())
                           .view(p.sizes());
  // The step's gradient: what earlier micro-batches accumulated plus this pass's, the sum
  // autograd is about to store in .grad() itself.
  const torch::Tensor& accumulated = p.grad();
  if (accumulated.defined()) {
    torch::add_out(slot, accumulated, grad);
  } else {
    slot.copy_(grad);
  }
  if (++bucket.ready == bucket.params.size()) StartReadyBuckets();
}

void GradientReducer::StartReadyBuckets() {
  while (next_to_start_ < buckets_.size() &&
         buckets_[next_to_start_].ready == buckets_[next_to_start_].params.size()) {
    StartBucket(buckets_[next_to_start_++]);
  }
}

void GradientReducer::StartBucket(Bucket& bucket) {
  Expected<std::unique_ptr<Communicator::Pending>> started =
      comm_.StartAllReduce(bucket.buffer, Communicator::Reduce::kMean);
  if (!started.ok()) {
    if (status_.ok()) status_ = started.status();
    return;
  }
  pending_.push_back(std::move(started).value());
}

Status GradientReducer::Finish() {
  {
    torch::NoGradGuard no_grad;
    // Gradients the armed pass did not produce: what earlier micro-batches left, else zero.
    for (size_t b = next_to_start_; b < buckets_.size(); ++b) {
      Bucket& bucket = buckets_[b];
      for (size_t s = 0; s < bucket.params.size(); ++s) {
        const size_t i = bucket.params[s];
        if (seen_[i]) continue;
        torch::Tensor slot = bucket.buffer.narrow(0, bucket.offsets[s], params_[i].numel());
        const torch::Tensor& accumulated = params_[i].grad();
        if (accumulated.defined()) {
          slot.copy_(accumulated.reshape({-1}));
        } else {
          slot.zero_();
        }
      }
      bucket.ready = bucket.params.size();
    }
  }
  StartReadyBuckets();
  Status status = status_;
  for (std::unique_ptr<Communicator::Pending>& pending : pending_) {
    Status waited = pending->Wait();
    if (status.ok()) status = waited;
  }
  if (status.ok()) {
    torch::NoGradGuard no_grad;
    for (Bucket& bucket : buckets_) {
      for (size_t s = 0; s < bucket.params.size(); ++s) {
        torch::Tensor& p = params_[bucket.params[s]];
        torch::Tensor mean =
            bucket.buffer.narrow(0, bucket.offsets[s], p.numel()).view(p.sizes());
        if (p.grad().defined()) {
          p.mutable_grad().copy_(mean);
        } else {
          p.mutable_grad() = mean.clone();
        }
      }
    }
  }
  Reset();
  return status;
}

void GradientReducer::Reset() {
  pending_.clear();
  armed_ = false;
  next_to_start_ = 0;
  std::fill(seen_.begin(), seen_.end(), false);
  for (Bucket& bucket : buckets_) bucket.ready = 0;
  status_ = Status::Ok();
}

}  // namespace vitscale::trainer
