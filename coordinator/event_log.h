// The event stream's memory: every state change and metric batch the coordinator announces gets
// an increasing sequence number and is kept (the newest `capacity` of them) so that a client
// that reconnects with ?since=N receives what it missed.
//
// Threading: io thread only (the coordinator appends, the HTTP server's catch-up reads).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vitscale::coordinator {

class EventLog {
 public:
  // `publish` sends one serialised event to the connected clients.
  EventLog(size_t capacity, std::function<void(const std::string&)> publish);

  // Stamps, keeps and publishes {"seq", "time", "type", "job", "data"}.
  void Append(const std::string& type, const std::string& job_id, nlohmann::json data);

  // Events after `since`. When some of them are no longer kept, or `since` is ahead of this
  // coordinator (it restarted), a single {"type":"reset","seq":N} tells the client to reload.
  std::vector<std::string> Since(int64_t since) const;

  int64_t last_seq() const { return next_seq_ - 1; }

 private:
  size_t capacity_;
  std::function<void(const std::string&)> publish_;
  // Starts from the wall clock in microseconds so that numbers never repeat across restarts:
  // a client's old `since` is then either behind (reset) or, after a restart, far ahead (reset).
  int64_t next_seq_;
  std::deque<std::pair<int64_t, std::string>> events_;
};

}  // namespace vitscale::coordinator
