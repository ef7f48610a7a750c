// The one place where LibTorch 1.13 (the Debian CPU build) and 2.x (the GPU machines) differ.
// Everything else in models/ and trainer/ is written against the API both share, and asks here
// when it needs what only one of them has.
#pragma once

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/util/Exception.h>
#include <c10/util/string_utils.h>
#include <torch/version.h>

#include <cmath>
#include <cstring>
#include <vector>

namespace vitscale::models::compat {

// Scaled dot-product attention without masking or dropout (the paper uses no attention
// dropout). q, k, v: (batch, heads, tokens, head_dim); returns the same shape.
inline at::Tensor DotProductAttention(const at::Tensor& q, const at::Tensor& k,
                                      const at::Tensor& v) {
#if TORCH_VERSION_MAJOR >= 2
  // Fused kernels (flash / memory-efficient) on GPU, a blocked kernel on CPU.
  return at::scaled_dot_product_attention(q, k, v);
#else
  // Scaling the (tokens x keys) scores in place saves a buffer; bmm's backward does not need
  // its output, so the in-place op is autograd-safe.
  const int64_t batch = q.size(0), heads = q.size(1), tokens = q.size(2), dim = q.size(3);
  const int64_t keys = k.size(2);
  at::Tensor q3 = q.reshape({batch * heads, tokens, dim});
  at::Tensor k3 = k.reshape({batch * heads, keys, dim});
  at::Tensor v3 = v.reshape({batch * heads, keys, dim});
  at::Tensor scores =
      at::bmm(q3, k3.transpose(1, 2)).mul_(1.0 / std::sqrt(static_cast<double>(dim)));
  return at::bmm(scores.softmax(-1), v3).view({batch, heads, tokens, dim});
#endif
}

// Mixed precision for the GPU: while a guard lives, this thread's CUDA ops autocast to `dtype`
// (matmuls and convolutions in bf16, norms and softmax in fp32). The cast cache is off: it would
// keep stale casts of weights across optimiser steps, and CUDA graph capture refuses it.
class CudaAutocastGuard {
 public:
  explicit CudaAutocastGuard(bool enabled, at::ScalarType dtype = at::kBFloat16)
      : enabled_(enabled) {
    if (!enabled_) return;
    previous_cache_ = at::autocast::is_autocast_cache_enabled();
    at::autocast::set_autocast_cache_enabled(false);
#if TORCH_VERSION_MAJOR >= 2
    previous_enabled_ = at::autocast::is_autocast_enabled(at::kCUDA);
    previous_dtype_ = at::autocast::get_autocast_dtype(at::kCUDA);
    at::autocast::set_autocast_dtype(at::kCUDA, dtype);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
    previous_enabled_ = at::autocast::is_enabled();
    previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(true);
#endif
  }
  ~CudaAutocastGuard() {
    if (!enabled_) return;
#if TORCH_VERSION_MAJOR >= 2
    at::autocast::set_autocast_enabled(at::kCUDA, previous_enabled_);
    at::autocast::set_autocast_dtype(at::kCUDA, previous_dtype_);
#else
    at::autocast::set_enabled(previous_enabled_);
    at::autocast::set_autocast_gpu_dtype(previous_dtype_);
#endif
    at::autocast::set_autocast_cache_enabled(previous_cache_);
  }
  CudaAutocastGuard(const CudaAutocastGuard&) = delete;
  CudaAutocastGuard& operator=(const CudaAutocastGuard&) = delete;

 private:
  bool enabled_;
  bool previous_enabled_ = false;
  bool previous_cache_ = true;
  at::ScalarType previous_dtype_ = at::kBFloat16;
};

// Whether ATen has the fused multi-tensor AdamW kernel whose learning rate and step counts are
// device tensors (so that a CUDA graph can replay it with a new learning rate).
#if TORCH_VERSION_MAJOR >= 2
inline constexpr bool kHasFusedAdamW = true;
#else
inline constexpr bool kHasFusedAdamW = false;
#endif

// One fused AdamW update of `params` (decoupled weight decay, no amsgrad). `steps` are float32
// device tensors that the caller has already incremented; `lr` a float32 device scalar.
// REQUIRES: kHasFusedAdamW.
inline void FusedAdamW(const std::vector<at::Tensor>& params, const std::vector<at::Tensor>& grads,
                       const std::vector<at::Tensor>& exp_avgs,
                       const std::vector<at::Tensor>& exp_avg_sqs,
                       const std::vector<at::Tensor>& steps, const at::Tensor& lr, double beta1,
                       double beta2, double weight_decay, double eps) {
#if TORCH_VERSION_MAJOR >= 2
  at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, lr,
                    beta1, beta2, weight_decay, eps, /*amsgrad=*/false, /*maximize=*/false);
#else
  (void)params, (void)grads, (void)exp_avgs, (void)exp_avg_sqs, (void)steps, (void)lr;
  (void)beta1, (void)beta2, (void)weight_decay, (void)eps;
  TORCH_CHECK(false, "fused AdamW needs LibTorch 2.x");
#endif
}

// The L2 norm of each tensor, as one multi-tensor kernel where ATen has it for device tensors.
inline std::vector<at::Tensor> Norms(const std::vector<at::Tensor>& tensors) {
#if TORCH_VERSION_MAJOR >= 2
  return at::_foreach_norm(tensors);
#else
  std::vector<at::Tensor> norms;
  norms.reserve(tensors.size());
  for (const at::Tensor& t : tensors) norms.push_back(t.norm());
  return norms;
#endif
}

// Multiplies every tensor in place by the device scalar `factor` without reading it back.
inline void MulByDeviceScalar(const std::vector<at::Tensor>& tensors, const at::Tensor& factor) {
#if TORCH_VERSION_MAJOR >= 2
  at::_foreach_mul_(tensors, factor);
#else
  for (const at::Tensor& t : tensors) const_cast<at::Tensor&>(t).mul_(factor);
#endif
}

// The key of parameter `p` in torch::optim::Optimizer::state().
inline auto OptimizerStateKey(const at::Tensor& p) {
#if TORCH_VERSION_MAJOR >= 2
  return static_cast<void*>(p.unsafeGetTensorImpl());
#else
  return c10::guts::to_string(p.unsafeGetTensorImpl());
#endif
}

// Whether `error` is an allocation failure (GPU or CPU): a smaller batch may fit.
inline bool IsOutOfMemory(const c10::Error& error) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&error) != nullptr) return true;
  // The CPU allocator reports a failed allocation as a plain c10::Error.
  return std::strstr(error.what_without_backtrace(), "can't allocate memory") != nullptr;
}

}  // namespace vitscale::models::compat
