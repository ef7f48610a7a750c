// vitscale-scale-fill: a lab's year of jobs in one database, for bench/scale/run.sh.
//
//   vitscale-scale-fill --db STATE_DIR/vitscale.db --jobs 1000000 [--sweep-jobs 10000]
//
// Fills through the store's bulk path (Store::ImportSweep, one transaction per sweep), with
// jobs expanded from real sweep YAML by the sweep library as the coordinator's submit does:
// sweep k is 5 models x 20 subset sizes x (sweep-jobs / 100) seeds. Most jobs are finished, as
// they would be after a year, and are written once in their final state: per hundred jobs, 1
// pending, 1 failed, 1 cancelled, the rest succeeded, submitted and updated over the year. The
// first sweep, "scale-000", is the study the benchmark opens: each succeeded job has an attempt,
// a ledger entry and two few-shot results. Prints what it wrote and how long it took.
//
// The database is a throwaway: commits are not synced to disk (OpenOptions::sync_commits), so
// a power loss during the fill may leave it damaged. Never point --db at a coordinator's
// real database.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/flags.h"
#include "coordinator/core.h"
#include "protocol/json.h"
#include "storage/store.h"
#include "sweep/sweep.h"

namespace {

using namespace vitscale;
using storage::JobRecord;
using storage::JobState;

const std::vector<FlagSpec> kFlags = {
    {"--db", true, "FILE", "the database to fill; created if missing (required)"},
    {"--jobs", true, "N", "jobs in all, a multiple of --sweep-jobs (default 1000000)"},
    {"--sweep-jobs", true, "N", "jobs per sweep, a multiple of 100 (default 10000)"},
};

const char kUsage[] =
    "usage: vitscale-scale-fill --db FILE [--jobs N] [--sweep-jobs N]\n"
    "A database of N mostly finished jobs through the store's bulk path (bench/scale/).\n\n";

constexpr const char* kModels = "ViT-Mu/7, ViT-Mu/4, R11s, R20s, R11s+ViT-Mu/4";

std::string SweepYaml(int sweep, int seeds) {
  std::string subsets, seed_list;
  for (int i = 1; i <= 20; ++i) subsets += fmt::format("{}{}", i > 1 ? ", " : "", i * 1000);
  for (int i = 0; i < seeds; ++i) {
    seed_list += fmt::format("{}{}", i ? ", " : "", sweep * seeds + i);
  }
  return fmt::format(
      "name: scale-{:03d}\nrecipe: small-images\npretrain:\n  dataset: fashion-mnist/0-4\n"
      "  epochs: 1\ngrid:\n  model: [{}]\n  subset: [{}]\n  seed: [{}]\n",
      sweep, kModels, subsets, seed_list);
}


JobState FinalState(size_t index) {
  switch (index % 100) {
    case 0:
      return JobState::kPending;
    case 1:
      return JobState::kFailed;
    case 2:
      return JobState::kCancelled;
    default:
      return JobState::kSucceeded;
  }
}

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

int main(int argc, char** argv) {
  CommandLine line = ParseCommandLine(argc, argv, "vitscale-scale-fill", kUsage, kFlags);
  if (line.exit_code >= 0) return line.exit_code;
  std::string path = line.args.Get("--db");
  Expected<long long> jobs = line.args.GetInt("--jobs", 100, 100000000, 1000000);
  Expected<long long> sweep_jobs = line.args.GetInt("--sweep-jobs", 100, 1000000, 10000);
  if (path.empty() || !jobs.ok() || !sweep_jobs.ok() || *sweep_jobs % 100 != 0 ||
      *jobs % *sweep_jobs != 0) {
    std::fprintf(stderr,
                 "vitscale-scale-fill: --db FILE is required; --jobs must be a multiple of "
                 "--sweep-jobs, itself a multiple of 100\n");
    return 2;
  }
  // Update times spread over a year: the fake clock moves on by a few seconds per job.
  FakeClock clock(TimePoint{}, 1735689600.0);  // 2025-01-01
  storage::OpenOptions options;
  options.clock = &clock;
  options.cache_mib = 2048;  // the whole database's hot pages: no spills to the WAL mid-sweep
  options.sync_commits = false;  // a throwaway database (see the top of this file)
  Expected<std::unique_ptr<storage::Store>> store = storage::Store::Open(path, options);
  if (!store.ok()) {
    std::fprintf(stderr, "vitscale-scale-fill: %s\n", store.status().ToString().c_str());
    return 1;
  }
  auto fail = [](const char* what, const Status& status) {
    std::fprintf(stderr, "vitscale-scale-fill: %s: %s\n", what, status.ToString().c_str());
    return 1;
  };
  auto start = std::chrono::steady_clock::now();
  double expand_seconds = 0, add_seconds = 0, study_seconds = 0;
  int sweeps = static_cast<int>(*jobs / *sweep_jobs);
  const double year = 31536000.0, step = year / static_cast<double>(*jobs);
  for (int k = 0; k < sweeps; ++k) {
    auto t = std::chrono::steady_clock::now();
    std::string yaml = SweepYaml(k, static_cast<int>(*sweep_jobs / 100));
    Expected<sweep::Sweep> parsed = sweep::ParseSweep(yaml, fmt::format("scale-{:03d}.yaml", k));
    if (!parsed.ok()) return fail("parse", parsed.status());
    Expected<std::vector<sweep::Job>> expanded = sweep::ExpandSweep(*parsed);
    if (!expanded.ok()) return fail("expand", expanded.status());
    std::vector<JobRecord> records = coordinator::ToJobRecords(*expanded, /*retries=*/2);
    // Job g of the fill is submitted at g x step into the year and, unless still pending,
    // finishes an hour to a day later, so the updated order is not the submitted one.
    double sweep_start = clock.WallSeconds();
    for (size_t i = 0; i < records.size(); ++i) {
      records[i].state = FinalState(i);
      records[i].submitted_at = sweep_start + static_cast<double>(i) * step;
      records[i].updated_at = records[i].submitted_at;
      if (records[i].state != JobState::kPending) records[i].updated_at += 3600.0 * (1 + i % 24);
    }
    expand_seconds += Seconds(t);

    t = std::chrono::steady_clock::now();
    Expected<storage::AddSweepOutcome> added = (*store)->ImportSweep(parsed->name, yaml, records);
    if (!added.ok()) return fail("import sweep", added.status());
    if (added->added != static_cast<int>(records.size())) {
      std::fprintf(stderr, "vitscale-scale-fill: sweep %s added %d of %zu jobs; use a new --db\n",
                   parsed->name.c_str(), added->added, records.size());
      return 1;
    }
    add_seconds += Seconds(t);
    clock.Advance(std::chrono::duration_cast<Duration>(
        std::chrono::duration<double>(static_cast<double>(records.size()) * step)));

    if (k == 0) {
      t = std::chrono::steady_clock::now();
      Status study = (*store)->Atomically([&]() -> Status {
        for (size_t i = 0; i < records.size(); ++i) {
          if (FinalState(i) != JobState::kSucceeded) continue;
          const JobRecord& job = records[i];
          ASSIGN_OR_RETURN(int attempt, (*store)->AddAttempt(job.id, std::nullopt, "localhost:1"));
          RETURN_IF_ERROR((*store)->EndAttempt(job.id, attempt, storage::AttemptOutcome::kSucceeded, 0));
          double accuracy = 0.5 + 0.4 * static_cast<double>(job.subset_size) / 20000.0;
          std::vector<storage::ResultRecord> results;
          for (int seed = 0; seed < 2; ++seed) {
            results.push_back({job.id, storage::Evaluation::kFewShot, "fashion-mnist/5-9", 5,
                               seed, "accuracy", accuracy - 0.01 * seed});
          }
          storage::LedgerEntry ledger{job.id, attempt, job.planned_train_flops, 1e9,
                                      job.subset_size, "cpu", 60, 60};
          RETURN_IF_ERROR((*store)->AddResultsAndLedger(results, ledger));
        }
        return Status::Ok();
      });
      if (!study.ok()) return fail("study results", study);
      study_seconds += Seconds(t);
    }
    if ((k + 1) % 10 == 0 || k + 1 == sweeps) {
      std::fprintf(stderr, "fill: %d of %d sweeps, %.0f s\n", k + 1, sweeps, Seconds(start));
    }
  }
  std::printf(
      "filled %lld jobs in %d sweeps in %.1f s: expand %.1f s, ImportSweep %.1f s (%.0f jobs/s), "
      "study results %.1f s\n",
      *jobs, sweeps, Seconds(start), expand_seconds, add_seconds,
      static_cast<double>(*jobs) / add_seconds, study_seconds);
  return 0;
}
