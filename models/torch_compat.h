// The one place where LibTorch 1.13 (the Debian CPU build) and 2.x (the GPU machines) differ
// for the model zoo. Everything else in models/ is written against the API both share.
#pragma once

#include <ATen/ATen.h>
#include <torch/version.h>

#include <cmath>

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

}  // namespace vitscale::models::compat
