// `vitscale data pack SRC DEST` and `vitscale data check DEST`: packed datasets (docs/data.md).
// Offline: they read and write files, no coordinator.
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "cli/commands.h"
#include "common/flags.h"
#include "data/shards.h"

namespace vitscale::cli {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kUsage =
    "usage: vitscale data pack SRC DEST [--shard-size N] [--threads N] [--datasets-dir DIR]\n"
    "       vitscale data check DEST [--decode] [--threads N] [--json]\n"
    "\n"
    "pack: SRC is a directory of class subfolders (or with train/ and test/ or val/ ones), or a\n"
    "  dataset name or reference (fashion-mnist, cifar10:DIR, pets, ...); DEST gets tar shards\n"
    "  of --shard-size samples (default 1000), an index per shard and manifest.json. Run it\n"
    "  again after an interruption: finished shards are kept.\n"
    "check: verifies every shard and index against the manifest (sizes, SHA-256, entries,\n"
    "  labels); --decode also decodes every image. Exit 1 with the list when something is bad.\n";

int ExitFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kNotFound:
      return kExitNotFound;
    case StatusCode::kInvalidArgument:
    case StatusCode::kCorruption:
    case StatusCode::kAlreadyExists:
    case StatusCode::kFailedPrecondition:
      return kExitBadInput;
    default:
      return kExitFailure;
  }
}

int Fail(const char* verb, const Status& status) {
  std::fprintf(stderr, "vitscale data %s: %s\n", verb, status.message().c_str());
  return ExitFor(status);
}

// A progress line on stderr: redrawn in place on a terminal, every tenth otherwise.
class ProgressLine {
 public:
  ProgressLine() : tty_(isatty(STDERR_FILENO) != 0), start_(Clock::now()) {}

  void Show(int64_t done, int64_t total, const std::string& detail) {
    const double fraction = total > 0 ? static_cast<double>(done) / total : 1.0;
    const int tenth = static_cast<int>(fraction * 10);
    if (!tty_ && tenth == last_tenth_ && done < total) return;
    last_tenth_ = tenth;
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(fraction * kWidth);
    const std::string bar = std::string(filled, '#') + std::string(kWidth - filled, '.');
    std::fprintf(stderr, "%s[%s] %3.0f%%  %s%s", tty_ ? "\r" : "", bar.c_str(), fraction * 100,
                 detail.c_str(), tty_ ? "\033[K" : "\n");
    std::fflush(stderr);
  }
  void End() {
    if (tty_) std::fprintf(stderr, "\n");
  }
  double Seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  bool tty_;
  Clock::time_point start_;
  int last_tenth_ = -1;
};

int Pack(const ParsedArgs& parsed) {
  if (parsed.positional.size() != 3) {
    std::fprintf(stderr, "%s", kUsage);
    return kExitUsage;
  }
  const std::string& source = parsed.positional[1];
  const std::string& dest = parsed.positional[2];
  data::PackOptions options;
  data::DataRoots roots;
  if (parsed.Has("--shard-size")) {
    Expected<long long> n = ParseInteger(parsed.Get("--shard-size"), "--shard-size", 1, 1 << 24);
    if (!n.ok()) {
      Fail("pack", n.status());
      return kExitUsage;
    }
    options.shard_size = *n;
  }
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  options.threads = static_cast<int>(cores);
  if (parsed.Has("--threads")) {
    Expected<long long> n = ParseInteger(parsed.Get("--threads"), "--threads", 1, 1024);
    if (!n.ok()) {
      Fail("pack", n.status());
      return kExitUsage;
    }
    options.threads = static_cast<int>(*n);
  }
  if (parsed.Has("--datasets-dir")) roots.datasets_dir = parsed.Get("--datasets-dir");

  Expected<data::Dataset> dataset = data::LoadPackSource(source, roots);
  if (!dataset.ok()) return Fail("pack", dataset.status());
  std::fprintf(stderr, "packing %s: %zu train + %zu test samples, %d classes, into %s\n",
               source.c_str(), dataset->train.size(), dataset->test.size(), dataset->num_classes,
               dest.c_str());
  ProgressLine line;
  options.progress = [&](const data::PackProgress& p) {
    const double seconds = line.Seconds();
    line.Show(p.samples_done, p.samples_total,
              fmt::format("{}/{} samples, {}/{} shards{}, {:.0f} samples/s", p.samples_done,
                          p.samples_total, p.shards_done, p.shards_total,
                          p.shards_kept > 0 ? fmt::format(" ({} kept)", p.shards_kept) : "",
                          seconds > 0 ? p.samples_done / seconds : 0.0));
  };
  Expected<data::PackResult> result = data::PackDataset(*dataset, source, dest, options);
  line.End();
  if (!result.ok()) return Fail("pack", result.status());
  const data::PackProgress& p = result->progress;
  const double seconds = line.Seconds();
  std::printf(
      "packed %lld samples into %lld shards in %s (%lld kept from an earlier run), "
      "%.1f MB written in %.1f s (%.0f samples/s)\n",
      static_cast<long long>(p.samples_total), static_cast<long long>(p.shards_total), dest.c_str(),
      static_cast<long long>(p.shards_kept), p.bytes_written / 1e6, seconds,
      seconds > 0 ? p.samples_total / seconds : 0.0);
  return kExitOk;
}

int Check(const ParsedArgs& parsed) {
  if (parsed.positional.size() != 2) {
    std::fprintf(stderr, "%s", kUsage);
    return kExitUsage;
  }
  const std::string& dir = parsed.positional[1];
  data::CheckOptions options;
  options.decode = parsed.Has("--decode");
  options.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (parsed.Has("--threads")) {
    Expected<long long> n = ParseInteger(parsed.Get("--threads"), "--threads", 1, 1024);
    if (!n.ok()) {
      Fail("check", n.status());
      return kExitUsage;
    }
    options.threads = static_cast<int>(*n);
  }
  const bool json = parsed.Has("--json");
  ProgressLine line;
  if (!json) {
    options.progress = [&](int64_t done, int64_t total) {
      line.Show(done, total, fmt::format("{}/{} shards", done, total));
    };
  }
  Expected<data::CheckReport> report = data::CheckPacked(dir, options);
  if (!json) line.End();
  if (!report.ok()) return Fail("check", report.status());
  if (json) {
    nlohmann::json out = {{"dir", dir},
                          {"shards", report->shards},
                          {"samples", report->samples},
                          {"decoded", options.decode},
                          {"ok", report->problems.empty()},
                          {"problems", report->problems}};
    std::printf("%s\n", out.dump(2).c_str());
  } else if (report->problems.empty()) {
    std::printf("%s: ok, %lld shards, %lld samples%s\n", dir.c_str(),
                static_cast<long long>(report->shards), static_cast<long long>(report->samples),
                options.decode ? ", every image decoded" : "");
  } else {
    std::printf("%s: %zu problem%s%s:\n", dir.c_str(), report->problems.size(),
                report->problems.size() == 1 ? "" : "s",
                report->problems.size() >= options.max_problems ? " (listing stopped)" : "");
    for (const std::string& problem : report->problems) std::printf("  %s\n", problem.c_str());
  }
  return report->problems.empty() ? kExitOk : kExitFailure;
}

}  // namespace

int RunData(const Args& args) {
  Expected<ParsedArgs> parsed = ParseArgs(args, {{"--shard-size", true},
                                                 {"--threads", true},
                                                 {"--datasets-dir", true},
                                                 {"--decode", false},
                                                 {"--json", false}});
  if (!parsed.ok()) {
    std::fprintf(stderr, "vitscale data: %s\n%s", parsed.status().message().c_str(), kUsage);
    return kExitUsage;
  }
  if (parsed->help) {
    std::printf("%s", kUsage);
    return kExitOk;
  }
  const std::string verb = parsed->positional.empty() ? "" : parsed->positional[0];
  if (verb == "pack") return Pack(*parsed);
  if (verb == "check") return Check(*parsed);
  std::fprintf(stderr, "vitscale data: expected 'pack' or 'check'%s\n%s",
               verb.empty() ? "" : (", not '" + verb + "'").c_str(), kUsage);
  return kExitUsage;
}

}  // namespace vitscale::cli
