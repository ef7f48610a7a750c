#include "planning/throughput.h"

#include <fmt/format.h>
#include <gsl/gsl_fit.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <set>
#include <tuple>

#include "models/registry.h"
#include "protocol/json.h"

namespace vitscale::planning {
namespace {

std::string Lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string NormalKind(std::string_view kind) {
  std::string k = Lower(kind);
  if (k.rfind("nvidia ", 0) == 0) k = k.substr(7);
  return k;
}

// Dense bf16 tensor-core peaks from the vendors' data sheets (float32 for a CPU slot: a rough
// figure for one core of a current server). Only ever used as a marked estimate.
const std::map<std::string, double>& NominalPeaks() {
  static const std::map<std::string, double> kPeaks = {
      {"h200", 989e12}, {"h100", 989e12}, {"a100", 312e12}, {"l40s", 362e12}, {"l4", 121e12},
      {"a10", 125e12},  {"v100", 125e12}, {"t4", 65e12},    {"cpu", 50e9},
  };
  return kPeaks;
}

std::string FamilyOf(const std::string& model) {
  Expected<models::ModelConfig> config = models::LookupModel(model);
  return config.ok() ? models::FamilyName(config->family) : "";
}

}  // namespace

std::string DefaultPrecision(std::string_view device_kind) {
  return NormalKind(device_kind) == "cpu" ? "fp32" : "bf16";
}

bool SameKind(std::string_view a, std::string_view b) {
  std::string x = NormalKind(a), y = NormalKind(b);
  if (x == y) return true;
  if (x.size() > y.size()) std::swap(x, y);
  return !x.empty() && y.rfind(x + " ", 0) == 0;
}

std::vector<ThroughputEntry> BuildThroughputTable(
    const std::vector<storage::ThroughputSample>& samples,
    const std::vector<storage::ThroughputImport>& imports) {
  using Key = std::tuple<std::string, std::string, std::string, int64_t>;
  std::map<Key, std::vector<const storage::ThroughputSample*>> groups;
  for (const storage::ThroughputSample& s : samples) {
    if (s.images <= 0 || !(s.seconds > 0) || s.devices <= 0) continue;
    groups[{s.model, s.device_kind, DefaultPrecision(s.device_kind), s.batch_size}].push_back(&s);
  }
  std::vector<ThroughputEntry> table;
  std::set<Key> measured;
  for (const auto& [key, group] : groups) {
    ThroughputEntry e;
    std::tie(e.model, e.device_kind, e.precision, e.batch_size) = key;
    e.source = "ledger";
    e.jobs = static_cast<int>(group.size());
    std::vector<double> x, y;
    double images = 0, flops = 0, sum_x = 0, sum_y = 0;
    for (const storage::ThroughputSample* s : group) {
      x.push_back(static_cast<double>(s->images) / s->devices);
      y.push_back(s->seconds);
      images += static_cast<double>(s->images);
      flops += s->train_flops;
      sum_x += x.back();
      sum_y += y.back();
    }
    e.flops_per_image = flops / images;
    e.images_per_second = sum_x / sum_y;
    if (std::set<double>(x.begin(), x.end()).size() >= 2) {
      double c0, c1, cov00, cov01, cov11, sumsq;
      gsl_fit_linear(x.data(), 1, y.data(), 1, x.size(), &c0, &c1, &cov00, &cov01, &cov11, &sumsq);
      if (c1 > 0 && c0 >= 0) {
        e.images_per_second = 1.0 / c1;
        e.overhead_seconds = c0;
      }
    }
    measured.insert(key);
    table.push_back(std::move(e));
  }
  for (const storage::ThroughputImport& i : imports) {
    if (measured.count({i.model, i.device_kind, i.precision, i.batch_size})) continue;
    ThroughputEntry e;
    e.model = i.model;
    e.device_kind = i.device_kind;
    e.precision = i.precision;
    e.batch_size = i.batch_size;
    e.images_per_second = i.images_per_second;
    e.flops_per_image = i.flops_per_image;
    e.overhead_seconds = i.overhead_seconds;
    e.source = "benchmark: " + i.source;
    table.push_back(std::move(e));
  }
  return table;
}

void ThroughputTable::SetPeakFlops(const std::string& kind, double flops_per_second) {
  peak_flops_[NormalKind(kind)] = flops_per_second;
}

Expected<Rate> ThroughputTable::Lookup(const RateQuery& query, const std::string& kind) const {
  const std::string precision = DefaultPrecision(kind);
  std::vector<const ThroughputEntry*> on_kind;
  for (const ThroughputEntry& e : entries_) {
    if (SameKind(e.device_kind, kind) && e.precision == precision) on_kind.push_back(&e);
  }
  // The same model: at this batch it is a measurement, at another an estimate.
  const ThroughputEntry* same_model = nullptr;
  for (const ThroughputEntry* e : on_kind) {
    if (e->model != query.model) continue;
    if (e->batch_size == query.batch_size) {
      return Rate{e->images_per_second, e->overhead_seconds, false, "measured (" + e->source + ")"};
    }
    if (same_model == nullptr || std::abs(std::log(static_cast<double>(e->batch_size) /
                                                   static_cast<double>(query.batch_size))) <
                                     std::abs(std::log(static_cast<double>(same_model->batch_size) /
                                                       static_cast<double>(query.batch_size)))) {
      same_model = e;
    }
  }
  if (same_model != nullptr) {
    return Rate{
        same_model->images_per_second, same_model->overhead_seconds, true,
        fmt::format("estimate: {} measured at batch {}", query.model, same_model->batch_size)};
  }
  // A related model's FLOP/s: the same family first, then the nearest in FLOPs per image.
  const ThroughputEntry* related = nullptr;
  auto distance = [&](const ThroughputEntry* e) {
    double family_penalty = FamilyOf(e->model) == query.family ? 0.0 : 1000.0;
    return family_penalty + std::abs(std::log(e->flops_per_image / query.flops_per_image));
  };
  if (query.flops_per_image > 0) {
    for (const ThroughputEntry* e : on_kind) {
      if (!(e->flops_per_image > 0)) continue;
      if (related == nullptr || distance(e) < distance(related)) related = e;
    }
  }
  if (related != nullptr) {
    return Rate{
        related->FlopsPerSecond() / query.flops_per_image, related->overhead_seconds, true,
        fmt::format("estimate: the FLOP/s {} measured on {} ({:.3g} TFLOP/s per device)",
                    related->model, related->device_kind, related->FlopsPerSecond() / 1e12)};
  }
  std::string normal = NormalKind(kind);
  std::optional<double> peak;
  std::string peak_from;
  if (auto it = peak_flops_.find(normal); it != peak_flops_.end()) {
    peak = it->second;
    peak_from = "the cluster file's peak";
  } else {
    for (const auto& [name, flops] : NominalPeaks()) {
      if (SameKind(name, kind)) {
        peak = flops;
        peak_from = "its nominal peak";
      }
    }
  }
  if (!peak || !(query.flops_per_image > 0)) {
    return NotFound(fmt::format(
        "no throughput for {} on '{}' and no peak FLOP/s known for that kind: import a "
        "benchmark (`vitscale throughput import`) or give the host kind `peak_tflops` in a "
        "cluster file",
        query.model, kind));
  }
  return Rate{*peak * kAssumedUtilisation / query.flops_per_image, 0.0, true,
              fmt::format("estimate: {} of {} ({:.3g} TFLOP/s), nothing measured on it",
                          kAssumedUtilisation, peak_from, *peak / 1e12)};
}

nlohmann::json ToJson(const ThroughputEntry& e) {
  return {{"model", e.model},
          {"device_kind", e.device_kind},
          {"precision", e.precision},
          {"batch_size", e.batch_size},
          {"images_per_second", e.images_per_second},
          {"flops_per_image", e.flops_per_image},
          {"tflops_per_second", e.FlopsPerSecond() / 1e12},
          {"overhead_seconds", e.overhead_seconds},
          {"source", e.source},
          {"jobs", e.jobs}};
}

namespace {

Expected<storage::ThroughputImport> ImportRow(const nlohmann::json& value, const std::string& path,
                                              bool ignore_unknown) {
  if (!value.is_object()) return protocol::FieldError(path, "expected an object");
  storage::ThroughputImport row;
  protocol::ObjectReader r(
      value, path,
      ignore_unknown ? protocol::UnknownFields::kIgnore : protocol::UnknownFields::kRefuse);
  r.Text("model", &row.model, protocol::kLabelRule);
  r.Text("device_kind", &row.device_kind, protocol::TextRule{protocol::TextKind::kText, 128});
  std::optional<std::string> precision;
  r.OptionalText("precision", &precision, protocol::TextRule{protocol::TextKind::kText, 16});
  r.Int("batch_size", &row.batch_size, 1, int64_t{1} << 32);
  r.Number("images_per_second", &row.images_per_second, 1e-9, 1e12);
  std::optional<double> flops, overhead;
  r.OptionalNumber("flops_per_image", &flops, 0, 1e18);
  r.OptionalNumber("overhead_seconds", &overhead, 0, 1e9);
  RETURN_IF_ERROR(r.Finish());
  if (!models::LookupModel(row.model).ok()) {
    return protocol::FieldError(path + ".model", models::LookupModel(row.model).status().message());
  }
  row.precision = precision.value_or(DefaultPrecision(row.device_kind));
  row.overhead_seconds = overhead.value_or(0);
  if (flops) {
    row.flops_per_image = *flops;
  } else {
    // The model at the input it is quoted at: 224 pixels for the paper's models.
    models::ModelConfig config = *models::LookupModel(row.model);
    models::InputShape input = models::ReferenceInput(config);
    row.flops_per_image = models::TrainFlopsPerImage(
        models::ComputeCost(config, input.resolution, input.num_classes).forward_macs);
  }
  return row;
}

// One line of vitscale-gpu-bench (bench/gpu/gpu_bench.cc): a training step's images/s on one
// GPU at a batch, resolution and precision, with the device's name.
Expected<storage::ThroughputImport> GpuBenchLine(const nlohmann::json& value,
                                                 const std::string& path) {
  if (!value.is_object()) return protocol::FieldError(path, "expected an object");
  storage::ThroughputImport row;
  int64_t resolution = 224;
  protocol::ObjectReader r(value, path, protocol::UnknownFields::kIgnore);
  r.Text("model", &row.model, protocol::kLabelRule);
  r.Text("device", &row.device_kind, protocol::TextRule{protocol::TextKind::kText, 128});
  r.Text("precision", &row.precision, protocol::TextRule{protocol::TextKind::kText, 16});
  r.Int("batch", &row.batch_size, 1, int64_t{1} << 32);
  r.Int("resolution", &resolution, 1, 8192);
  r.Number("images_per_sec", &row.images_per_second, 1e-9, 1e12);
  RETURN_IF_ERROR(r.Finish());
  Expected<models::ModelConfig> config = models::LookupModel(row.model);
  if (!config.ok()) return protocol::FieldError(path + ".model", config.status().message());
  Status shape = models::CheckShape(*config, static_cast<int>(resolution), 1000);
  if (!shape.ok()) return protocol::FieldError(path + ".resolution", shape.message());
  row.flops_per_image = models::TrainFlopsPerImage(
      models::ComputeCost(*config, static_cast<int>(resolution), 1000).forward_macs);
  return row;
}

}  // namespace

Expected<std::vector<storage::ThroughputImport>> ParseThroughputImport(std::string_view text,
                                                                       const std::string& source,
                                                                       bool ignore_unknown) {
  // vitscale-gpu-bench output: one JSON object a line, each with "images_per_sec".
  if (text.find("\"images_per_sec\"") != std::string_view::npos) {
    std::vector<storage::ThroughputImport> out;
    size_t start = 0, number = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      std::string_view line = text.substr(start, end == std::string_view::npos ? end : end - start);
      start = end == std::string_view::npos ? text.size() : end + 1;
      ++number;
      if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      std::string where = fmt::format("{}:{}", source, number);
      Expected<nlohmann::json> value = protocol::ParseJson(line);
      if (!value.ok()) return InvalidArgument(where + ": " + value.status().message());
      Expected<storage::ThroughputImport> row = GpuBenchLine(*value, "");
      if (!row.ok()) return InvalidArgument(where + ": " + row.status().message());
      row->source = source;
      out.push_back(std::move(*row));
    }
    if (out.empty()) return InvalidArgument(source + ": no benchmark lines");
    return out;
  }
  Expected<nlohmann::json> parsed = protocol::ParseJson(text);
  if (!parsed.ok()) return InvalidArgument(source + ": " + parsed.status().message());
  const nlohmann::json* rows = &*parsed;
  if (parsed->is_object()) {
    auto it = parsed->find("rows");
    if (it == parsed->end() || (!ignore_unknown && parsed->size() != 1)) {
      return InvalidArgument(source + ": expected {\"rows\": [...]} or an array of rows");
    }
    rows = &*it;
  }
  if (!rows->is_array() || rows->empty()) {
    return InvalidArgument(source + ": expected a non-empty array of rows");
  }
  std::vector<storage::ThroughputImport> out;
  for (size_t i = 0; i < rows->size(); ++i) {
    Expected<storage::ThroughputImport> row =
        ImportRow((*rows)[i], fmt::format("rows[{}]", i), ignore_unknown);
    if (!row.ok()) return InvalidArgument(source + ": " + row.status().message());
    row->source = source;
    out.push_back(std::move(*row));
  }
  return out;
}

}  // namespace vitscale::planning
