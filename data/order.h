// Example order as pure functions of (seed, epoch, step, rank, world size).
//
// Nothing here keeps iterator state: a run resumed at step s computes exactly the batches an
// uninterrupted run computes at step s, on any number of ranks and loader threads. Randomness
// comes from a counter-based hash (SplitMix64 finaliser) of the values it depends on, so it is
// the same on every platform and standard library.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "common/status.h"

namespace vitscale::data {

// A well-mixed 64-bit hash of a sequence of values (order matters).
uint64_t HashValues(std::initializer_list<uint64_t> values);

// A small counter-based generator: the stream is fixed by its key; draws advance a counter.
// Copyable, no global state. Not thread-safe per object (each thread makes its own).
class CounterRng {
 public:
  explicit CounterRng(uint64_t key) : key_(key) {}
  uint64_t Next() { return HashValues({key_, counter_++}); }
  // Uniform in [0, n); n > 0. The rejection keeps it exactly uniform.
  uint64_t Below(uint64_t n);
  // Uniform in [0, 1).
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t key_;
  uint64_t counter_ = 0;
};

// A seeded permutation of [0, n) (Fisher-Yates over CounterRng(seed)).
std::vector<uint32_t> SeededPermutation(size_t n, uint64_t seed);

// The n-example subset of a split of `split_size` examples: the first n entries of ONE seeded
// permutation of it, so NestedSubset(N, 3000, s) is a prefix of NestedSubset(N, 10000, s).
// Fails (kInvalidArgument) when n > split_size; n == 0 means the whole split.
Expected<std::vector<uint32_t>> NestedSubset(size_t split_size, size_t n, uint64_t seed);

// The batch order of a training run over a subset (a list of example indices into a split).
// Epoch e visits the subset in a seeded permutation keyed by (seed, e); global batch b of epoch
// e is positions [b*B, (b+1)*B) of it; the last partial batch of an epoch is dropped. The
// global step counts batches from 0 across epochs. Rank r of R takes slice [r*B/R, (r+1)*B/R)
// of every global batch. Thread-safe: every method is const and pure.
class BatchPlan {
 public:
  // Fails when global_batch is 0, not divisible by world_size, or larger than the subset.
  static Expected<BatchPlan> Create(std::vector<uint32_t> subset, size_t global_batch,
                                    uint64_t seed, int world_size);

  size_t steps_per_epoch() const { return steps_per_epoch_; }
  size_t global_batch() const { return global_batch_; }
  size_t per_rank_batch() const { return global_batch_ / world_size_; }
  int world_size() const { return world_size_; }
  uint64_t seed() const { return seed_; }
  size_t epoch_of(size_t step) const { return step / steps_per_epoch_; }

  // The example indices (into the split) of global batch `step`.
  std::vector<uint32_t> GlobalBatch(size_t step) const;
  // Rank `rank`'s contiguous slice of GlobalBatch(step). REQUIRES: 0 <= rank < world_size.
  std::vector<uint32_t> RankSlice(size_t step, int rank) const;

 private:
  BatchPlan() = default;
  // Subset position at `position` of epoch `epoch`'s order.
  uint32_t At(size_t epoch, size_t position) const;

  std::vector<uint32_t> subset_;
  size_t global_batch_ = 0;
  size_t steps_per_epoch_ = 0;
  uint64_t seed_ = 0;
  int world_size_ = 1;
  uint32_t domain_bits_ = 0;  // the Feistel permutation's domain is 2^domain_bits_ >= |subset|
};

}  // namespace vitscale::data
