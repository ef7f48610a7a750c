// vitscale-fits-bench: how long the scaling-law fits of a 10,000-job study take to make
// (planning::FitStudy, what the coordinator's fitter thread runs on a first request).
//
//   vitscale-fits-bench [--runs 3]
//
// The study is shaped as bench/scale's "scale-000": 5 models (2 ViT, 2 ResNet, 1 hybrid) x 20
// subset sizes x 100 seeds, compute proportional to size and model. Two variants: the fill's
// own results (every seed of a model and size scores the same, so most bootstrap draws select
// the same frontier and means), and the same with seed noise (s.d. 1 point of accuracy), where
// draws differ as real runs' do. Prints the median and range of each over the runs.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "common/flags.h"
#include "planning/study_fits.h"

namespace {

using namespace vitscale;

const std::vector<FlagSpec> kFlags = {{"--runs", true, "N", "timed runs per variant (default 3)"}};
const char kUsage[] =
    "usage: vitscale-fits-bench [--runs N]\n"
    "Times the scaling-law fits of a 10,000-job study (bench/scale/).\n\n";

storage::ResultsTable Study(double noise) {
  struct Model {
    const char* name;
    const char* family;
    double exaflops_per_example;
  };
  const std::vector<Model> models = {{"ViT-Mu/7", "ViT", 2e-9},
                                     {"ViT-Mu/4", "ViT", 5e-9},
                                     {"R11s", "ResNet", 3e-9},
                                     {"R20s", "ResNet", 6e-9},
                                     {"R11s+ViT-Mu/4", "hybrid", 7e-9}};
  storage::ResultsTable table;
  table.sweep = "scale-000";
  table.columns.push_back({protocol::Evaluation::kFewShot, "cifar10", 5});
  std::mt19937_64 rng(1);
  std::normal_distribution<double> jitter(0, noise);
  int n = 0;
  for (const Model& model : models) {
    for (int size = 1000; size <= 20000; size += 1000) {
      for (int seed = 0; seed < 100; ++seed, ++n) {
        storage::ResultsTableRow row;
        row.job_id = fmt::format("{:064x}", n);
        row.model = model.name;
        row.family = model.family;
        row.epochs = 1;
        row.examples = size;
        row.state = storage::JobState::kSucceeded;
        row.exaflops = model.exaflops_per_example * size;
        row.compute_planned = n % 100 < 3;  // pending, failed, cancelled: not fitted
        // As bench/scale/fill.cc reports: the mean of two seeds' accuracy.
        double percent = 100 * (0.5 + 0.4 * size / 20000.0 - 0.005) + (noise > 0 ? jitter(rng) : 0);
        row.transfer = {percent};
        row.average = percent;
        table.rows.push_back(std::move(row));
      }
    }
  }
  return table;
}

}  // namespace

int main(int argc, char** argv) {
  CommandLine line = ParseCommandLine(argc, argv, "vitscale-fits-bench", kUsage, kFlags);
  if (line.exit_code >= 0) return line.exit_code;
  Expected<long long> runs_flag = line.args.GetInt("--runs", 1, 100, 3);
  if (!runs_flag.ok()) {
    std::fprintf(stderr, "vitscale-fits-bench: %s\n", runs_flag.status().message().c_str());
    return 2;
  }
  const int runs = static_cast<int>(*runs_flag);
  for (double noise : {0.0, 1.0}) {
    storage::ResultsTable table = Study(noise);
    std::vector<double> times;
    int fitted = 0, draws = 0;
    for (int run = 0; run < runs; ++run) {
      auto start = std::chrono::steady_clock::now();
      Expected<planning::StudyFits> fits = planning::FitStudy(table, "average");
      times.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count());
      if (!fits.ok()) {
        std::fprintf(stderr, "vitscale-fits-bench: %s\n", fits.status().ToString().c_str());
        return 1;
      }
      fitted = draws = 0;
      for (const auto* list : {&fits->compute, &fits->data_size}) {
        for (const planning::GroupFit& g : *list) {
          fitted += g.fit.status == "ok";
          draws += g.fit.resamples_fitted;
        }
      }
    }
    std::sort(times.begin(), times.end());
    // What the fit says, to compare builds by: each group's error at 10x its largest x and the
    // band there.
    Expected<planning::StudyFits> fits = planning::FitStudy(table, "average");
    std::string bands;
    for (const auto* list : {&fits->compute, &fits->data_size}) {
      for (const planning::GroupFit& g : *list) {
        const planning::BandPoint& end = g.fit.curve.back();
        bands += fmt::format("  {}: {:.4f} [{:.4f}, {:.4f}]\n", g.group, end.fit,
                             end.low.value_or(0), end.high.value_or(0));
      }
    }
    std::printf("%-28s %zu jobs: %d groups fitted, %d draws fitted; %.0f ms (%.0f-%.0f, %d runs)\n",
                noise > 0 ? "seed noise (s.d. 1 point)" : "as filled (seeds equal)",
                table.rows.size(), fitted, draws, times[times.size() / 2], times.front(),
                times.back(), runs);
    std::printf("%s", bands.c_str());
  }
  return 0;
}
