// The agent protocol (docs/api.md, "Agents"): registration and the poll, which is the agents'
// heartbeat and, held open until there is work, their long poll. Every route needs an agent
// credential, and an agent acts for its own host only.
//
// Threading: io thread only.
#pragma once

#include <map>

#include "coordinator/core.h"

namespace vitscale::coordinator {

class AgentApi {
 public:
  // REQUIRES: `core` outlives the AgentApi.
  explicit AgentApi(Core& core);

  void AddRoutes(Router& router);

 private:
  HttpResponse Register(const HttpRequest& request);
  void Poll(const HttpRequest& request, Respond respond);

  Core& core_;
  std::map<std::string, TimePoint> stored_at_;  // when each agent's heartbeat was stored
};

}  // namespace vitscale::coordinator
