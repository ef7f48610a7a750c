// The coordinator's service, wired together: the shared core (store, scheduler, events, mailbox,
// action applier; coordinator/core.h), the handlers of each audience (user_api, agent_api,
// report_api), the credentials that guard them, and the scheduler's timer. main.cc connects it
// to the HTTP server; the in-process tests drive it through a RequestGate.
//
// Threading: everything runs on the io_context's single thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/agent_api.h"
#include "coordinator/core.h"
#include "coordinator/credentials.h"
#include "coordinator/inspection_api.h"
#include "coordinator/report_api.h"
#include "coordinator/user_api.h"

namespace vitscale::coordinator {

class Coordinator {
 public:
  // kInvalidArgument for scheduler options out of range. REQUIRES: `io`, `store` and `clock`
  // outlive the Coordinator.
  static Expected<std::unique_ptr<Coordinator>> Create(boost::asio::io_context& io,
                                                       storage::Store& store, const Clock& clock,
                                                       CoordinatorOptions options);
  ~Coordinator();

  // Rebuilds the scheduler from the store and reads the agent credentials.
  Status Restore();
  void AddRoutes(Router& router);
  // The Authorizer for the HTTP server (and any RequestGate) in front of these routes.
  Authorizer authorizer();
  // Starts the scheduler's timer; Stop() cancels it and answers the held polls.
  void Start();
  void Stop();

  // Connects the event stream; called once the HTTP server exists.
  void SetPublisher(std::function<void(EventLog::Message)> publish);
  std::vector<EventLog::Message> EventsSince(int64_t since) const;

  Core& core() { return core_; }
  // Tests wait for its metric posts to be answered and count its commits.
  const ReportApi& reports() const { return reports_; }
  // Tests count the fits it made.
  const UserApi& users() const { return users_; }

 private:
  Coordinator(boost::asio::io_context& io, storage::Store& store, const Clock& clock,
              CoordinatorOptions options, std::unique_ptr<Scheduler> scheduler);
  void OnTimer();

  Core core_;
  Credentials credentials_;
  UserApi users_;
  AgentApi agents_;
  ReportApi reports_;
  InspectionApi inspection_;
  boost::asio::steady_timer tick_timer_;
  bool stopped_ = false;
};

}  // namespace vitscale::coordinator
