#include "coordinator/report_api.h"

#include <fmt/format.h>

#include <cstdio>

#include "common/files.h"

#include "protocol/agent.h"
#include "protocol/reports.h"

namespace vitscale::coordinator {

using protocol::Json;

namespace {

constexpr size_t kResultsBody = 4 << 20;

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

}  // namespace

ReportApi::ReportApi(Core& core) : core_(core) {}

void ReportApi::AddRoutes(Router& router) {
  auto bind = [this](HttpResponse (ReportApi::*method)(const HttpRequest&)) {
    return Immediate([this, method](const HttpRequest& request) { return (this->*method)(request); });
  };
  router.Add("POST", "/api/v1/jobs/{id}/attempts/{n}/metrics", Scope::kReport, kLargeBody,
             bind(&ReportApi::PostMetrics));
  router.Add("POST", "/api/v1/jobs/{id}/attempts/{n}/results", Scope::kReport, kResultsBody,
             bind(&ReportApi::PostResults));
  router.Add("POST", "/api/v1/jobs/{id}/attempts/{n}/checkpoints", Scope::kReport, kSmallBody,
             bind(&ReportApi::PostCheckpoint));
  router.Add("POST", "/api/v1/jobs/{id}/attempts/{n}/phase", Scope::kReport, kSmallBody,
             bind(&ReportApi::PostPhase));
  router.Add("POST", "/api/v1/jobs/{id}/attempts/{n}/exit", Scope::kAgent, kSmallBody,
             bind(&ReportApi::PostExit));
}

HttpResponse ReportApi::PostMetrics(const HttpRequest& request) {
  auto [job_id, attempt] = AttemptOf(request);
  Expected<protocol::MetricBatch> batch = protocol::Decode<protocol::MetricBatch>(request.body);
  if (!batch.ok()) return StatusResponse(batch.status());
  double now = core_.clock().WallSeconds();
  std::vector<storage::MetricPoint> points;
  points.reserve(batch->points.size());
  for (const protocol::MetricPoint& p : batch->points) {
    points.push_back({p.step, p.name, p.value, p.time.value_or(now)});
  }
  Status stored = core_.store().AppendMetrics(job_id, attempt, points);
  if (!stored.ok()) return StatusResponse(stored);
  Json shown = Json::array();
  for (const protocol::MetricPoint& p : batch->points) {
    shown.push_back({{"step", p.step}, {"name", p.name}, {"value", p.value}});
  }
  core_.events().Append("metric", job_id, Json{{"points", shown}});
  return JsonResponse(200, protocol::StoredReply{static_cast<int64_t>(points.size())}.ToJson());
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

HttpResponse ReportApi::PostExit(const HttpRequest& request) {
  Expected<storage::JobRecord> job = core_.FindJob(request.params.at("id"));
  if (!job.ok()) return StatusResponse(job.status());
  Expected<int64_t> number = protocol::ParseWholeNumber(
      request.params.at("n"), "attempt number '" + request.params.at("n") + "'", 1,
      protocol::kMaxAttempt);
  if (!number.ok()) return StatusResponse(number.status());
  Expected<protocol::ExitReport> report = protocol::Decode<protocol::ExitReport>(request.body);
  if (!report.ok()) return StatusResponse(report.status());
  const std::string& agent = request.caller.agent_host;
  if (report->agent != agent) {
    return ErrorResponse(403, "the credential of agent '" + agent +
                                  "' cannot report for agent '" + report->agent + "'");
  }
  Expected<storage::AttemptRecord> attempt =
      core_.store().GetAttempt(job->id, static_cast<int>(*number));
  if (!attempt.ok()) return StatusResponse(attempt.status());
  if (attempt->agent_id != agent) {
    return ErrorResponse(403, fmt::format("agent '{}' did not lead attempt {} of job {}; only its "
                                          "leader reports its exit",
                                          agent, *number, job->id));
  }
  // An exit for an attempt that is no longer the job's newest (its lease ran out and the job
  // moved on) is acknowledged and ignored: the newer attempt owns the job.
  if (job->attempts != *number) {
    return JsonResponse(200, Json{{"ignored", "attempt is not the job's newest attempt"}});
  }
  ExitKind kind = KindOf(report->outcome);
  std::string note;
  if (report->outcome == protocol::ExitOutcome::kFailed &&
      report->exit_status == protocol::kTrainExitOutOfMemory) {
    kind = OutOfMemoryExit(job->id, static_cast<int>(*number), &note);
  }
  Expected<std::vector<Action>> actions = core_.scheduler().ReportExit(agent, job->id, kind);
  if (!actions.ok()) return StatusResponse(actions.status());
  Status applied = core_.Apply(*actions, report->exit_status);
  if (!applied.ok()) return StatusResponse(applied);
  if (!note.empty()) {
    std::fprintf(stderr, "coordinator: job %s: %s\n", job->id.c_str(), note.c_str());
    core_.events().Append("note", job->id, Json{{"message", note}});
  }
  core_.Tick();
  return JsonResponse(200, Json::object());
}

ExitKind ReportApi::OutOfMemoryExit(const std::string& job_id, int attempt, std::string* note) {
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
  memory_limits_seen_[job_id] = {micro, eval};
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
