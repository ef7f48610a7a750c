#include "coordinator/report_api.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cstdio>

#include "common/files.h"

#include "protocol/agent.h"
#include "protocol/reports.h"

namespace vitscale::coordinator {

using protocol::Json;

namespace {

constexpr size_t kResultsBody = 4 << 20;
// An exit batch of kMaxExits entries is about 0.5 MiB.
constexpr size_t kExitsBody = 1 << 20;
// A turn's group goes to the writer at once when it holds this many points, and the writer
// joins groups into one transaction only up to it: the transaction holds the database's write
// lock while it inserts (a few tens of ms for this many), and the server thread's own writes
// wait for that lock.
constexpr size_t kMaxCommitPoints = 5000;
// Points handed in and not yet written beyond which a post is refused (503, sent again by the
// trainer) rather than queued, so that what waits in memory stays bounded (about 100 MiB)
// however far the disk falls behind.
constexpr size_t kMaxQueuedPoints = 1000000;

// {id} and {n} of a report route; the gate has checked both when it accepted the token.
std::pair<std::string, int> AttemptOf(const HttpRequest& request) {
  Expected<int64_t> n = protocol::ParseWholeNumber(request.params.at("n"), "n", 1,
                                                   protocol::kMaxAttempt);
  return {request.params.at("id"), n.ok() ? static_cast<int>(*n) : 0};
}

ExitKind KindOf(protocol::ExitOutcome outcome) {
  switch (outcome) {
    case protocol::ExitOutcome::kSucceeded: return ExitKind::kSucceeded;
    case protocol::ExitOutcome::kConfigError: return ExitKind::kConfigError;
    case protocol::ExitOutcome::kPreempted: return ExitKind::kPreempted;
    case protocol::ExitOutcome::kUnreachable: return ExitKind::kUnreachable;
    default: return ExitKind::kFailed;  // failed, or killed (after a cancel: the job stays so)
  }
}

// The metric writer's connection waits for the write lock longer than the server thread's
// (100 ms in the coordinator): its wait holds up only its own posts, and the server thread's
// transactions (a WAL checkpoint among them) can hold the lock longer than that on a busy
// machine.
storage::OpenOptions WriterOptions(storage::OpenOptions options) {
  options.busy_timeout_ms = std::max(options.busy_timeout_ms, 1000);
  return options;
}

}  // namespace

ReportApi::ReportApi(Core& core)
    : core_(core),
      metric_store_path_(core.store().path()),
      metric_store_options_(WriterOptions(core.store().options())) {}

ReportApi::~ReportApi() { Stop(); }

void ReportApi::AddRoutes(Router& router) {
  auto bind = [this](HttpResponse (ReportApi::*method)(const HttpRequest&)) {
    return Immediate([this, method](const HttpRequest& request) { return (this->*method)(request); });
  };
  router.Add("POST", "/api/v1/jobs/{id}/attempts/{n}/metrics", Scope::kReport, kLargeBody,
             [this](const HttpRequest& request, Respond respond) {
               PostMetrics(request, std::move(respond));
             });
  router.Add("POST", "/api/v1/jobs/{id}/attempts/{n}/results", Scope::kReport, kResultsBody,
             bind(&ReportApi::PostResults));
  router.Add("POST", "/api/v1/jobs/{id}/attempts/{n}/checkpoints", Scope::kReport, kSmallBody,
             bind(&ReportApi::PostCheckpoint));
  router.Add("POST", "/api/v1/jobs/{id}/attempts/{n}/phase", Scope::kReport, kSmallBody,
             bind(&ReportApi::PostPhase));
  router.Add("POST", "/api/v1/agents/{agent}/exits", Scope::kAgent, kExitsBody,
             bind(&ReportApi::PostExits));
}

void ReportApi::Stop() {
  HandOver();
  if (writer_.joinable()) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
    writer_.join();  // it writes what is queued first
  }
  AnswerWritten();
}

void ReportApi::PostMetrics(const HttpRequest& request, Respond respond) {
  auto [job_id, attempt] = AttemptOf(request);
  Expected<protocol::MetricBatch> batch = protocol::Decode<protocol::MetricBatch>(request.body);
  if (!batch.ok()) return respond(StatusResponse(batch.status()));
  size_t queued = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queued = queued_points_;
  }
  if (queued + metric_group_points_ >= kMaxQueuedPoints) {
    return respond(StatusResponse(Unavailable(fmt::format(
        "{} metric points are waiting to be written (the disk is behind); send the batch again "
        "in a few seconds",
        queued + metric_group_points_))));
  }
  double now = core_.clock().WallSeconds();
  PendingMetrics post{job_id, attempt, {}, std::move(respond), Status::Ok()};
  post.points.reserve(batch->points.size());
  for (const protocol::MetricPoint& p : batch->points) {
    post.points.push_back({p.step, p.name, p.value, p.time.value_or(now)});
  }
  ++unanswered_;
  metric_group_points_ += post.points.size();
  metric_group_.push_back(std::move(post));
  if (metric_group_points_ >= kMaxCommitPoints) return HandOver();
  // The posts whose requests are ready in this turn of the loop run before the hand-over, and
  // join.
  if (hand_over_posted_) return;
  hand_over_posted_ = true;
  boost::asio::post(core_.io(), [this, alive = std::weak_ptr<char>(alive_)] {
    if (alive.expired()) return;
    hand_over_posted_ = false;
    HandOver();
  });
}

void ReportApi::HandOver() {
  if (metric_group_.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queued_.push_back(std::move(metric_group_));
    queued_points_ += metric_group_points_;
    stopping_ = false;
  }
  metric_group_.clear();
  metric_group_points_ = 0;
  if (!writer_.joinable()) writer_ = std::thread([this] { WriteMetrics(); });
  wake_.notify_one();
}

void ReportApi::WriteMetrics() {
  while (true) {
    std::vector<PendingMetrics> group;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return !queued_.empty() || stopping_; });
      if (queued_.empty()) return;
      // Every group handed over while the last commit ran joins this one, up to the bound.
      size_t points = 0;
      while (!queued_.empty() && (group.empty() || points < kMaxCommitPoints)) {
        for (PendingMetrics& post : queued_.front()) {
          points += post.points.size();
          group.push_back(std::move(post));
        }
        queued_.pop_front();
      }
      queued_points_ -= points;
    }
    WriteGroup(group);
    bool post_answers = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (PendingMetrics& post : group) written_.push_back(std::move(post));
      post_answers = !answer_posted_;
      answer_posted_ = true;
    }
    if (post_answers) {
      boost::asio::post(core_.io(), [this, alive = std::weak_ptr<char>(alive_)] {
        if (!alive.expired()) AnswerWritten();
      });
    }
  }
}

void ReportApi::WriteGroup(std::vector<PendingMetrics>& group) {
  if (!metric_store_) {
    Expected<std::unique_ptr<storage::Store>> opened =
        storage::Store::Open(metric_store_path_, metric_store_options_);
    if (!opened.ok()) {
      for (PendingMetrics& post : group) post.stored = opened.status();
      return;
    }
    metric_store_ = std::move(opened).value();
  }
  Status committed = metric_store_->Atomically([&]() -> Status {
    for (PendingMetrics& post : group) {
      Status stored = metric_store_->AppendMetrics(post.job_id, post.attempt, post.points);
      bool its_own = stored.code() == StatusCode::kInvalidArgument ||
                     stored.code() == StatusCode::kNotFound;
      if (!stored.ok() && !its_own) return stored;  // the database's trouble: the whole group
      post.stored = stored;
    }
    return Status::Ok();
  });
  if (!committed.ok()) {
    for (PendingMetrics& post : group) post.stored = committed;
    return;
  }
  ++metric_commits_;
}

void ReportApi::AnswerWritten() {
  std::vector<PendingMetrics> written;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    written.swap(written_);
    answer_posted_ = false;
  }
  for (PendingMetrics& post : written) {
    --unanswered_;
    if (!post.stored.ok()) {
      post.respond(StatusResponse(post.stored));
      continue;
    }
    // The event shows what was stored, without its times. Built field by field: an
    // initializer list would copy each value once more.
    Json shown = Json::array();
    shown.get_ref<Json::array_t&>().reserve(post.points.size());
    for (const storage::MetricPoint& p : post.points) {
      Json& point = shown.emplace_back(Json::object());
      point.emplace("step", p.step);
      point.emplace("name", p.name);
      point.emplace("value", p.value);
    }
    core_.events().Append("metric", post.job_id, Json{{"points", std::move(shown)}});
    post.respond(JsonResponse(
        200, protocol::StoredReply{static_cast<int64_t>(post.points.size())}.ToJson()));
  }
}

HttpResponse ReportApi::PostResults(const HttpRequest& request) {
  auto [job_id, attempt] = AttemptOf(request);
  Expected<protocol::ResultsReport> report = protocol::Decode<protocol::ResultsReport>(request.body);
  if (!report.ok()) return StatusResponse(report.status());
  std::vector<storage::ResultRecord> records;
  for (const protocol::ResultEntry& r : report->results) {
    records.push_back({job_id, r.evaluation, r.dataset, r.shots, r.seed, r.metric, r.value});
  }
  std::optional<storage::LedgerEntry> ledger;
  if (const auto& l = report->ledger) {
    ledger = storage::LedgerEntry{job_id,          attempt,          l->train_flops,
                                  l->eval_flops,   l->images_seen,   l->device_kind,
                                  l->device_seconds, l->wall_seconds};
  }
  Status stored = core_.store().AddResultsAndLedger(records, ledger);
  if (!stored.ok()) return StatusResponse(stored);
  core_.events().Append("result", job_id, Json{{"results", records.size()}});
  return JsonResponse(200, protocol::StoredReply{static_cast<int64_t>(records.size())}.ToJson());
}

HttpResponse ReportApi::PostCheckpoint(const HttpRequest& request) {
  auto [job_id, attempt] = AttemptOf(request);
  Expected<protocol::CheckpointReport> report =
      protocol::Decode<protocol::CheckpointReport>(request.body);
  if (!report.ok()) return StatusResponse(report.status());
  // A checkpoint lives in its job's run folder; a path anywhere else is refused, so that the
  // record never points a resume, or a person, somewhere the job does not own.
  std::string run_dir = core_.RunDir(job_id) + "/";
  if (report->path.compare(0, run_dir.size(), run_dir) != 0) {
    return ErrorResponse(400, "path: '" + report->path + "' is outside the job's run folder " +
                                  run_dir);
  }
  Status stored = core_.store().AddCheckpoint({job_id, report->step, report->path, report->sha256, 0});
  if (!stored.ok()) return StatusResponse(stored);
  return JsonResponse(200, Json::object());
}

HttpResponse ReportApi::PostPhase(const HttpRequest& request) {
  auto [job_id, attempt] = AttemptOf(request);
  Expected<protocol::PhaseReport> report = protocol::Decode<protocol::PhaseReport>(request.body);
  if (!report.ok()) return StatusResponse(report.status());
  Status stored = core_.store().SetAttemptPhase(
      job_id, attempt, {report->phase, report->index, report->count, report->detail});
  if (!stored.ok()) return StatusResponse(stored);
  // Watchers (the CLI's watch, the dashboard) learn of it as of any change to the job's row.
  Expected<storage::JobRecord> job = core_.store().GetJob(job_id);
  if (job.ok()) core_.AnnounceJob(*job);
  return JsonResponse(200, Json::object());
}

HttpResponse ReportApi::PostExits(const HttpRequest& request) {
  // The gate has checked that the credential is this agent's.
  const std::string& agent = request.params.at("agent");
  // A malformed exit refuses the whole batch (400 naming it): the agent's encoder is broken,
  // and nothing of the batch is recorded.
  Expected<protocol::ExitBatch> batch = protocol::Decode<protocol::ExitBatch>(request.body);
  if (!batch.ok()) return StatusResponse(batch.status());
  // After a coordinator restart the agent registers again before its exits count; until then
  // the whole batch waits (the agent registers on a 404 and sends it again).
  if (!core_.scheduler().GetAgentSpec(agent)) {
    return ErrorResponse(404, "agent '" + agent + "' is not registered: register first");
  }
  // Each exit is checked against its attempt as a single one would be; one that cannot be
  // recorded gets its own result and does not hold back the others. A store that cannot be
  // read refuses the whole batch, and nothing is recorded.
  protocol::ExitBatchReply reply;
  std::vector<Action> actions;
  std::map<std::string, int> exit_statuses;
  std::vector<std::pair<std::string, std::string>> notes;  // (job, message), after the commit
  std::map<std::string, std::pair<int64_t, int64_t>> limits_seen;
  bool scheduler_told = false;  // of an exit of this batch, which changes its leases
  for (const protocol::ExitEntry& exit : batch->exits) {
    protocol::ExitResultEntry& result = reply.results.emplace_back();
    result.job = exit.job;
    result.attempt = exit.attempt;
    auto refuse = [&](protocol::ExitResult kind, std::string message) {
      result.result = kind;
      result.message = std::move(message);
    };
    // The attempt, and the number of the job's newest (an unknown job is refused as such).
    Expected<int> newest = core_.store().CountAttempts(exit.job);
    Expected<storage::AttemptRecord> attempt = NotFound("");
    if (newest.ok()) attempt = core_.store().GetAttempt(exit.job, exit.attempt);
    Status found = newest.ok() ? attempt.status() : newest.status();
    if (!found.ok()) {
      if (found.code() != StatusCode::kNotFound) {
        if (scheduler_told) core_.Resync();  // the scheduler again as the store has it
        return StatusResponse(found);
      }
      refuse(protocol::ExitResult::kRefused, found.message());
      continue;
    }
    if (attempt->agent_id != agent) {
      refuse(protocol::ExitResult::kRefused,
             fmt::format("agent '{}' did not lead attempt {} of job {}; only its leader reports "
                         "its exit",
                         agent, exit.attempt, exit.job));
      continue;
    }
    // A repeated exit (the agent did not get the answer that recorded it), one whose lease ran
    // out first, or the exit of a cancelled job: the attempt has its end, and it stays the one
    // recorded. A cancel ends the attempt at once but leaves its slots held until the leader
    // reports that the processes are gone: that report frees them.
    if (attempt->ended_at) {
      std::optional<JobView> view = core_.scheduler().GetJob(exit.job);
      if (*newest == exit.attempt && view && !view->holders.empty() &&
          view->holders.front().placement.agent_id == agent) {
        Expected<std::vector<Action>> freed =
            core_.scheduler().ReportExit(agent, exit.job, KindOf(exit.outcome));
        if (freed.ok()) {
          scheduler_told = true;
          actions.insert(actions.end(), freed->begin(), freed->end());
        }
      }
      refuse(protocol::ExitResult::kEnded,
             fmt::format("attempt {} of job {} has already ended ({})", exit.attempt, exit.job,
                         attempt->outcome ? protocol::AttemptOutcomeName(*attempt->outcome)
                                          : "unknown"));
      continue;
    }
    if (*newest != exit.attempt) {
      refuse(protocol::ExitResult::kEnded,
             fmt::format("attempt {} is not the newest attempt of job {}; the newer one owns "
                         "the job",
                         exit.attempt, exit.job));
      continue;
    }
    ExitKind kind = KindOf(exit.outcome);
    std::string note;
    std::pair<int64_t, int64_t> seen{0, 0};
    if (exit.outcome == protocol::ExitOutcome::kFailed &&
        exit.exit_status == protocol::kTrainExitOutOfMemory) {
      kind = OutOfMemoryExit(exit.job, exit.attempt, &note, &seen);
    }
    Expected<std::vector<Action>> ended = core_.scheduler().ReportExit(agent, exit.job, kind);
    scheduler_told = scheduler_told || ended.ok();
    if (!ended.ok()) {
      refuse(protocol::ExitResult::kRefused, ended.status().message());
      continue;
    }
    if (seen != std::make_pair(int64_t{0}, int64_t{0})) limits_seen[exit.job] = seen;
    actions.insert(actions.end(), ended->begin(), ended->end());
    if (exit.exit_status) exit_statuses[exit.job] = *exit.exit_status;
    if (!note.empty()) notes.emplace_back(exit.job, std::move(note));
  }
  // Every recorded exit in one transaction (one fsync), with the leases of the jobs placed on
  // the slots they freed; the answer, and the launches, go out only after it has committed. If
  // it fails nothing is recorded, the scheduler is rebuilt from the store, and the agent sends
  // the whole batch again.
  if (!actions.empty()) {
    std::vector<Action> placed = core_.scheduler().Schedule();
    actions.insert(actions.end(), placed.begin(), placed.end());
  }
  Status applied = core_.Apply(actions, exit_statuses);
  if (!applied.ok()) return StatusResponse(applied);
  for (const auto& [job, seen] : limits_seen) memory_limits_seen_[job] = seen;
  for (const auto& [job, note] : notes) {
    std::fprintf(stderr, "coordinator: job %s: %s\n", job.c_str(), note.c_str());
    core_.events().Append("note", job, Json{{"message", note}});
  }
  core_.Tick();  // the tick's other duties; what it could place was placed above
  return JsonResponse(200, reply.ToJson());
}

ExitKind ReportApi::OutOfMemoryExit(const std::string& job_id, int attempt, std::string* note,
                                    std::pair<int64_t, int64_t>* seen_now) {
  // The trainer writes the sizes that ran out of memory into the run folder every attempt of
  // the job shares (docs/train-spec.md); the next attempt reads them and uses half.
  std::string path = core_.RunDir(job_id) + "/out_of_memory.json";
  int64_t micro = 0, eval = 0;
  if (Expected<std::string> text = ReadFile(path); text.ok()) {
    Json limits = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (limits.is_object()) {
      Json m = limits.value("micro_batch", Json(0)), e = limits.value("eval_batch", Json(0));
      if (m.is_number_integer()) micro = m.get<int64_t>();
      if (e.is_number_integer()) eval = e.get<int64_t>();
    }
  }
  auto seen = memory_limits_seen_.find(job_id);
  std::pair<int64_t, int64_t> before =
      seen == memory_limits_seen_.end() ? std::make_pair(int64_t{0}, int64_t{0}) : seen->second;
  auto smaller = [](int64_t now, int64_t then) { return now > 1 && (then == 0 || now < then); };
  bool micro_smaller = smaller(micro, before.first);
  bool eval_smaller = smaller(eval, before.second);
  if (!micro_smaller && !eval_smaller) {
    *note = fmt::format(
        "attempt {} ran out of memory (exit status 79) but {} records no smaller batch than "
        "before; counted as a failure, which uses a retry",
        attempt, path);
    return ExitKind::kFailed;
  }
  *seen_now = {micro, eval};
  *note = micro_smaller
              ? fmt::format("attempt {} ran out of memory training with micro-batch {}; attempt "
                            "{} trains with micro-batch {} (the same global batch, accumulated); "
                            "an out-of-memory exit uses no retry",
                            attempt, micro, attempt + 1, std::max<int64_t>(1, micro / 2))
              : fmt::format("attempt {} ran out of memory evaluating with batch {}; attempt {} "
                            "evaluates with batch {}; an out-of-memory exit uses no retry",
                            attempt, eval, attempt + 1, std::max<int64_t>(1, eval / 2));
  return ExitKind::kOutOfMemory;
}

}  // namespace vitscale::coordinator
