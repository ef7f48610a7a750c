#include "coordinator/coordinator.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "coordinator/json_util.h"
#include "storage/results_table.h"
#include "sweep/sweep.h"

namespace vitscale::coordinator {

using nlohmann::json;
using storage::JobRecord;

namespace {

constexpr int kMaxPageSize = 500;

JobSpec ToJobSpec(const JobRecord& job) {
  JobSpec spec;
  spec.id = job.id;
  spec.priority = job.priority;
  spec.submit_order = job.submit_order;
  spec.ranks = job.ranks;
  spec.gpus_per_rank = job.gpus_per_rank;
  spec.multi_host = true;  // one host is preferred; spanning hosts is allowed when needed
  spec.retries_left = job.retries_left;
  return spec;
}

// "h1:2,h2:2" (agent ids are host names) → placements, leader first.
std::vector<Placement> ParseHosts(const std::string& hosts, int gpus_per_rank) {
  std::vector<Placement> placements;
  std::stringstream in(hosts);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t colon = item.rfind(':');
    if (colon == std::string::npos) continue;
    Placement p;
    p.agent_id = p.host = item.substr(0, colon);
    p.ranks = std::atoi(item.c_str() + colon + 1);
    p.gpus = p.ranks * gpus_per_rank;
    placements.push_back(p);
  }
  return placements;
}

std::string HostsString(const std::vector<Placement>& placements) {
  std::string hosts;
  for (const Placement& p : placements) {
    if (!hosts.empty()) hosts += ",";
    hosts += fmt::format("{}:{}", p.host, p.ranks);
  }
  return hosts;
}

storage::AttemptOutcome OutcomeFor(Reason reason) {
  switch (reason) {
    case Reason::kSucceeded: return storage::AttemptOutcome::kSucceeded;
    case Reason::kPreempted: return storage::AttemptOutcome::kPreempted;
    case Reason::kLeaseLost: return storage::AttemptOutcome::kLost;
    case Reason::kCancelled: return storage::AttemptOutcome::kCancelled;
    default: return storage::AttemptOutcome::kFailed;
  }
}

bool EndsAttempt(Reason reason) {
  switch (reason) {
    case Reason::kSucceeded:
    case Reason::kRetry:
    case Reason::kFailed:
    case Reason::kConfigError:
    case Reason::kPreempted:
    case Reason::kLeaseLost:
    case Reason::kCancelled:
      return true;
    default:
      return false;
  }
}

Expected<int64_t> QueryInt(const HttpRequest& request, const std::string& name, int64_t fallback) {
  auto it = request.query.find(name);
  if (it == request.query.end() || it->second.empty()) return fallback;
  try {
    size_t used = 0;
    int64_t value = std::stoll(it->second, &used);
    if (used == it->second.size()) return value;
  } catch (const std::exception&) {
  }
  return InvalidArgument("query parameter '" + name + "' must be an integer, not '" + it->second +
                         "'");
}

bool IsHexId(const std::string& text) {
  return !text.empty() && text.size() <= 64 &&
         std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

}  // namespace

Coordinator::Coordinator(boost::asio::io_context& io, storage::Store& store, Scheduler& scheduler,
                         const Clock& clock, CoordinatorOptions options)
    : io_(io),
      store_(store),
      scheduler_(scheduler),
      clock_(clock),
      options_(std::move(options)),
      events_(100000, nullptr),
      tick_timer_(io) {}

Coordinator::~Coordinator() { Stop(); }

void Coordinator::SetPublisher(std::function<void(const std::string&)> publish) {
  events_ = EventLog(100000, std::move(publish));
}

Status Coordinator::Restore() {
  ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, store_.ListJobs(storage::JobFilter{}));
  for (const JobRecord& job : jobs) {
    switch (job.state) {
      case JobState::kPending:
        RETURN_IF_ERROR(scheduler_.AddJob(ToJobSpec(job)));
        break;
      case JobState::kLeased:
      case JobState::kRunning:
      case JobState::kPreempted: {
        Expected<storage::AttemptRecord> attempt = OpenAttempt(job.id);
        std::vector<Placement> placements;
        if (attempt.ok()) placements = ParseHosts(attempt->hosts, job.gpus_per_rank);
        if (placements.empty()) {
          // Killed between persisting the lease and recording its attempt: nothing was
          // launched, so the job simply waits again.
          RETURN_IF_ERROR(store_.SetJobState(job.id, JobState::kPending, job.state));
          RETURN_IF_ERROR(scheduler_.AddJob(ToJobSpec(job)));
          break;
        }
        RETURN_IF_ERROR(scheduler_.RestoreJob(ToJobSpec(job), job.state, placements));
        break;
      }
      default:
        break;  // finished jobs need no scheduling
    }
  }
  ASSIGN_OR_RETURN(std::vector<storage::AgentRecord> agents, store_.ListAgents());
  for (const storage::AgentRecord& agent : agents) agent_ids_.push_back(agent.id);
  return Status::Ok();
}

void Coordinator::AddRoutes(Router& router) {
  auto bind = [this](HttpResponse (Coordinator::*method)(const HttpRequest&)) {
    return Immediate([this, method](const HttpRequest& request) { return (this->*method)(request); });
  };
  router.Add("GET", "/api/v1/health", Access::kRead, bind(&Coordinator::Health));
  router.Add("GET", "/api/v1/sweeps", Access::kRead, bind(&Coordinator::ListSweeps));
  router.Add("POST", "/api/v1/sweeps", Access::kMutate, bind(&Coordinator::SubmitSweep));
  router.Add("GET", "/api/v1/sweeps/{name}", Access::kRead, bind(&Coordinator::GetSweep));
  router.Add("GET", "/api/v1/jobs", Access::kRead, bind(&Coordinator::ListJobs));
  router.Add("GET", "/api/v1/jobs/{id}", Access::kRead, bind(&Coordinator::GetJob));
  router.Add("GET", "/api/v1/jobs/{id}/metrics", Access::kRead, bind(&Coordinator::JobMetrics));
  router.Add("GET", "/api/v1/jobs/{id}/logs", Access::kRead, bind(&Coordinator::JobLogs));
  router.Add("POST", "/api/v1/jobs/{id}/cancel", Access::kMutate, bind(&Coordinator::CancelJob));
  router.Add("POST", "/api/v1/jobs/{id}/preempt", Access::kMutate, bind(&Coordinator::PreemptJob));
  router.Add("POST", "/api/v1/jobs/{id}/priority", Access::kMutate, bind(&Coordinator::SetPriority));
  router.Add("GET", "/api/v1/agents", Access::kRead, bind(&Coordinator::ListAgents));
  router.Add("GET", "/api/v1/cluster/utilisation", Access::kRead, bind(&Coordinator::Utilisation));
  router.Add("GET", "/api/v1/study/{sweep}", Access::kRead, bind(&Coordinator::Study));
  router.Add("GET", "/api/v1/export", Access::kRead, bind(&Coordinator::Export));
  router.Add("POST", "/api/v1/agents/register", Access::kMutate, bind(&Coordinator::RegisterAgent));
  router.Add("POST", "/api/v1/agents/{agent}/poll", Access::kMutate,
             [this](const HttpRequest& request, Respond respond) { Poll(request, std::move(respond)); });
  router.Add("POST", "/api/v1/jobs/{id}/attempts/{n}/metrics", Access::kMutate,
             bind(&Coordinator::PostMetrics));
  router.Add("POST", "/api/v1/jobs/{id}/attempts/{n}/results", Access::kMutate,
             bind(&Coordinator::PostResults));
  router.Add("POST", "/api/v1/jobs/{id}/attempts/{n}/checkpoints", Access::kMutate,
             bind(&Coordinator::PostCheckpoint));
  router.Add("POST", "/api/v1/jobs/{id}/attempts/{n}/exit", Access::kMutate,
             bind(&Coordinator::PostExit));
}

void Coordinator::Start() {
  stopped_ = false;
  Tick();
}

void Coordinator::Stop() {
  stopped_ = true;
  tick_timer_.cancel();
  for (auto& [agent, poll] : waiting_) poll.timer->cancel();
}

// ---------------------------------------------------------------------------------------------
// Scheduling

void Coordinator::Tick() {
  if (stopped_) return;
  Status status = Apply(scheduler_.Schedule());
  if (!status.ok()) std::fprintf(stderr, "coordinator: %s\n", status.ToString().c_str());
  SampleUtilisation();
  tick_timer_.expires_after(options_.tick);
  tick_timer_.async_wait([this](const boost::system::error_code& error) {
    if (!error) Tick();
  });
}

std::string Coordinator::RunDir(const std::string& job_id) const {
  return (std::filesystem::path(options_.runs_dir) / job_id).string();
}

std::string Coordinator::AttemptLogPath(const std::string& job_id, int attempt) const {
  return fmt::format("{}/attempt-{}.log", RunDir(job_id), attempt);
}

Status Coordinator::Apply(const std::vector<Action>& actions, std::optional<int> exit_status) {
  if (actions.empty()) return Status::Ok();  // no empty transaction on every tick
  // One transaction for the whole batch: a scheduling pass that leases 32 jobs is one fsync,
  // not 64. A write that fails is undone alone (a savepoint); the others still commit.
  Status first_error;
  std::vector<AgentCommand> commands;
  Status committed = store_.Atomically([&] {
    first_error = Persist(actions, exit_status, &commands);
    return Status::Ok();
  });
  // Only now may an agent hear of the new attempts: a launch sent before the commit, or after a
  // failed one, could run an attempt the database does not have. Such a lease simply runs out.
  // Signals and kills concern attempts already recorded, so they go out in any case.
  for (AgentCommand& command : commands) {
    if (command.command.launch && !committed.ok()) continue;
    commands_[command.agent_id].push_back(std::move(command.command));
  }
  for (const AgentCommand& command : commands) FlushPoll(command.agent_id);
  return first_error.ok() ? committed : first_error;
}

Status Coordinator::Persist(const std::vector<Action>& actions, std::optional<int> exit_status,
                            std::vector<AgentCommand>* commands) {
  Status first_error;
  auto note = [&first_error](Status status) {
    if (!status.ok() && first_error.ok()) first_error = status;
  };
  for (const Action& action : actions) {
    if (const auto* t = std::get_if<Transition>(&action)) {
      note(store_.SetJobState(t->job_id, t->to, t->from));
      if (EndsAttempt(t->reason)) {
        if (auto attempt = OpenAttempt(t->job_id); attempt.ok()) {
          note(store_.EndAttempt(t->job_id, attempt->number, OutcomeFor(t->reason), exit_status));
        }
      }
      if (auto job = store_.GetJob(t->job_id); job.ok()) {
        if (auto row = JobJson(*job); row.ok()) events_.Append("job", t->job_id, *row);
      }
    } else if (const auto* launch = std::get_if<Launch>(&action)) {
      Expected<JobRecord> job = store_.GetJob(launch->job_id);
      if (!job.ok()) {
        note(job.status());
        continue;
      }
      std::optional<int64_t> resumed_from;
      if (auto checkpoints = store_.ListCheckpoints(job->id); checkpoints.ok() &&
                                                              !checkpoints->empty()) {
        resumed_from = checkpoints->back().step;
      }
      Expected<int> attempt = store_.AddAttempt(job->id, launch->placements.front().agent_id,
                                                HostsString(launch->placements), resumed_from);
      if (!attempt.ok()) {
        note(attempt.status());
        continue;
      }
      json spec = LaunchSpec(*job, *attempt);
      for (size_t i = 0; i < launch->placements.size(); ++i) {
        json entry = {{"job", job->id}, {"attempt", *attempt}};
        if (i == 0) {
          entry["ranks"] = job->ranks;
          entry["hosts"] = HostsString(launch->placements);
          entry["grace_seconds"] = options_.grace_seconds;
          entry["log"] = AttemptLogPath(job->id, *attempt);
          entry["spec"] = spec;
        } else {
          entry["hold"] = true;  // a gang member: keep the slots and heartbeat the job
        }
        commands->push_back({launch->placements[i].agent_id, Command{entry, true}});
      }
    } else if (const auto* signal = std::get_if<Signal>(&action)) {
      int attempt = 0;
      if (auto open = OpenAttempt(signal->job_id); open.ok()) attempt = open->number;
      int grace = static_cast<int>(
          std::chrono::duration_cast<std::chrono::seconds>(signal->grace).count());
      commands->push_back({signal->agent_id, Command{{{"job", signal->job_id},
                                                      {"attempt", attempt},
                                                      {"action", "preempt"},
                                                      {"grace_seconds", grace}},
                                                     false}});
    } else if (const auto* kill = std::get_if<Kill>(&action)) {
      for (const std::string& agent : kill->agent_ids) {
        commands->push_back({agent, Command{{{"job", kill->job_id}, {"action", "kill"}}, false}});
      }
    }
  }
  return first_error;
}

void Coordinator::FlushPoll(const std::string& agent_id) {
  auto waiting = waiting_.find(agent_id);
  if (waiting == waiting_.end() || !commands_.count(agent_id)) return;
  json launch = json::array(), signal = json::array();
  for (Command& command : commands_[agent_id]) {
    (command.launch ? launch : signal).push_back(std::move(command.body));
  }
  commands_.erase(agent_id);
  Respond respond = std::move(waiting->second.respond);
  waiting->second.timer->cancel();
  waiting_.erase(waiting);
  respond(JsonResponse(200, json{{"launch", launch},
                                 {"signal", signal},
                                 {"lease_seconds", options_.lease.count()}}
                                .dump()));
}

void Coordinator::SampleUtilisation() {
  int busy = 0, total = 0;
  for (const std::string& id : agent_ids_) {
    std::optional<AgentView> agent = scheduler_.GetAgent(id);
    if (!agent || !agent->alive) continue;
    total += agent->spec.slots;
    busy += agent->spec.slots - agent->free_slots;
  }
  double now = WallNow();
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

// ---------------------------------------------------------------------------------------------
// Lookups

Expected<JobRecord> Coordinator::FindJob(const std::string& id_or_prefix) {
  if (!IsHexId(id_or_prefix)) {
    return NotFound("'" + id_or_prefix + "' is not a job id (64 hex digits, or a prefix of 8+)");
  }
  if (id_or_prefix.size() == 64) return store_.GetJob(id_or_prefix);
  if (id_or_prefix.size() < 8) {
    return InvalidArgument("job id prefix '" + id_or_prefix + "' is too short: give 8+ hex digits");
  }
  return store_.GetJobByPrefix(id_or_prefix);
}

Expected<storage::AttemptRecord> Coordinator::OpenAttempt(const std::string& job_id) {
  ASSIGN_OR_RETURN(std::vector<storage::AttemptRecord> attempts, store_.ListAttempts(job_id));
  for (auto it = attempts.rbegin(); it != attempts.rend(); ++it) {
    if (!it->ended_at) return *it;
  }
  return NotFound("job " + job_id + " has no attempt in progress");
}

Expected<nlohmann::json> Coordinator::JobJson(const JobRecord& job) {
  ASSIGN_OR_RETURN(std::vector<storage::AttemptRecord> attempts, store_.ListAttempts(job.id));
  ASSIGN_OR_RETURN(std::optional<double> images_seen, store_.LatestMetric(job.id, "images_seen"));
  double planned_images = job.epochs * static_cast<double>(job.subset_size);
  double seen = images_seen.value_or(0);
  if (job.state == JobState::kSucceeded) seen = std::max(seen, planned_images);
  return json{{"id", job.id},
              {"model", job.model},
              {"family", job.family},
              {"dataset", job.dataset},
              {"subset_size", job.subset_size},
              {"epochs", job.epochs},
              {"state", storage::JobStateName(job.state)},
              {"priority", job.priority},
              {"ranks", job.ranks},
              {"attempts", attempts.size()},
              {"planned_exaflops", job.planned_train_flops / 1e18},
              {"images_seen", seen},
              {"progress", planned_images > 0 ? std::min(1.0, seen / planned_images) : 0.0},
              {"created_at", IsoTime(job.submitted_at)},
              {"updated_at", IsoTime(job.updated_at)}};
}

nlohmann::json Coordinator::AgentJson(const AgentView& agent) const {
  json jobs = json::array();
  // Jobs are few per agent; the scheduler's views say which ones it holds.
  for (const std::string& id : scheduler_.JobsOnAgent(agent.spec.id)) jobs.push_back(id);
  auto since_heartbeat = std::chrono::duration<double>(clock_.Now() - agent.last_heartbeat).count();
  return json{{"id", agent.spec.id},
              {"host", agent.spec.host},
              {"slots", agent.spec.slots},
              {"gpus", agent.spec.gpus},
              {"free_slots", agent.free_slots},
              {"last_heartbeat", IsoTime(WallNow() - since_heartbeat)},
              {"alive", agent.alive},
              {"jobs", jobs}};
}

nlohmann::json Coordinator::LaunchSpec(const JobRecord& job, int attempt) const {
  // docs/train-spec.md: "job" is the canonical config (what is computed), "run" how this attempt
  // runs. Every attempt of a job shares its directory, so a resumed attempt finds the
  // checkpoints of the one before.
  json config = json::parse(job.config_json, nullptr, /*allow_exceptions=*/false);
  return json{{"job", config},
              {"run",
               {{"dir", RunDir(job.id)},
                {"grace_seconds", options_.grace_seconds},
                {"checkpoint_every_steps", options_.checkpoint_every_steps},
                {"report_url", options_.public_url},
                {"report_token", options_.token},
                {"attempt", attempt}}}};
}

Expected<std::pair<JobRecord, int>> Coordinator::AttemptFromPath(const HttpRequest& request) {
  ASSIGN_OR_RETURN(JobRecord job, FindJob(request.params.at("id")));
  const std::string& n = request.params.at("n");
  if (n.empty() || n.size() > 6 || !std::all_of(n.begin(), n.end(), ::isdigit)) {
    return InvalidArgument("attempt number '" + n + "' must be a positive integer");
  }
  int number = std::stoi(n);
  ASSIGN_OR_RETURN(std::vector<storage::AttemptRecord> attempts, store_.ListAttempts(job.id));
  bool known = std::any_of(attempts.begin(), attempts.end(),
                           [number](const storage::AttemptRecord& a) { return a.number == number; });
  if (!known) return NotFound(fmt::format("job {} has no attempt {}", job.id, number));
  return std::make_pair(job, number);
}

// ---------------------------------------------------------------------------------------------
// Reading

HttpResponse Coordinator::Health(const HttpRequest&) {
  Expected<int> version = store_.SchemaVersion();
  if (!version.ok()) return StatusResponse(version.status());
  return JsonResponse(200, json{{"ok", true}, {"version", "1"}, {"schema_version", *version}}.dump());
}

namespace {

json SweepJson(const storage::SweepSummary& sweep) {
  json by_state = json::object();
  for (const auto& [state, count] : sweep.jobs_by_state) by_state[state] = count;
  return json{{"name", sweep.name},
              {"created_at", IsoTime(sweep.created_at)},
              {"jobs", sweep.jobs},
              {"by_state", by_state},
              {"planned_exaflops", sweep.planned_train_flops / 1e18},
              {"spent_exaflops", sweep.spent_train_flops / 1e18}};
}

}  // namespace

HttpResponse Coordinator::ListSweeps(const HttpRequest&) {
  Expected<std::vector<storage::SweepSummary>> sweeps = store_.SweepSummaries();
  if (!sweeps.ok()) return StatusResponse(sweeps.status());
  json list = json::array();
  for (const auto& sweep : *sweeps) list.push_back(SweepJson(sweep));
  return JsonResponse(200, json{{"sweeps", list}}.dump());
}

HttpResponse Coordinator::GetSweep(const HttpRequest& request) {
  const std::string& name = request.params.at("name");
  Expected<storage::SweepRecord> record = store_.GetSweep(name);
  if (!record.ok()) return StatusResponse(record.status());
  Expected<std::vector<storage::SweepSummary>> sweeps = store_.SweepSummaries();
  if (!sweeps.ok()) return StatusResponse(sweeps.status());
  for (const auto& sweep : *sweeps) {
    if (sweep.name != name) continue;
    json body = SweepJson(sweep);
    body["definition"] = record->definition;
    return JsonResponse(200, body.dump());
  }
  return ErrorResponse(404, "unknown sweep '" + name + "'");
}

HttpResponse Coordinator::ListJobs(const HttpRequest& request) {
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
      filter.states.push_back(*state);
    }
  }
  Expected<int64_t> subset = QueryInt(request, "subset", -1);
  Expected<int64_t> limit = QueryInt(request, "limit", 50);
  Expected<int64_t> offset = QueryInt(request, "offset", 0);
  for (const auto* value : {&subset, &limit, &offset}) {
    if (!value->ok()) return StatusResponse(value->status());
  }
  if (*subset >= 0) filter.subset_size = *subset;
  if (*limit < 1 || *limit > kMaxPageSize) {
    return ErrorResponse(400, fmt::format("limit must be within 1..{}", kMaxPageSize));
  }
  if (*offset < 0) return ErrorResponse(400, "offset must be >= 0");
  if (auto it = request.query.find("sort"); it != request.query.end()) {
    Expected<storage::JobSort> sort = storage::ParseJobSort(it->second);
    if (!sort.ok()) return StatusResponse(sort.status());
    filter.sort = *sort;
  }
  if (auto it = request.query.find("order"); it != request.query.end()) {
    if (it->second != "asc" && it->second != "desc") {
      return ErrorResponse(400, "order must be 'asc' or 'desc', not '" + it->second + "'");
    }
    filter.descending = it->second == "desc";
  }
  Expected<int64_t> total = store_.CountJobs(filter);
  if (!total.ok()) return StatusResponse(total.status());
  filter.limit = *limit;
  filter.offset = *offset;
  Expected<std::vector<JobRecord>> jobs = store_.ListJobs(filter);
  if (!jobs.ok()) return StatusResponse(jobs.status());
  json rows = json::array();
  for (const JobRecord& job : *jobs) {
    Expected<json> row = JobJson(job);
    if (!row.ok()) return StatusResponse(row.status());
    rows.push_back(std::move(*row));
  }
  return JsonResponse(
      200, json{{"total", *total}, {"offset", *offset}, {"limit", *limit}, {"jobs", rows}}.dump());
}

HttpResponse Coordinator::GetJob(const HttpRequest& request) {
  Expected<JobRecord> job = FindJob(request.params.at("id"));
  if (!job.ok()) return StatusResponse(job.status());
  Expected<json> body = JobJson(*job);
  auto attempts = store_.ListAttempts(job->id);
  auto checkpoints = store_.ListCheckpoints(job->id);
  auto results = store_.ListResults(job->id);
  auto ledger = store_.ListLedger(job->id);
  auto sweeps = store_.JobSweeps(job->id);
  for (const Status* status : {&body.status(), &attempts.status(), &checkpoints.status(),
                               &results.status(), &ledger.status(), &sweeps.status()}) {
    if (!status->ok()) return StatusResponse(*status);
  }
  json& out = *body;
  out["config"] = json::parse(job->config_json, nullptr, /*allow_exceptions=*/false);
  out["sweeps"] = *sweeps;
  out["attempts"] = json::array();
  for (const auto& a : *attempts) {
    json row = {{"number", a.number},
                {"agent", a.agent_id ? json(*a.agent_id) : json(nullptr)},
                {"hosts", a.hosts},
                {"started_at", IsoTime(a.started_at)},
                {"ended_at", a.ended_at ? json(IsoTime(*a.ended_at)) : json(nullptr)},
                {"outcome", a.outcome ? json(storage::AttemptOutcomeName(*a.outcome)) : json(nullptr)},
                {"exit_status", a.exit_status ? json(*a.exit_status) : json(nullptr)},
                {"resumed_from_step",
                 a.resumed_from_step ? json(*a.resumed_from_step) : json(nullptr)}};
    out["attempts"].push_back(row);
  }
  out["checkpoints"] = json::array();
  for (const auto& c : *checkpoints) {
    out["checkpoints"].push_back({{"step", c.step},
                                  {"path", c.path},
                                  {"sha256", c.sha256},
                                  {"created_at", IsoTime(c.created_at)}});
  }
  out["results"] = json::array();
  for (const auto& r : *results) {
    out["results"].push_back({{"evaluation", storage::EvaluationName(r.evaluation)},
                              {"dataset", r.dataset},
                              {"shots", r.shots ? json(*r.shots) : json(nullptr)},
                              {"seed", r.seed ? json(*r.seed) : json(nullptr)},
                              {"metric", r.metric},
                              {"value", r.value}});
  }
  json device_seconds = json::object();
  double train = 0, eval = 0, wall = 0;
  int64_t images = 0;
  for (const auto& entry : *ledger) {
    train += entry.train_flops;
    eval += entry.eval_flops;
    wall += entry.wall_seconds;
    images += entry.images_seen;
    device_seconds[entry.device_kind] = device_seconds.value(entry.device_kind, 0.0) +
                                        entry.device_seconds;
  }
  out["ledger"] = {{"train_flops", train},
                   {"eval_flops", eval},
                   {"images_seen", images},
                   {"device_seconds", device_seconds},
                   {"wall_seconds", wall}};
  return JsonResponse(200, out.dump());
}

HttpResponse Coordinator::JobMetrics(const HttpRequest& request) {
  Expected<JobRecord> job = FindJob(request.params.at("id"));
  if (!job.ok()) return StatusResponse(job.status());
  Expected<int64_t> after = QueryInt(request, "after_step", -1);
  Expected<int64_t> limit = QueryInt(request, "limit", 5000);
  if (!after.ok()) return StatusResponse(after.status());
  if (!limit.ok()) return StatusResponse(limit.status());
  if (*limit < 1 || *limit > 100000) return ErrorResponse(400, "limit must be within 1..100000");
  Expected<std::vector<storage::MetricPoint>> points = store_.ReadMetrics(job->id, *after);
  if (!points.ok()) return StatusResponse(points.status());
  auto name = request.query.find("name");
  json out = json::array();
  for (const auto& p : *points) {
    if (name != request.query.end() && p.name != name->second) continue;
    if (static_cast<int64_t>(out.size()) >= *limit) break;
    out.push_back({{"step", p.step}, {"name", p.name}, {"value", p.value}, {"time", IsoTime(p.time)}});
  }
  return JsonResponse(200, json{{"points", out}}.dump());
}

HttpResponse Coordinator::JobLogs(const HttpRequest& request) {
  Expected<JobRecord> job = FindJob(request.params.at("id"));
  if (!job.ok()) return StatusResponse(job.status());
  // The query is checked before anything is looked up, so bad input is a 400 in every state.
  Expected<int64_t> attempt = QueryInt(request, "attempt", 0);
  Expected<int64_t> tail = QueryInt(request, "tail_bytes", 65536);
  if (!attempt.ok()) return StatusResponse(attempt.status());
  if (!tail.ok()) return StatusResponse(tail.status());
  if (*attempt < 0) return ErrorResponse(400, "attempt must be a positive attempt number");
  if (*tail < 1 || *tail > (16 << 20)) return ErrorResponse(400, "tail_bytes must be within 1..16777216");
  Expected<std::vector<storage::AttemptRecord>> attempts = store_.ListAttempts(job->id);
  if (!attempts.ok()) return StatusResponse(attempts.status());
  if (attempts->empty()) return ErrorResponse(404, "job " + job->id + " has not run yet");
  if (*attempt == 0) *attempt = attempts->back().number;
  if (*attempt > attempts->back().number) {
    return ErrorResponse(404, fmt::format("job {} has no attempt {}", job->id, *attempt));
  }
  // The path is built from the job id (validated hex from the database) and a number only, so a
  // request cannot name a file outside the runs folder.
  std::string path = AttemptLogPath(job->id, *attempt);
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return ErrorResponse(404, fmt::format("no log for attempt {} yet", *attempt));
  std::streamoff size = in.tellg();
  std::streamoff start = std::max<std::streamoff>(0, size - *tail);
  in.seekg(start);
  std::string text(static_cast<size_t>(size - start), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  HttpResponse response;
  response.content_type = "text/plain; charset=utf-8";
  response.body = std::move(text);
  return response;
}

HttpResponse Coordinator::ListAgents(const HttpRequest&) {
  json agents = json::array();
  for (const std::string& id : agent_ids_) {
    if (std::optional<AgentView> agent = scheduler_.GetAgent(id)) agents.push_back(AgentJson(*agent));
  }
  return JsonResponse(200, json{{"agents", agents}}.dump());
}

HttpResponse Coordinator::Utilisation(const HttpRequest& request) {
  double since = 0;
  if (auto it = request.query.find("since"); it != request.query.end()) {
    try {
      since = std::stod(it->second);
    } catch (const std::exception&) {
      return ErrorResponse(400, "since must be seconds since the Unix epoch");
    }
  }
  json samples = json::array();
  for (const auto& s : utilisation_) {
    if (s.time < since) continue;
    samples.push_back({{"time", IsoTime(s.time)}, {"busy_slots", s.busy}, {"total_slots", s.total}});
  }
  return JsonResponse(200, json{{"samples", samples}}.dump());
}

HttpResponse Coordinator::Study(const HttpRequest& request) {
  Expected<storage::ResultsTable> table = storage::BuildResultsTable(store_, request.params.at("sweep"));
  if (!table.ok()) return StatusResponse(table.status());
  json columns = json::array();
  for (const auto& column : table->columns) columns.push_back(column.Title());
  json rows = json::array();
  for (const auto& row : table->rows) {
    Expected<JobRecord> job = store_.GetJob(row.job_id);
    if (!job.ok()) return StatusResponse(job.status());
    json results = json::object();
    for (size_t i = 0; i < table->columns.size(); ++i) {
      if (row.transfer[i]) results[table->columns[i].Title()] = *row.transfer[i] / 100.0;
    }
    rows.push_back({{"job", row.job_id},
                    {"model", row.model},
                    {"family", job->family},
                    {"epochs", row.epochs},
                    {"dataset", row.dataset},
                    {"subset_size", row.examples},
                    {"state", storage::JobStateName(row.state)},
                    {"exaflops", row.exaflops},
                    {"planned", row.compute_planned},
                    {"device_hours", row.device_hours ? json(*row.device_hours) : json(nullptr)},
                    {"results", results},
                    {"average", row.average ? json(*row.average / 100.0) : json(nullptr)}});
  }
  return JsonResponse(200, json{{"columns", columns}, {"rows", rows}}.dump());
}

HttpResponse Coordinator::Export(const HttpRequest& request) {
  auto sweep = request.query.find("sweep");
  if (sweep == request.query.end()) return ErrorResponse(400, "query parameter 'sweep' is missing");
  auto format_name = request.query.find("format");
  Expected<storage::TableFormat> format = storage::ParseTableFormat(
      format_name == request.query.end() ? "csv" : format_name->second);
  if (!format.ok()) return StatusResponse(format.status());
  Expected<storage::ResultsTable> table = storage::BuildResultsTable(store_, sweep->second);
  if (!table.ok()) return StatusResponse(table.status());
  HttpResponse response;
  response.content_type = *format == storage::TableFormat::kCsv ? "text/csv; charset=utf-8"
                                                                : "text/plain; charset=utf-8";
  response.body = storage::FormatResultsTable(*table, *format);
  return response;
}

// ---------------------------------------------------------------------------------------------
// Changing

HttpResponse Coordinator::SubmitSweep(const HttpRequest& request) {
  auto file = request.query.find("file");
  std::string name = file == request.query.end() ? "sweep.yaml" : file->second;
  Expected<sweep::Sweep> parsed = sweep::ParseSweep(request.body, name);
  if (!parsed.ok()) return StatusResponse(parsed.status());
  Expected<std::vector<sweep::Job>> expanded = sweep::ExpandSweep(*parsed);
  if (!expanded.ok()) return StatusResponse(expanded.status());
  std::vector<JobRecord> records;
  records.reserve(expanded->size());
  for (const sweep::Job& job : *expanded) {
    JobRecord record;
    record.id = job.id;
    record.model = job.config.model;
    record.family = job.family;
    record.dataset = job.config.dataset;
    record.subset_size = job.config.subset;
    record.epochs = job.config.train.epochs;
    record.config_json = job.canonical.dump();
    record.planned_train_flops = job.train_flops;
    record.priority = static_cast<int>(job.priority);
    record.ranks = static_cast<int>(job.resources.ranks);
    record.gpus_per_rank = static_cast<int>(job.resources.gpus_per_rank);
    record.retries_left = options_.max_retries;
    records.push_back(std::move(record));
  }
  Expected<storage::AddSweepOutcome> outcome = store_.AddSweep(parsed->name, request.body, records);
  if (!outcome.ok()) return StatusResponse(outcome.status());
  // New jobs, and known ones still waiting, join the queue (a known finished job never reruns).
  json ids = json::array();
  for (const JobRecord& record : records) {
    ids.push_back(record.id);
    if (scheduler_.GetJob(record.id)) continue;
    Expected<JobRecord> stored = store_.GetJob(record.id);
    if (!stored.ok()) return StatusResponse(stored.status());
    if (stored->state != JobState::kPending) continue;
    Status added = scheduler_.AddJob(ToJobSpec(*stored));
    if (!added.ok()) return StatusResponse(added);
    if (auto row = JobJson(*stored); row.ok()) events_.Append("job", stored->id, *row);
  }
  events_.Append("sweep", "", json{{"name", parsed->name}});
  Tick();  // place new work now rather than at the next tick
  return JsonResponse(200, json{{"sweep", parsed->name},
                                {"jobs_added", outcome->added},
                                {"jobs_known", outcome->already_known},
                                {"jobs", ids}}
                               .dump());
}

HttpResponse Coordinator::CancelJob(const HttpRequest& request) {
  Expected<JobRecord> job = FindJob(request.params.at("id"));
  if (!job.ok()) return StatusResponse(job.status());
  if (!scheduler_.GetJob(job->id)) {
    return ErrorResponse(409, fmt::format("job {} is already {}", job->id,
                                          storage::JobStateName(job->state)));
  }
  Expected<std::vector<Action>> actions = scheduler_.Cancel(job->id);
  if (!actions.ok()) return StatusResponse(actions.status());
  Status applied = Apply(*actions);
  if (!applied.ok()) return StatusResponse(applied);
  return GetJob(request);
}

HttpResponse Coordinator::PreemptJob(const HttpRequest& request) {
  Expected<JobRecord> job = FindJob(request.params.at("id"));
  if (!job.ok()) return StatusResponse(job.status());
  Expected<std::vector<Action>> actions = scheduler_.Preempt(job->id);
  if (!actions.ok()) return StatusResponse(actions.status());
  Status applied = Apply(*actions);
  if (!applied.ok()) return StatusResponse(applied);
  return GetJob(request);
}

HttpResponse Coordinator::SetPriority(const HttpRequest& request) {
  Expected<JobRecord> job = FindJob(request.params.at("id"));
  if (!job.ok()) return StatusResponse(job.status());
  Expected<json> body = ParseJsonObject(request.body);
  if (!body.ok()) return StatusResponse(body.status());
  Expected<int64_t> priority = IntField(*body, "priority");
  if (!priority.ok()) return StatusResponse(priority.status());
  if (*priority < -1000000 || *priority > 1000000) {
    return ErrorResponse(400, "priority must be within -1000000..1000000");
  }
  Status stored = store_.SetJobPriority(job->id, static_cast<int>(*priority));
  if (!stored.ok()) return StatusResponse(stored);
  if (scheduler_.GetJob(job->id)) {
    Status status = scheduler_.SetPriority(job->id, static_cast<int>(*priority));
    if (!status.ok()) return StatusResponse(status);
  }
  if (auto updated = store_.GetJob(job->id); updated.ok()) {
    if (auto row = JobJson(*updated); row.ok()) events_.Append("job", job->id, *row);
  }
  Tick();
  return GetJob(request);
}

namespace {

struct RunningEntry {
  std::string job;
  int attempt = 0;
};

Expected<std::vector<RunningEntry>> ParseRunning(const json& body) {
  std::vector<RunningEntry> running;
  auto it = body.find("running");
  if (it == body.end()) return running;
  if (!it->is_array()) return InvalidArgument("field 'running' must be an array");
  for (const json& entry : *it) {
    if (!entry.is_object()) return InvalidArgument("entries of 'running' must be objects");
    ASSIGN_OR_RETURN(std::string job, StringField(entry, "job"));
    ASSIGN_OR_RETURN(int64_t attempt, IntField(entry, "attempt"));
    running.push_back({job, static_cast<int>(attempt)});
  }
  return running;
}

}  // namespace

HttpResponse Coordinator::RegisterAgent(const HttpRequest& request) {
  Expected<json> body = ParseJsonObject(request.body);
  if (!body.ok()) return StatusResponse(body.status());
  Expected<std::string> host = StringField(*body, "host");
  Expected<int64_t> slots = IntField(*body, "slots");
  Expected<int64_t> gpus = IntField(*body, "gpus");
  Expected<std::vector<RunningEntry>> running = ParseRunning(*body);
  for (const Status* status : {&host.status(), &slots.status(), &gpus.status(), &running.status()}) {
    if (!status->ok()) return StatusResponse(*status);
  }
  if (host->empty() || host->find_first_of(":, /") != std::string::npos) {
    return ErrorResponse(400, "field 'host' must be a host name without ':', ',', '/' or spaces");
  }
  if (*slots < 0 || *slots > 4096 || *gpus < 0 || *gpus > 4096) {
    return ErrorResponse(400, "fields 'slots' and 'gpus' must be within 0..4096");
  }
  AgentSpec spec{*host, *host, static_cast<int>(*slots), static_cast<int>(*gpus)};
  Status registered = scheduler_.RegisterAgent(spec);
  if (!registered.ok()) return StatusResponse(registered);
  Status stored = store_.UpsertAgent({spec.id, spec.host, spec.slots, spec.gpus, 0});
  if (!stored.ok()) return StatusResponse(stored);
  agent_stored_at_[spec.id] = clock_.Now();  // the next poll need not store it again
  if (std::find(agent_ids_.begin(), agent_ids_.end(), spec.id) == agent_ids_.end()) {
    agent_ids_.push_back(spec.id);
  }
  // What the agent still runs from before: the jobs it holds keep their leases; any other is no
  // longer its own (the lease ran out and the job moved on), so it must stop it.
  std::vector<std::string> held;
  json not_held = json::array();
  for (const RunningEntry& entry : *running) {
    std::optional<JobView> view = scheduler_.GetJob(entry.job);
    bool holds = view && std::any_of(view->holders.begin(), view->holders.end(),
                                     [&](const Holder& h) { return h.placement.agent_id == spec.id; });
    if (holds) {
      held.push_back(entry.job);
    } else {
      not_held.push_back({{"job", entry.job}, {"attempt", entry.attempt}});
    }
  }
  Status beat = scheduler_.Heartbeat(spec.id, held);
  if (!beat.ok()) return StatusResponse(beat);
  if (auto view = scheduler_.GetAgent(spec.id)) events_.Append("agent", "", AgentJson(*view));
  Tick();
  return JsonResponse(200, json{{"agent", spec.id},
                                {"lease_seconds", options_.lease.count()},
                                {"not_held", not_held}}
                               .dump());
}

void Coordinator::Poll(const HttpRequest& request, Respond respond) {
  const std::string& agent_id = request.params.at("agent");
  Expected<json> body = ParseJsonObject(request.body);
  if (!body.ok()) return respond(StatusResponse(body.status()));
  Expected<std::vector<RunningEntry>> running = ParseRunning(*body);
  if (!running.ok()) return respond(StatusResponse(running.status()));
  if (!scheduler_.GetAgent(agent_id)) {
    return respond(ErrorResponse(404, "agent '" + agent_id + "' is not registered: register first"));
  }
  // A heartbeat for a lease the agent does not hold changes nothing and says which ones.
  std::vector<std::string> job_ids;
  json not_held = json::array();
  for (const RunningEntry& entry : *running) {
    std::optional<JobView> view = scheduler_.GetJob(entry.job);
    bool holds = view && std::any_of(view->holders.begin(), view->holders.end(),
                                     [&](const Holder& h) { return h.placement.agent_id == agent_id; });
    if (!holds) not_held.push_back({{"job", entry.job}, {"attempt", entry.attempt}});
    job_ids.push_back(entry.job);
  }
  if (!not_held.empty()) {
    return respond(JsonResponse(
        409, json{{"error", "agent '" + agent_id + "' does not hold the leases of the listed jobs; "
                            "stop them and poll again without them"},
                  {"not_held", not_held}}
                 .dump()));
  }
  Status beat = scheduler_.Heartbeat(agent_id, job_ids);
  if (!beat.ok()) return respond(StatusResponse(beat));
  std::vector<Action> started;  // one transaction for every job this poll shows running
  for (const std::string& id : job_ids) {
    std::optional<JobView> view = scheduler_.GetJob(id);
    if (view && view->state == JobState::kLeased &&
        view->holders.front().placement.agent_id == agent_id) {
      if (auto actions = scheduler_.ReportStarted(agent_id, id); actions.ok()) {
        started.insert(started.end(), actions->begin(), actions->end());
      }
    }
  }
  Status applied = Apply(started);
  if (!applied.ok()) std::fprintf(stderr, "coordinator: %s\n", applied.ToString().c_str());
  // The live heartbeat is the scheduler's; the database keeps a record of it for people and
  // restarts, refreshed at most every few seconds so that polls do not each cost a commit.
  auto& stored_at = agent_stored_at_[agent_id];
  if (clock_.Now() - stored_at >= std::chrono::seconds(5)) {
    if (auto view = scheduler_.GetAgent(agent_id)) {
      Status stored =
          store_.UpsertAgent({agent_id, view->spec.host, view->spec.slots, view->spec.gpus, 0});
      if (!stored.ok()) return respond(StatusResponse(stored));
      stored_at = clock_.Now();
    }
  }
  // One open poll per agent: an older one (a retry after a timeout) is answered empty.
  if (auto old = waiting_.find(agent_id); old != waiting_.end()) {
    old->second.timer->cancel();
    Respond previous = std::move(old->second.respond);
    waiting_.erase(old);
    previous(JsonResponse(200, json{{"launch", json::array()}, {"signal", json::array()},
                                    {"lease_seconds", options_.lease.count()}}.dump()));
  }
  auto timer = std::make_unique<boost::asio::steady_timer>(io_, options_.poll_timeout);
  timer->async_wait([this, agent_id](const boost::system::error_code& error) {
    if (error) return;
    auto it = waiting_.find(agent_id);
    if (it == waiting_.end()) return;
    Respond late = std::move(it->second.respond);
    waiting_.erase(it);
    late(JsonResponse(200, json{{"launch", json::array()}, {"signal", json::array()},
                                {"lease_seconds", options_.lease.count()}}.dump()));
  });
  waiting_[agent_id] = WaitingPoll{std::move(respond), std::move(timer)};
  FlushPoll(agent_id);
}

HttpResponse Coordinator::PostMetrics(const HttpRequest& request) {
  Expected<std::pair<JobRecord, int>> attempt = AttemptFromPath(request);
  if (!attempt.ok()) return StatusResponse(attempt.status());
  Expected<json> body = ParseJsonObject(request.body);
  if (!body.ok()) return StatusResponse(body.status());
  Expected<json> points = ArrayField(*body, "points");
  if (!points.ok()) return StatusResponse(points.status());
  std::vector<storage::MetricPoint> batch;
  batch.reserve(points->size());
  double now = WallNow();
  for (size_t i = 0; i < points->size(); ++i) {
    const json& p = (*points)[i];
    if (!p.is_object()) return ErrorResponse(400, fmt::format("points[{}] must be an object", i));
    Expected<int64_t> step = IntField(p, "step");
    Expected<std::string> name = StringField(p, "name");
    Expected<double> value = NumberField(p, "value");
    for (const Status* status : {&step.status(), &name.status(), &value.status()}) {
      if (!status->ok()) return ErrorResponse(400, fmt::format("points[{}]: {}", i, status->message()));
    }
    if (name->empty() || name->size() > 128) {
      return ErrorResponse(400, fmt::format("points[{}]: name must be 1..128 characters", i));
    }
    batch.push_back({*step, *name, *value, p.value("time", now)});
  }
  Status stored = store_.AppendMetrics(attempt->first.id, attempt->second, batch);
  if (!stored.ok()) return StatusResponse(stored);
  json out = json::array();
  for (const auto& p : batch) out.push_back({{"step", p.step}, {"name", p.name}, {"value", p.value}});
  events_.Append("metric", attempt->first.id, json{{"points", out}});
  return JsonResponse(200, json{{"stored", batch.size()}}.dump());
}

HttpResponse Coordinator::PostResults(const HttpRequest& request) {
  Expected<std::pair<JobRecord, int>> attempt = AttemptFromPath(request);
  if (!attempt.ok()) return StatusResponse(attempt.status());
  const std::string& job_id = attempt->first.id;
  Expected<json> body = ParseJsonObject(request.body);
  if (!body.ok()) return StatusResponse(body.status());
  Expected<json> results = ArrayField(*body, "results");
  if (!results.ok()) return StatusResponse(results.status());
  std::vector<storage::ResultRecord> records;
  for (size_t i = 0; i < results->size(); ++i) {
    const json& r = (*results)[i];
    if (!r.is_object()) return ErrorResponse(400, fmt::format("results[{}] must be an object", i));
    Expected<std::string> evaluation = StringField(r, "evaluation");
    Expected<std::string> dataset = StringField(r, "dataset");
    Expected<std::string> metric = StringField(r, "metric");
    Expected<double> value = NumberField(r, "value");
    Expected<std::optional<int64_t>> shots = OptionalIntField(r, "shots");
    Expected<std::optional<int64_t>> seed = OptionalIntField(r, "seed");
    for (const Status* status : {&evaluation.status(), &dataset.status(), &metric.status(),
                                 &value.status(), &shots.status(), &seed.status()}) {
      if (!status->ok()) return ErrorResponse(400, fmt::format("results[{}]: {}", i, status->message()));
    }
    Expected<storage::Evaluation> kind = storage::ParseEvaluation(*evaluation);
    if (!kind.ok()) return ErrorResponse(400, fmt::format("results[{}]: {}", i, kind.status().message()));
    storage::ResultRecord record;
    record.job_id = job_id;
    record.evaluation = *kind;
    record.dataset = *dataset;
    if (*shots) record.shots = static_cast<int>(**shots);
    if (*seed) record.seed = static_cast<int>(**seed);
    record.metric = *metric;
    record.value = *value;
    records.push_back(std::move(record));
  }
  std::optional<storage::LedgerEntry> ledger;
  if (auto it = body->find("ledger"); it != body->end() && !it->is_null()) {
    if (!it->is_object()) return ErrorResponse(400, "field 'ledger' must be an object");
    Expected<double> train = NumberField(*it, "train_flops");
    Expected<double> eval = NumberField(*it, "eval_flops");
    Expected<int64_t> images = IntField(*it, "images_seen");
    Expected<std::string> kind = StringField(*it, "device_kind");
    Expected<double> device = NumberField(*it, "device_seconds");
    Expected<double> wall = NumberField(*it, "wall_seconds");
    for (const Status* status : {&train.status(), &eval.status(), &images.status(), &kind.status(),
                                 &device.status(), &wall.status()}) {
      if (!status->ok()) return ErrorResponse(400, "ledger: " + status->message());
    }
    ledger = storage::LedgerEntry{job_id, attempt->second, *train, *eval, *images, *kind, *device, *wall};
  }
  Status stored = store_.AddResultsAndLedger(records, ledger);
  if (!stored.ok()) return StatusResponse(stored);
  events_.Append("result", job_id, json{{"results", records.size()}});
  return JsonResponse(200, json{{"stored", records.size()}}.dump());
}

HttpResponse Coordinator::PostCheckpoint(const HttpRequest& request) {
  Expected<std::pair<JobRecord, int>> attempt = AttemptFromPath(request);
  if (!attempt.ok()) return StatusResponse(attempt.status());
  Expected<json> body = ParseJsonObject(request.body);
  if (!body.ok()) return StatusResponse(body.status());
  Expected<int64_t> step = IntField(*body, "step");
  Expected<std::string> path = StringField(*body, "path");
  Expected<std::string> sha = StringField(*body, "sha256");
  for (const Status* status : {&step.status(), &path.status(), &sha.status()}) {
    if (!status->ok()) return StatusResponse(*status);
  }
  if (sha->size() != 64 || !IsHexId(*sha)) return ErrorResponse(400, "field 'sha256' must be 64 hex digits");
  Status stored = store_.AddCheckpoint({attempt->first.id, *step, *path, *sha, 0});
  if (!stored.ok()) return StatusResponse(stored);
  return JsonResponse(200, "{}");
}

HttpResponse Coordinator::PostExit(const HttpRequest& request) {
  Expected<std::pair<JobRecord, int>> attempt = AttemptFromPath(request);
  if (!attempt.ok()) return StatusResponse(attempt.status());
  Expected<json> body = ParseJsonObject(request.body);
  if (!body.ok()) return StatusResponse(body.status());
  Expected<std::string> agent = StringField(*body, "agent");
  Expected<std::string> outcome = StringField(*body, "outcome");
  Expected<std::optional<int64_t>> exit_status = OptionalIntField(*body, "exit_status");
  for (const Status* status : {&agent.status(), &outcome.status(), &exit_status.status()}) {
    if (!status->ok()) return StatusResponse(*status);
  }
  static const std::map<std::string, ExitKind> kKinds = {
      {"succeeded", ExitKind::kSucceeded}, {"failed", ExitKind::kFailed},
      {"config_error", ExitKind::kConfigError}, {"preempted", ExitKind::kPreempted},
      {"killed", ExitKind::kFailed}};
  auto kind = kKinds.find(*outcome);
  if (kind == kKinds.end()) {
    return ErrorResponse(400, "field 'outcome' must be one of succeeded, failed, config_error, "
                              "preempted, killed; not '" + *outcome + "'");
  }
  // An exit for an attempt that is no longer the job's newest (its lease ran out and the job
  // moved on) is acknowledged and ignored: the newer attempt owns the job.
  Expected<std::vector<storage::AttemptRecord>> attempts = store_.ListAttempts(attempt->first.id);
  if (!attempts.ok()) return StatusResponse(attempts.status());
  if (attempts->back().number != attempt->second) {
    return JsonResponse(200, json{{"ignored", "attempt is not the job's newest attempt"}}.dump());
  }
  Expected<std::vector<Action>> actions =
      scheduler_.ReportExit(*agent, attempt->first.id, kind->second);
  if (!actions.ok()) return StatusResponse(actions.status());
  std::optional<int> code;
  if (*exit_status) code = static_cast<int>(**exit_status);
  Status applied = Apply(*actions, code);
  if (!applied.ok()) return StatusResponse(applied);
  Tick();
  return JsonResponse(200, "{}");
}

}  // namespace vitscale::coordinator
