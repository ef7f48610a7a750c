// Who may call what (docs/security.md): the admin token for people and the CLI, one credential
// per agent host, and one report token per attempt. Tokens are compared in constant time; the
// store keeps only their SHA-256 hashes.
//
// Threading: io thread only.
#pragma once

#include <map>
#include <string>

#include "coordinator/http_server.h"
#include "storage/store.h"

namespace vitscale::coordinator {

class Credentials {
 public:
  // REQUIRES: `store` outlives the Credentials.
  Credentials(storage::Store& store, std::string admin_token);

  // Reads the agent credentials' hashes from the store.
  Status Load();

  // A fresh credential for `host`, replacing (revoking) the one it had. Only its hash is kept.
  Expected<std::string> Issue(const std::string& host);
  // kNotFound when the host has none.
  Status Revoke(const std::string& host);

  // The Authorizer of the coordinator's routes: may `token` call a route of `scope`?
  //  kRead, kAdmin: the admin token.
  //  kAgent: an agent credential; a {agent} in the path must be the credential's own host.
  //  kReport: the report token of the attempt in the path (/jobs/{id}/attempts/{n}/...), while
  //           that attempt has not ended.
  // A valid credential of another scope is kPermissionDenied (403) naming what the route
  // needs; anything else kUnauthenticated (401).
  Expected<Caller> Authorize(Scope scope, const std::string& token, const HttpRequest& request);

 private:
  // The host whose credential `token` is, or "".
  std::string AgentHostOf(const std::string& token) const;
  bool IsAdmin(const std::string& token) const;
  Status WrongScope(const std::string& token, const std::string& needed) const;

  storage::Store& store_;
  std::string admin_token_;
  std::map<std::string, std::string> agent_by_hash_;  // token hash -> host
};

}  // namespace vitscale::coordinator
