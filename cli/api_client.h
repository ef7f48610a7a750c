// ApiClient: how the `vitscale` commands talk to the coordinator (docs/api.md). It resolves
// where the coordinator is and which token to send, and turns every non-2xx reply into a Status
// whose message says what to fix, so that each command only maps it to an exit code
// (ExitCodeFor) and prints it.
//
// Where: --coordinator URL, else $VITSCALE_COORDINATOR, else http://127.0.0.1:8470.
// Token: --token-file FILE, else $VITSCALE_TOKEN_FILE, else $VITSCALE_TOKEN (the token itself);
// none is fine for a coordinator started with --open-read, for reading.
//
// Reply statuses become: 400/413 kInvalidArgument, 404 kNotFound, 401/403 and 409
// kFailedPrecondition, any other kIOError; a coordinator that cannot be reached is kUnavailable.
//
// Threads: one ApiClient serves one thread.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "cli/commands.h"
#include "common/flags.h"
#include "common/http_client.h"
#include "common/status.h"

namespace vitscale::cli {

inline constexpr const char* kDefaultCoordinator = "http://127.0.0.1:8470";

// The flags every command that talks to the coordinator accepts (see docs/cli.md).
extern const std::vector<FlagSpec> kConnectionFlags;
// Both lists concatenated, for commands that add their own flags to kConnectionFlags.
std::vector<FlagSpec> WithConnectionFlags(std::vector<FlagSpec> own);

class ApiClient {
 public:
  // Reads the token file if one is named: a missing file is kNotFound, an empty one
  // kInvalidArgument. A bad URL is kInvalidArgument.
  static Expected<std::unique_ptr<ApiClient>> Open(const ParsedArgs& args);

  Expected<nlohmann::json> GetJson(const std::string& path);
  Expected<std::string> GetText(const std::string& path);
  // POSTs `body` and parses the JSON reply.
  Expected<nlohmann::json> Post(const std::string& path, const std::string& body,
                                const std::string& content_type = "application/json");
  // DELETEs and parses the JSON reply.
  Expected<nlohmann::json> Delete(const std::string& path);

  const std::string& url() const { return client_->base_url(); }

 private:
  ApiClient(std::unique_ptr<HttpClient> client, std::string token_source)
      : client_(std::move(client)), token_source_(std::move(token_source)) {}
  Expected<HttpReply> Call(const std::string& method, const std::string& path,
                           const std::string& body, const std::string& content_type);
  Status ReplyError(const HttpReply& reply, const std::string& method, const std::string& path);

  std::unique_ptr<HttpClient> client_;
  std::string token_source_;  // "--token-file F", "VITSCALE_TOKEN", ... or "" when none is sent
};

// A reply decoded into its protocol type (protocol/api.h); a reply that does not decode is
// kIOError naming the field, since the coordinator, not the user, got it wrong.
template <typename T>
Expected<T> FromReply(const nlohmann::json& reply) {
  Expected<T> typed = T::FromJson(reply, "");
  if (!typed.ok()) {
    return IOError("the coordinator's answer is not understood (" + typed.status().message() +
                   "); is it a different vitscale version?");
  }
  return typed;
}

// The exit status (cli/commands.h) for a failed call: invalid input 3, not found 4,
// unavailable coordinator 5, anything else 1.
int ExitCodeFor(const Status& status);
// Prints "vitscale COMMAND: message" to stderr and returns ExitCodeFor(status).
int Fail(const std::string& command, const Status& status);
// Prints "vitscale COMMAND: message", then the usage text, to stderr; returns kExitUsage.
int UsageError(const std::string& command, const std::string& message, const char* usage);

// A coordinator command's start: its flags (own plus kConnectionFlags) parsed, the positional
// count checked, the client opened. When exit_code >= 0 the command returns it at once (help was
// printed, or an error with what to fix).
struct Invocation {
  ParsedArgs args;
  std::unique_ptr<ApiClient> api;
  int exit_code = -1;
};
Invocation StartCommand(const std::string& command, const Args& raw, std::vector<FlagSpec> own,
                        const char* usage, size_t min_positionals, size_t max_positionals);
inline Invocation StartCommand(const std::string& command, const Args& raw,
                               std::vector<FlagSpec> own, const char* usage, size_t positionals) {
  return StartCommand(command, raw, std::move(own), usage, positionals, positionals);
}

// Percent-encodes everything but unreserved characters, for query values and path segments.
std::string UrlEncode(std::string_view text);

// "3f2a1b0c9d8e": the first 12 hex digits, enough to name a job in a table and on the command line.
std::string ShortId(const std::string& id);

}  // namespace vitscale::cli
