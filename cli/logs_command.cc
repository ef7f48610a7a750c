// `vitscale logs JOB [--attempt N] [--follow]`: the end of an attempt's log, and with --follow
// what is appended to it until the job finishes (switching to each newer attempt as it starts,
// unless --attempt pins one).
//
// The API serves the last bytes of a log, not an offset range, so following keeps the previous
// answer and prints only what extends it (see Appended).
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <thread>

#include "cli/api_client.h"
#include "cli/commands.h"
#include "common/flags.h"
#include "storage/records.h"

namespace vitscale::cli {
namespace {

using nlohmann::json;

constexpr const char* kLogsUsage =
    "usage: vitscale logs JOB [--attempt N] [--follow]\n"
    "Prints the end (64 KiB) of the newest attempt's log, or of attempt N.\n"
    "  --follow            keep printing what is appended until the job finishes\n";

constexpr int64_t kTailBytes = 64 << 10;
constexpr auto kFollowInterval = std::chrono::milliseconds(1000);

// What `now` (a log's last bytes) adds to `before` (its last bytes a moment ago). A log only
// grows, so `now` starts with a suffix of `before` unless more than a window's worth was
// appended in between; the longest such overlap is the one that assumes the least was appended.
std::string Appended(const std::string& before, const std::string& now) {
  if (before.empty()) return now;
  std::string_view old_text(before), text(now);
  for (size_t skip = 0; skip < old_text.size(); ++skip) {
    std::string_view overlap = old_text.substr(skip);
    if (text.substr(0, overlap.size()) == overlap) return now.substr(overlap.size());
  }
  return "[... more was written than the last 64 KiB shown ...]\n" + now;
}

// The attempt's log so far; an attempt that has written nothing yet reads as empty.
Expected<std::string> FetchLog(ApiClient& api, const std::string& job_id, int64_t attempt) {
  Expected<std::string> text = api.GetText(
      fmt::format("/api/v1/jobs/{}/logs?attempt={}&tail_bytes={}", job_id, attempt, kTailBytes));
  if (!text.ok() && text.status().code() == StatusCode::kNotFound) return std::string();
  return text;
}

int Follow(ApiClient& api, const std::string& id, int64_t pinned_attempt) {
  std::string shown;
  int64_t attempt = pinned_attempt;
  bool away = false;
  while (true) {
    Expected<json> job = api.GetJson("/api/v1/jobs/" + UrlEncode(id));
    Expected<std::string> text = std::string();
    if (!job.ok()) text = job.status();
    if (job.ok()) {
      // The job detail lists its attempts; the newest is the last.
      const json attempts = job->value("attempts", json::array());
      int64_t newest = attempts.empty() ? 0 : attempts.back().value("number", int64_t{0});
      if (attempt == 0 && newest > 0) attempt = newest;
      if (attempt > 0) text = FetchLog(api, job->value("id", id), attempt);
      if (text.ok()) {
        std::string added = Appended(shown, *text);
        std::fwrite(added.data(), 1, added.size(), stdout);
        std::fflush(stdout);
        shown = std::move(*text);
        // The job state was read before the log: once it is final, that log read was complete.
        bool over =
            storage::IsFinalStateName(job->value("state", "")) || (pinned_attempt > 0 && newest > pinned_attempt);
        if (over) return kExitOk;
        if (pinned_attempt == 0 && newest > attempt) {
          attempt = newest;
          shown.clear();
          std::printf("--- attempt %lld ---\n", static_cast<long long>(attempt));
          continue;
        }
      }
    }
    if (!text.ok()) {
      if (text.status().code() != StatusCode::kUnavailable) return Fail("logs", text.status());
      if (!away)
        std::fprintf(stderr, "vitscale logs: %s; retrying\n", text.status().message().c_str());
      away = true;
    } else {
      away = false;
    }
    std::this_thread::sleep_for(kFollowInterval);
  }
}

}  // namespace

int RunLogs(const Args& raw) {
  Invocation call =
      StartCommand("logs", raw, {{"--attempt", true}, {"--follow", false}}, kLogsUsage, 1);
  if (call.exit_code >= 0) return call.exit_code;
  int64_t attempt = 0;
  if (call.args.Has("--attempt")) {
    Expected<long long> parsed = ParseInteger(call.args.Get("--attempt"), "--attempt", 1, 1000000);
    if (!parsed.ok()) return UsageError("logs", parsed.status().message(), kLogsUsage);
    attempt = *parsed;
  }
  const std::string& id = call.args.positional[0];
  if (call.args.Has("--follow")) return Follow(*call.api, id, attempt);
  std::string path = fmt::format("/api/v1/jobs/{}/logs?tail_bytes={}", UrlEncode(id), kTailBytes);
  if (attempt > 0) path += fmt::format("&attempt={}", attempt);
  Expected<std::string> text = call.api->GetText(path);
  if (!text.ok()) return Fail("logs", text.status());
  std::fwrite(text->data(), 1, text->size(), stdout);
  return kExitOk;
}

}  // namespace vitscale::cli
