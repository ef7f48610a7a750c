#include "protocol/api.h"

namespace vitscale::protocol {
namespace {

constexpr UnknownFields kRequest = UnknownFields::kRefuse;
constexpr UnknownFields kReply = UnknownFields::kIgnore;
constexpr TextRule kShown{TextKind::kText, 4096};  // names and stamps the coordinator shows
constexpr size_t kMaxListed = 1000000;
constexpr double kHuge = 1e300;

Json Nullable(const std::optional<std::string>& v) { return v ? Json(*v) : Json(nullptr); }
template <typename T>
Json Nullable(const std::optional<T>& v) {
  return v ? Json(*v) : Json(nullptr);
}

}  // namespace

Expected<ErrorReply> ErrorReply::FromJson(const Json& value, const std::string& path) {
  ErrorReply reply;
  ObjectReader r(value, path, kReply);
  r.Text("error", &reply.error, TextRule{TextKind::kDocument, 1 << 20});
  RETURN_IF_ERROR(r.Finish());
  return reply;
}

Expected<SubmitReply> SubmitReply::FromJson(const Json& value, const std::string& path) {
  SubmitReply reply;
  ObjectReader r(value, path, kReply);
  r.Text("sweep", &reply.sweep, kNameRule);
  r.Int("jobs_added", &reply.jobs_added, 0, int64_t{1} << 40);
  r.Int("jobs_known", &reply.jobs_known, 0, int64_t{1} << 40);
  r.TextList("jobs", &reply.jobs, kMaxListed, kJobIdRule);
  RETURN_IF_ERROR(r.Finish());
  return reply;
}

Json SubmitReply::ToJson() const {
  return Json{{"sweep", sweep}, {"jobs_added", jobs_added}, {"jobs_known", jobs_known}, {"jobs", jobs}};
}

Expected<PriorityRequest> PriorityRequest::FromJson(const Json& value, const std::string& path) {
  PriorityRequest request;
  ObjectReader r(value, path, kRequest);
  r.Int("priority", &request.priority, -1000000, 1000000);
  RETURN_IF_ERROR(r.Finish());
  return request;
}

Expected<CredentialRequest> CredentialRequest::FromJson(const Json& value, const std::string& path) {
  CredentialRequest request;
  ObjectReader r(value, path, kRequest);
  r.Text("host", &request.host, kHostRule);
  RETURN_IF_ERROR(r.Finish());
  return request;
}

Expected<CredentialReply> CredentialReply::FromJson(const Json& value, const std::string& path) {
  CredentialReply reply;
  ObjectReader r(value, path, kReply);
  r.Text("host", &reply.host, kHostRule);
  r.Text("token", &reply.token, kTokenRule);
  RETURN_IF_ERROR(r.Finish());
  return reply;
}

Expected<JobSummary> JobSummary::FromJson(const Json& value, const std::string& path) {
  JobSummary job;
  ObjectReader r(value, path, kReply);
  r.Text("id", &job.id, kJobIdRule);
  r.Text("model", &job.model, kShown);
  r.Text("family", &job.family, kShown);
  r.Text("dataset", &job.dataset, kShown);
  r.Int("subset_size", &job.subset_size, 0, int64_t{1} << 62);
  r.Number("epochs", &job.epochs, 0, kHuge);
  r.Enum("state", &job.state, &ParseJobState);
  r.Int("priority", &job.priority, -1000000, 1000000);
  r.Int("ranks", &job.ranks, 0, 1 << 20);
  r.Int("attempts", &job.attempts, 0, int64_t{1} << 40);
  r.Number("planned_exaflops", &job.planned_exaflops, 0, kHuge);
  r.Number("images_seen", &job.images_seen, 0, kHuge);
  r.Number("progress", &job.progress, 0, 1);
  r.OptionalMessage("phase", &job.phase, &PhaseReport::FromReply);
  r.Text("created_at", &job.created_at, kShown);
  r.Text("updated_at", &job.updated_at, kShown);
  RETURN_IF_ERROR(r.Finish());
  return job;
}

Json JobSummary::ToJson() const {
  return Json{{"id", id},
              {"model", model},
              {"family", family},
              {"dataset", dataset},
              {"subset_size", subset_size},
              {"epochs", epochs},
              {"state", JobStateName(state)},
              {"priority", priority},
              {"ranks", ranks},
              {"attempts", attempts},
              {"planned_exaflops", planned_exaflops},
              {"images_seen", images_seen},
              {"progress", progress},
              {"phase", phase ? phase->ToJson() : Json(nullptr)},
              {"created_at", created_at},
              {"updated_at", updated_at}};
}

Expected<JobPage> JobPage::FromJson(const Json& value, const std::string& path) {
  JobPage page;
  ObjectReader r(value, path, kReply);
  r.Int("total", &page.total, 0, int64_t{1} << 62);
  r.Bool("total_exact", &page.total_exact);
  r.Int("limit", &page.limit, 0, int64_t{1} << 62);
  r.List("jobs", &page.jobs, kMaxListed, &JobSummary::FromJson);
  r.OptionalText("next", &page.next, kCursorRule);
  r.OptionalText("prev", &page.prev, kCursorRule);
  RETURN_IF_ERROR(r.Finish());
  return page;
}

Json JobPage::ToJson() const {
  Json rows = Json::array();
  for (const JobSummary& job : jobs) rows.push_back(job.ToJson());
  return Json{{"total", total},
              {"total_exact", total_exact},
              {"limit", limit},
              {"jobs", rows},
              {"next", next ? Json(*next) : Json(nullptr)},
              {"prev", prev ? Json(*prev) : Json(nullptr)}};
}

Expected<AttemptView> AttemptView::FromJson(const Json& value, const std::string& path) {
  AttemptView a;
  ObjectReader r(value, path, kReply);
  r.Int("number", &a.number, 1, 1 << 30);
  r.OptionalText("agent", &a.agent, kShown);
  r.Text("hosts", &a.hosts, TextRule{TextKind::kText, 65536});
  r.Text("started_at", &a.started_at, kShown);
  r.OptionalText("ended_at", &a.ended_at, kShown);
  std::optional<std::string> outcome;
  r.OptionalText("outcome", &outcome, kShown);
  r.OptionalInt("exit_status", &a.exit_status, -(1 << 30), 1 << 30);
  r.OptionalInt("resumed_from_step", &a.resumed_from_step, 0, kMaxStep);
  RETURN_IF_ERROR(r.Finish());
  if (outcome) {
    Expected<AttemptOutcome> parsed = ParseAttemptOutcome(*outcome);
    if (!parsed.ok()) return FieldError(r.Join("outcome"), parsed.status().message());
    a.outcome = *parsed;
  }
  return a;
}

Json AttemptView::ToJson() const {
  return Json{{"number", number},
              {"agent", Nullable(agent)},
              {"hosts", hosts},
              {"started_at", started_at},
              {"ended_at", Nullable(ended_at)},
              {"outcome", outcome ? Json(AttemptOutcomeName(*outcome)) : Json(nullptr)},
              {"exit_status", Nullable(exit_status)},
              {"resumed_from_step", Nullable(resumed_from_step)}};
}

Expected<CheckpointView> CheckpointView::FromJson(const Json& value, const std::string& path) {
  CheckpointView c;
  ObjectReader r(value, path, kReply);
  r.Int("step", &c.step, 0, kMaxStep);
  r.Text("path", &c.path, TextRule{TextKind::kText, 4096});
  r.Text("sha256", &c.sha256, kSha256Rule);
  r.Text("created_at", &c.created_at, kShown);
  RETURN_IF_ERROR(r.Finish());
  return c;
}

Json CheckpointView::ToJson() const {
  return Json{{"step", step}, {"path", path}, {"sha256", sha256}, {"created_at", created_at}};
}

Expected<LedgerTotals> LedgerTotals::FromJson(const Json& value, const std::string& path) {
  LedgerTotals l;
  ObjectReader r(value, path, kReply);
  r.Number("train_flops", &l.train_flops, 0, kHuge);
  r.Number("eval_flops", &l.eval_flops, 0, kHuge);
  r.Int("images_seen", &l.images_seen, 0, int64_t{1} << 62);
  Json devices;
  r.RawObject("device_seconds", &devices);
  r.Number("wall_seconds", &l.wall_seconds, 0, kHuge);
  RETURN_IF_ERROR(r.Finish());
  for (auto it = devices.begin(); it != devices.end(); ++it) {
    std::string where = r.Join("device_seconds") + "." + it.key();
    RETURN_IF_ERROR(CheckText(where, it.key(), TextRule{TextKind::kText, 128}));
    if (!it->is_number()) return FieldError(where, "expected a number");
    l.device_seconds[it.key()] = it->get<double>();
  }
  return l;
}

Json LedgerTotals::ToJson() const {
  Json devices = Json::object();
  for (const auto& [kind, seconds] : device_seconds) devices[kind] = seconds;
  return Json{{"train_flops", train_flops},
              {"eval_flops", eval_flops},
              {"images_seen", images_seen},
              {"device_seconds", devices},
              {"wall_seconds", wall_seconds}};
}

namespace {

// Results as a reply shows them: the request's own decoder, but tolerant of new fields.
Expected<ResultEntry> ResultInReply(const Json& value, const std::string& path) {
  if (!value.is_object()) return FieldError(path, "expected an object");
  Json known = Json::object();
  for (const char* key : {"evaluation", "dataset", "shots", "seed", "metric", "value"}) {
    if (value.contains(key)) known[key] = value[key];
  }
  return ResultEntry::FromJson(known, path);
}

}  // namespace

Expected<JobDetail> JobDetail::FromJson(const Json& value, const std::string& path) {
  JobDetail d;
  // Here "attempts" is the list of attempts; the summary's count is its length.
  Json head = value;
  if (head.is_object() && head.contains("attempts") && head["attempts"].is_array()) {
    head["attempts"] = head["attempts"].size();
  }
  ASSIGN_OR_RETURN(d.summary, JobSummary::FromJson(head, path));
  ObjectReader r(value, path, kReply);
  r.RawObject("config", &d.config);
  r.TextList("sweeps", &d.sweeps, kMaxListed, kShown);
  r.List("attempts", &d.attempts, kMaxListed, &AttemptView::FromJson);
  r.List("checkpoints", &d.checkpoints, kMaxListed, &CheckpointView::FromJson);
  r.List("results", &d.results, kMaxListed, &ResultInReply);
  r.Message("ledger", &d.ledger, &LedgerTotals::FromJson);
  RETURN_IF_ERROR(r.Finish());
  return d;
}

Json JobDetail::ToJson() const {
  Json out = summary.ToJson();
  out["config"] = config;
  out["sweeps"] = sweeps;
  out["attempts"] = Json::array();
  for (const AttemptView& a : attempts) out["attempts"].push_back(a.ToJson());
  out["checkpoints"] = Json::array();
  for (const CheckpointView& c : checkpoints) out["checkpoints"].push_back(c.ToJson());
  out["results"] = Json::array();
  for (const ResultEntry& e : results) out["results"].push_back(e.ToJson());
  out["ledger"] = ledger.ToJson();
  return out;
}

Expected<SweepView> SweepView::FromJson(const Json& value, const std::string& path) {
  SweepView s;
  ObjectReader r(value, path, kReply);
  r.Text("name", &s.name, kShown);
  r.Text("created_at", &s.created_at, kShown);
  r.Int("jobs", &s.jobs, 0, int64_t{1} << 62);
  Json by_state;
  r.RawObject("by_state", &by_state);
  r.Number("planned_exaflops", &s.planned_exaflops, 0, kHuge);
  r.Number("spent_exaflops", &s.spent_exaflops, 0, kHuge);
  r.OptionalText("definition", &s.definition, TextRule{TextKind::kDocument, 64 << 20});
  RETURN_IF_ERROR(r.Finish());
  for (auto it = by_state.begin(); it != by_state.end(); ++it) {
    std::string where = r.Join("by_state") + "." + it.key();
    RETURN_IF_ERROR(CheckText(where, it.key(), kShown));
    if (!it->is_number_integer()) return FieldError(where, "expected an integer");
    s.by_state[it.key()] = it->get<int64_t>();
  }
  return s;
}

Json SweepView::ToJson() const {
  Json states = Json::object();
  for (const auto& [state, count] : by_state) states[state] = count;
  Json out = {{"name", name},
              {"created_at", created_at},
              {"jobs", jobs},
              {"by_state", states},
              {"planned_exaflops", planned_exaflops},
              {"spent_exaflops", spent_exaflops}};
  if (definition) out["definition"] = *definition;
  return out;
}

Expected<SweepList> SweepList::FromJson(const Json& value, const std::string& path) {
  SweepList list;
  ObjectReader r(value, path, kReply);
  r.List("sweeps", &list.sweeps, kMaxListed, &SweepView::FromJson);
  RETURN_IF_ERROR(r.Finish());
  return list;
}

Json SweepList::ToJson() const {
  Json rows = Json::array();
  for (const SweepView& s : sweeps) rows.push_back(s.ToJson());
  return Json{{"sweeps", rows}};
}

Expected<AgentInfo> AgentInfo::FromJson(const Json& value, const std::string& path) {
  AgentInfo a;
  ObjectReader r(value, path, kReply);
  r.Text("id", &a.id, kHostRule);
  r.Text("host", &a.host, kHostRule);
  r.Int("slots", &a.slots, 0, 1 << 20);
  r.Int("gpus", &a.gpus, 0, 1 << 20);
  std::optional<std::string> gpu_kind;
  r.OptionalText("gpu_kind", &gpu_kind, TextRule{TextKind::kText, 128});
  a.gpu_kind = gpu_kind.value_or("");
  r.Int("free_slots", &a.free_slots, 0, 1 << 20);
  std::optional<int> free_gpus;
  r.OptionalInt("free_gpus", &free_gpus, 0, 1 << 20);
  a.free_gpus = free_gpus.value_or(0);
  r.Text("last_heartbeat", &a.last_heartbeat, kShown);
  r.Bool("alive", &a.alive);
  r.TextList("jobs", &a.jobs, kMaxListed, kJobIdRule);
  RETURN_IF_ERROR(r.Finish());
  return a;
}

Json AgentInfo::ToJson() const {
  return Json{{"id", id},     {"host", host},   {"slots", slots},
              {"gpus", gpus}, {"gpu_kind", gpu_kind},
              {"free_slots", free_slots}, {"free_gpus", free_gpus},
              {"last_heartbeat", last_heartbeat},
              {"alive", alive}, {"jobs", jobs}};
}

Expected<Event> Event::FromJson(const Json& value, const std::string& path) {
  Event e;
  ObjectReader r(value, path, kReply);
  r.Int("seq", &e.seq, INT64_MIN, INT64_MAX);
  auto type = value.is_object() ? value.find("type") : value.end();
  bool reset = value.is_object() && type != value.end() && type->is_string() && *type == "reset";
  if (!reset) {
    r.Text("time", &e.time, kShown);
    r.RawObject("data", &e.data);
  }
  r.Text("type", &e.type, kNameRule);
  r.OptionalText("job", &e.job, kJobIdRule);
  RETURN_IF_ERROR(r.Finish());
  return e;
}

Json Event::ToJson() const {
  Json out = {{"seq", seq}, {"type", type}};
  if (type != "reset") {
    out["time"] = time;
    out["data"] = data;
  }
  if (job) out["job"] = *job;
  return out;
}

}  // namespace vitscale::protocol
