#include "coordinator/coordinator.h"

#include <cstdio>

namespace vitscale::coordinator {

Expected<std::unique_ptr<Coordinator>> Coordinator::Create(boost::asio::io_context& io,
                                                           storage::Store& store,
                                                           const Clock& clock,
                                                           CoordinatorOptions options) {
  ASSIGN_OR_RETURN(Scheduler scheduler, Scheduler::Create(&clock, options.scheduler));
  return std::unique_ptr<Coordinator>(
      new Coordinator(io, store, clock, std::move(options),
                      std::make_unique<Scheduler>(std::move(scheduler))));
}

Coordinator::Coordinator(boost::asio::io_context& io, storage::Store& store, const Clock& clock,
                         CoordinatorOptions options, std::unique_ptr<Scheduler> scheduler)
    : core_(io, store, clock, options, std::move(scheduler)),
      credentials_(store, options.admin_token),
      users_(core_, credentials_),
      agents_(core_),
      reports_(core_),
      inspection_(core_),
      tick_timer_(io) {
  core_.SetTickHook([this] { users_.SampleUtilisation(); });
}

Coordinator::~Coordinator() { Stop(); }

Status Coordinator::Restore() {
  RETURN_IF_ERROR(credentials_.Load());
  RETURN_IF_ERROR(core_.RestoreJobs());
  ASSIGN_OR_RETURN(std::vector<storage::AgentRecord> agents, core_.store().ListAgents());
  for (const storage::AgentRecord& agent : agents) core_.NoteAgent(agent.id);
  return Status::Ok();
}

void Coordinator::AddRoutes(Router& router) {
  users_.AddRoutes(router);
  agents_.AddRoutes(router);
  reports_.AddRoutes(router);
  inspection_.AddRoutes(router);
}

Authorizer Coordinator::authorizer() {
  return [this](Scope scope, const std::string& token, const HttpRequest& request) {
    return credentials_.Authorize(scope, token, request);
  };
}

void Coordinator::SetPublisher(std::function<void(EventLog::Message)> publish) {
  core_.events().SetPublisher(std::move(publish));
}

std::vector<EventLog::Message> Coordinator::EventsSince(int64_t since) const {
  return core_.events().Since(since);
}

void Coordinator::Start() {
  stopped_ = false;
  OnTimer();
}

void Coordinator::Stop() {
  stopped_ = true;
  tick_timer_.cancel();
  Status written = core_.WriteUnwritten();
  if (!written.ok()) std::fprintf(stderr, "coordinator: %s\n", written.ToString().c_str());
  core_.mailbox().Close();
  reports_.Stop();
}

void Coordinator::OnTimer() {
  if (stopped_) return;
  core_.Tick();
  tick_timer_.expires_after(core_.options().tick);
  tick_timer_.async_wait([this](const boost::system::error_code& error) {
    if (!error) OnTimer();
  });
}

}  // namespace vitscale::coordinator
