#include "cli/api_client.h"

#include <fmt/format.h>

#include <cctype>
#include <cstdio>
#include <cstdlib>

#include "common/files.h"

namespace vitscale::cli {

const std::vector<FlagSpec> kConnectionFlags = {
    {"--coordinator", true, "URL", "the coordinator (else $VITSCALE_COORDINATOR)"},
    {"--token-file", true, "FILE", "the admin token (else $VITSCALE_TOKEN_FILE, $VITSCALE_TOKEN)"}};

std::vector<FlagSpec> WithConnectionFlags(std::vector<FlagSpec> own) {
  own.insert(own.end(), kConnectionFlags.begin(), kConnectionFlags.end());
  return own;
}
namespace {

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

constexpr const char* kConnectionHelp =
    "  --coordinator URL   the coordinator (default $VITSCALE_COORDINATOR, else "
    "http://127.0.0.1:8470)\n"
    "  --token-file FILE   its bearer token (default $VITSCALE_TOKEN_FILE, else the token in\n"
    "                      $VITSCALE_TOKEN)\n";

std::string Trim(std::string text) {
  size_t end = text.find_last_not_of(" \t\r\n");
  text.erase(end == std::string::npos ? 0 : end + 1);
  size_t begin = text.find_first_not_of(" \t\r\n");
  return begin == std::string::npos ? "" : text.substr(begin);
}

}  // namespace

Expected<std::unique_ptr<ApiClient>> ApiClient::Open(const ParsedArgs& args) {
  std::string url = args.Get("--coordinator", Env("VITSCALE_COORDINATOR"));
  if (url.empty()) url = kDefaultCoordinator;

  std::string token, source;
  std::string token_file = args.Get("--token-file");
  std::string file_from = "--token-file";  // where the file's name came from, for messages
  if (token_file.empty()) {
    token_file = Env("VITSCALE_TOKEN_FILE");
    file_from = "VITSCALE_TOKEN_FILE";
  }
  if (!token_file.empty()) {
    Expected<std::string> text = ReadTokenFile(token_file);
    if (!text.ok()) {
      if (text.status().code() == StatusCode::kNotFound) {
        return NotFound("token file " + token_file + " (from " + file_from +
                        ") does not exist; the coordinator writes it as <state dir>/token");
      }
      return text.status();
    }
    token = *text;
    source = file_from + (file_from == "--token-file" ? " " : "=") + token_file;
  } else if (!(token = Trim(Env("VITSCALE_TOKEN"))).empty()) {
    source = "VITSCALE_TOKEN";
  }

  HttpClientOptions options;
  options.base_url = url;
  options.bearer_token = token;
  Expected<std::unique_ptr<HttpClient>> client = HttpClient::Create(options);
  if (!client.ok()) {
    return InvalidArgument(client.status().message() +
                           " (set by --coordinator or VITSCALE_COORDINATOR)");
  }
  return std::unique_ptr<ApiClient>(new ApiClient(std::move(*client), source));
}

Expected<HttpReply> ApiClient::Call(const std::string& method, const std::string& path,
                                    const std::string& body, const std::string& content_type) {
  Expected<HttpReply> reply = client_->Request(method, path, body, content_type);
  if (!reply.ok()) {
    if (reply.status().code() != StatusCode::kUnavailable) return reply.status();
    return Unavailable(
        fmt::format("cannot reach the coordinator at {} ({}); start vitscale-coordinator, or point "
                    "--coordinator or VITSCALE_COORDINATOR at it",
                    url(), reply.status().message()));
  }
  if (reply->status >= 200 && reply->status < 300) return reply;
  return ReplyError(*reply, method, path);
}

Status ApiClient::ReplyError(const HttpReply& reply, const std::string& method,
                             const std::string& path) {
  std::string message = HttpErrorMessage(reply);
  switch (reply.status) {
    case 400:
    case 413:
      return InvalidArgument(message);
    case 404:
      return NotFound(message);
    case 401:
    case 403: {
      std::string refused = token_source_.empty() ? "refused a request without a token"
                                                  : "refused the token from " + token_source_;
      return FailedPrecondition(fmt::format(
          "the coordinator at {} {} (HTTP {}: {}). Its token is in <state dir>/token, in the "
          "coordinator's --state-dir: pass --token-file FILE, or set VITSCALE_TOKEN_FILE=FILE "
          "(or VITSCALE_TOKEN to the token itself)",
          url(), refused, reply.status, message));
    }
    case 409:
      return FailedPrecondition(message);
    default:
      return IOError(
          fmt::format("{} {}{}: HTTP {}: {}", method, url(), path, reply.status, message));
  }
}

Expected<nlohmann::json> ApiClient::GetJson(const std::string& path) {
  ASSIGN_OR_RETURN(HttpReply reply, Call("GET", path, "", ""));
  nlohmann::json parsed = nlohmann::json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded())
    return IOError("GET " + url() + path + " answered with malformed JSON");
  return parsed;
}

Expected<std::string> ApiClient::GetText(const std::string& path) {
  ASSIGN_OR_RETURN(HttpReply reply, Call("GET", path, "", ""));
  return std::move(reply.body);
}

Expected<nlohmann::json> ApiClient::Post(const std::string& path, const std::string& body,
                                         const std::string& content_type) {
  ASSIGN_OR_RETURN(HttpReply reply, Call("POST", path, body, content_type));
  nlohmann::json parsed = nlohmann::json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded())
    return IOError("POST " + url() + path + " answered with malformed JSON");
  return parsed;
}

Expected<nlohmann::json> ApiClient::Delete(const std::string& path) {
  ASSIGN_OR_RETURN(HttpReply reply, Call("DELETE", path, "", ""));
  nlohmann::json parsed = nlohmann::json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded())
    return IOError("DELETE " + url() + path + " answered with malformed JSON");
  return parsed;
}

int ExitCodeFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk:
      return kExitOk;
    case StatusCode::kInvalidArgument:
      return kExitBadInput;
    case StatusCode::kNotFound:
      return kExitNotFound;
    case StatusCode::kUnavailable:
      return kExitUnavailable;
    default:
      return kExitFailure;
  }
}

int Fail(const std::string& command, const Status& status) {
  std::fprintf(stderr, "vitscale %s: %s\n", command.c_str(), status.message().c_str());
  return ExitCodeFor(status);
}

int UsageError(const std::string& command, const std::string& message, const char* usage) {
  std::fprintf(stderr, "vitscale %s: %s\n\n%s", command.c_str(), message.c_str(), usage);
  return kExitUsage;
}

Invocation StartCommand(const std::string& command, const Args& raw, std::vector<FlagSpec> own,
                        const char* usage, size_t min_positionals, size_t max_positionals) {
  Invocation call;
  Expected<ParsedArgs> parsed = ParseArgs(raw, WithConnectionFlags(std::move(own)));
  if (!parsed.ok()) {
    call.exit_code = UsageError(command, parsed.status().message(), usage);
    return call;
  }
  call.args = std::move(*parsed);
  if (call.args.help) {
    std::fputs(usage, stdout);
    std::fputs(kConnectionHelp, stdout);
    call.exit_code = kExitOk;
    return call;
  }
  size_t given = call.args.positional.size();
  if (given < min_positionals || given > max_positionals) {
    std::string message = given < min_positionals ? "missing argument"
                                                  : "unexpected argument '" +
                                                        call.args.positional[max_positionals] + "'";
    call.exit_code = UsageError(command, message, usage);
    return call;
  }
  Expected<std::unique_ptr<ApiClient>> api = ApiClient::Open(call.args);
  if (!api.ok()) {
    call.exit_code = Fail(command, api.status());
    return call;
  }
  call.api = std::move(*api);
  return call;
}

std::string UrlEncode(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

std::string ShortId(const std::string& id) { return id.substr(0, 12); }

}  // namespace vitscale::cli
