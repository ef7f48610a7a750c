#include "data/order.h"

#include <numeric>
#include <string>
#include <utility>

namespace vitscale::data {
namespace {

uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

constexpr int kFeistelRounds = 6;

}  // namespace

uint64_t HashValues(std::initializer_list<uint64_t> values) {
  uint64_t h = 0x6a09e667f3bcc908ULL;
  for (uint64_t v : values) h = Mix(h ^ Mix(v));
  return h;
}

uint64_t CounterRng::Below(uint64_t n) {
  // Reject the top sliver of the 64-bit range that would bias the modulo.
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do {
    x = Next();
  } while (x >= limit);
  return x % n;
}

std::vector<uint32_t> SeededPermutation(size_t n, uint64_t seed) {
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  CounterRng rng(HashValues({seed, 0x5eb5e7ULL}));
  for (size_t i = n; i > 1; --i) {
    std::swap(order[i - 1], order[rng.Below(i)]);
  }
  return order;
}

Expected<std::vector<uint32_t>> NestedSubset(size_t split_size, size_t n, uint64_t seed) {
  if (n > split_size) {
    return InvalidArgument("a subset of " + std::to_string(n) +
                           " examples is larger than its split of " + std::to_string(split_size) +
                           "; use at most " + std::to_string(split_size) +
                           " (or 0 for the whole split)");
  }
  std::vector<uint32_t> order = SeededPermutation(split_size, seed);
  if (n > 0) order.resize(n);
  return order;
}

Expected<BatchPlan> BatchPlan::Create(std::vector<uint32_t> subset, size_t global_batch,
                                      uint64_t seed, int world_size) {
  if (world_size <= 0) {
    return InvalidArgument("world size " + std::to_string(world_size) + " must be positive");
  }
  if (global_batch == 0 || global_batch % static_cast<size_t>(world_size) != 0) {
    return InvalidArgument("global batch " + std::to_string(global_batch) +
                           " must be a positive multiple of the number of ranks (" +
                           std::to_string(world_size) + ")");
  }
  if (global_batch > subset.size()) {
    return InvalidArgument("global batch " + std::to_string(global_batch) +
                           " is larger than the training subset of " +
                           std::to_string(subset.size()) + " examples");
  }
  BatchPlan plan;
  plan.global_batch_ = global_batch;
  plan.steps_per_epoch_ = subset.size() / global_batch;
  plan.seed_ = seed;
  plan.world_size_ = world_size;
  plan.domain_bits_ = 2;
  while ((uint64_t{1} << plan.domain_bits_) < subset.size()) plan.domain_bits_ += 2;
  plan.subset_ = std::move(subset);
  return plan;
}

uint32_t BatchPlan::At(size_t epoch, size_t position) const {
  // A keyed Feistel network is a bijection on [0, 2^bits); walking the cycle until the value
  // lands below |subset| restricts it to a bijection on the subset positions. This gives any
  // position of any epoch's order in O(1), without materialising the permutation.
  const uint32_t half = domain_bits_ / 2;
  const uint64_t mask = (uint64_t{1} << half) - 1;
  const uint64_t key = HashValues({seed_, epoch, 0xba7c4ULL});
  uint64_t x = position;
  do {
    uint64_t left = x >> half;
    uint64_t right = x & mask;
    for (int round = 0; round < kFeistelRounds; ++round) {
      uint64_t next = left ^ (HashValues({key, static_cast<uint64_t>(round), right}) & mask);
      left = right;
      right = next;
    }
    x = (left << half) | right;
  } while (x >= subset_.size());
  return subset_[x];
}

std::vector<uint32_t> BatchPlan::GlobalBatch(size_t step) const {
  size_t epoch = step / steps_per_epoch_;
  size_t first = (step % steps_per_epoch_) * global_batch_;
  std::vector<uint32_t> batch(global_batch_);
  for (size_t i = 0; i < global_batch_; ++i) batch[i] = At(epoch, first + i);
  return batch;
}

std::vector<uint32_t> BatchPlan::RankSlice(size_t step, int rank) const {
  size_t epoch = step / steps_per_epoch_;
  size_t per_rank = per_rank_batch();
  size_t first = (step % steps_per_epoch_) * global_batch_ + static_cast<size_t>(rank) * per_rank;
  std::vector<uint32_t> slice(per_rank);
  for (size_t i = 0; i < per_rank; ++i) slice[i] = At(epoch, first + i);
  return slice;
}

}  // namespace vitscale::data
