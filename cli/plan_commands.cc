// Planning commands (docs/planning.md):
//   vitscale sweep simulate FILE --hosts SPEC   the sweep on a described cluster, simulated
//   vitscale throughput [import FILE]           the throughput table the simulator prices with
// The simulation runs here, offline, with the coordinator's scheduler code; its throughput
// comes from a database (--db), a file (--throughput), or nowhere (every rate an estimate).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "cli/api_client.h"
#include "cli/commands.h"
#include "common/files.h"
#include "planning/simulate.h"
#include "planning/throughput.h"
#include "storage/store.h"
#include "sweep/sweep.h"

namespace vitscale::cli {
namespace {

using nlohmann::json;

constexpr const char* kSimulateUsage =
    "usage: vitscale sweep simulate FILE --hosts SPEC [options]\n"
    "  --hosts SPEC          HOSTSxDEVICES:KIND (8x8:H200, 1x4:cpu; groups joined by ',') or a\n"
    "                        cluster file (docs/planning.md)\n"
    "  --db FILE             price jobs with the throughput this database measured and imported\n"
    "  --throughput FILE     ... or with the rows of a file (`vitscale throughput --json` output\n"
    "                        or a benchmark import file); neither: every rate is an estimate\n"
    "  --compare F,F,...     also simulate the cluster scaled by these factors (default 0.5,2)\n"
    "  --preempt-rate R      random preemptions per device-day (default 0)\n"
    "  --failure-rate R      random failures per device-day (default 0)\n"
    "  --checkpoint-every S  seconds of work between checkpoints, for what a failure loses "
    "(1800)\n"
    "  --max-retries N       failures retried per job (the coordinator's default, 2)\n"
    "  --seed N              of the random interruptions (1)\n"
    "  --json                the plans as JSON, with every simulated attempt of the first\n";

constexpr const char* kThroughputUsage =
    "usage: vitscale throughput [--db FILE] [--json]     the throughput table\n"
    "       vitscale throughput import FILE [--db FILE]  add a benchmark run's measurements\n"
    "Without --db, the coordinator's table (--coordinator URL, see `vitscale --help`).\n";

int StatusExit(const Status& status) {
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
      return kExitBadInput;
    case StatusCode::kNotFound:
      return kExitNotFound;
    default:
      return kExitFailure;
  }
}

int Error(const std::string& command, const Status& status) {
  std::fprintf(stderr, "vitscale %s: %s\n", command.c_str(), status.message().c_str());
  return StatusExit(status);
}

Expected<std::unique_ptr<storage::Store>> OpenDb(const std::string& path, bool read_only) {
  storage::OpenOptions options;
  options.read_only = read_only;
  return storage::Store::Open(path, options);
}

Expected<std::vector<planning::ThroughputEntry>> EntriesFromDb(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<storage::Store> store, OpenDb(path, /*read_only=*/true));
  ASSIGN_OR_RETURN(std::vector<storage::ThroughputSample> samples, store->ThroughputSamples());
  ASSIGN_OR_RETURN(std::vector<storage::ThroughputImport> imports, store->ListThroughputImports());
  return planning::BuildThroughputTable(samples, imports);
}

Expected<std::vector<double>> ParseFactors(const std::string& text) {
  std::vector<double> factors;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string part =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    char* end = nullptr;
    double f = std::strtod(part.c_str(), &end);
    if (part.empty() || *end != '\0' || !(f > 0) || f > 1000) {
      return InvalidArgument("--compare: '" + part + "' is not a factor > 0 (e.g. 0.5,2)");
    }
    factors.push_back(f);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return factors;
}

Expected<double> ParseRate(const ParsedArgs& args, const std::string& flag, double fallback) {
  if (!args.Has(flag)) return fallback;
  std::string text = args.Get(flag);
  char* end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !(value >= 0) || value > 1e6) {
    return InvalidArgument(flag + ": '" + text + "' is not a number >= 0");
  }
  return value;
}

std::string PlanRow(const planning::SimulationResult& r) {
  return fmt::format("  {:<22} {:>6} {:>8} {:>12} {:>12} {:>10.1f}%\n", r.cluster.description,
                     r.cluster.Hosts(), r.cluster.Devices(),
                     planning::FormatDuration(r.makespan_seconds),
                     fmt::format("{:.1f}", r.device_seconds / 86400), 100 * r.utilisation);
}

std::string PlanText(const sweep::Sweep& s, const std::vector<planning::SimulationResult>& plans,
                     double elapsed_ms) {
  const planning::SimulationResult& r = plans.front();
  std::string out =
      fmt::format("sweep {}: {} jobs on {} ({} hosts, {} devices)\n", s.name, r.jobs.size(),
                  r.cluster.description, r.cluster.Hosts(), r.cluster.Devices());
  if (!r.estimated.empty()) {
    out += fmt::format("estimated rates ({}; measure or import to replace them):\n",
                       r.estimated.size());
    for (const std::string& note : r.estimated) out += "  " + note + "\n";
  }
  out += fmt::format(
      "makespan      {}  (no schedule beats {}: the longest job, or all work "
      "spread over every device)\n",
      planning::FormatDuration(r.makespan_seconds),
      planning::FormatDuration(r.lower_bound_seconds));
  out += fmt::format("device-days   {:.1f}\n", r.device_seconds / 86400);
  out += fmt::format("utilisation   {:.1f}%\n", 100 * r.utilisation);
  out += fmt::format("interruptions {} preemptions, {} failures\n", r.preemptions, r.failures);
  out += "critical jobs (the last to end, and the longest):\n";
  out += fmt::format("  {:<12} {:<14} {:>7} {:>10} {:>10} {:>10} {:>8}\n", "job", "model",
                     "devices", "start", "end", "one run", "attempts");
  for (size_t i : r.critical) {
    const planning::SimulatedJob& j = r.jobs[i];
    out += fmt::format("  {:<12} {:<14} {:>7} {:>10} {:>10} {:>10} {:>8}{}\n", ShortId(j.job.id),
                       j.job.model, j.job.Devices(), planning::FormatDuration(j.first_start),
                       planning::FormatDuration(j.end), planning::FormatDuration(j.ideal_seconds),
                       j.attempts, j.rate.estimate ? "  (estimated rate)" : "");
  }
  if (plans.size() > 1) {
    out += "what the cluster size changes:\n";
    out += fmt::format("  {:<22} {:>6} {:>8} {:>12} {:>12} {:>11}\n", "cluster", "hosts", "devices",
                       "makespan", "device-days", "utilisation");
    std::vector<const planning::SimulationResult*> sorted;
    for (const auto& p : plans) sorted.push_back(&p);
    std::sort(sorted.begin(), sorted.end(),
              [](auto* a, auto* b) { return a->cluster.Devices() < b->cluster.Devices(); });
    for (const auto* p : sorted) out += PlanRow(*p);
  }
  out += fmt::format("simulated {} cluster size{} in {:.0f} ms\n", plans.size(),
                     plans.size() == 1 ? "" : "s", elapsed_ms);
  return out;
}

}  // namespace

int RunSweepSimulate(const Args& raw) {
  const std::vector<FlagSpec> flags = {{"--hosts", true},
                                       {"--db", true},
                                       {"--throughput", true},
                                       {"--compare", true},
                                       {"--preempt-rate", true},
                                       {"--failure-rate", true},
                                       {"--checkpoint-every", true},
                                       {"--max-retries", true},
                                       {"--seed", true},
                                       {"--json", false}};
  Expected<ParsedArgs> parsed = ParseArgs(raw, flags);
  if (!parsed.ok()) return UsageError("sweep simulate", parsed.status().message(), kSimulateUsage);
  const ParsedArgs& args = *parsed;
  if (args.help) {
    std::fputs(kSimulateUsage, stdout);
    return kExitOk;
  }
  if (args.positional.size() != 1) {
    return UsageError("sweep simulate",
                      args.positional.empty() ? "give the sweep FILE" : "give one sweep FILE",
                      kSimulateUsage);
  }
  if (!args.Has("--hosts"))
    return UsageError("sweep simulate", "--hosts SPEC is required", kSimulateUsage);
  if (args.Has("--db") && args.Has("--throughput")) {
    return UsageError("sweep simulate", "--db and --throughput exclude each other", kSimulateUsage);
  }
  planning::SimulationOptions options;
  Expected<double> preempt = ParseRate(args, "--preempt-rate", 0);
  Expected<double> failure = ParseRate(args, "--failure-rate", 0);
  Expected<double> checkpoint = ParseRate(args, "--checkpoint-every", 1800);
  Expected<long long> retries = args.GetInt("--max-retries", 0, 100, 2);
  Expected<long long> seed = args.GetInt("--seed", 0, (1LL << 62), 1);
  for (const Status& s :
       {preempt.status(), failure.status(), checkpoint.status(), retries.status(), seed.status()}) {
    if (!s.ok()) return UsageError("sweep simulate", s.message(), kSimulateUsage);
  }
  options.preempt_rate_per_device_day = *preempt;
  options.failure_rate_per_device_day = *failure;
  options.checkpoint_every_seconds = std::max(*checkpoint, 1.0);
  options.max_retries = static_cast<int>(*retries);
  options.seed = static_cast<uint64_t>(*seed);
  std::vector<double> factors = {1, 0.5, 2};
  if (args.Has("--compare")) {
    Expected<std::vector<double>> given = ParseFactors(args.Get("--compare"));
    if (!given.ok()) return UsageError("sweep simulate", given.status().message(), kSimulateUsage);
    factors = {1};
    factors.insert(factors.end(), given->begin(), given->end());
  }

  Expected<sweep::Sweep> parsed_sweep = sweep::LoadSweepFile(args.positional[0]);
  if (!parsed_sweep.ok()) return Error("sweep simulate", parsed_sweep.status());
  Expected<std::vector<sweep::Job>> jobs = sweep::ExpandSweep(*parsed_sweep);
  if (!jobs.ok()) return Error("sweep simulate", jobs.status());
  Expected<planning::Cluster> cluster = planning::ParseHosts(args.Get("--hosts"));
  if (!cluster.ok()) return Error("sweep simulate", cluster.status());

  std::vector<planning::ThroughputEntry> entries;
  if (args.Has("--db")) {
    Expected<std::vector<planning::ThroughputEntry>> read = EntriesFromDb(args.Get("--db"));
    if (!read.ok()) return Error("sweep simulate", read.status());
    entries = std::move(*read);
  } else if (args.Has("--throughput")) {
    std::string path = args.Get("--throughput");
    Expected<std::string> text = ReadFile(path);
    if (!text.ok()) return Error("sweep simulate", text.status());
    Expected<std::vector<storage::ThroughputImport>> rows =
        planning::ParseThroughputImport(*text, path, /*ignore_unknown=*/true);
    if (!rows.ok()) return Error("sweep simulate", rows.status());
    entries = planning::BuildThroughputTable({}, *rows);
  }
  planning::ThroughputTable table(std::move(entries));
  std::vector<planning::PlannedJob> planned = planning::PlannedJobs(*jobs);

  auto started = std::chrono::steady_clock::now();
  std::vector<planning::SimulationResult> plans;
  std::set<std::string> seen;
  for (double factor : factors) {
    planning::Cluster sized = factor == 1 ? *cluster : planning::ScaleCluster(*cluster, factor);
    if (!seen.insert(fmt::format("{}", sized.Devices())).second) continue;  // same size again
    Expected<planning::SimulationResult> result =
        planning::Simulate(planned, sized, table, options);
    if (!result.ok()) {
      // The cluster as given must run the sweep; a smaller comparison that cannot is left out.
      if (factor != 1 && result.status().code() == StatusCode::kInvalidArgument) continue;
      return Error("sweep simulate", result.status());
    }
    plans.push_back(std::move(*result));
  }
  double elapsed_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  std::string out;
  if (args.Has("--json")) {
    json list = json::array();
    for (size_t i = 0; i < plans.size(); ++i) list.push_back(planning::ToJson(plans[i], i == 0));
    out =
        json{{"sweep", parsed_sweep->name}, {"plans", list}, {"simulate_ms", elapsed_ms}}.dump(2) +
        "\n";
  } else {
    out = PlanText(*parsed_sweep, plans, elapsed_ms);
  }
  std::fputs(out.c_str(), stdout);
  return kExitOk;
}

namespace {

std::string ThroughputText(const json& reply) {
  std::string out =
      fmt::format("{:<16} {:<24} {:<5} {:>6} {:>12} {:>10} {:>10} {:>5}  {}\n", "model", "device",
                  "prec", "batch", "images/s/dev", "TFLOP/s", "overhead", "jobs", "source");
  for (const json& row : reply.at("rows")) {
    out += fmt::format("{:<16} {:<24} {:<5} {:>6} {:>12.4g} {:>10.4g} {:>9.1f}s {:>5}  {}\n",
                       row.value("model", ""), row.value("device_kind", ""),
                       row.value("precision", ""), row.value("batch_size", 0),
                       row.value("images_per_second", 0.0), row.value("tflops_per_second", 0.0),
                       row.value("overhead_seconds", 0.0), row.value("jobs", 0),
                       row.value("source", ""));
  }
  if (reply.at("rows").empty()) {
    out +=
        "(empty: no job has finished and nothing was imported; `vitscale sweep simulate` "
        "estimates every rate from nominal peak FLOP/s, marked as estimates)\n";
  }
  return out;
}

json TableJson(const std::vector<planning::ThroughputEntry>& entries) {
  json rows = json::array();
  for (const auto& e : entries) rows.push_back(planning::ToJson(e));
  return json{{"rows", rows}};
}

}  // namespace

int RunThroughput(const Args& raw) {
  std::vector<FlagSpec> own = {{"--db", true}, {"--json", false}};
  bool import = !raw.empty() && raw.front() == "import";
  Args rest(raw.begin() + (import ? 1 : 0), raw.end());
  bool offline = false;
  for (const std::string& arg : rest) offline |= arg == "--db" || arg.rfind("--db=", 0) == 0;
  ParsedArgs args;
  std::unique_ptr<ApiClient> api;
  if (offline) {
    Expected<ParsedArgs> parsed = ParseArgs(rest, own);
    if (!parsed.ok()) return UsageError("throughput", parsed.status().message(), kThroughputUsage);
    args = std::move(*parsed);
    if (args.help) {
      std::fputs(kThroughputUsage, stdout);
      return kExitOk;
    }
    if (args.positional.size() != (import ? 1u : 0u)) {
      return UsageError("throughput", import ? "give one FILE to import" : "unexpected argument",
                        kThroughputUsage);
    }
  } else {
    Invocation call = StartCommand("throughput", rest, own, kThroughputUsage, import ? 1 : 0);
    if (call.exit_code >= 0) return call.exit_code;
    args = std::move(call.args);
    api = std::move(call.api);
  }
  if (import) {
    const std::string& path = args.positional[0];
    Expected<std::string> text = ReadFile(path);
    if (!text.ok()) return Error("throughput import", text.status());
    Expected<std::vector<storage::ThroughputImport>> rows =
        planning::ParseThroughputImport(*text, path);
    if (!rows.ok()) return Error("throughput import", rows.status());
    if (offline) {
      Expected<std::unique_ptr<storage::Store>> store = OpenDb(args.Get("--db"), false);
      if (!store.ok()) return Error("throughput import", store.status());
      Status imported = (*store)->ImportThroughput(*rows);
      if (!imported.ok()) return Error("throughput import", imported);
    } else {
      Expected<json> reply = api->Post("/api/v1/throughput?source=" + UrlEncode(path), *text);
      if (!reply.ok()) return Fail("throughput import", reply.status());
    }
    std::printf("imported %zu throughput row%s from %s\n", rows->size(),
                rows->size() == 1 ? "" : "s", path.c_str());
    return kExitOk;
  }
  json reply;
  if (offline) {
    Expected<std::vector<planning::ThroughputEntry>> entries = EntriesFromDb(args.Get("--db"));
    if (!entries.ok()) return Error("throughput", entries.status());
    reply = TableJson(*entries);
  } else {
    Expected<json> got = api->GetJson("/api/v1/throughput");
    if (!got.ok()) return Fail("throughput", got.status());
    reply = std::move(*got);
  }
  std::string out = args.Has("--json") ? reply.dump(2) + "\n" : ThroughputText(reply);
  std::fputs(out.c_str(), stdout);
  return kExitOk;
}

}  // namespace vitscale::cli
