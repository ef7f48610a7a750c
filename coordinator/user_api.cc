#include "coordinator/user_api.h"

#include <boost/asio/post.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <sstream>

#include "common/text.h"
#include "coordinator/views.h"
#include "planning/simulate.h"
#include "planning/study_fits.h"
#include "planning/throughput.h"
#include "storage/results_table.h"
#include "sweep/sweep.h"

namespace vitscale::coordinator {

using protocol::Json;
using storage::JobRecord;

namespace {

constexpr int64_t kMaxPageSize = 500;

// The study view's JSON (docs/api.md), written straight into one string: a sweep's table is
// 10,000 rows or more, and a document tree of them costs more than the query that read them.
void AppendJsonString(std::string& out, std::string_view text) {
  bool plain = std::all_of(text.begin(), text.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u >= 0x20 && u < 0x80 && c != '"' && c != '\\';
  });
  if (plain) {
    out += '"';
    out += text;
    out += '"';
  } else {  // escapes and UTF-8 checks as every other answer has them
    out += protocol::Dump(Json(std::string(text)));
  }
}

// Shortest round-trip text, always a JSON float ("2.0", not "2"); null when not finite.
void AppendJsonNumber(std::string& out, double value) {
  if (!std::isfinite(value)) {
    out += "null";
    return;
  }
  size_t start = out.size();
  fmt::format_to(std::back_inserter(out), "{}", value);
  if (out.find_first_of(".e", start) == std::string::npos) out += ".0";
}

void AppendJsonNumber(std::string& out, const std::optional<double>& value) {
  if (value) {
    AppendJsonNumber(out, *value);
  } else {
    out += "null";
  }
}

std::vector<std::string> ColumnTitlesJson(const storage::ResultsTable& table) {
  std::vector<std::string> titles;
  for (const auto& column : table.columns) {
    titles.emplace_back();
    AppendJsonString(titles.back(), column.Title());
  }
  return titles;
}

// `"columns":[...],"rows":[...]` of the table's rows.
void AppendStudyRows(std::string& out, const storage::ResultsTable& table) {
  std::vector<std::string> titles = ColumnTitlesJson(table);
  out += "\"columns\":[";
  for (size_t i = 0; i < titles.size(); ++i) out += (i ? "," : "") + titles[i];
  out += "],\"rows\":[";
  out.reserve(out.size() + table.rows.size() * 400);
  for (size_t r = 0; r < table.rows.size(); ++r) {
    const storage::ResultsTableRow& row = table.rows[r];
    out += r ? ",{\"job\":" : "{\"job\":";
    AppendJsonString(out, row.job_id);
    out += ",\"model\":";
    AppendJsonString(out, row.model);
    out += ",\"family\":";
    AppendJsonString(out, row.family);
    out += ",\"epochs\":";
    AppendJsonNumber(out, row.epochs);
    out += ",\"dataset\":";
    AppendJsonString(out, row.dataset);
    fmt::format_to(std::back_inserter(out), ",\"subset_size\":{},\"state\":\"{}\",\"exaflops\":",
                   row.examples, storage::JobStateName(row.state));
    AppendJsonNumber(out, row.exaflops);
    out += row.compute_planned ? ",\"planned\":true" : ",\"planned\":false";
    out += ",\"device_hours\":";
    AppendJsonNumber(out, row.device_hours);
    out += ",\"results\":{";
    bool first = true;
    for (size_t i = 0; i < titles.size(); ++i) {
      if (!row.transfer[i]) continue;
      out += first ? "" : ",";
      first = false;
      out += titles[i];
      out += ':';
      AppendJsonNumber(out, *row.transfer[i] / 100.0);
    }
    out += "},\"average\":";
    AppendJsonNumber(out, row.average ? std::optional<double>(*row.average / 100.0) : std::nullopt);
    out += '}';
  }
  out += ']';
}

// A page of the study's rows with where it lies: `"columns":…,"rows":…,"total":…,"start":…,
// "limit":…` and the `next`/`prev` cursors where there are rows that way.
void AppendStudyPage(std::string& out, const storage::ResultsTablePage& page, int64_t limit) {
  AppendStudyRows(out, page.table);
  fmt::format_to(std::back_inserter(out), ",\"total\":{},\"start\":{},\"limit\":{}", page.total,
                 page.jobs_before, limit);
  if (page.next) out += ",\"next\":\"" + *page.next + "\"";
  if (page.prev) out += ",\"prev\":\"" + *page.prev + "\"";
}

// A whole-number query parameter, or `fallback` when it is absent or empty.
Expected<int64_t> QueryInt(const HttpRequest& request, const std::string& name, int64_t fallback,
                           int64_t low, int64_t high) {
  auto it = request.query.find(name);
  if (it == request.query.end() || it->second.empty()) return fallback;
  return protocol::ParseWholeNumber(it->second, "query parameter '" + name + "'", low, high);
}

// A time in a query parameter: seconds since the Unix epoch, or an ISO 8601 UTC time as the API
// writes them ("2026-11-27T13:00:00.123Z"); `fallback` when absent or empty.
Expected<double> QueryTime(const HttpRequest& request, const std::string& name, double fallback) {
  auto it = request.query.find(name);
  if (it == request.query.end() || it->second.empty()) return fallback;
  const std::string& text = it->second;
  char* end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  if (end != text.c_str() && *end == '\0' && std::isfinite(value)) return value;
  std::tm utc{};
  double seconds = 0;
  int used = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%lfZ%n", &utc.tm_year, &utc.tm_mon,
                  &utc.tm_mday, &utc.tm_hour, &utc.tm_min, &seconds, &used) == 6 &&
      used == static_cast<int>(text.size()) && seconds >= 0 && seconds < 61) {
    utc.tm_year -= 1900;
    utc.tm_mon -= 1;
    return static_cast<double>(::timegm(&utc)) + seconds;
  }
  return InvalidArgument("query parameter '" + name +
                         "' must be seconds since the Unix epoch or an ISO 8601 UTC time, not '" +
                         Printable(text, 40) + "'");
}

}  // namespace

UserApi::UserApi(Core& core, Credentials& credentials) : core_(core), credentials_(credentials) {}

UserApi::~UserApi() {
  fitter_.stop();
  fitter_.join();
}

void UserApi::AddRoutes(Router& router) {
  auto bind = [this](HttpResponse (UserApi::*method)(const HttpRequest&)) {
    return Immediate([this, method](const HttpRequest& request) { return (this->*method)(request); });
  };
  router.Add("GET", "/api/v1/health", Scope::kRead, kSmallBody, bind(&UserApi::Health));
  router.Add("GET", "/api/v1/sweeps", Scope::kRead, kSmallBody, bind(&UserApi::ListSweeps));
  router.Add("POST", "/api/v1/sweeps", Scope::kAdmin, kLargeBody, bind(&UserApi::SubmitSweep));
  router.Add("GET", "/api/v1/sweeps/{name}", Scope::kRead, kSmallBody, bind(&UserApi::GetSweep));
  router.Add("GET", "/api/v1/jobs", Scope::kRead, kSmallBody, bind(&UserApi::ListJobs));
  router.Add("GET", "/api/v1/jobs/{id}", Scope::kRead, kSmallBody, bind(&UserApi::GetJob));
  router.Add("GET", "/api/v1/jobs/{id}/metrics", Scope::kRead, kSmallBody,
             bind(&UserApi::JobMetrics));
  router.Add("GET", "/api/v1/jobs/{id}/logs", Scope::kRead, kSmallBody, bind(&UserApi::JobLogs));
  router.Add("POST", "/api/v1/jobs/{id}/cancel", Scope::kAdmin, kSmallBody,
             bind(&UserApi::CancelJob));
  router.Add("POST", "/api/v1/jobs/{id}/preempt", Scope::kAdmin, kSmallBody,
             bind(&UserApi::PreemptJob));
  router.Add("POST", "/api/v1/jobs/{id}/priority", Scope::kAdmin, kSmallBody,
             bind(&UserApi::SetPriority));
  router.Add("GET", "/api/v1/agents", Scope::kRead, kSmallBody, bind(&UserApi::ListAgents));
  router.Add("POST", "/api/v1/agents/credentials", Scope::kAdmin, kSmallBody,
             bind(&UserApi::IssueCredential));
  router.Add("DELETE", "/api/v1/agents/credentials/{host}", Scope::kAdmin, kSmallBody,
             bind(&UserApi::RevokeCredential));
  router.Add("GET", "/api/v1/cluster/utilisation", Scope::kRead, kSmallBody,
             bind(&UserApi::Utilisation));
  router.Add("GET", "/api/v1/study/{sweep}", Scope::kRead, kSmallBody, bind(&UserApi::Study));
  router.Add("GET", "/api/v1/study/{sweep}/rows", Scope::kRead, kSmallBody,
             bind(&UserApi::StudyRows));
  router.Add("GET", "/api/v1/export", Scope::kRead, kSmallBody,
             [this](const HttpRequest& request, Respond respond) {
               auto fits = request.query.find("fits");
               if (fits != request.query.end() && fits->second == "1") {
                 ExportFits(request, std::move(respond));
               } else {
                 respond(Export(request));
               }
             });
  router.Add("GET", "/api/v1/throughput", Scope::kRead, kSmallBody, bind(&UserApi::Throughput));
  router.Add("POST", "/api/v1/throughput", Scope::kAdmin, kLargeBody,
             bind(&UserApi::ImportThroughput));
  router.Add("GET", "/api/v1/study/{sweep}/fits", Scope::kRead, kSmallBody,
             [this](const HttpRequest& request, Respond respond) {
               StudyFits(request, std::move(respond));
             });
  router.Add("GET", "/api/v1/sweeps/{name}/timeline", Scope::kRead, kSmallBody,
             bind(&UserApi::Timeline));
}

void UserApi::SampleUtilisation() {
  int busy = 0, total = 0;
  for (const auto& [id, agent] : core_.scheduler().AgentViews()) {
    if (!agent.alive) continue;
    total += agent.spec.slots;
    busy += agent.spec.slots - agent.free_slots;
  }
  double now = core_.clock().WallSeconds();
  if (!utilisation_.empty()) {
    const UtilisationSample& last = utilisation_.back();
    if (last.busy == busy && last.total == total) return;
    if (now - last.time < 1.0) {
      utilisation_.back() = {last.time, busy, total};
      return;
    }
  }
  utilisation_.push_back({now, busy, total});
  if (utilisation_.size() > 86400) utilisation_.pop_front();
}

HttpResponse UserApi::ApplyAndShow(const std::string& job_id,
                                   Expected<std::vector<Action>> actions) {
  if (!actions.ok()) return StatusResponse(actions.status());
  Status applied = core_.Apply(*actions);
  if (!applied.ok()) return StatusResponse(applied);
  Expected<JobRecord> after = core_.store().GetJob(job_id);
  return after.ok() ? JobResponse(*after) : StatusResponse(after.status());
}

HttpResponse UserApi::JobResponse(const JobRecord& job) {
  Expected<protocol::JobDetail> detail = DetailOf(core_.store(), job);
  if (!detail.ok()) return StatusResponse(detail.status());
  return JsonResponse(200, detail->ToJson());
}

// ---------------------------------------------------------------------------------------------
// Reading

HttpResponse UserApi::Health(const HttpRequest&) {
  Expected<int> version = core_.store().SchemaVersion();
  if (!version.ok()) return StatusResponse(version.status());
  return JsonResponse(200, Json{{"ok", true}, {"version", "1"}, {"schema_version", *version}});
}

HttpResponse UserApi::ListSweeps(const HttpRequest&) {
  Expected<std::vector<storage::SweepSummary>> sweeps = core_.store().SweepSummaries();
  if (!sweeps.ok()) return StatusResponse(sweeps.status());
  protocol::SweepList list;
  for (const auto& sweep : *sweeps) list.sweeps.push_back(SweepViewOf(sweep));
  return JsonResponse(200, list.ToJson());
}

HttpResponse UserApi::GetSweep(const HttpRequest& request) {
  const std::string& name = request.params.at("name");
  Expected<storage::SweepRecord> record = core_.store().GetSweep(name);
  if (!record.ok()) return StatusResponse(record.status());
  Expected<std::vector<storage::SweepSummary>> sweeps = core_.store().SweepSummaries(record->id);
  if (!sweeps.ok()) return StatusResponse(sweeps.status());
  if (sweeps->empty()) return ErrorResponse(404, "unknown sweep '" + name + "'");
  protocol::SweepView view = SweepViewOf(sweeps->front());
  view.definition = record->definition;
  return JsonResponse(200, view.ToJson());
}

HttpResponse UserApi::ListJobs(const HttpRequest& request) {
  storage::JobFilter filter;
  if (auto it = request.query.find("sweep"); it != request.query.end()) filter.sweep = it->second;
  if (auto it = request.query.find("model"); it != request.query.end()) filter.model = it->second;
  if (auto it = request.query.find("state"); it != request.query.end()) {
    // Several states come comma-separated: state=pending,running.
    std::stringstream states(it->second);
    std::string name;
    while (std::getline(states, name, ',')) {
      Expected<JobState> state = storage::ParseJobState(name);
      if (!state.ok()) return StatusResponse(state.status());
      if (filter.states.size() >= 16) return ErrorResponse(400, "state lists at most 16 states");
      if (std::find(filter.states.begin(), filter.states.end(), *state) == filter.states.end()) {
        filter.states.push_back(*state);
      }
    }
  }
  if (request.query.count("offset")) {
    return ErrorResponse(400,
                         "offset paging was replaced by cursors: ask for page=first or "
                         "page=last, then pass the page's next or prev as after= or before=");
  }
  Expected<int64_t> subset = QueryInt(request, "subset", -1, 0, int64_t{1} << 62);
  Expected<int64_t> limit = QueryInt(request, "limit", 50, 1, kMaxPageSize);
  for (const auto* value : {&subset, &limit}) {
    if (!value->ok()) return StatusResponse(value->status());
  }
  if (*subset >= 0) filter.subset_size = *subset;
  if (auto it = request.query.find("sort"); it != request.query.end()) {
    Expected<storage::JobSort> sort = storage::ParseJobSort(it->second);
    if (!sort.ok()) return StatusResponse(sort.status());
    filter.sort = *sort;
  }
  if (auto it = request.query.find("order"); it != request.query.end()) {
    if (it->second != "asc" && it->second != "desc") {
      return ErrorResponse(400, "order must be 'asc' or 'desc', not '" + Printable(it->second, 40) + "'");
    }
    filter.descending = it->second == "desc";
  }

  storage::JobPageRequest wanted;
  wanted.filter = filter;
  wanted.limit = *limit;
  auto page_it = request.query.find("page");
  auto after = request.query.find("after");
  auto before = request.query.find("before");
  int starts = (page_it != request.query.end()) + (after != request.query.end()) +
               (before != request.query.end());
  if (starts > 1) return ErrorResponse(400, "give at most one of page, after and before");
  if (page_it != request.query.end()) {
    if (page_it->second != "first" && page_it->second != "last") {
      return ErrorResponse(400, "page must be 'first' or 'last', not '" +
                                    Printable(page_it->second, 40) + "'");
    }
    wanted.from = page_it->second == "last" ? storage::PageFrom::kLast : storage::PageFrom::kFirst;
  }
  for (auto [it, from] : {std::pair{after, storage::PageFrom::kAfter},
                          std::pair{before, storage::PageFrom::kBefore}}) {
    if (it == request.query.end()) continue;
    Expected<storage::JobPosition> position = storage::DecodeJobCursor(filter, it->second);
    if (!position.ok()) return StatusResponse(position.status());
    wanted.from = from;
    wanted.position = *position;
  }

  Expected<storage::JobCount> total = core_.store().CountJobs(filter);
  if (!total.ok()) return StatusResponse(total.status());
  Expected<storage::JobPage> jobs = core_.store().ListJobPage(wanted);
  if (!jobs.ok()) return StatusResponse(jobs.status());
  protocol::JobPage page;
  page.total = total->jobs;
  page.total_exact = total->exact;
  page.limit = *limit;
  for (const JobRecord& job : jobs->jobs) page.jobs.push_back(SummaryOf(job));
  if (jobs->after) page.next = storage::EncodeJobCursor(filter, *jobs->after);
  if (jobs->before) page.prev = storage::EncodeJobCursor(filter, *jobs->before);
  return JsonResponse(200, page.ToJson());
}

HttpResponse UserApi::GetJob(const HttpRequest& request) {
  Expected<JobRecord> job = core_.FindJob(request.params.at("id"));
  if (!job.ok()) return StatusResponse(job.status());
  return JobResponse(*job);
}

HttpResponse UserApi::JobMetrics(const HttpRequest& request) {
  Expected<JobRecord> job = core_.FindJob(request.params.at("id"));
  if (!job.ok()) return StatusResponse(job.status());
  Expected<int64_t> after = QueryInt(request, "after_step", -1, -1, protocol::kMaxStep);
  Expected<int64_t> limit = QueryInt(request, "limit", 5000, 1, 100000);
  if (!after.ok()) return StatusResponse(after.status());
  if (!limit.ok()) return StatusResponse(limit.status());
  Expected<std::vector<storage::MetricPoint>> points = core_.store().ReadMetrics(job->id, *after);
  if (!points.ok()) return StatusResponse(points.status());
  auto name = request.query.find("name");
  Json out = Json::array();
  for (const auto& p : *points) {
    if (name != request.query.end() && p.name != name->second) continue;
    if (static_cast<int64_t>(out.size()) >= *limit) break;
    out.push_back({{"step", p.step},
                   {"name", p.name},
                   {"value", std::isnan(p.value) ? Json(nullptr) : Json(p.value)},
                   {"time", IsoTime(p.time)}});
  }
  return JsonResponse(200, Json{{"points", out}});
}

HttpResponse UserApi::JobLogs(const HttpRequest& request) {
  Expected<JobRecord> job = core_.FindJob(request.params.at("id"));
  if (!job.ok()) return StatusResponse(job.status());
  // The query is checked before anything is looked up, so bad input is a 400 in every state.
  Expected<int64_t> attempt = QueryInt(request, "attempt", 0, 0, protocol::kMaxAttempt);
  Expected<int64_t> tail = QueryInt(request, "tail_bytes", 65536, 1, 16 << 20);
  if (!attempt.ok()) return StatusResponse(attempt.status());
  if (!tail.ok()) return StatusResponse(tail.status());
  if (job->attempts == 0) return ErrorResponse(404, "job " + job->id + " has not run yet");
  if (*attempt == 0) *attempt = job->attempts;
  if (*attempt > job->attempts) {
    return ErrorResponse(404, fmt::format("job {} has no attempt {}", job->id, *attempt));
  }
  // The path is built from the job id (validated hex from the database) and a number only, so a
  // request cannot name a file outside the runs folder.
  std::string path = core_.AttemptLogPath(job->id, static_cast<int>(*attempt));
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return ErrorResponse(404, fmt::format("no log for attempt {} yet", *attempt));
  std::streamoff size = in.tellg();
  std::streamoff start = std::max<std::streamoff>(0, size - *tail);
  in.seekg(start);
  std::string text(static_cast<size_t>(std::max<std::streamoff>(0, size - start)), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  HttpResponse response;
  response.content_type = "text/plain; charset=utf-8";
  response.body = std::move(text);
  return response;
}

HttpResponse UserApi::ListAgents(const HttpRequest&) {
  Json agents = Json::array();
  for (const std::string& id : core_.agent_ids()) {
    if (std::optional<AgentView> agent = core_.scheduler().GetAgent(id)) {
      agents.push_back(AgentInfoOf(*agent, core_.scheduler(), core_.clock()).ToJson());
    }
  }
  return JsonResponse(200, Json{{"agents", agents}});
}

HttpResponse UserApi::Utilisation(const HttpRequest& request) {
  Expected<double> since = QueryTime(request, "since", 0);
  if (!since.ok()) return StatusResponse(since.status());
  Json samples = Json::array();
  for (const auto& s : utilisation_) {
    if (s.time < *since) continue;
    samples.push_back({{"time", IsoTime(s.time)}, {"busy_slots", s.busy}, {"total_slots", s.total}});
  }
  return JsonResponse(200, Json{{"samples", samples}});
}

namespace {

constexpr int64_t kStudyPageSize = 100;

// page=first|last, after=CURSOR or before=CURSOR (at most one), limit=1..500.
Expected<storage::ResultsPageRequest> StudyPageRequest(const HttpRequest& request) {
  storage::ResultsPageRequest wanted;
  ASSIGN_OR_RETURN(wanted.limit, QueryInt(request, "limit", kStudyPageSize, 1, kMaxPageSize));
  auto page = request.query.find("page");
  auto after = request.query.find("after");
  auto before = request.query.find("before");
  int starts = (page != request.query.end()) + (after != request.query.end()) +
               (before != request.query.end());
  if (starts > 1) return InvalidArgument("give at most one of page, after and before");
  if (page != request.query.end()) {
    if (page->second != "first" && page->second != "last") {
      return InvalidArgument("page must be 'first' or 'last', not '" +
                             Printable(page->second, 40) + "'");
    }
    wanted.from = page->second == "last" ? storage::PageFrom::kLast : storage::PageFrom::kFirst;
  } else if (after != request.query.end()) {
    wanted.from = storage::PageFrom::kAfter;
    wanted.cursor = after->second;
  } else if (before != request.query.end()) {
    wanted.from = storage::PageFrom::kBefore;
    wanted.cursor = before->second;
  }
  return wanted;
}

}  // namespace

HttpResponse UserApi::Study(const HttpRequest& request) {
  const std::string& sweep = request.params.at("sweep");
  Expected<storage::ResultsPageRequest> wanted = StudyPageRequest(request);
  if (!wanted.ok()) return StatusResponse(wanted.status());
  // The summary is of the whole sweep; the rows sent are one page.
  Expected<protocol::Json> summary_json = StudySummary(sweep);
  if (!summary_json.ok()) return StatusResponse(summary_json.status());
  Expected<storage::ResultsTablePage> page =
      storage::BuildResultsTablePage(core_.store(), sweep, *wanted);
  if (!page.ok()) return StatusResponse(page.status());
  std::string summary = protocol::Dump(*summary_json);
  HttpResponse response;
  response.body = summary.substr(0, summary.size() - 1) + ",";  // the summary's fields, then
  AppendStudyPage(response.body, *page, wanted->limit);          // the page's
  response.body += '}';
  return response;
}

Expected<protocol::Json> UserApi::StudySummary(const std::string& sweep) {
  storage::Store& store = core_.store();
  ASSIGN_OR_RETURN(storage::SweepMark mark, store.ReadSweepMark(sweep));
  auto kept = summaries_.find(sweep);
  bool current = false;
  if (kept != summaries_.end()) {
    ASSIGN_OR_RETURN(current, Unchanged(kept->second.mark, mark));
  }
  if (!current) {
    // One read of the sweep's whole table (O(sweep)); after the mark, so that a write between
    // the two only makes the next request read it again.
    ASSIGN_OR_RETURN(storage::ResultsTable table, storage::BuildResultsTable(store, sweep));
    constexpr size_t kMaxKeptSummaries = 16;  // a few studies open at once; any one may go
    if (summaries_.size() >= kMaxKeptSummaries && kept == summaries_.end()) {
      summaries_.erase(summaries_.begin());
    }
    kept = summaries_.insert_or_assign(sweep, KeptSummary{mark, StudySummaryOf(table)}).first;
  }
  // Leases, starts, failures and cancels move the state counts but not the mark: those are
  // the sweep's counters, read now.
  protocol::Json summary = kept->second.summary;
  ASSIGN_OR_RETURN(std::vector<storage::SweepSummary> counted, store.SweepSummaries(mark.sweep_id));
  summary["jobs"] = counted.empty() ? 0 : counted.front().jobs;
  summary["by_state"] = counted.empty() ? std::map<std::string, int64_t>{}
                                        : counted.front().jobs_by_state;
  return summary;
}

HttpResponse UserApi::StudyRows(const HttpRequest& request) {
  Expected<storage::ResultsPageRequest> wanted = StudyPageRequest(request);
  if (!wanted.ok()) return StatusResponse(wanted.status());
  Expected<storage::ResultsTablePage> page =
      storage::BuildResultsTablePage(core_.store(), request.params.at("sweep"), *wanted);
  if (!page.ok()) return StatusResponse(page.status());
  HttpResponse response;
  response.body = "{";
  AppendStudyPage(response.body, *page, wanted->limit);
  response.body += '}';
  return response;
}

HttpResponse UserApi::Export(const HttpRequest& request) {
  auto sweep = request.query.find("sweep");
  if (sweep == request.query.end()) return ErrorResponse(400, "query parameter 'sweep' is missing");
  auto format_name = request.query.find("format");
  Expected<storage::TableFormat> format = storage::ParseTableFormat(
      format_name == request.query.end() ? "csv" : format_name->second);
  if (!format.ok()) return StatusResponse(format.status());
  Expected<storage::ResultsTable> table = storage::BuildResultsTable(core_.store(), sweep->second);
  if (!table.ok()) return StatusResponse(table.status());
  HttpResponse response;
  response.content_type = *format == storage::TableFormat::kCsv ? "text/csv; charset=utf-8"
                                                                : "text/plain; charset=utf-8";
  response.body = storage::FormatResultsTable(*table, *format);
  return response;
}

void UserApi::ExportFits(const HttpRequest& request, Respond respond) {
  auto sweep = request.query.find("sweep");
  if (sweep == request.query.end()) {
    return respond(ErrorResponse(400, "query parameter 'sweep' is missing"));
  }
  auto format_name = request.query.find("format");
  Expected<storage::TableFormat> format = storage::ParseTableFormat(
      format_name == request.query.end() ? "csv" : format_name->second);
  if (!format.ok()) return respond(StatusResponse(format.status()));
  auto column = request.query.find("column");
  WithFits(sweep->second, column == request.query.end() ? "average" : column->second,
           [respond, format = *format](Expected<planning::StudyFits> fits) {
             if (!fits.ok()) return respond(StatusResponse(fits.status()));
             HttpResponse response;
             response.content_type = format == storage::TableFormat::kCsv
                                         ? "text/csv; charset=utf-8"
                                         : "text/plain; charset=utf-8";
             response.body = planning::FormatFits(*fits, format);
             respond(std::move(response));
           });
}

// ---------------------------------------------------------------------------------------------
// Planning

namespace {

Expected<std::vector<planning::ThroughputEntry>> ThroughputEntries(storage::Store& store) {
  ASSIGN_OR_RETURN(std::vector<storage::ThroughputSample> samples, store.ThroughputSamples());
  ASSIGN_OR_RETURN(std::vector<storage::ThroughputImport> imports, store.ListThroughputImports());
  return planning::BuildThroughputTable(samples, imports);
}

// The largest sweep whose timeline is drawn: its attempts are read job by job.
constexpr size_t kMaxTimelineJobs = 5000;

}  // namespace

HttpResponse UserApi::Throughput(const HttpRequest&) {
  Expected<std::vector<planning::ThroughputEntry>> entries = ThroughputEntries(core_.store());
  if (!entries.ok()) return StatusResponse(entries.status());
  Json rows = Json::array();
  for (const auto& e : *entries) rows.push_back(planning::ToJson(e));
  return JsonResponse(200, Json{{"rows", rows}});
}

HttpResponse UserApi::ImportThroughput(const HttpRequest& request) {
  auto source = request.query.find("source");
  std::string name = source == request.query.end() ? "import" : Printable(source->second, 200);
  Expected<std::vector<storage::ThroughputImport>> rows =
      planning::ParseThroughputImport(request.body, name);
  if (!rows.ok()) return StatusResponse(rows.status());
  Status imported = core_.store().ImportThroughput(*rows);
  if (!imported.ok()) return StatusResponse(imported);
  return JsonResponse(200, Json{{"imported", rows->size()}});
}

Expected<bool> UserApi::Unchanged(storage::SweepMark& seen, const storage::SweepMark& now) {
  if (seen == now) return true;
  ASSIGN_OR_RETURN(bool changed, core_.store().SweepChangedSince(seen, now));
  if (!changed) seen = now;
  return !changed;
}

void UserApi::WithFits(const std::string& sweep, const std::string& column, FitsDone done) {
  // Whether kept fits are current is told by the sweep's mark (storage/store.h): a few index
  // probes, and a look at only what was written since, instead of reading the table again.
  storage::Store& store = core_.store();
  Expected<storage::SweepMark> mark = store.ReadSweepMark(sweep);
  if (!mark.ok()) return done(mark.status());
  FitsKey key{sweep, column};
  if (auto it = fits_.find(key); it != fits_.end()) {
    Expected<bool> current = Unchanged(it->second.mark, *mark);
    if (!current.ok()) return done(current.status());
    if (*current) return done(it->second.fits);
  }
  if (auto it = fitting_.find(key); it != fitting_.end()) {
    Expected<bool> current = Unchanged(it->second.mark, *mark);
    if (!current.ok()) return done(current.status());
    if (*current) {
      it->second.waiting.push_back(std::move(done));
      return;
    }
  }
  constexpr size_t kMaxFitsUnderWay = 4;  // each holds a study's table until its turn
  if (fitting_.size() >= kMaxFitsUnderWay && fitting_.find(key) == fitting_.end()) {
    return done(Unavailable(fmt::format(
        "the coordinator is making the fits of {} other studies; try again in a minute",
        fitting_.size())));
  }
  // What the fit needs is read here, on the io thread, which owns the store connection; after
  // the mark, so that a write between the two only makes the next check fit again.
  Expected<storage::ResultsTable> table = storage::BuildResultsTable(store, sweep);
  if (!table.ok()) return done(table.status());
  // Fits under way for an older table are superseded: the requests waiting for them are
  // answered with these.
  const int64_t number = ++fits_made_;
  FitsUnderWay& under_way = fitting_[key];
  under_way.mark = *mark;
  under_way.number = number;
  under_way.waiting.push_back(std::move(done));
  auto input = std::make_shared<storage::ResultsTable>(std::move(*table));
  boost::asio::post(fitter_, [this, alive = std::weak_ptr<char>(alive_), &io = core_.io(), key,
                              number, made_from = *mark, input] {
    auto fits = std::make_shared<Expected<planning::StudyFits>>(
        planning::FitStudy(*input, key.second));
    boost::asio::post(io, [this, alive, key, number, made_from, fits] {
      if (!alive.lock()) return;
      auto under_way = fitting_.find(key);
      std::vector<FitsDone> waiting;
      storage::SweepMark mark = made_from;
      if (under_way != fitting_.end() && under_way->second.number == number) {
        waiting = std::move(under_way->second.waiting);
        mark = under_way->second.mark;  // moved on by checks that found nothing new
        fitting_.erase(under_way);
      }
      if (fits->ok()) {
        constexpr size_t kMaxCachedFits = 16;  // a few studies' columns; any one may go
        if (fits_.size() >= kMaxCachedFits && fits_.find(key) == fits_.end()) {
          fits_.erase(fits_.begin());
        }
        fits_[key] = {mark, **fits};
      }
      for (FitsDone& waiter : waiting) waiter(*fits);
    });
  });
}

void UserApi::StudyFits(const HttpRequest& request, Respond respond) {
  auto column = request.query.find("column");
  WithFits(request.params.at("sweep"), column == request.query.end() ? "average" : column->second,
           [respond](Expected<planning::StudyFits> fits) {
             if (!fits.ok()) return respond(StatusResponse(fits.status()));
             respond(JsonResponse(200, planning::ToJson(*fits)));
           });
}

HttpResponse UserApi::Timeline(const HttpRequest& request) {
  const std::string& name = request.params.at("name");
  Expected<storage::SweepRecord> record = core_.store().GetSweep(name);
  if (!record.ok()) return StatusResponse(record.status());
  storage::JobFilter filter;
  filter.sweep = name;
  Expected<std::vector<JobRecord>> jobs = core_.store().ListJobs(filter);
  if (!jobs.ok()) return StatusResponse(jobs.status());
  if (jobs->size() > kMaxTimelineJobs) {
    return ErrorResponse(413, fmt::format("sweep {} has {} jobs; timelines are drawn for at most {}",
                                          name, jobs->size(), kMaxTimelineJobs));
  }
  // The real schedule: every attempt, in seconds from the first one's start.
  std::vector<std::pair<const JobRecord*, storage::AttemptRecord>> all;
  double origin = 0;
  for (const JobRecord& job : *jobs) {
    Expected<std::vector<storage::AttemptRecord>> list = core_.store().ListAttempts(job.id);
    if (!list.ok()) return StatusResponse(list.status());
    for (storage::AttemptRecord& a : *list) {
      origin = all.empty() ? a.started_at : std::min(origin, a.started_at);
      all.emplace_back(&job, std::move(a));
    }
  }
  bool any = !all.empty();
  double now = core_.clock().WallSeconds();
  Json attempts = Json::array();
  for (const auto& [job, a] : all) {
    attempts.push_back({{"job", job->id},
                        {"model", job->model},
                        {"number", a.number},
                        {"hosts", a.hosts},
                        {"start", a.started_at - origin},
                        {"end", a.ended_at.value_or(now) - origin},
                        {"outcome", a.outcome ? storage::AttemptOutcomeName(*a.outcome)
                                              : std::string("running")}});
  }
  Json real = {{"origin", any ? Json(IsoTime(origin)) : Json(nullptr)}, {"attempts", attempts}};

  // The plan: the same sweep simulated on `hosts`, or on the agents registered now.
  Expected<std::vector<planning::ThroughputEntry>> entries = ThroughputEntries(core_.store());
  if (!entries.ok()) return StatusResponse(entries.status());
  std::string spec;
  if (auto hosts = request.query.find("hosts"); hosts != request.query.end()) {
    // A spec from the query is parsed, never opened as a file; a bad one is the caller's to fix.
    Expected<planning::Cluster> parsed = planning::ParseHostSpec(hosts->second);
    if (!parsed.ok()) return StatusResponse(parsed.status());
    spec = hosts->second;
  } else {
    // Agents do not say which GPU they hold: the GPU kind measured most often stands in.
    std::map<std::string, int> gpu_kinds;
    std::string gpu_kind = "gpu";
    for (const planning::ThroughputEntry& e : *entries) {
      if (!planning::SameKind(e.device_kind, "cpu") &&
          ++gpu_kinds[e.device_kind] > gpu_kinds[gpu_kind]) {
        gpu_kind = e.device_kind;
      }
    }
    std::map<std::pair<int, int>, int> shapes;  // (slots, gpus) -> live agents
    for (const std::string& id : core_.agent_ids()) {
      std::optional<AgentView> agent = core_.scheduler().GetAgent(id);
      if (agent && agent->alive && agent->spec.slots > 0) {
        ++shapes[{agent->spec.slots, agent->spec.gpus}];
      }
    }
    for (const auto& [shape, count] : shapes) {
      spec += fmt::format("{}{}x{}:{}", spec.empty() ? "" : ",", count,
                          shape.second > 0 ? shape.second : shape.first,
                          shape.second > 0 ? gpu_kind : "cpu");
    }
  }
  Json simulated;
  Expected<planning::SimulationResult> plan = [&]() -> Expected<planning::SimulationResult> {
    if (spec.empty()) return FailedPrecondition("no agent is registered to simulate the sweep on");
    ASSIGN_OR_RETURN(planning::Cluster cluster, planning::ParseHostSpec(spec));
    ASSIGN_OR_RETURN(sweep::Sweep parsed, sweep::ParseSweep(record->definition, name));
    ASSIGN_OR_RETURN(std::vector<sweep::Job> expanded, sweep::ExpandSweep(parsed));
    planning::ThroughputTable table(*entries);
    planning::SimulationOptions options;
    options.max_retries = core_.options().max_retries;
    options.scheduler = core_.options().scheduler;
    return planning::Simulate(planning::PlannedJobs(expanded), cluster, table, options);
  }();
  if (plan.ok()) {
    simulated = planning::ToJson(*plan, /*with_attempts=*/true);
  } else {
    simulated = Json{{"error", plan.status().message()}};
  }
  return JsonResponse(200, Json{{"sweep", name}, {"hosts", spec}, {"real", real},
                                {"simulated", simulated}});
}

// ---------------------------------------------------------------------------------------------
// Changing

HttpResponse UserApi::SubmitSweep(const HttpRequest& request) {
  auto file = request.query.find("file");
  std::string name = file == request.query.end() ? "sweep.yaml" : Printable(file->second, 200);
  if (!IsValidUtf8(request.body)) {
    return ErrorResponse(400, name + ": the sweep is not valid UTF-8 text");
  }
  Expected<sweep::Sweep> parsed = sweep::ParseSweep(request.body, name);
  if (!parsed.ok()) return StatusResponse(parsed.status());
  // The name becomes a URL segment (/sweeps/{name}) and a database key.
  Status named = protocol::CheckText(name + ": name", parsed->name, protocol::kNameRule);
  if (!named.ok()) return StatusResponse(named);
  Expected<std::vector<sweep::Job>> expanded = sweep::ExpandSweep(*parsed);
  if (!expanded.ok()) return StatusResponse(expanded.status());
  std::vector<JobRecord> records = ToJobRecords(*expanded, core_.options().max_retries);
  Status fits = CheckGpusOffered(records);
  if (!fits.ok()) return StatusResponse(fits);
  Expected<storage::AddSweepOutcome> outcome =
      core_.store().AddSweep(parsed->name, request.body, records);
  if (!outcome.ok()) return StatusResponse(outcome.status());
  // New jobs, and known ones still waiting, join the queue (a known finished job never reruns).
  protocol::SubmitReply reply;
  reply.sweep = parsed->name;
  reply.jobs_added = outcome->added;
  reply.jobs_known = outcome->already_known;
  // The new jobs as the store wrote them; only known jobs are read back below (a new one is
  // in the scheduler by then).
  for (const JobRecord& job : outcome->added_jobs) {
    Status added = core_.scheduler().AddJob(ToJobSpec(job));
    if (!added.ok()) return StatusResponse(added);
  }
  std::vector<JobRecord> requeued;  // known jobs still waiting
  for (const JobRecord& record : records) {
    if (core_.scheduler().GetJob(record.id)) continue;
    Expected<JobRecord> stored = core_.store().GetJob(record.id);
    if (!stored.ok()) return StatusResponse(stored.status());
    if (stored->state != JobState::kPending) continue;
    Status added = core_.scheduler().AddJob(ToJobSpec(*stored));
    if (!added.ok()) return StatusResponse(added);
    requeued.push_back(std::move(*stored));
  }
  // Place new work now rather than at the next tick, and before the announcements and the
  // answer: the agents' launches go out first, so their jobs start while the rest of a large
  // submission's answer is made. A lease is not announced (its job row stays pending until the
  // state write, docs/scheduling.md), so each job's first event is still its own below.
  core_.Tick();
  for (const JobRecord& job : outcome->added_jobs) core_.AnnounceJob(job);
  for (const JobRecord& job : requeued) core_.AnnounceJob(job);
  core_.events().Append("sweep", "", Json{{"name", parsed->name}});
  for (const JobRecord& record : records) reply.jobs.push_back(record.id);
  return JsonResponse(200, reply.ToJson());
}

Status UserApi::CheckGpusOffered(const std::vector<JobRecord>& jobs) {
  // The rule (docs/gpu.md): a GPU job must fit the GPUs of its kind that the registered hosts
  // offer together (a gang may span hosts), as the store last heard from each. A job that does
  // not is refused whole, with the numbers, before anything is stored: more hosts must register
  // first. One that fits waits for free GPUs like any job.
  const JobRecord* worst = nullptr;
  int64_t worst_offered = 0;
  std::vector<storage::AgentRecord> agents;
  bool listed_agents = false;
  for (const JobRecord& job : jobs) {
    if (job.gpus_per_rank <= 0) continue;
    if (!listed_agents) {
      ASSIGN_OR_RETURN(agents, core_.store().ListAgents());
      listed_agents = true;
    }
    int64_t offered = 0;
    for (const storage::AgentRecord& agent : agents) {
      if (job.gpu_kind.empty() || agent.gpu_kind == job.gpu_kind) offered += agent.gpus;
    }
    int64_t needed = int64_t{job.ranks} * job.gpus_per_rank;
    if (needed > offered &&
        (worst == nullptr || needed > int64_t{worst->ranks} * worst->gpus_per_rank)) {
      worst = &job;
      worst_offered = offered;
    }
  }
  if (worst == nullptr) return Status::Ok();
  std::string hosts;
  int listed = 0;
  for (const storage::AgentRecord& agent : agents) {
    if (agent.gpus == 0) continue;
    if (++listed > 8) {
      hosts += ", ...";
      break;
    }
    hosts += fmt::format("{}{} {} x {}", hosts.empty() ? "" : ", ", agent.id, agent.gpus,
                         agent.gpu_kind);
  }
  std::string kind = worst->gpu_kind.empty() ? "GPUs" : "GPUs of kind '" + worst->gpu_kind + "'";
  return InvalidArgument(fmt::format(
      "job {} ({}) asks for {} {} ({} ranks x gpus_per_rank {}), but the registered hosts offer "
      "{} in all{}; start the agents of more GPU hosts first, or lower resources.ranks",
      worst->id.substr(0, 12), worst->model, int64_t{worst->ranks} * worst->gpus_per_rank, kind,
      worst->ranks, worst->gpus_per_rank, worst_offered,
      hosts.empty() ? " (no host offers GPUs)" : " (" + hosts + ")"));
}

HttpResponse UserApi::CancelJob(const HttpRequest& request) {
  Expected<JobRecord> job = core_.FindJob(request.params.at("id"));
  if (!job.ok()) return StatusResponse(job.status());
  if (!core_.scheduler().GetJob(job->id)) {
    return ErrorResponse(409, fmt::format("job {} is already {}", job->id,
                                          storage::JobStateName(job->state)));
  }
  return ApplyAndShow(job->id, core_.scheduler().Cancel(job->id));
}

HttpResponse UserApi::PreemptJob(const HttpRequest& request) {
  Expected<JobRecord> job = core_.FindJob(request.params.at("id"));
  if (!job.ok()) return StatusResponse(job.status());
  return ApplyAndShow(job->id, core_.scheduler().Preempt(job->id));
}

HttpResponse UserApi::SetPriority(const HttpRequest& request) {
  Expected<JobRecord> job = core_.FindJob(request.params.at("id"));
  if (!job.ok()) return StatusResponse(job.status());
  Expected<protocol::PriorityRequest> wanted = protocol::Decode<protocol::PriorityRequest>(request.body);
  if (!wanted.ok()) return StatusResponse(wanted.status());
  // Every check comes before the first write: a refused change leaves no trace.
  if (IsFinal(job->state)) {
    return ErrorResponse(409, fmt::format("job {} is {}; its priority no longer matters", job->id,
                                          storage::JobStateName(job->state)));
  }
  std::optional<JobView> view = core_.scheduler().GetJob(job->id);
  if (view) {
    Status changed = core_.scheduler().SetPriority(job->id, wanted->priority);
    if (!changed.ok()) return StatusResponse(changed);
  }
  Status stored = core_.store().SetJobPriority(job->id, wanted->priority);
  if (!stored.ok()) {
    if (view) {
      Status undone = core_.scheduler().SetPriority(job->id, view->spec.priority);
      (void)undone;  // it was accepted a moment ago with the same state
    }
    return StatusResponse(stored);
  }
  Expected<JobRecord> after = core_.store().GetJob(job->id);
  if (!after.ok()) return StatusResponse(after.status());
  core_.AnnounceJob(*after);
  core_.Tick();
  return JobResponse(*after);
}

HttpResponse UserApi::IssueCredential(const HttpRequest& request) {
  Expected<protocol::CredentialRequest> wanted =
      protocol::Decode<protocol::CredentialRequest>(request.body);
  if (!wanted.ok()) return StatusResponse(wanted.status());
  Expected<std::string> token = credentials_.Issue(wanted->host);
  if (!token.ok()) return StatusResponse(token.status());
  return JsonResponse(200, protocol::CredentialReply{wanted->host, *token}.ToJson());
}

HttpResponse UserApi::RevokeCredential(const HttpRequest& request) {
  const std::string& host = request.params.at("host");
  Status checked = protocol::CheckText("host", host, protocol::kHostRule);
  if (!checked.ok()) return StatusResponse(checked);
  Status revoked = credentials_.Revoke(host);
  if (!revoked.ok()) return StatusResponse(revoked);
  return JsonResponse(200, Json{{"host", host}, {"revoked", true}});
}

}  // namespace vitscale::coordinator
