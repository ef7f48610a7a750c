// vitscale retain --db FILE --older-than-days N [--keep-every K] [--archive FILE]
// The metric retention rule (docs/storage.md, "Retention"): thins the curves of jobs that
// finished more than N days ago to every K-th step plus each curve's last point, copying what it
// removes to an archive file when asked. Results, ledgers and checkpoints are never touched.
// Safe beside a running coordinator: one short transaction per job.
#include <cstdio>
#include <ctime>
#include <string>

#include "cli/commands.h"
#include "common/flags.h"
#include "storage/store.h"

namespace vitscale::cli {
namespace {

constexpr const char* kRetainUsage =
    "usage: vitscale retain --db FILE --older-than-days N [--keep-every K] [--archive FILE]\n"
    "  --db FILE             the coordinator's SQLite database\n"
    "  --older-than-days N   thin the curves of jobs finished more than N days ago (N >= 1)\n"
    "  --keep-every K        keep steps divisible by K, and each curve's last point (default 10)\n"
    "  --archive FILE        copy the removed points to this SQLite file (created if missing)\n";

int UsageError(const std::string& message) {
  std::fprintf(stderr, "vitscale retain: %s\n\n%s", message.c_str(), kRetainUsage);
  return kExitUsage;
}

}  // namespace

int RunRetain(const Args& args) {
  Expected<ParsedArgs> parsed = ParseArgs(
      args, {{"--db", true}, {"--older-than-days", true}, {"--keep-every", true}, {"--archive", true}});
  if (!parsed.ok()) return UsageError(parsed.status().message());
  if (parsed->help) {
    std::fputs(kRetainUsage, stdout);
    return kExitOk;
  }
  if (!parsed->positional.empty()) {
    return UsageError("unexpected argument '" + parsed->positional.front() + "'");
  }
  std::string db = parsed->Get("--db");
  if (db.empty()) return UsageError("--db FILE is required");
  if (!parsed->Has("--older-than-days")) return UsageError("--older-than-days N is required");
  Expected<long long> days = parsed->GetInt("--older-than-days", 1, 36500, 0);
  Expected<long long> keep = parsed->GetInt("--keep-every", 1, 1000000000, 10);
  if (!days.ok()) return UsageError(days.status().message());
  if (!keep.ok()) return UsageError(keep.status().message());

  storage::RetentionRule rule;
  rule.finished_before = static_cast<double>(std::time(nullptr)) - 86400.0 * static_cast<double>(*days);
  rule.keep_every = *keep;
  if (parsed->Has("--archive")) rule.archive = parsed->Get("--archive");
  auto store = storage::Store::Open(db);
  if (!store.ok()) {
    std::fprintf(stderr, "vitscale retain: %s\n", store.status().message().c_str());
    return store.status().code() == StatusCode::kCorruption ? kExitBadInput : kExitFailure;
  }
  auto outcome = (*store)->ApplyRetention(rule);
  if (!outcome.ok()) {
    std::fprintf(stderr, "vitscale retain: %s\n", outcome.status().message().c_str());
    return kExitFailure;
  }
  std::printf("%lld finished jobs older than %lld days: %lld metric points removed%s\n",
              static_cast<long long>(outcome->jobs), *days,
              static_cast<long long>(outcome->points_removed),
              rule.archive ? (" (copied to " + *rule.archive + ")").c_str() : "");
  return kExitOk;
}

}  // namespace vitscale::cli
