#include "coordinator/credentials.h"

#include <fmt/format.h>

#include "common/secrets.h"
#include "common/text.h"
#include "protocol/agent.h"

namespace vitscale::coordinator {

Credentials::Credentials(storage::Store& store, std::string admin_token)
    : store_(store), admin_token_(std::move(admin_token)) {}

Status Credentials::Load() {
  ASSIGN_OR_RETURN(std::vector<storage::AgentCredential> stored, store_.ListAgentCredentials());
  agent_by_hash_.clear();
  for (const storage::AgentCredential& c : stored) agent_by_hash_[c.token_sha256] = c.host;
  return Status::Ok();
}

Expected<std::string> Credentials::Issue(const std::string& host) {
  ASSIGN_OR_RETURN(std::string token, RandomHexToken(32));
  std::string hash = TokenHash(token);
  RETURN_IF_ERROR(store_.PutAgentCredential(host, hash));
  for (auto it = agent_by_hash_.begin(); it != agent_by_hash_.end();) {
    it = it->second == host ? agent_by_hash_.erase(it) : std::next(it);
  }
  agent_by_hash_[hash] = host;
  return token;
}

Status Credentials::Revoke(const std::string& host) {
  RETURN_IF_ERROR(store_.DeleteAgentCredential(host));
  for (auto it = agent_by_hash_.begin(); it != agent_by_hash_.end();) {
    it = it->second == host ? agent_by_hash_.erase(it) : std::next(it);
  }
  return Status::Ok();
}

bool Credentials::IsAdmin(const std::string& token) const {
  return !admin_token_.empty() && ConstantTimeEquals(token, admin_token_);
}

std::string Credentials::AgentHostOf(const std::string& token) const {
  // Looked up by the hash of a 256-bit random token: the lookup's timing says nothing about a
  // token that is not one (an attacker cannot steer the hash), and the match is checked again
  // in constant time.
  std::string hash = TokenHash(token);
  auto it = agent_by_hash_.find(hash);
  if (it == agent_by_hash_.end() || !ConstantTimeEquals(it->first, hash)) return "";
  return it->second;
}

Status Credentials::WrongScope(const std::string& token, const std::string& needed) const {
  std::string given;
  if (IsAdmin(token)) {
    given = "the admin token";
  } else if (std::string host = AgentHostOf(token); !host.empty()) {
    given = "the credential of agent '" + host + "'";
  }
  if (given.empty()) return Unauthenticated("wrong token: this route needs " + needed);
  return PermissionDenied(given + " cannot call this route; it needs " + needed);
}

Expected<Caller> Credentials::Authorize(Scope scope, const std::string& token,
                                        const HttpRequest& request) {
  Caller caller;
  switch (scope) {
    case Scope::kRead:
    case Scope::kAdmin:
      if (!IsAdmin(token)) {
        return WrongScope(token, "the admin token (<state dir>/token of the coordinator)");
      }
      caller.kind = Caller::Kind::kAdmin;
      return caller;
    case Scope::kAgent: {
      std::string host = AgentHostOf(token);
      if (host.empty()) {
        return WrongScope(token,
                          "an agent credential (issue one with `vitscale agents issue HOST`)");
      }
      auto agent = request.params.find("agent");
      if (agent != request.params.end() && agent->second != host) {
        return PermissionDenied("the credential of agent '" + host + "' cannot act for agent '" +
                                Printable(agent->second, 80) + "'");
      }
      caller.kind = Caller::Kind::kAgent;
      caller.agent_host = host;
      return caller;
    }
    case Scope::kReport: {
      const std::string& job = request.params.at("id");
      const std::string& n = request.params.at("n");
      RETURN_IF_ERROR(protocol::CheckText("the job id in the path", job, protocol::kJobIdRule));
      Expected<int64_t> number =
          protocol::ParseWholeNumber(n, "the attempt number in the path", 1, protocol::kMaxAttempt);
      if (!number.ok()) return number.status();
      std::string needed = fmt::format("the report token of attempt {} of job {}", *number, job);
      Expected<storage::AttemptRecord> attempt = store_.GetAttempt(job, static_cast<int>(*number));
      if (!attempt.ok()) {
        if (attempt.status().code() != StatusCode::kNotFound) return attempt.status();
        return Unauthenticated("no report token matches: job " + job + " has no attempt " + n);
      }
      if (attempt->report_token_sha256.empty() ||
          !ConstantTimeEquals(TokenHash(token), attempt->report_token_sha256)) {
        return WrongScope(token, needed);
      }
      if (attempt->ended_at) {
        return Unauthenticated(fmt::format(
            "attempt {} of job {} has ended; its report token is no longer accepted", *number, job));
      }
      caller.kind = Caller::Kind::kReport;
      return caller;
    }
  }
  return Unauthenticated("unknown scope");
}

}  // namespace vitscale::coordinator
