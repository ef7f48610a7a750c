// Time, behind one interface, for everything that waits or stamps: lease deadlines, retry
// backoff and preemption grace read the monotonic clock; database rows and events carry wall
// time. Tests pass a FakeClock, which moves only when told, so no test sleeps through a lease,
// a backoff or a grace period.
//
// Monotonic time (std::chrono::steady_clock) decides: a lease must not expire or stretch because
// an administrator or NTP moved the wall clock. Wall time is for people and the database.
//
// Thread safety: both implementations may be read from any thread; FakeClock::Advance may run
// beside readers.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace vitscale {

using Duration = std::chrono::steady_clock::duration;
using TimePoint = std::chrono::steady_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;       // monotonic
  virtual double WallSeconds() const = 0;  // seconds since the Unix epoch (UTC)
};

// The real clocks. SystemClock::Get() is the one instance a daemon needs.
class SystemClock final : public Clock {
 public:
  static const SystemClock& Get();
  TimePoint Now() const override { return std::chrono::steady_clock::now(); }
  double WallSeconds() const override;
};

// Stands still until Advance(), which moves both times by the same amount.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(TimePoint start = TimePoint{}, double wall_start = 1700000000.0)
      : monotonic_ns_(std::chrono::duration_cast<std::chrono::nanoseconds>(start.time_since_epoch())
                          .count()),
        wall_start_(wall_start) {}
  TimePoint Now() const override {
    return TimePoint(std::chrono::duration_cast<Duration>(std::chrono::nanoseconds(Elapsed())));
  }
  double WallSeconds() const override;
  void Advance(Duration by) {
    monotonic_ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(by).count();
    advanced_ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(by).count();
  }

 private:
  int64_t Elapsed() const { return monotonic_ns_.load(); }
  std::atomic<int64_t> monotonic_ns_;
  std::atomic<int64_t> advanced_ns_{0};
  double wall_start_;
};

// "2026-11-27T13:00:00.123Z" for seconds since the Unix epoch.
std::string IsoTime(double unix_seconds);

}  // namespace vitscale
