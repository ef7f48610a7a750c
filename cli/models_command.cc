// `vitscale models [--json]`: every registered model with its size and analytic compute, at the
// input it is quoted at (models::ReferenceInput): 224x224 and 1000 classes for the paper's
// models, 28x28 and 10 classes for the small variants.
// `vitscale models import FILE --model NAME`: checks a released .npz against a model, reading
// only the arrays' headers (models/npz_layout.h), and says what a job importing it gets.
#include <fmt/core.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/flags.h"
#include "common/names.h"
#include "models/npy.h"
#include "models/npz_layout.h"
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
               "       vitscale models import FILE.npz --model NAME [--resolution R] [--json]\n"
               "Lists every registered model with its parameters and forward GMACs; `import`\n"
               "checks a released .npz (the paper's ViT and hybrid files, BiT's ResNet files)\n"
               "against a model and lists every missing, unexpected or misshapen array.\n");
}

std::string StdConvText(const models::Conventions& c) {
  return c.std_conv_form == models::StdConvForm::kStd
             ? fmt::format("(w - mean) / (std + {:g})", c.std_conv_eps)
             : fmt::format("(w - mean) / sqrt(var + {:g})", c.std_conv_eps);
}

int RunImport(const Args& args) {
  Expected<ParsedArgs> parsed =
      ParseArgs(args, {{"--model", true}, {"--resolution", true}, {"--json", false}});
  if (!parsed.ok() || parsed->help || parsed->positional.size() != 1 || !parsed->Has("--model")) {
    if (!parsed.ok())
      std::fprintf(stderr, "vitscale models import: %s\n", parsed.status().message().c_str());
    PrintUsage(parsed.ok() && parsed->help ? stdout : stderr);
    return parsed.ok() && parsed->help ? kExitOk : kExitUsage;
  }
  const std::string path = parsed->positional[0];
  Expected<models::ModelConfig> config = models::LookupModel(parsed->Get("--model"));
  if (!config.ok()) {
    std::fprintf(stderr, "vitscale models import: %s\n", config.status().message().c_str());
    return kExitNotFound;
  }
  int resnet_resolution = models::ReferenceInput(*config).resolution;
  if (parsed->Has("--resolution")) {
    Expected<long long> r = ParseInteger(parsed->Get("--resolution"), "--resolution", 1, 4096);
    if (!r.ok()) {
      std::fprintf(stderr, "vitscale models import: %s\n", r.status().message().c_str());
      return kExitUsage;
    }
    resnet_resolution = static_cast<int>(*r);
  }
  auto fail = [&](const Status& status) {
    std::fprintf(stderr, "vitscale models import: %s\n", status.message().c_str());
    switch (status.code()) {
      case StatusCode::kNotFound:
        return kExitNotFound;
      case StatusCode::kInvalidArgument:
      case StatusCode::kCorruption:
        return kExitBadInput;
      default:
        return kExitFailure;
    }
  };
  Expected<std::map<std::string, std::vector<int64_t>>> shapes = models::ReadNpzShapes(path);
  if (!shapes.ok()) return fail(shapes.status());
  Expected<models::ReleasedFileShape> file =
      models::InferReleasedShape(*config, *shapes, path, resnet_resolution);
  if (!file.ok()) return fail(file.status());
  models::ModelConfig as_released = *config;
  as_released.pre_logits = file->pre_logits;
  Status shape = models::CheckShape(as_released, file->resolution, file->num_classes);
  if (!shape.ok()) return fail(InvalidArgument(path + ": " + shape.message()));
  const std::vector<models::NpzEntry> layout =
      models::ReleasedLayout(as_released, file->num_classes, file->resolution);
  const models::NpzMismatch mismatch = models::CompareWithLayout(layout, *shapes);
  const models::Conventions conventions = models::ReleasedConventions(config->family);
  int64_t params = 0;
  for (const models::NpzEntry& e : layout) {
    int64_t n = 1;
    for (int64_t d : e.shape) n *= d;
    params += n;
  }
  if (parsed->Has("--json")) {
    nlohmann::ordered_json out = {
        {"file", path},
        {"model", config->name},
        {"fits", mismatch.empty()},
        {"classes", file->num_classes},
        {"resolution", file->resolution},
        {"pre_logits", file->pre_logits},
        {"arrays", shapes->size()},
        {"params", params},
        {"conventions",
         {{"padding", models::PaddingName(conventions.padding)},
          {"gelu", models::GeluName(conventions.gelu)},
          {"std_conv_eps", conventions.std_conv_eps},
          {"std_conv_form", models::StdConvFormName(conventions.std_conv_form)},
          {"group_norm_eps", conventions.group_norm_eps}}},
        {"missing", mismatch.missing},
        {"unexpected", mismatch.unexpected},
        {"wrong_shapes", mismatch.wrong_shape},
    };
    fmt::print("{}\n", out.dump(2));
    return mismatch.empty() ? kExitOk : kExitBadInput;
  }
  if (!mismatch.empty()) {
    std::fprintf(stderr,
                 "vitscale models import: %s does not fit %s (%d classes, resolution %d): %s\n",
                 path.c_str(), config->name.c_str(), file->num_classes, file->resolution,
                 mismatch.Describe().c_str());
    return kExitBadInput;
  }
  fmt::print("{} fits {}: {} arrays, {} parameters; {} classes{}, resolution {}{}\n", path,
             config->name, shapes->size(), params, file->num_classes,
             file->pre_logits > 0 ? fmt::format(", pre_logits {}", file->pre_logits) : "",
             file->resolution,
             config->family == models::Family::kResNet ? " (ResNets run at any resolution)" : "");
  fmt::print(
      "imported with the released code's conventions: padding {}, GELU {}, weight "
      "standardisation {}, GroupNorm epsilon {:g}\n",
      models::PaddingName(conventions.padding), models::GeluName(conventions.gelu),
      StdConvText(conventions), conventions.group_norm_eps);
  fmt::print(
      "a job starts from it with `run.init_from: {}`: another class count gets a new "
      "zero head{}\n",
      path,
      config->family == models::Family::kResNet
          ? ""
          : ", another resolution interpolated position embeddings");
  return kExitOk;
}

}  // namespace

int RunModels(const Args& args) {
  if (!args.empty() && args[0] == "import") return RunImport(Args(args.begin() + 1, args.end()));
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
