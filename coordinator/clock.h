// Time for the coordinator's decisions (lease deadlines, retry backoff), behind an interface so
// that tests drive it by hand: a FakeClock advances only when told, so no test ever sleeps.
//
// Times are monotonic (std::chrono::steady_clock): a lease must not expire or stretch because an
// administrator or NTP moved the wall clock. Wall-clock stamps for the database are the store's
// business (storage::OpenOptions::now), not the scheduler's.
#pragma once

#include <chrono>

namespace vitscale::coordinator {

using Duration = std::chrono::steady_clock::duration;
using TimePoint = std::chrono::steady_clock::time_point;

// Thread safety: implementations below may be read from any thread; FakeClock::Advance must not
// race with readers (tests call it from the thread that drives the scheduler).
class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

// The real clock the daemon uses.
class SteadyClock final : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::steady_clock::now(); }
};

// A clock that stands still until Advance(); starts at `start`.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(TimePoint start = TimePoint{}) : now_(start) {}
  TimePoint Now() const override { return now_; }
  void Advance(Duration by) { now_ += by; }

 private:
  TimePoint now_;
};

}  // namespace vitscale::coordinator
