#include "data/batch_memory.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>

namespace vitscale::data {

bool BatchMemoryIsPinned() { return at::hasCUDA(); }

at::Tensor AllocateBatchMemory(at::IntArrayRef sizes, at::ScalarType type) {
  return at::empty(sizes, at::TensorOptions().dtype(type).pinned_memory(BatchMemoryIsPinned()));
}

}  // namespace vitscale::data
