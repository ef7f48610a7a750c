// The coordinator commands that make one request or a few: submit, list, show, cancel, preempt,
// priority and export. `--json` prints the API's own body, so scripts read what docs/api.md
// documents; the text forms are for people.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/api_client.h"
#include "cli/commands.h"
#include "common/flags.h"
#include "common/files.h"
#include "protocol/api.h"
#include "storage/results_table.h"

namespace vitscale::cli {
namespace {

using nlohmann::json;

constexpr int kMaxPage = 500;  // the API's largest page

void PrintJson(const json& value) {
  std::printf("%s\n", value.dump(2, ' ', false, json::error_handler_t::replace).c_str());
}

// A number in the form a person reads fastest: integers as such, others with 4 digits.
std::string Number(double value) {
  if (value == static_cast<double>(static_cast<int64_t>(value)) && std::abs(value) < 1e15) {
    return fmt::format("{}", static_cast<int64_t>(value));
  }
  return fmt::format("{:.4g}", value);
}
template <typename T>
std::string Number(const std::optional<T>& value) {
  return value ? Number(static_cast<double>(*value)) : "-";
}

std::string Percent(double progress) { return fmt::format("{:.0f}%", progress * 100); }

// ---------------------------------------------------------------------------------------------
// submit

constexpr const char* kSubmitUsage =
    "usage: vitscale submit FILE [--json]\n"
    "Submits a sweep definition (YAML). Jobs already known are not added again.\n"
    "  --json              print the API's answer: sweep, jobs_added, jobs_known, jobs\n";

// ---------------------------------------------------------------------------------------------
// list

constexpr const char* kListUsage =
    "usage: vitscale list [--sweep NAME] [--state S[,S]] [--model M] [--subset N]\n"
    "                     [--sort submitted|priority|model|subset|state|updated] [--desc]\n"
    "                     [--limit N] [--last | --after CURSOR | --before CURSOR] [--all]\n"
    "                     [--json]\n"
    "  --state S           pending, leased, running, preempted, succeeded, failed, cancelled;\n"
    "                      repeat it or separate states with commas\n"
    "  --limit N           jobs per page, 1..500 (default 50)\n"
    "  --last              the last page instead of the first\n"
    "  --after/--before C  the page after/before the one that printed cursor C (same filters)\n"
    "  --all               every matching job, fetched page by page\n";

std::string JobTableHeader() {
  return fmt::format("{:<12}  {:<14} {:<18} {:>7} {:>6}  {:<9} {:>4} {:>3} {:>5}  {:<20}  {}\n",
                     "ID", "MODEL", "DATASET", "SUBSET", "EPOCHS", "STATE", "PRIO", "ATT", "PROG",
                     "UPDATED", "PHASE");
}

// A running job's phase: "few-shot 2/6 (digits seed 1)"; "-" for a job without one.
std::string PhaseCell(const protocol::JobSummary& job) {
  return job.phase ? job.phase->ToString() : "-";
}

std::string JobTableRow(const protocol::JobSummary& job) {
  return fmt::format("{:<12}  {:<14} {:<18} {:>7} {:>6}  {:<9} {:>4} {:>3} {:>5}  {:<20}  {}\n",
                     ShortId(job.id), job.model, job.dataset, job.subset_size, Number(job.epochs),
                     protocol::JobStateName(job.state), job.priority, job.attempts,
                     Percent(job.progress), job.updated_at, PhaseCell(job));
}

// ---------------------------------------------------------------------------------------------
// show

constexpr const char* kShowUsage =
    "usage: vitscale show JOB [--json]\n"
    "JOB is a job id or a unique prefix of 8+ hex digits. Prints the config, attempts\n"
    "(preemptions and resumes), checkpoints, results and compute ledger.\n";

std::string ShowText(const protocol::JobDetail& detail) {
  const protocol::JobSummary& job = detail.summary;
  std::string out = fmt::format("job {}\n", job.id);
  out += fmt::format("  model     {} ({})\n", job.model, job.family);
  out += fmt::format("  data      {}, {} examples, {} epochs\n", job.dataset, job.subset_size,
                     Number(job.epochs));
  out += fmt::format("  state     {}, priority {}, progress {} ({} images seen), {} ranks\n",
                     protocol::JobStateName(job.state), job.priority, Percent(job.progress),
                     Number(job.images_seen), job.ranks);
  if (job.phase) out += fmt::format("  phase     {}\n", job.phase->ToString());
  std::string sweeps;
  for (const std::string& s : detail.sweeps) sweeps += (sweeps.empty() ? "" : ", ") + s;
  out += fmt::format("  sweeps    {}\n", sweeps.empty() ? "-" : sweeps);
  out += fmt::format("  planned   {} exaFLOPs\n", Number(job.planned_exaflops));
  out += fmt::format("  submitted {}, updated {}\n", job.created_at, job.updated_at);

  out += "\nconfig:\n";
  std::string config = detail.config.dump(2, ' ', false, json::error_handler_t::replace);
  size_t start = 0;
  while (start < config.size()) {
    size_t end = config.find('\n', start);
    if (end == std::string::npos) end = config.size();
    out += "  " + config.substr(start, end - start) + "\n";
    start = end + 1;
  }

  int preemptions = 0, resumes = 0, lost = 0;
  for (const protocol::AttemptView& a : detail.attempts) {
    preemptions += a.outcome == protocol::AttemptOutcome::kPreempted;
    lost += a.outcome == protocol::AttemptOutcome::kLost;
    resumes += a.resumed_from_step.has_value();
  }
  out += fmt::format("\nattempts: {} ({} preempted, {} lost, {} resumed from a checkpoint)\n",
                     detail.attempts.size(), preemptions, lost, resumes);
  if (!detail.attempts.empty()) {
    out += fmt::format("  {:>3}  {:<14} {:<20} {:<20} {:<20} {:<10} {:>4} {:>8}\n", "#", "AGENT",
                       "HOSTS", "STARTED", "ENDED", "OUTCOME", "EXIT", "RESUMED");
    for (const protocol::AttemptView& a : detail.attempts) {
      out += fmt::format(
          "  {:>3}  {:<14} {:<20} {:<20} {:<20} {:<10} {:>4} {:>8}\n", a.number,
          a.agent.value_or("-"), a.hosts, a.started_at, a.ended_at.value_or("(running)"),
          a.outcome ? protocol::AttemptOutcomeName(*a.outcome) : "-", Number(a.exit_status),
          a.resumed_from_step ? "step " + Number(a.resumed_from_step) : std::string("-"));
    }
  }

  out += fmt::format("\ncheckpoints: {}\n", detail.checkpoints.size());
  for (const protocol::CheckpointView& c : detail.checkpoints) {
    out += fmt::format("  step {:>8}  {}  sha256 {}  {}\n", c.step, c.created_at,
                       c.sha256.substr(0, 12), c.path);
  }

  out += fmt::format("\nresults: {}\n", detail.results.size());
  if (!detail.results.empty()) {
    out += fmt::format("  {:<10} {:<22} {:>5} {:>4} {:<10} {:>8}\n", "EVALUATION", "DATASET",
                       "SHOTS", "SEED", "METRIC", "VALUE");
    for (const protocol::ResultEntry& r : detail.results) {
      out += fmt::format("  {:<10} {:<22} {:>5} {:>4} {:<10} {:>8}\n",
                         protocol::EvaluationName(r.evaluation), r.dataset, Number(r.shots),
                         Number(r.seed), r.metric, Number(r.value));
    }
  }

  const protocol::LedgerTotals& ledger = detail.ledger;
  std::string devices;
  for (const auto& [kind, seconds] : ledger.device_seconds) {
    devices += fmt::format("{}{} {} s", devices.empty() ? "" : ", ", kind, Number(seconds));
  }
  out += fmt::format(
      "\nledger: train {} FLOPs, eval {} FLOPs, {} images seen, device {}, wall {} s\n",
      Number(ledger.train_flops), Number(ledger.eval_flops), ledger.images_seen,
      devices.empty() ? "-" : devices, Number(ledger.wall_seconds));
  return out;
}

// ---------------------------------------------------------------------------------------------
// cancel, preempt, priority

constexpr const char* kCancelUsage =
    "usage: vitscale cancel JOB [--json]\n"
    "Cancels a job; a running one is killed. A finished job is left as it is (exit 1).\n";
constexpr const char* kPreemptUsage =
    "usage: vitscale preempt JOB [--json]\n"
    "The trainer checkpoints within its grace period and the job goes back to pending.\n";
constexpr const char* kPriorityUsage =
    "usage: vitscale priority JOB N [--json]\n"
    "Sets the job's priority (higher runs first; -1000000..1000000).\n";

int PostJobAction(const std::string& command, const Args& raw, const char* usage) {
  bool priority = command == "priority";
  Invocation call = StartCommand(command, raw, {{"--json", false}}, usage, priority ? 2 : 1);
  if (call.exit_code >= 0) return call.exit_code;
  std::string body = "{}";
  if (priority) {
    Expected<long long> value =
        ParseInteger(call.args.positional[1], "priority", -1000000, 1000000);
    if (!value.ok()) return UsageError(command, value.status().message(), usage);
    body = json{{"priority", *value}}.dump();
  }
  const std::string& id = call.args.positional[0];
  Expected<json> job = call.api->Post("/api/v1/jobs/" + UrlEncode(id) + "/" + command, body);
  if (!job.ok()) return Fail(command, job.status());
  if (call.args.Has("--json")) {
    PrintJson(*job);
    return kExitOk;
  }
  Expected<protocol::JobDetail> detail = FromReply<protocol::JobDetail>(*job);
  if (!detail.ok()) return Fail(command, detail.status());
  std::printf("job %s: %s, priority %d\n", ShortId(detail->summary.id).c_str(),
              protocol::JobStateName(detail->summary.state), detail->summary.priority);
  return kExitOk;
}

// ---------------------------------------------------------------------------------------------
// export

constexpr const char* kExportUsage =
    "usage: vitscale export --sweep NAME [--format csv|markdown|latex] [--json]\n"
    "       vitscale export --db FILE --sweep NAME [--format csv|markdown|latex]\n"
    "Prints a sweep's Table 6: from the coordinator, or from a database file with --db.\n"
    "  --format F          csv, markdown (the default) or latex (a booktabs tabular)\n"
    "  --json              the study as JSON: GET /api/v1/study/NAME with every row\n"
    "  --fits              the scaling-law fits instead of Table 6 (docs/planning.md)\n"
    "  --column C          with --fits: the accuracy fitted, `average` (default) or a column\n";

}  // namespace

int RunSubmit(const Args& raw) {
  Invocation call = StartCommand("submit", raw, {{"--json", false}}, kSubmitUsage, 1);
  if (call.exit_code >= 0) return call.exit_code;
  const std::string& file = call.args.positional[0];
  Expected<std::string> yaml = ReadFile(file);
  if (!yaml.ok()) return Fail("submit", yaml.status());
  // The coordinator names the file in its line:column messages, so send the name as typed.
  Expected<json> reply =
      call.api->Post("/api/v1/sweeps?file=" + UrlEncode(file), *yaml, "application/yaml");
  if (!reply.ok()) return Fail("submit", reply.status());
  if (call.args.Has("--json")) {
    PrintJson(*reply);
    return kExitOk;
  }
  Expected<protocol::SubmitReply> submitted = FromReply<protocol::SubmitReply>(*reply);
  if (!submitted.ok()) return Fail("submit", submitted.status());
  std::printf("sweep %s: %lld jobs added, %lld already known\n", submitted->sweep.c_str(),
              static_cast<long long>(submitted->jobs_added),
              static_cast<long long>(submitted->jobs_known));
  return kExitOk;
}

int RunList(const Args& raw) {
  Invocation call = StartCommand("list", raw,
                                 {{"--sweep", true},
                                  {"--state", true},
                                  {"--model", true},
                                  {"--subset", true},
                                  {"--sort", true},
                                  {"--desc", false},
                                  {"--limit", true},
                                  {"--last", false},
                                  {"--after", true},
                                  {"--before", true},
                                  {"--all", false},
                                  {"--json", false}},
                                 kListUsage, 0);
  if (call.exit_code >= 0) return call.exit_code;
  const ParsedArgs& args = call.args;
  bool all = args.Has("--all");
  int starts = args.Has("--last") + args.Has("--after") + args.Has("--before");
  if (all && (args.Has("--limit") || starts > 0)) {
    return UsageError("list", "--all pages by itself; leave out --limit, --last, --after and --before",
                      kListUsage);
  }
  if (starts > 1) return UsageError("list", "give one of --last, --after and --before", kListUsage);
  long long limit = 50;
  if (args.Has("--limit")) {
    Expected<long long> parsed = ParseInteger(args.Get("--limit"), "--limit", 1, kMaxPage);
    if (!parsed.ok()) return UsageError("list", parsed.status().message(), kListUsage);
    limit = *parsed;
  }
  std::string query;
  for (const char* name : {"sweep", "model", "subset", "sort"}) {
    std::string flag = std::string("--") + name;
    if (args.Has(flag)) query += fmt::format("&{}={}", name, UrlEncode(args.Get(flag)));
  }
  std::string states;
  for (const std::string& s : args.GetAll("--state")) states += (states.empty() ? "" : ",") + s;
  if (!states.empty()) query += "&state=" + UrlEncode(states);
  if (args.Has("--desc")) query += "&order=desc";
  if (all) limit = kMaxPage;
  std::string start = args.Has("--last") ? "&page=last" : "";
  if (args.Has("--after")) start = "&after=" + UrlEncode(args.Get("--after"));
  if (args.Has("--before")) start = "&before=" + UrlEncode(args.Get("--before"));

  // --all follows each page's next cursor: every page costs the same, however deep.
  json rows = json::array();
  std::vector<protocol::JobSummary> jobs;
  std::optional<protocol::JobPage> first;
  json first_page;
  while (true) {
    Expected<json> page =
        call.api->GetJson(fmt::format("/api/v1/jobs?limit={}{}{}", limit, query, start));
    if (!page.ok()) return Fail("list", page.status());
    Expected<protocol::JobPage> typed = FromReply<protocol::JobPage>(*page);
    if (!typed.ok()) return Fail("list", typed.status());
    for (const json& row : (*page)["jobs"]) rows.push_back(row);
    jobs.insert(jobs.end(), typed->jobs.begin(), typed->jobs.end());
    if (!first) {
      first = *typed;
      first_page = *page;
    }
    if (!all || !typed->next) break;
    start = "&after=" + *typed->next;
  }
  std::string total = fmt::format("{}{}", first->total_exact ? "" : "at least ", first->total);

  if (args.Has("--json")) {
    if (all) {
      PrintJson(json{{"total", first->total},
                     {"total_exact", first->total_exact},
                     {"limit", rows.size()},
                     {"jobs", rows},
                     {"next", nullptr},
                     {"prev", nullptr}});
    } else {
      PrintJson(first_page);
    }
    return kExitOk;
  }
  std::string out = JobTableHeader();
  for (const protocol::JobSummary& job : jobs) out += JobTableRow(job);
  if (jobs.empty()) {
    out += fmt::format("no jobs (of {} matching)\n", total);
  } else if (!all && (first->next || first->prev)) {
    out += fmt::format("{} of {} jobs shown\n", jobs.size(), total);
    if (first->prev) out += fmt::format("previous page: --before {}\n", *first->prev);
    if (first->next) out += fmt::format("next page: --after {}\n", *first->next);
  } else {
    out += fmt::format("{} job{}\n", total, total == "1" ? "" : "s");
  }
  std::fputs(out.c_str(), stdout);
  return kExitOk;
}

int RunShow(const Args& raw) {
  Invocation call = StartCommand("show", raw, {{"--json", false}}, kShowUsage, 1);
  if (call.exit_code >= 0) return call.exit_code;
  Expected<json> job = call.api->GetJson("/api/v1/jobs/" + UrlEncode(call.args.positional[0]));
  if (!job.ok()) return Fail("show", job.status());
  if (call.args.Has("--json")) {
    PrintJson(*job);
    return kExitOk;
  }
  Expected<protocol::JobDetail> detail = FromReply<protocol::JobDetail>(*job);
  if (!detail.ok()) return Fail("show", detail.status());
  std::fputs(ShowText(*detail).c_str(), stdout);
  return kExitOk;
}

int RunCancel(const Args& args) { return PostJobAction("cancel", args, kCancelUsage); }
int RunPreempt(const Args& args) { return PostJobAction("preempt", args, kPreemptUsage); }
int RunPriority(const Args& args) { return PostJobAction("priority", args, kPriorityUsage); }

int RunExportAny(const Args& raw) {
  for (const std::string& arg : raw) {
    if (arg == "--db" || arg.rfind("--db=", 0) == 0) return RunExport(raw);
  }
  Invocation call = StartCommand(
      "export", raw,
      {{"--sweep", true}, {"--format", true}, {"--json", false}, {"--fits", false},
       {"--column", true}},
      kExportUsage, 0);
  if (call.exit_code >= 0) return call.exit_code;
  std::string sweep = call.args.Get("--sweep");
  if (sweep.empty()) return UsageError("export", "--sweep NAME is required", kExportUsage);
  bool fits = call.args.Has("--fits");
  if (call.args.Has("--column") && !fits) {
    return UsageError("export", "--column goes with --fits", kExportUsage);
  }
  std::string column = UrlEncode(call.args.Get("--column", "average"));
  if (call.args.Has("--json")) {
    if (call.args.Has("--format")) {
      return UsageError("export", "--json and --format exclude each other", kExportUsage);
    }
    if (fits) {
      Expected<json> answer =
          call.api->GetJson("/api/v1/study/" + UrlEncode(sweep) + "/fits?column=" + column);
      if (!answer.ok()) return Fail("export", answer.status());
      PrintJson(*answer);
      return kExitOk;
    }
    // The study's summary and every row: the rows come a page at a time, by cursor.
    Expected<json> study =
        call.api->GetJson("/api/v1/study/" + UrlEncode(sweep) + "?limit=500");
    if (!study.ok()) return Fail("export", study.status());
    while (study->contains("next")) {
      Expected<json> page =
          call.api->GetJson("/api/v1/study/" + UrlEncode(sweep) + "/rows?limit=500&after=" +
                            UrlEncode((*study)["next"].get<std::string>()));
      if (!page.ok()) return Fail("export", page.status());
      for (json& row : (*page)["rows"]) (*study)["rows"].push_back(std::move(row));
      if (page->contains("next")) {
        (*study)["next"] = (*page)["next"];
      } else {
        study->erase("next");
      }
    }
    for (const char* paging : {"start", "limit", "prev"}) study->erase(paging);
    PrintJson(*study);
    return kExitOk;
  }
  std::string format = call.args.Get("--format", "markdown");
  if (Status known = storage::ParseTableFormat(format).status(); !known.ok()) {
    return UsageError("export", known.message(), kExportUsage);
  }
  Expected<std::string> table =
      call.api->GetText(fmt::format("/api/v1/export?sweep={}&format={}{}", UrlEncode(sweep), format,
                                    fits ? "&fits=1&column=" + column : std::string()));
  if (!table.ok()) return Fail("export", table.status());
  std::fwrite(table->data(), 1, table->size(), stdout);
  return kExitOk;
}

}  // namespace vitscale::cli
