#include "trainer/report.h"

#include <cerrno>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

namespace vitscale::trainer {

using nlohmann::json;

Expected<protocol::ResultEntry> ToProtocol(const ResultRecord& r) {
  ASSIGN_OR_RETURN(protocol::Evaluation evaluation, protocol::ParseEvaluation(r.evaluation));
  if (evaluation == protocol::Evaluation::kFewShot && r.seed < 0) {
    return NotFound("a few-shot mean over seeds");
  }
  protocol::ResultEntry entry;
  entry.evaluation = evaluation;
  entry.dataset = r.dataset;
  if (evaluation == protocol::Evaluation::kFewShot) entry.shots = static_cast<int>(r.shots);
  if (r.seed >= 0) entry.seed = static_cast<int>(r.seed);
  entry.metric = r.metric;
  entry.value = r.value;
  return entry;
}

protocol::Ledger ToProtocol(const ComputeLedger& l) {
  return protocol::Ledger{l.train_flops,    l.eval_flops,     l.images_seen,
                          l.device_kind,    l.device_seconds, l.wall_seconds};
}

Expected<std::unique_ptr<JsonlFileSink>> JsonlFileSink::Open(const std::string& path,
                                                             const std::string& job_id) {
  std::FILE* file = std::fopen(path.c_str(), "a");
  if (file == nullptr) {
    return IOError("cannot open report file " + path + ": " + std::strerror(errno));
  }
  return std::unique_ptr<JsonlFileSink>(new JsonlFileSink(file, path, job_id));
}

JsonlFileSink::~JsonlFileSink() { std::fclose(file_); }

Status JsonlFileSink::WriteLines(const std::string& lines) {
  if (std::fwrite(lines.data(), 1, lines.size(), file_) != lines.size() ||
      std::fflush(file_) != 0) {
    return IOError("cannot write report file " + path_ + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

Status JsonlFileSink::Metrics(const std::vector<MetricPoint>& points) {
  std::string lines;
  for (const MetricPoint& p : points) {
    lines += json{{"kind", "metric"}, {"job", job_id_}, {"step", p.step}, {"name", p.name},
                  {"value", p.value}}
                 .dump() +
             "\n";
  }
  return WriteLines(lines);
}

Status JsonlFileSink::Final(const std::vector<ResultRecord>& results, const ComputeLedger& l) {
  std::string lines;
  for (const ResultRecord& r : results) {
    lines += json{{"kind", "result"},      {"job", job_id_},     {"evaluation", r.evaluation},
                  {"dataset", r.dataset},  {"shots", r.shots},   {"seed", r.seed},
                  {"metric", r.metric},    {"value", r.value}}
                 .dump() +
             "\n";
  }
  // The ledger as the coordinator receives it, with the line's kind and job.
  json ledger = ToProtocol(l).ToJson();
  ledger["kind"] = "ledger";
  ledger["job"] = job_id_;
  lines += ledger.dump() + "\n";
  return WriteLines(lines);
}

Expected<protocol::PhaseReport> ToProtocol(const Phase& phase) {
  ASSIGN_OR_RETURN(protocol::JobPhase name, protocol::ParseJobPhase(phase.name));
  return protocol::PhaseReport{name, phase.index, phase.count, phase.detail};
}

std::string Phase::ToString() const {
  std::string text = name;
  if (count > 0) text += " " + std::to_string(index) + "/" + std::to_string(count);
  if (!detail.empty()) text += " (" + detail + ")";
  return text;
}

Status JsonlFileSink::EnterPhase(const Phase& phase) {
  return WriteLines(json{{"kind", "phase"},
                         {"job", job_id_},
                         {"phase", phase.name},
                         {"index", phase.index},
                         {"count", phase.count},
                         {"detail", phase.detail}}
                        .dump() +
                    "\n");
}

Status StreamSink::EnterPhase(const Phase& phase) {
  std::fprintf(stream_, "phase %s\n", phase.ToString().c_str());
  std::fflush(stream_);
  return Status::Ok();
}

Status StreamSink::Metrics(const std::vector<MetricPoint>& points) {
  // One line per step, its metrics in the order given.
  std::map<int64_t, std::string> lines;
  for (const MetricPoint& p : points) {
    lines[p.step] += " " + p.name + "=" + json(p.value).dump();
  }
  for (const auto& [step, text] : lines) std::fprintf(stream_, "step %lld%s\n", (long long)step, text.c_str());
  std::fflush(stream_);
  return Status::Ok();
}

Status StreamSink::Final(const std::vector<ResultRecord>& results, const ComputeLedger& l) {
  for (const ResultRecord& r : results) {
    std::fprintf(stream_, "result %-9s %-20s shots=%-3lld seed=%-3lld %s=%.4f\n",
                 r.evaluation.c_str(), r.dataset.c_str(), (long long)r.shots, (long long)r.seed,
                 r.metric.c_str(), r.value);
  }
  std::fprintf(stream_,
               "compute train_flops=%.4g eval_flops=%.4g images_seen=%lld device=%s "
               "device_seconds=%.1f wall_seconds=%.1f\n",
               l.train_flops, l.eval_flops, (long long)l.images_seen, l.device_kind.c_str(),
               l.device_seconds, l.wall_seconds);
  std::fflush(stream_);
  return Status::Ok();
}

namespace {

template <typename Fn>
Status ForEach(std::vector<std::unique_ptr<ReportSink>>& sinks, Fn&& fn) {
  Status first;
  for (auto& sink : sinks) {
    Status status = fn(*sink);
    if (first.ok() && !status.ok()) first = status;
  }
  return first;
}

}  // namespace

Status FanoutSink::Metrics(const std::vector<MetricPoint>& points) {
  return ForEach(sinks_, [&](ReportSink& s) { return s.Metrics(points); });
}
Status FanoutSink::Final(const std::vector<ResultRecord>& results, const ComputeLedger& ledger) {
  return ForEach(sinks_, [&](ReportSink& s) { return s.Final(results, ledger); });
}

Status FanoutSink::EnterPhase(const Phase& phase) {
  return ForEach(sinks_, [&](ReportSink& s) { return s.EnterPhase(phase); });
}

Status FanoutSink::Checkpoint(int64_t step, const std::string& path, const std::string& sha256) {
  return ForEach(sinks_, [&](ReportSink& s) { return s.Checkpoint(step, path, sha256); });
}

}  // namespace vitscale::trainer
