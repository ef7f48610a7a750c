// Host memory for batches: where the loader's threads write images and the trainer reads them.
//
// With a CUDA-enabled LibTorch (the GPU build) it is page-locked ("pinned"), so the trainer's
// copies to the device can run asynchronously (`to(device, /*non_blocking=*/true)`) while the
// next batch is being decoded. LibTorch 1.13 CPU cannot pin memory without CUDA; there it is
// plain memory from LibTorch's CPU allocator (64-byte aligned). The loader allocates its
// buffers once, through this one call, and reuses them for every batch.
#pragma once

#include <ATen/core/Tensor.h>

namespace vitscale::data {

// Whether AllocateBatchMemory returns pinned memory (CUDA is present at run time).
bool BatchMemoryIsPinned();

// An uninitialised contiguous tensor of `sizes` and `type` in batch memory. Throws what
// at::empty throws (the loader converts it to a Status).
at::Tensor AllocateBatchMemory(at::IntArrayRef sizes, at::ScalarType type);

}  // namespace vitscale::data
