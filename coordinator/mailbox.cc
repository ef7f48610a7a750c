#include "coordinator/mailbox.h"

namespace vitscale::coordinator {

Mailbox::Mailbox(boost::asio::io_context& io, std::chrono::milliseconds poll_timeout)
    : io_(io), poll_timeout_(poll_timeout) {}

Mailbox::~Mailbox() { Close(); }

HttpResponse Mailbox::Reply(protocol::PollReply reply) const {
  reply.lease_seconds = lease_seconds_;
  return JsonResponse(200, reply.ToJson());
}

void Mailbox::Launch(const std::string& agent_id, protocol::LaunchEntry entry) {
  queued_[agent_id].launch.push_back(std::move(entry));
}

void Mailbox::Signal(const std::string& agent_id, protocol::SignalEntry entry) {
  queued_[agent_id].signal.push_back(std::move(entry));
}

void Mailbox::Flush(const std::string& agent_id) {
  auto held = held_.find(agent_id);
  auto queued = queued_.find(agent_id);
  if (held == held_.end() || queued == queued_.end()) return;
  protocol::PollReply reply = std::move(queued->second);
  queued_.erase(queued);
  Respond respond = std::move(held->second.respond);
  held->second.timer->cancel();
  held_.erase(held);
  respond(Reply(std::move(reply)));
}

void Mailbox::Park(const std::string& agent_id, Respond respond) {
  if (auto old = held_.find(agent_id); old != held_.end()) {
    old->second.timer->cancel();
    Respond previous = std::move(old->second.respond);
    held_.erase(old);
    previous(Reply({}));
  }
  auto timer = std::make_unique<boost::asio::steady_timer>(io_, poll_timeout_);
  timer->async_wait([this, agent_id](const boost::system::error_code& error) {
    if (error) return;
    auto it = held_.find(agent_id);
    if (it == held_.end()) return;
    Respond late = std::move(it->second.respond);
    held_.erase(it);
    late(Reply({}));
  });
  held_[agent_id] = Held{std::move(respond), std::move(timer)};
  Flush(agent_id);
}

void Mailbox::Close() {
  std::map<std::string, Held> held = std::move(held_);
  held_.clear();
  for (auto& [agent, poll] : held) {
    poll.timer->cancel();
    poll.respond(Reply({}));
  }
}

}  // namespace vitscale::coordinator
