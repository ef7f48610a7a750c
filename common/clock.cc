#include "common/clock.h"

#include <algorithm>
#include <cmath>
#include <ctime>

#include <fmt/format.h>

namespace vitscale {

const SystemClock& SystemClock::Get() {
  static const SystemClock clock;
  return clock;
}

double SystemClock::WallSeconds() const {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double FakeClock::WallSeconds() const { return wall_start_ + advanced_ns_.load() * 1e-9; }

std::string IsoTime(double unix_seconds) {
  if (!std::isfinite(unix_seconds)) return "";
  std::time_t whole = static_cast<std::time_t>(std::floor(unix_seconds));
  int millis = static_cast<int>((unix_seconds - static_cast<double>(whole)) * 1000.0);
  std::tm utc{};
  gmtime_r(&whole, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%S", &utc);
  return fmt::format("{}.{:03d}Z", text, std::min(millis, 999));
}

}  // namespace vitscale
