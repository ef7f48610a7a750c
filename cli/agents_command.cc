// vitscale agents: the agents the coordinator knows, and their credentials (docs/security.md).
//   vitscale agents [--json]          the agents with their slots and jobs
//   vitscale agents issue HOST        a new credential for HOST, printed alone on stdout (the
//                                     previous one of HOST stops working)
//   vitscale agents revoke HOST       HOST's credential stops working
#include <fmt/format.h>

#include <cstdio>
#include <string>

#include "cli/api_client.h"
#include "cli/commands.h"
#include "protocol/api.h"

namespace vitscale::cli {
namespace {

constexpr const char* kAgentsUsage =
    "usage: vitscale agents [--json]\n"
    "       vitscale agents issue HOST\n"
    "       vitscale agents revoke HOST\n"
    "Lists the agents, or issues (replacing any earlier one) or revokes the credential an agent\n"
    "on HOST presents. `issue` prints the token alone, so that\n"
    "  vitscale agents issue h1 > agent.token\n"
    "writes the file `vitscale-agent --token-file` reads (keep it mode 0600).\n";

}  // namespace

int RunAgents(const Args& raw) {
  Invocation call = StartCommand("agents", raw, {{"--json", false}}, kAgentsUsage, 0, 2);
  if (call.exit_code >= 0) return call.exit_code;
  const std::vector<std::string>& words = call.args.positional;
  if (words.empty()) {
    Expected<nlohmann::json> agents = call.api->GetJson("/api/v1/agents");
    if (!agents.ok()) return Fail("agents", agents.status());
    if (call.args.Has("--json")) {
      std::printf("%s\n", agents->dump(2).c_str());
      return kExitOk;
    }
    std::printf("%-24s %5s %5s %5s %-6s %s\n", "HOST", "SLOTS", "FREE", "GPUS", "ALIVE", "JOBS");
    for (const nlohmann::json& entry : agents->value("agents", nlohmann::json::array())) {
      Expected<protocol::AgentInfo> agent = FromReply<protocol::AgentInfo>(entry);
      if (!agent.ok()) return Fail("agents", agent.status());
      std::printf("%-24s %5d %5d %5d %-6s %zu\n", agent->host.c_str(), agent->slots,
                  agent->free_slots, agent->gpus, agent->alive ? "yes" : "no", agent->jobs.size());
    }
    return kExitOk;
  }
  if (words.size() != 2 || (words[0] != "issue" && words[0] != "revoke")) {
    return UsageError("agents", "expected `agents issue HOST` or `agents revoke HOST`",
                      kAgentsUsage);
  }
  const std::string& host = words[1];
  if (words[0] == "issue") {
    Expected<nlohmann::json> reply = call.api->Post(
        "/api/v1/agents/credentials", protocol::Dump(protocol::CredentialRequest{host}.ToJson()));
    if (!reply.ok()) return Fail("agents", reply.status());
    Expected<protocol::CredentialReply> issued = FromReply<protocol::CredentialReply>(*reply);
    if (!issued.ok()) return Fail("agents", issued.status());
    std::printf("%s\n", issued->token.c_str());
    std::fprintf(stderr, "vitscale agents: issued a credential for %s; its earlier one, if any, "
                         "no longer works\n", host.c_str());
    return kExitOk;
  }
  Expected<nlohmann::json> reply = call.api->Delete("/api/v1/agents/credentials/" + UrlEncode(host));
  if (!reply.ok()) return Fail("agents", reply.status());
  std::printf("revoked the credential of %s\n", host.c_str());
  return kExitOk;
}

}  // namespace vitscale::cli
