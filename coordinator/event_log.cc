#include "coordinator/event_log.h"

#include <chrono>

#include "coordinator/json_util.h"

namespace vitscale::coordinator {

EventLog::EventLog(size_t capacity, std::function<void(const std::string&)> publish)
    : capacity_(capacity),
      publish_(std::move(publish)),
      next_seq_(std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count()) {}

void EventLog::Append(const std::string& type, const std::string& job_id, nlohmann::json data) {
  nlohmann::json event = {{"seq", next_seq_++},
                          {"time", IsoTime(WallNow())},
                          {"type", type},
                          {"data", std::move(data)}};
  if (!job_id.empty()) event["job"] = job_id;
  std::string text = event.dump();
  events_.emplace_back(event["seq"].get<int64_t>(), text);
  if (events_.size() > capacity_) events_.pop_front();
  if (publish_) publish_(text);
}

std::vector<std::string> EventLog::Since(int64_t since) const {
  std::vector<std::string> missed;
  bool lost_some = !events_.empty() && since < events_.front().first - 1;
  bool from_elsewhere = since > last_seq();
  if (lost_some || from_elsewhere) {
    missed.push_back(nlohmann::json{{"type", "reset"}, {"seq", last_seq()}}.dump());
    return missed;
  }
  for (const auto& [seq, text] : events_) {
    if (seq > since) missed.push_back(text);
  }
  return missed;
}

}  // namespace vitscale::coordinator
