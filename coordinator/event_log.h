// The event stream's memory: every state change and metric batch the coordinator announces gets
// an increasing sequence number and is kept (the newest, within a count and a byte budget) so
// that a client that reconnects with ?since=N receives what it missed. Each event is serialised
// once and shared: the log, every connected client's queue and every catch-up hold the same
// string.
//
// Threading: io thread only (the coordinator appends, the HTTP server's catch-up reads).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "protocol/json.h"

namespace vitscale::coordinator {

class EventLog {
 public:
  using Message = std::shared_ptr<const std::string>;

  // Keeps at most `max_events` events and `max_bytes` of their text.
  EventLog(size_t max_events, size_t max_bytes, const Clock& clock);

  // `publish` sends one serialised event to the connected clients.
  void SetPublisher(std::function<void(Message)> publish) { publish_ = std::move(publish); }

  // Stamps, keeps and publishes {"seq", "time", "type", "job", "data"}.
  void Append(const std::string& type, const std::string& job_id, protocol::Json data);

  // Events after `since`. When some of them are no longer kept, when they are more than
  // `max_bytes` (more than a client may have queued), or when `since` is ahead of this
  // coordinator (it restarted), a single {"type":"reset","seq":N} tells the client to reload.
  std::vector<Message> Since(int64_t since, size_t max_bytes = 8 << 20) const;

  int64_t last_seq() const { return next_seq_ - 1; }
  size_t size() const { return events_.size(); }
  size_t bytes() const { return bytes_; }

 private:
  size_t max_events_;
  size_t max_bytes_;
  const Clock& clock_;
  std::function<void(Message)> publish_;
  // Starts from the wall clock in microseconds so that numbers never repeat across restarts:
  // a client's old `since` is then either behind (reset) or, after a restart, far ahead (reset).
  int64_t next_seq_;
  std::deque<std::pair<int64_t, Message>> events_;
  size_t bytes_ = 0;
};

}  // namespace vitscale::coordinator
