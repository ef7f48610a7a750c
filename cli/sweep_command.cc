// `vitscale sweep check|cost FILE [--json]`: validate and expand a sweep definition, or price it.
// Output is assembled in full before anything is printed, so a bad sweep prints only its error.
#include <fmt/format.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "sweep/sweep.h"

namespace vitscale::cli {
namespace {

constexpr const char* kUsage =
    "usage: vitscale sweep check FILE [--json]   validate and print the expanded jobs\n"
    "       vitscale sweep cost FILE [--json]    planned images seen and pretraining exaFLOPs\n"
    "       vitscale sweep simulate FILE --hosts SPEC [...]   makespan and cost on a cluster\n";

constexpr double kExa = 1e18;
constexpr size_t kShortId = 12;

// Plain decimals from the scaling study's thousands down to 0.01; exponents for CPU studies.
std::string ExaFlops(double flops) {
  double exa = flops / kExa;
  return exa >= 0.01 ? fmt::format("{:.2f}", exa) : fmt::format("{:.4g}", exa);
}

std::string JoinList(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

template <typename T>
std::string JoinNumbers(const std::vector<T>& values) {
  std::string out;
  for (const T& v : values) out += (out.empty() ? "" : ",") + fmt::format("{}", v);
  return out;
}

std::string TransferSummary(const sweep::Sweep& s) {
  std::string out;
  if (!s.few_shot.datasets.empty()) {
    out +=
        fmt::format("few-shot {} shots x {} seeds (l2 {}) on {}\n", JoinNumbers(s.few_shot.shots),
                    s.few_shot.seeds, s.few_shot.l2, JoinList(s.few_shot.datasets));
  }
  for (const sweep::FineTuneSpec& spec : s.fine_tune) {
    const sweep::FineTuneConfig& f = spec.config;
    out += fmt::format("fine-tune {}: {} steps, batch {}, resolution {}{}, lr grid {}\n", f.dataset,
                       f.steps, f.batch_size, f.resolution,
                       spec.resolution_given ? "" : " (per model: a multiple of its patch)",
                       JoinNumbers(f.lrs));
  }
  return out.empty() ? "no transfer evaluations\n" : out;
}

std::string CheckText(const sweep::Sweep& s, const std::vector<sweep::Job>& jobs) {
  std::string out = fmt::format("sweep {}: {} job{} (recipe {})\n", s.name, jobs.size(),
                                jobs.size() == 1 ? "" : "s", s.recipe.name);
  out += fmt::format("{:<12}  {:<14} {:<18} {:>11} {:>7} {:>9} {:>6} {:>4} {:>4} {:>5} {:>8}\n",
                     "id", "model", "dataset", "subset", "epochs", "lr", "batch", "res", "seed",
                     "ranks", "priority");
  for (const sweep::Job& j : jobs) {
    const sweep::JobConfig& c = j.config;
    out += fmt::format(
        "{:<12}  {:<14} {:<18} {:>11} {:>7.4g} {:>9.3g} {:>6} {:>4} {:>4} {:>5} {:>8}\n",
        j.id.substr(0, kShortId), c.model, c.dataset, c.subset, c.train.epochs, c.train.lr,
        c.train.batch_size, c.train.resolution, c.seed, j.resources.ranks, j.priority);
  }
  out += TransferSummary(s);
  return out;
}

nlohmann::json CheckJson(const sweep::Sweep& s, const std::vector<sweep::Job>& jobs) {
  nlohmann::json list = nlohmann::json::array();
  for (const sweep::Job& j : jobs) {
    list.push_back({{"id", j.id},
                    {"model", j.config.model},
                    {"family", j.family},
                    {"dataset", j.config.dataset},
                    {"subset", j.config.subset},
                    {"epochs", j.config.train.epochs},
                    {"examples", j.examples},
                    {"train_flops", j.train_flops},
                    {"fine_tune_flops", j.fine_tune_flops},
                    {"priority", j.priority},
                    {"ranks", j.resources.ranks},
                    {"gpus_per_rank", j.resources.gpus_per_rank},
                    {"config", j.canonical}});
  }
  return {{"sweep", s.name}, {"recipe", s.recipe.name}, {"jobs", list}};
}

std::string CostText(const sweep::Sweep& s, const std::vector<sweep::Job>& jobs) {
  std::string out = fmt::format(
      "sweep {}: planned compute (6 x MACs x images), pretraining and fine-tuning\n", s.name);
  out += fmt::format("{:<12}  {:<14} {:<18} {:>7} {:>16} {:>12} {:>12}\n", "job", "model",
                     "dataset", "epochs", "examples", "exaflops", "fine-tune");
  int64_t examples = 0;
  double flops = 0, fine_tune_flops = 0;
  for (const sweep::Job& j : jobs) {
    out += fmt::format("{:<12}  {:<14} {:<18} {:>7.4g} {:>16} {:>12} {:>12}\n",
                       j.id.substr(0, kShortId), j.config.model, j.config.dataset,
                       j.config.train.epochs, j.examples, ExaFlops(j.train_flops),
                       ExaFlops(j.fine_tune_flops));
    examples += j.examples;
    flops += j.train_flops;
    fine_tune_flops += j.fine_tune_flops;
  }
  out += fmt::format("{:<12}  {:<14} {:<18} {:>7} {:>16} {:>12} {:>12}\n", "total",
                     fmt::format("{} jobs", jobs.size()), "", "", examples, ExaFlops(flops),
                     ExaFlops(fine_tune_flops));
  return out;
}

nlohmann::json CostJson(const sweep::Sweep& s, const std::vector<sweep::Job>& jobs) {
  nlohmann::json list = nlohmann::json::array();
  int64_t examples = 0;
  double flops = 0, fine_tune_flops = 0;
  for (const sweep::Job& j : jobs) {
    list.push_back({{"job", j.id},
                    {"model", j.config.model},
                    {"dataset", j.config.dataset},
                    {"subset", j.config.subset},
                    {"epochs", j.config.train.epochs},
                    {"examples", j.examples},
                    {"exaflops", j.train_flops / kExa},
                    {"fine_tune_exaflops", j.fine_tune_flops / kExa}});
    examples += j.examples;
    flops += j.train_flops;
    fine_tune_flops += j.fine_tune_flops;
  }
  nlohmann::json total = {{"jobs", jobs.size()},
                          {"examples", examples},
                          {"exaflops", flops / kExa},
                          {"fine_tune_exaflops", fine_tune_flops / kExa}};
  return {{"sweep", s.name}, {"jobs", list}, {"total", total}};
}

}  // namespace

int RunSweep(const Args& args) {
  if (!args.empty() && args.front() == "simulate") {
    return RunSweepSimulate(Args(args.begin() + 1, args.end()));
  }
  std::string action, file;
  bool json = false;
  for (const std::string& arg : args) {
    if (arg == "--json") {
      json = true;
    } else if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return kExitOk;
    } else if (!arg.empty() && arg[0] == '-') {
      std::fprintf(stderr, "vitscale sweep: unknown option '%s'\n%s", arg.c_str(), kUsage);
      return kExitUsage;
    } else if (action.empty()) {
      action = arg;
    } else if (file.empty()) {
      file = arg;
    } else {
      std::fprintf(stderr, "vitscale sweep: unexpected argument '%s'\n%s", arg.c_str(), kUsage);
      return kExitUsage;
    }
  }
  if (action != "check" && action != "cost") {
    if (action.empty()) {
      std::fputs(kUsage, stderr);
    } else {
      std::fprintf(stderr, "vitscale sweep: unknown action '%s'; use check, cost or simulate\n%s",
                   action.c_str(), kUsage);
    }
    return kExitUsage;
  }
  if (file.empty()) {
    std::fprintf(stderr, "vitscale sweep %s: give the sweep FILE\n%s", action.c_str(), kUsage);
    return kExitUsage;
  }

  Expected<sweep::Sweep> parsed = sweep::LoadSweepFile(file);
  if (!parsed.ok()) {
    std::fprintf(stderr, "%s\n", parsed.status().message().c_str());
    if (parsed.status().code() == StatusCode::kNotFound) return kExitNotFound;
    return parsed.status().code() == StatusCode::kInvalidArgument ? kExitBadInput : kExitFailure;
  }
  Expected<std::vector<sweep::Job>> jobs = sweep::ExpandSweep(*parsed);
  if (!jobs.ok()) {
    std::fprintf(stderr, "%s\n", jobs.status().message().c_str());
    return kExitBadInput;
  }
  std::string out;
  if (action == "check") {
    out = json ? CheckJson(*parsed, *jobs).dump(2) + "\n" : CheckText(*parsed, *jobs);
  } else {
    out = json ? CostJson(*parsed, *jobs).dump(2) + "\n" : CostText(*parsed, *jobs);
  }
  std::fputs(out.c_str(), stdout);
  return kExitOk;
}

}  // namespace vitscale::cli
