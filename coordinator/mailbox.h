// The agents' mailbox: launch and signal entries kept for each agent until its next poll, and
// the polls the coordinator holds open (the long poll) until there is something to say or the
// poll timeout passes.
//
// Threading: io thread only.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <string>

#include "coordinator/http_server.h"
#include "protocol/agent.h"

namespace vitscale::coordinator {

class Mailbox {
 public:
  Mailbox(boost::asio::io_context& io, std::chrono::milliseconds poll_timeout);
  ~Mailbox();

  // The poll reply's lease_seconds.
  void SetLeaseSeconds(int seconds) { lease_seconds_ = seconds; }

  void Launch(const std::string& agent_id, protocol::LaunchEntry entry);
  void Signal(const std::string& agent_id, protocol::SignalEntry entry);
  // Answers the agent's held poll, if any, with everything queued for it.
  void Flush(const std::string& agent_id);
  // Holds the agent's poll until there is work or the timeout; an older held poll of the same
  // agent (a retry after a timeout) is answered empty at once.
  void Park(const std::string& agent_id, Respond respond);
  // Answers every held poll empty and cancels the timers.
  void Close();

  size_t held_polls() const { return held_.size(); }

 private:
  struct Held {
    Respond respond;
    std::unique_ptr<boost::asio::steady_timer> timer;
  };
  HttpResponse Reply(protocol::PollReply reply) const;

  boost::asio::io_context& io_;
  std::chrono::milliseconds poll_timeout_;
  int lease_seconds_ = 30;
  std::map<std::string, protocol::PollReply> queued_;  // per agent, until its next poll
  std::map<std::string, Held> held_;                   // per agent: its open long poll
};

}  // namespace vitscale::coordinator
