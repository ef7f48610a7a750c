#include "protocol/reports.h"

namespace vitscale::protocol {
namespace {

constexpr UnknownFields kRequest = UnknownFields::kRefuse;
constexpr double kHuge = 1e300;  // finite values only; JSON has no NaN or infinity

}  // namespace

Expected<MetricPoint> MetricPoint::FromJson(const Json& value, const std::string& path) {
  MetricPoint point;
  ObjectReader r(value, path, kRequest);
  r.Int("step", &point.step, 0, kMaxStep);
  r.Text("name", &point.name, TextRule{TextKind::kLabel, 128});
  r.Number("value", &point.value, -kHuge, kHuge);
  r.OptionalNumber("time", &point.time, 0, 1e11);
  RETURN_IF_ERROR(r.Finish());
  return point;
}

Json MetricPoint::ToJson() const {
  Json out = {{"step", step}, {"name", name}, {"value", value}};
  if (time) out["time"] = *time;
  return out;
}

Expected<MetricBatch> MetricBatch::FromJson(const Json& value, const std::string& path) {
  MetricBatch batch;
  ObjectReader r(value, path, kRequest);
  r.List("points", &batch.points, kMaxMetricPoints, &MetricPoint::FromJson);
  RETURN_IF_ERROR(r.Finish());
  return batch;
}

Json MetricBatch::ToJson() const {
  Json list = Json::array();
  for (const MetricPoint& point : points) list.push_back(point.ToJson());
  return Json{{"points", list}};
}

Expected<ResultEntry> ResultEntry::FromJson(const Json& value, const std::string& path) {
  ResultEntry entry;
  ObjectReader r(value, path, kRequest);
  r.Enum("evaluation", &entry.evaluation, &ParseEvaluation);
  r.Text("dataset", &entry.dataset, kLabelRule);
  r.OptionalInt("shots", &entry.shots, 1, 1000000);
  r.OptionalInt("seed", &entry.seed, 0, 2147483647);
  r.Text("metric", &entry.metric, kLabelRule);
  r.Number("value", &entry.value, -kHuge, kHuge);
  RETURN_IF_ERROR(r.Finish());
  if ((entry.evaluation == Evaluation::kFewShot) != entry.shots.has_value()) {
    return FieldError(r.Join("shots"), entry.shots ? "only few_shot results have shots"
                                                   : "few_shot results need shots");
  }
  return entry;
}

Json ResultEntry::ToJson() const {
  return Json{{"evaluation", EvaluationName(evaluation)},
              {"dataset", dataset},
              {"shots", shots ? Json(*shots) : Json(nullptr)},
              {"seed", seed ? Json(*seed) : Json(nullptr)},
              {"metric", metric},
              {"value", value}};
}

Expected<Ledger> Ledger::FromJson(const Json& value, const std::string& path) {
  Ledger ledger;
  ObjectReader r(value, path, kRequest);
  r.Number("train_flops", &ledger.train_flops, 0, kHuge);
  r.Number("eval_flops", &ledger.eval_flops, 0, kHuge);
  r.Int("images_seen", &ledger.images_seen, 0, int64_t{1} << 62);
  r.Text("device_kind", &ledger.device_kind, TextRule{TextKind::kText, 128});
  r.Number("device_seconds", &ledger.device_seconds, 0, 1e12);
  r.Number("wall_seconds", &ledger.wall_seconds, 0, 1e12);
  RETURN_IF_ERROR(r.Finish());
  if (ledger.device_kind.empty()) return FieldError(r.Join("device_kind"), "is empty");
  return ledger;
}

Json Ledger::ToJson() const {
  return Json{{"train_flops", train_flops},       {"eval_flops", eval_flops},
              {"images_seen", images_seen},       {"device_kind", device_kind},
              {"device_seconds", device_seconds}, {"wall_seconds", wall_seconds}};
}

Expected<ResultsReport> ResultsReport::FromJson(const Json& value, const std::string& path) {
  ResultsReport report;
  ObjectReader r(value, path, kRequest);
  r.List("results", &report.results, kMaxResults, &ResultEntry::FromJson);
  r.OptionalMessage("ledger", &report.ledger, &Ledger::FromJson);
  RETURN_IF_ERROR(r.Finish());
  return report;
}

Json ResultsReport::ToJson() const {
  Json list = Json::array();
  for (const ResultEntry& entry : results) list.push_back(entry.ToJson());
  Json out = {{"results", list}};
  if (ledger) out["ledger"] = ledger->ToJson();
  return out;
}

Expected<CheckpointReport> CheckpointReport::FromJson(const Json& value, const std::string& path) {
  CheckpointReport report;
  ObjectReader r(value, path, kRequest);
  r.Int("step", &report.step, 0, kMaxStep);
  r.Text("path", &report.path, kPathRule);
  r.Text("sha256", &report.sha256, kSha256Rule);
  RETURN_IF_ERROR(r.Finish());
  return report;
}

Json CheckpointReport::ToJson() const {
  return Json{{"step", step}, {"path", path}, {"sha256", sha256}};
}

namespace {

Expected<PhaseReport> ReadPhase(const Json& value, const std::string& path, UnknownFields unknown) {
  PhaseReport report;
  ObjectReader r(value, path, unknown);
  r.Enum("phase", &report.phase, &ParseJobPhase);
  r.Int("index", &report.index, 0, kMaxPhaseParts);
  r.Int("count", &report.count, 0, kMaxPhaseParts);
  r.Text("detail", &report.detail, TextRule{TextKind::kText, 256});
  RETURN_IF_ERROR(r.Finish());
  if (report.count == 0 && report.index != 0) {
    return FieldError(r.Join("index"), "must be 0 for a phase without parts (count 0)");
  }
  if (report.count > 0 && (report.index < 1 || report.index > report.count)) {
    return FieldError(r.Join("index"), "must be between 1 and count (" +
                                           std::to_string(report.count) + "), not " +
                                           std::to_string(report.index));
  }
  return report;
}

}  // namespace

Expected<PhaseReport> PhaseReport::FromJson(const Json& value, const std::string& path) {
  return ReadPhase(value, path, kRequest);
}

Expected<PhaseReport> PhaseReport::FromReply(const Json& value, const std::string& path) {
  return ReadPhase(value, path, UnknownFields::kIgnore);
}

Json PhaseReport::ToJson() const {
  return Json{
      {"phase", JobPhaseName(phase)}, {"index", index}, {"count", count}, {"detail", detail}};
}

std::string PhaseReport::ToString() const {
  std::string text = JobPhaseName(phase);
  if (count > 0) text += " " + std::to_string(index) + "/" + std::to_string(count);
  if (!detail.empty()) text += " (" + detail + ")";
  return text;
}

Expected<StoredReply> StoredReply::FromJson(const Json& value, const std::string& path) {
  StoredReply reply;
  ObjectReader r(value, path, UnknownFields::kIgnore);
  r.Int("stored", &reply.stored, 0, int64_t{1} << 62);
  RETURN_IF_ERROR(r.Finish());
  return reply;
}

}  // namespace vitscale::protocol
