// Counting multiply-adds while a module runs, to check the registry's analytic ComputeCost()
// against what the LibTorch modules really compute. The modules in models/ call CountMacs()
// next to every convolution, linear layer and attention product; the count is per thread and
// costs one branch when no MacCountScope is alive.
#pragma once

#include <cstdint>

namespace vitscale::models {

namespace internal {
inline thread_local int64_t* active_mac_count = nullptr;
}  // namespace internal

// While alive, MACs counted on this thread add up in macs(). Scopes do not nest: an inner
// scope takes over until it ends, then the outer one resumes. Not thread-safe to share.
class MacCountScope {
 public:
  MacCountScope() : previous_(internal::active_mac_count) { internal::active_mac_count = &macs_; }
  ~MacCountScope() { internal::active_mac_count = previous_; }
  MacCountScope(const MacCountScope&) = delete;
  MacCountScope& operator=(const MacCountScope&) = delete;

  // Total over the whole batch that ran; divide by the batch size for ComputeCost's per image.
  int64_t macs() const { return macs_; }

 private:
  int64_t macs_ = 0;
  int64_t* previous_;
};

inline void CountMacs(int64_t macs) {
  if (internal::active_mac_count != nullptr) *internal::active_mac_count += macs;
}

}  // namespace vitscale::models
