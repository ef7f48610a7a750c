// `vitscale models [--json]`: every registered model with its size and analytic compute, at the
// input it is quoted at (models::ReferenceInput): 224x224 and 1000 classes for the paper's
// models, 28x28 and 10 classes for the small variants.
#include <fmt/core.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/names.h"
#include "models/registry.h"

namespace vitscale::cli {
namespace {

constexpr int kPaperResolution = 224;

struct ModelRow {
  std::string name;
  std::string family;
  int resolution = 0;
  int classes = 0;
  int64_t params = 0;
  double gmacs = 0;                   // at `resolution`
  double gmacs_224 = 0;               // at 224x224, same classes: comparable across every row
  double train_gflops_per_image = 0;  // at `resolution`
};

double Giga(double x) { return x / 1e9; }

Expected<std::vector<ModelRow>> CollectRows() {
  std::vector<ModelRow> rows;
  for (const std::string& name : models::ModelNames()) {
    ASSIGN_OR_RETURN(models::ModelConfig config, models::LookupModel(name));
    models::InputShape input = models::ReferenceInput(config);
    RETURN_IF_ERROR(models::CheckShape(config, input.resolution, input.num_classes));
    RETURN_IF_ERROR(models::CheckShape(config, kPaperResolution, input.num_classes));
    models::ModelCost cost = models::ComputeCost(config, input.resolution, input.num_classes);
    models::ModelCost cost_224 = models::ComputeCost(config, kPaperResolution, input.num_classes);
    ModelRow row;
    row.name = name;
    row.family = models::FamilyName(config.family);
    row.resolution = input.resolution;
    row.classes = input.num_classes;
    row.params = cost.params;
    row.gmacs = Giga(static_cast<double>(cost.forward_macs));
    row.gmacs_224 = Giga(static_cast<double>(cost_224.forward_macs));
    row.train_gflops_per_image = Giga(models::TrainFlopsPerImage(cost.forward_macs));
    rows.push_back(std::move(row));
  }
  return rows;
}

void PrintJson(const std::vector<ModelRow>& rows) {
  // ordered_json keeps the keys in the order a reader scans them, name first.
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const ModelRow& r : rows) {
    out.push_back({{"name", r.name},
                   {"family", r.family},
                   {"resolution", r.resolution},
                   {"classes", r.classes},
                   {"params", r.params},
                   {"gmacs", r.gmacs},
                   {"gmacs_224", r.gmacs_224},
                   {"train_gflops_per_image", r.train_gflops_per_image}});
  }
  fmt::print("{}\n", out.dump(2));
}

void PrintTable(const std::vector<ModelRow>& rows) {
  size_t name_width = 4;
  for (const ModelRow& r : rows) name_width = std::max(name_width, r.name.size());
  const std::string header = fmt::format(
      "{:<{}}  {:<6}  {:>10}  {:>7}  {:>12}  {:>10}  {:>10}  {:>22}", "name", name_width, "family",
      "resolution", "classes", "params", "gmacs", "gmacs_224", "train_gflops_per_image");
  fmt::print("{}\n{}\n", header, std::string(header.size(), '-'));
  for (const ModelRow& r : rows) {
    fmt::print("{:<{}}  {:<6}  {:>10}  {:>7}  {:>12}  {:>10.4g}  {:>10.4g}  {:>22.4g}\n", r.name,
               name_width, r.family, r.resolution, r.classes, r.params, r.gmacs, r.gmacs_224,
               r.train_gflops_per_image);
  }
  fmt::print(
      "\ngmacs and train_gflops_per_image (= 6 x gmacs) are at each row's resolution and classes;\n"
      "gmacs_224 is the same model at 224x224. See docs/models.md for what is counted.\n");
}

void PrintUsage(FILE* out) {
  std::fprintf(out,
               "usage: vitscale models [--json]\n"
               "Lists every registered model with its parameters and forward GMACs.\n");
}

}  // namespace

int RunModels(const Args& args) {
  bool json = false;
  for (const std::string& arg : args) {
    if (arg == "--json") {
      json = true;
    } else if (arg == "-h" || arg == "--help") {
      PrintUsage(stdout);
      return kExitOk;
    } else {
      std::fprintf(stderr, "vitscale models: unexpected argument '%s'%s\n", arg.c_str(),
                   DidYouMean(arg, {"--json", "--help"}).c_str());
      PrintUsage(stderr);
      return kExitUsage;
    }
  }
  Expected<std::vector<ModelRow>> rows = CollectRows();
  if (!rows.ok()) {
    // Every registered name must cost at its reference input; failing here is a registry bug.
    std::fprintf(stderr, "vitscale models: %s\n", rows.status().ToString().c_str());
    return kExitFailure;
  }
  if (json) {
    PrintJson(rows.value());
  } else {
    PrintTable(rows.value());
  }
  return kExitOk;
}

}  // namespace vitscale::cli
