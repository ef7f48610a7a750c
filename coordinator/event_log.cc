#include "coordinator/event_log.h"

#include "protocol/api.h"

namespace vitscale::coordinator {

EventLog::EventLog(size_t max_events, size_t max_bytes, const Clock& clock)
    : max_events_(max_events),
      max_bytes_(max_bytes),
      clock_(clock),
      next_seq_(static_cast<int64_t>(clock.WallSeconds() * 1e6)) {}

void EventLog::Append(const std::string& type, const std::string& job_id, protocol::Json data) {
  protocol::Event event;
  event.seq = next_seq_++;
  event.time = IsoTime(clock_.WallSeconds());
  event.type = type;
  if (!job_id.empty()) event.job = job_id;
  // The data joins the message by move: Event::ToJson would copy it, and a metric event holds
  // every point of its post.
  protocol::Json message = event.ToJson();
  message["data"] = std::move(data);
  auto text = std::make_shared<const std::string>(protocol::Dump(message));
  bytes_ += text->size();
  events_.emplace_back(event.seq, text);
  while (!events_.empty() && (events_.size() > max_events_ || bytes_ > max_bytes_)) {
    bytes_ -= events_.front().second->size();
    events_.pop_front();
  }
  if (publish_) publish_(std::move(text));
}

std::vector<EventLog::Message> EventLog::Since(int64_t since, size_t max_bytes) const {
  auto reset = [this] {
    protocol::Event event;
    event.seq = last_seq();
    event.type = "reset";
    return std::vector<Message>{std::make_shared<const std::string>(protocol::Dump(event.ToJson()))};
  };
  bool lost_some = !events_.empty() && since < events_.front().first - 1;
  bool from_elsewhere = since > last_seq();
  if (lost_some || from_elsewhere) return reset();
  std::vector<Message> missed;
  size_t bytes = 0;
  for (const auto& [seq, text] : events_) {
    if (seq <= since) continue;
    bytes += text->size();
    if (bytes > max_bytes) return reset();
    missed.push_back(text);
  }
  return missed;
}

}  // namespace vitscale::coordinator
