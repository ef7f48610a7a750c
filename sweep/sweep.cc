#include "sweep/sweep.h"

#include <fmt/format.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <regex>
#include <sstream>
#include <utility>

#include "common/files.h"
#include "common/names.h"
#include "common/sha256.h"
#include "models/registry.h"
#include "sweep/datasets.h"

namespace vitscale::sweep {
namespace {

// ---------------------------------------------------------------------------------------------
// Job setting keys and how each one's values are read and checked.

enum class Kind {
  kModel,    // a registered model name
  kDataset,  // a catalog dataset name
  kCount,    // an integer that may carry a k/M/B suffix ("9M")
  kInteger,  // a plain integer
  kReal,
  kChoice,  // one of `choices`
  kWidth,   // `true` (the model's own width), `false` or a width >= 0 (0 = none)
};

struct KeySpec {
  const char* key;
  Kind kind;
  double min = 0;         // smallest allowed value
  bool min_open = false;  // the value must be above `min`, not equal to it
  double max = 0;         // values must be below this; 0 = unbounded
  std::vector<std::string> choices = {};
};

const std::vector<KeySpec>& KeySpecs() {
  static const std::vector<KeySpec> specs = {
      {"model", Kind::kModel},
      {"dataset", Kind::kDataset},
      {"subset", Kind::kCount, 0, true},
      {"subset_seed", Kind::kInteger, 0},
      {"seed", Kind::kInteger, 0},
      {"epochs", Kind::kReal, 0, true},
      {"steps", Kind::kCount, 0, true},
      {"optimizer", Kind::kChoice, 0, false, 0, {"adam", "sgd"}},
      {"batch_size", Kind::kCount, 0, true},
      {"lr", Kind::kReal, 0, true},
      {"weight_decay", Kind::kReal, 0},
      {"beta1", Kind::kReal, 0, false, 1},
      {"beta2", Kind::kReal, 0, false, 1},
      {"warmup_steps", Kind::kCount, 0},
      {"lr_decay", Kind::kChoice, 0, false, 0, {"linear", "cosine"}},
      {"grad_clip_norm", Kind::kReal, 0},
      {"dropout", Kind::kReal, 0, false, 1},
      {"resolution", Kind::kCount, 0, true},
      {"label_smoothing", Kind::kReal, 0, false, 1},
      {"crop_padding", Kind::kInteger, 0},
      {"flip", Kind::kChoice, 0, false, 0, {"true", "false"}},
      {"pre_logits", Kind::kWidth},
      {"early_stopping_every", Kind::kCount, 0},
      {"fine_tune_resolution", Kind::kCount, 0, true},
      {"inspect", Kind::kChoice, 0, false, 0, {"true", "false"}},
  };
  return specs;
}

const KeySpec* FindKeySpec(std::string_view key) {
  for (const KeySpec& spec : KeySpecs()) {
    if (key == spec.key) return &spec;
  }
  return nullptr;
}

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

std::string Describe(const SettingValue& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) return fmt::format("{}", *d);
  return std::get<std::string>(v);
}

SourceMark MarkOf(const YAML::Node& node) {
  YAML::Mark m = node.Mark();
  if (m.is_null()) return {};
  return {m.line + 1, m.column + 1};
}

// Numbers are read here rather than by yaml-cpp's as<T>(), so that every rejection can say
// which form was expected.
std::optional<double> ParseReal(const std::string& text) {
  if (text.empty()) return std::nullopt;
  const char* begin = text.c_str();
  char* end = nullptr;
  double value = std::strtod(begin, &end);
  if (end != begin + text.size() || !std::isfinite(value)) return std::nullopt;
  return value;
}

// "4096", "1e4", "9M", "1.5k": an exact integer, with k = 1e3, M = 1e6, B = 1e9.
std::optional<int64_t> ParseCount(const std::string& text, bool allow_suffix) {
  static const std::regex pattern(R"(([+-]?[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?)([kMB]?))");
  std::smatch match;
  if (!std::regex_match(text, match, pattern)) return std::nullopt;
  std::string suffix = match[4].str();
  if (!suffix.empty() && !allow_suffix) return std::nullopt;
  double scale = suffix == "k" ? 1e3 : suffix == "M" ? 1e6 : suffix == "B" ? 1e9 : 1;
  // Integers without an exponent or a fraction are read exactly, whatever their size.
  if (suffix.empty() && !match[2].matched && !match[3].matched) {
    errno = 0;
    long long v = std::strtoll(text.c_str(), nullptr, 10);
    if (errno == ERANGE) return std::nullopt;
    return static_cast<int64_t>(v);
  }
  double value = std::strtod(match[1].str().c_str(), nullptr) * scale;
  if (!std::isfinite(value) || std::fabs(value) > 9e18) return std::nullopt;
  double rounded = std::round(value);
  if (std::fabs(value - rounded) > 1e-6 * std::max(1.0, std::fabs(value))) return std::nullopt;
  return static_cast<int64_t>(rounded);
}

// ---------------------------------------------------------------------------------------------
// The parser: walks the YAML tree once, keeping the first error with its position.

class Parser {
 public:
  explicit Parser(std::string file) : file_(std::move(file)) {}

  Status Error(SourceMark mark, const std::string& what) const {
    return InvalidArgument(fmt::format("{}:{}:{}: {}", file_, mark.line, mark.column, what));
  }
  Status Error(const YAML::Node& node, const std::string& what) const {
    return Error(MarkOf(node), what);
  }

  Expected<Sweep> Parse(std::string_view text);

 private:
  // A mapping's entries in file order, refusing keys that repeat or are not in `known`.
  struct Entry {
    std::string key;
    YAML::Node key_node;
    YAML::Node value;
  };
  Expected<std::vector<Entry>> Entries(const YAML::Node& map, const std::string& where,
                                       const std::vector<std::string>& known) const;

  Expected<std::string> Text(const YAML::Node& node, const std::string& what) const;
  Expected<int64_t> Integer(const YAML::Node& node, const std::string& what, int64_t min) const;
  Expected<double> Real(const YAML::Node& node, const std::string& what, double min,
                        bool min_open) const;

  // `label` names the value in messages where it differs from its key (e.g. "shots", whose
  // values read like subset sizes).
  Expected<Setting> ParseSetting(const std::string& key, const YAML::Node& node,
                                 const std::string& label = "") const;
  Expected<Axis> ParseAxis(const std::string& key, const YAML::Node& key_node,
                           const YAML::Node& value, bool require_list,
                           const std::string& label = "") const;
  Expected<std::vector<Setting>> ParsePretrain(const YAML::Node& node) const;
  Expected<GridBlock> ParseBlock(const YAML::Node& node) const;
  Expected<AxisGroup> ParseZip(const YAML::Node& key_node, const YAML::Node& node) const;
  Expected<Resources> ParseResources(const YAML::Node& node, Resources base) const;
  Status ParseTransfer(const YAML::Node& node, Sweep* sweep) const;
  Status ParseFewShot(const YAML::Node& node, Sweep* sweep) const;
  Status ParseFineTune(const YAML::Node& node, Sweep* sweep) const;
  Status CheckLength(const std::vector<Setting>& settings, SourceMark where) const;

  std::string file_;
  Recipe recipe_;  // set once `recipe:` is read; transfer defaults come from it
};

Expected<std::vector<Parser::Entry>> Parser::Entries(const YAML::Node& map,
                                                     const std::string& where,
                                                     const std::vector<std::string>& known) const {
  if (!map.IsMap()) return Error(map, where + " must be a mapping of `key: value` lines");
  std::vector<Entry> entries;
  std::map<std::string, SourceMark> seen;
  for (const auto& pair : map) {
    YAML::Node key_node = pair.first;
    if (!key_node.IsScalar()) return Error(key_node, "keys in " + where + " must be plain names");
    std::string key = key_node.Scalar();
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      std::string hint = DidYouMean(key, known);
      if (hint.empty()) hint = " (known keys: " + JoinNames(known) + ")";
      return Error(key_node, "unknown key '" + key + "' in " + where + hint);
    }
    auto [previous, inserted] = seen.emplace(key, MarkOf(key_node));
    if (!inserted) {
      return Error(key_node, fmt::format("'{}' appears twice in {} (first at line {}); keep one",
                                         key, where, previous->second.line));
    }
    entries.push_back({key, key_node, pair.second});
  }
  return entries;
}

Expected<std::string> Parser::Text(const YAML::Node& node, const std::string& what) const {
  if (node.IsNull()) return Error(node, what + " has no value");
  if (!node.IsScalar()) return Error(node, what + " must be a single value, not a list or mapping");
  if (node.Scalar().empty()) return Error(node, what + " is empty");
  return node.Scalar();
}

Expected<int64_t> Parser::Integer(const YAML::Node& node, const std::string& what,
                                  int64_t min) const {
  ASSIGN_OR_RETURN(std::string text, Text(node, what));
  std::optional<int64_t> value = ParseCount(text, /*allow_suffix=*/false);
  if (!value) return Error(node, fmt::format("{} must be an integer, not '{}'", what, text));
  if (*value < min)
    return Error(node, fmt::format("{} must be at least {}, not {}", what, min, *value));
  return *value;
}

Expected<double> Parser::Real(const YAML::Node& node, const std::string& what, double min,
                              bool min_open) const {
  ASSIGN_OR_RETURN(std::string text, Text(node, what));
  std::optional<double> value = ParseReal(text);
  if (!value) return Error(node, fmt::format("{} must be a number, not '{}'", what, text));
  if (min_open ? *value <= min : *value < min) {
    return Error(node, fmt::format("{} must be {} {}, not {}", what,
                                   min_open ? "above" : "at least", min, text));
  }
  return *value;
}

Expected<Setting> Parser::ParseSetting(const std::string& spec_key, const YAML::Node& node,
                                       const std::string& label) const {
  const KeySpec& spec = *FindKeySpec(spec_key);
  const std::string& key = label.empty() ? spec_key : label;
  ASSIGN_OR_RETURN(std::string text, Text(node, "'" + key + "'"));
  Setting setting{spec_key, {}, MarkOf(node)};
  switch (spec.kind) {
    case Kind::kModel: {
      Expected<models::ModelConfig> model = models::LookupModel(text);
      if (!model.ok()) return Error(node, model.status().message());
      setting.value = model->name;
      return setting;
    }
    case Kind::kDataset: {
      Expected<DatasetInfo> dataset = LookupDataset(text);
      if (!dataset.ok()) return Error(node, dataset.status().message());
      setting.value = dataset->name;
      return setting;
    }
    case Kind::kChoice: {
      if (std::find(spec.choices.begin(), spec.choices.end(), text) == spec.choices.end()) {
        return Error(node,
                     fmt::format("'{}' must be one of {}, not '{}'{}", key, JoinNames(spec.choices),
                                 text, DidYouMean(text, spec.choices)));
      }
      setting.value = text;
      return setting;
    }
    case Kind::kWidth: {
      if (text == "true") {
        setting.value = text;
        return setting;
      }
      std::optional<int64_t> value = text == "false" ? 0 : ParseCount(text, false);
      if (!value || *value < 0) {
        return Error(node, fmt::format("'{}' must be true (the model's width), false or a width "
                                       ">= 0, not '{}'",
                                       key, text));
      }
      setting.value = *value;
      return setting;
    }
    case Kind::kCount:
    case Kind::kInteger: {
      std::optional<int64_t> value = ParseCount(text, spec.kind == Kind::kCount);
      if (!value) {
        return Error(
            node,
            fmt::format("'{}' must be an integer{}, not '{}'", key,
                        spec.kind == Kind::kCount ? " (suffixes k, M, B allowed)" : "", text));
      }
      if (spec.min_open ? *value <= spec.min : *value < spec.min) {
        return Error(node, fmt::format("'{}' must be {} {}, not {}", key,
                                       spec.min_open ? "above" : "at least", spec.min, *value));
      }
      setting.value = *value;
      return setting;
    }
    case Kind::kReal: {
      std::optional<double> value = ParseReal(text);
      if (!value) return Error(node, fmt::format("'{}' must be a number, not '{}'", key, text));
      bool too_small = spec.min_open ? *value <= spec.min : *value < spec.min;
      bool too_big = spec.max != 0 && *value >= spec.max;
      if (too_small || too_big) {
        std::string range = fmt::format("{} {}", spec.min_open ? "above" : "at least", spec.min);
        if (spec.max != 0) range += fmt::format(" and below {}", spec.max);
        return Error(node, fmt::format("'{}' must be {}, not {}", key, range, text));
      }
      setting.value = *value;
      return setting;
    }
  }
  return Error(node, "internal: unhandled kind of key '" + key + "'");
}

Expected<Axis> Parser::ParseAxis(const std::string& spec_key, const YAML::Node& key_node,
                                 const YAML::Node& value, bool require_list,
                                 const std::string& label) const {
  Axis axis{spec_key, {}, MarkOf(key_node)};
  const std::string& key = label.empty() ? spec_key : label;
  if (value.IsSequence()) {
    if (value.size() == 0) return Error(value, "'" + key + "' lists no values; give at least one");
    std::map<std::string, SourceMark> seen;
    for (const YAML::Node& item : value) {
      if (item.IsSequence() || item.IsMap()) {
        return Error(item, "'" + key + "' values must be single values, not nested lists");
      }
      ASSIGN_OR_RETURN(Setting setting, ParseSetting(spec_key, item, label));
      // Typed comparison: 9M and 9000000, or 1e-3 and 0.001, are the same value.
      std::string canonical =
          nlohmann::json(std::visit([](const auto& v) { return nlohmann::json(v); }, setting.value))
              .dump();
      auto [previous, inserted] = seen.emplace(canonical, setting.mark);
      if (!inserted) {
        return Error(item, fmt::format("'{}' lists {} twice (first at line {}, column {}); "
                                       "remove the repeat",
                                       key, Describe(setting.value), previous->second.line,
                                       previous->second.column));
      }
      axis.values.push_back(std::move(setting));
    }
    return axis;
  }
  if (require_list) {
    return Error(value, "'" + key + "' under zip must be a list; put fixed values beside zip");
  }
  if (value.IsMap()) return Error(value, "'" + key + "' must be a value or a list of values");
  ASSIGN_OR_RETURN(Setting setting, ParseSetting(spec_key, value, label));
  axis.values.push_back(std::move(setting));
  return axis;
}

Status Parser::CheckLength(const std::vector<Setting>& settings, SourceMark where) const {
  bool has_epochs = false, has_steps = false;
  for (const Setting& s : settings) {
    has_epochs |= s.key == "epochs";
    has_steps |= s.key == "steps";
  }
  if (has_epochs && has_steps) {
    return Error(where, "give the training length as 'epochs' or as 'steps', not both");
  }
  return Status::Ok();
}

Expected<std::vector<Setting>> Parser::ParsePretrain(const YAML::Node& node) const {
  ASSIGN_OR_RETURN(std::vector<Entry> entries, Entries(node, "pretrain", JobSettingKeys()));
  std::vector<Setting> settings;
  for (const Entry& e : entries) {
    if (e.value.IsSequence()) {
      return Error(e.value, "'" + e.key +
                                "' under pretrain is fixed for every job; "
                                "put a list of values in a grid block instead");
    }
    ASSIGN_OR_RETURN(Setting s, ParseSetting(e.key, e.value));
    settings.push_back(std::move(s));
  }
  RETURN_IF_ERROR(CheckLength(settings, MarkOf(node)));
  return settings;
}

Expected<AxisGroup> Parser::ParseZip(const YAML::Node& key_node, const YAML::Node& node) const {
  ASSIGN_OR_RETURN(std::vector<Entry> entries, Entries(node, "zip", JobSettingKeys()));
  AxisGroup group;
  group.zipped = true;
  group.mark = MarkOf(key_node);
  if (entries.empty()) return Error(key_node, "zip has no axes; give it lists of equal length");
  for (const Entry& e : entries) {
    ASSIGN_OR_RETURN(Axis axis, ParseAxis(e.key, e.key_node, e.value, /*require_list=*/true));
    if (!group.axes.empty() && axis.values.size() != group.size()) {
      return Error(e.key_node,
                   fmt::format("zip axes must have equal lengths: '{}' has {} values but '{}' "
                               "has {}; zip pairs values by position",
                               e.key, axis.values.size(), group.axes.front().key, group.size()));
    }
    group.axes.push_back(std::move(axis));
  }
  return group;
}

Expected<Resources> Parser::ParseResources(const YAML::Node& node, Resources base) const {
  ASSIGN_OR_RETURN(std::vector<Entry> entries,
                   Entries(node, "resources", {"ranks", "gpus_per_rank", "accelerator", "hosts"}));
  const YAML::Node* accelerator_node = nullptr;
  std::string accelerator;
  for (const Entry& e : entries) {
    if (e.key == "ranks") {
      ASSIGN_OR_RETURN(base.ranks, Integer(e.value, "'ranks'", 1));
    } else if (e.key == "hosts") {
      ASSIGN_OR_RETURN(std::string hosts, Text(e.value, "'hosts'"));
      if (hosts != "one" && hosts != "any") {
        return Error(e.value, fmt::format("'hosts' must be 'one' (every rank on one host) or "
                                          "'any' (spread over hosts when no single host has "
                                          "room), not '{}'",
                                          hosts));
      }
      base.one_host = hosts == "one";
    } else if (e.key == "gpus_per_rank") {
      ASSIGN_OR_RETURN(base.gpus_per_rank, Integer(e.value, "'gpus_per_rank'", 0));
    } else {
      ASSIGN_OR_RETURN(accelerator, Text(e.value, "'accelerator'"));
      accelerator_node = &e.value;
    }
  }
  if (accelerator_node == nullptr) return base;
  if (accelerator == "cpu") {
    if (base.gpus_per_rank > 0) {
      return Error(*accelerator_node,
                   fmt::format("'accelerator: cpu' but 'gpus_per_rank' is {}; CPU ranks have "
                               "gpus_per_rank 0",
                               base.gpus_per_rank));
    }
    base.gpu_kind.clear();
    return base;
  }
  // As an agent reports it (protocol::kGpuKindRule): one line of at most 128 bytes.
  bool one_line = std::none_of(accelerator.begin(), accelerator.end(),
                               [](char c) { return static_cast<unsigned char>(c) < 0x20; });
  if (!one_line || accelerator.size() > 128) {
    return Error(*accelerator_node,
                 "'accelerator' must be cpu or a GPU model of at most 128 bytes on one line, as "
                 "`vitscale agents` shows it (\"NVIDIA H200\")");
  }
  if (base.gpus_per_rank == 0) {
    return Error(*accelerator_node,
                 "'accelerator: " + accelerator +
                     "' names a GPU model, but 'gpus_per_rank' is 0; set gpus_per_rank: 1 for "
                     "ranks on GPUs, or accelerator: cpu");
  }
  base.gpu_kind = accelerator;
  return base;
}

Expected<GridBlock> Parser::ParseBlock(const YAML::Node& node) const {
  std::vector<std::string> known = JobSettingKeys();
  known.insert(known.end(), {"zip", "recipe", "resources", "priority"});
  ASSIGN_OR_RETURN(std::vector<Entry> entries, Entries(node, "a grid block", known));
  GridBlock block;
  block.mark = MarkOf(node);
  std::map<std::string, SourceMark> axis_marks;
  std::vector<Setting> length_settings;
  for (const Entry& e : entries) {
    if (e.key == "resources") {
      ASSIGN_OR_RETURN(block.resources, ParseResources(e.value, Resources{}));
      continue;
    }
    if (e.key == "recipe") {
      ASSIGN_OR_RETURN(std::string name, Text(e.value, "'recipe'"));
      Expected<Recipe> recipe = LookupRecipe(name);
      if (!recipe.ok()) return Error(e.value, recipe.status().message());
      block.recipe = *recipe;
      continue;
    }
    if (e.key == "priority") {
      ASSIGN_OR_RETURN(block.priority,
                       Integer(e.value, "'priority'", std::numeric_limits<int64_t>::min()));
      continue;
    }
    AxisGroup group;
    if (e.key == "zip") {
      ASSIGN_OR_RETURN(group, ParseZip(e.key_node, e.value));
    } else {
      ASSIGN_OR_RETURN(Axis axis, ParseAxis(e.key, e.key_node, e.value, false));
      group.mark = axis.mark;
      group.axes.push_back(std::move(axis));
    }
    for (const Axis& axis : group.axes) {
      auto [previous, inserted] = axis_marks.emplace(axis.key, axis.mark);
      if (!inserted) {
        return Error(axis.mark, fmt::format("'{}' is already an axis of this block (line {}); "
                                            "give each key once, in zip or beside it",
                                            axis.key, previous->second.line));
      }
      length_settings.push_back(axis.values.front());
    }
    block.groups.push_back(std::move(group));
  }
  RETURN_IF_ERROR(CheckLength(length_settings, block.mark));
  return block;
}

Status Parser::ParseFewShot(const YAML::Node& node, Sweep* sweep) const {
  ASSIGN_OR_RETURN(std::vector<Entry> entries,
                   Entries(node, "few_shot", {"datasets", "shots", "seeds", "l2"}));
  FewShotConfig& f = sweep->few_shot;
  const Entry* datasets_entry = nullptr;
  SourceMark shots_mark = MarkOf(node);
  for (const Entry& e : entries) {
    if (e.key == "seeds") {
      ASSIGN_OR_RETURN(f.seeds, Integer(e.value, "'seeds'", 1));
    } else if (e.key == "l2") {
      ASSIGN_OR_RETURN(f.l2, Real(e.value, "'l2'", 0, false));
    } else {
      // datasets and shots: lists (a single value is a list of one).
      ASSIGN_OR_RETURN(Axis axis, ParseAxis(e.key == "datasets" ? "dataset" : "subset", e.key_node,
                                            e.value, false, e.key));
      if (e.key == "datasets") {
        datasets_entry = &e;
        f.datasets.clear();
        for (const Setting& s : axis.values) f.datasets.push_back(std::get<std::string>(s.value));
      } else {
        shots_mark = MarkOf(e.value);
        f.shots.clear();
        for (const Setting& s : axis.values) f.shots.push_back(std::get<int64_t>(s.value));
      }
    }
  }
  if (datasets_entry == nullptr) {
    return Error(node, "few_shot needs 'datasets': the datasets to evaluate on");
  }
  // Every class needs `shots` training examples to draw from.
  for (const std::string& name : f.datasets) {
    DatasetInfo d = LookupDataset(name).value();
    for (int64_t shots : f.shots) {
      if (shots * d.num_classes > d.train_size) {
        return Error(shots_mark, fmt::format("{}-shot needs {} training examples of {} but it "
                                             "has {}; use fewer shots",
                                             shots, shots * d.num_classes, name, d.train_size));
      }
    }
  }
  return Status::Ok();
}

Status Parser::ParseFineTune(const YAML::Node& node, Sweep* sweep) const {
  if (!node.IsSequence()) {
    return Error(node, "fine_tune must be a list of entries, each `- dataset: NAME ...`");
  }
  for (const YAML::Node& item : node) {
    ASSIGN_OR_RETURN(std::vector<Entry> entries,
                     Entries(item, "a fine_tune entry",
                             {"dataset", "steps", "resolution", "lrs", "batch_size", "holdout",
                              "final_run", "polyak"}));
    FineTuneSpec spec;
    spec.mark = MarkOf(item);
    FineTuneConfig& ft = spec.config;
    ft.resolution = recipe_.fine_tune_resolution;
    ft.batch_size = recipe_.fine_tune_batch_size;
    ft.final_run = true;  // App. B.1.1
    std::optional<int64_t> steps;
    bool lrs_given = false, holdout_given = false;
    for (const Entry& e : entries) {
      if (e.key == "dataset") {
        ASSIGN_OR_RETURN(Setting s, ParseSetting("dataset", e.value));
        ft.dataset = std::get<std::string>(s.value);
      } else if (e.key == "lrs") {
        ASSIGN_OR_RETURN(Axis axis, ParseAxis("lr", e.key_node, e.value, false, "lrs"));
        ft.lrs.clear();
        for (const Setting& s : axis.values) ft.lrs.push_back(std::get<double>(s.value));
        lrs_given = true;
      } else if (e.key == "holdout") {
        ASSIGN_OR_RETURN(double holdout, Real(e.value, "'holdout'", 0, true));
        if (holdout >= 1) return Error(e.value, "'holdout' is a fraction of train: below 1");
        ft.holdout = holdout;
        holdout_given = true;
      } else if (e.key == "polyak") {
        ASSIGN_OR_RETURN(double polyak, Real(e.value, "'polyak'", 0, true));
        if (polyak >= 1) {
          return Error(e.value, "'polyak' is the averaging decay, e.g. 0.9999: below 1");
        }
        ft.polyak = polyak;
      } else if (e.key == "final_run") {
        ASSIGN_OR_RETURN(std::string text, Text(e.value, "'final_run'"));
        if (text != "true" && text != "false") {
          return Error(e.value, "'final_run' must be true or false, not '" + text + "'");
        }
        ft.final_run = text == "true";
      } else {
        const char* key = e.key == "steps"        ? "steps"
                          : e.key == "resolution" ? "resolution"
                                                  : "batch_size";
        ASSIGN_OR_RETURN(Setting s, ParseSetting(key, e.value));
        int64_t v = std::get<int64_t>(s.value);
        if (e.key == "steps") steps = v;
        if (e.key == "resolution") {
          ft.resolution = v;
          spec.resolution_given = true;
        }
        if (e.key == "batch_size") ft.batch_size = v;
      }
    }
    if (ft.dataset.empty()) return Error(item, "a fine_tune entry needs 'dataset'");
    DatasetInfo d = LookupDataset(ft.dataset).value();
    const FineTuneProtocol protocol = PaperFineTuneProtocol(ft.dataset);
    if (!lrs_given) ft.lrs = protocol.lrs;
    if (!holdout_given && ft.lrs.size() > 1) ft.holdout = protocol.holdout;
    if (!steps && d.fine_tune_steps == 0) {
      return Error(item,
                   "the paper gives no fine-tuning steps for " + ft.dataset + "; set 'steps'");
    }
    ft.steps = steps.value_or(d.fine_tune_steps);
    for (size_t i = 0; i < sweep->fine_tune.size(); ++i) {
      const FineTuneConfig& other = sweep->fine_tune[i].config;
      if (other.dataset == ft.dataset && other.steps == ft.steps &&
          other.resolution == ft.resolution && other.lrs == ft.lrs &&
          other.batch_size == ft.batch_size && other.holdout == ft.holdout &&
          other.final_run == ft.final_run && other.polyak == ft.polyak) {
        return Error(item, fmt::format("this fine_tune entry repeats the one at line {}",
                                       sweep->fine_tune[i].mark.line));
      }
    }
    sweep->fine_tune.push_back(std::move(spec));
  }
  return Status::Ok();
}

Status Parser::ParseTransfer(const YAML::Node& node, Sweep* sweep) const {
  ASSIGN_OR_RETURN(std::vector<Entry> entries,
                   Entries(node, "transfer", {"few_shot", "fine_tune"}));
  for (const Entry& e : entries) {
    if (e.key == "few_shot") {
      RETURN_IF_ERROR(ParseFewShot(e.value, sweep));
    } else {
      RETURN_IF_ERROR(ParseFineTune(e.value, sweep));
    }
  }
  return Status::Ok();
}

// Records where a YAML document starts: its first node that is not null, else its start.
class DocumentProbe : public YAML::EventHandler {
 public:
  std::optional<SourceMark> start;

  void OnDocumentStart(const YAML::Mark& mark) override { Saw(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { Saw(mark, true); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    Saw(mark, true);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Saw(mark, true);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Saw(mark, true);
  }
  void OnMapEnd() override {}

 private:
  void Saw(const YAML::Mark& mark, bool node = false) {
    if (start && (!node || saw_node_)) return;
    start = SourceMark{mark.line + 1, mark.column + 1};
    saw_node_ = node;
  }
  bool saw_node_ = false;
};

// Where the second YAML document of `text` starts, if it has one. Not YAML::LoadAll: yaml-cpp
// 0.7.0's never returns on some input, a lone ',' for one (jbeder/yaml-cpp#1040, fixed after
// 0.7.0), so at most two documents are read here. Throws what yaml-cpp throws for malformed YAML.
std::optional<SourceMark> SecondDocument(std::string_view text) {
  std::istringstream stream{std::string(text)};
  YAML::Parser parser(stream);
  DocumentProbe first, second;
  if (!parser.HandleNextDocument(first) || !parser.HandleNextDocument(second)) {
    return std::nullopt;
  }
  return second.start.value_or(SourceMark{});
}

// The length of the UTF-8 sequence at the start of `text`, or 0 when it is not well formed
// (a stray continuation byte, an overlong form, a surrogate, beyond U+10FFFF, or cut short).
size_t Utf8SequenceLength(std::string_view text) {
  const auto byte = [&text](size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(0);
  size_t length = lead < 0x80   ? 1
                  : lead < 0xc2 ? 0
                  : lead < 0xe0 ? 2
                  : lead < 0xf0 ? 3
                  : lead < 0xf5 ? 4
                                : 0;
  if (length == 0 || length > text.size()) return 0;
  // The second byte's range rules out overlong forms, surrogates and code points past U+10FFFF.
  unsigned char low = 0x80, high = 0xbf;
  if (lead == 0xe0) low = 0xa0;
  if (lead == 0xed) high = 0x9f;
  if (lead == 0xf0) low = 0x90;
  if (lead == 0xf4) high = 0x8f;
  for (size_t i = 1; i < length; ++i) {
    if (byte(i) < (i == 1 ? low : 0x80) || byte(i) > (i == 1 ? high : 0xbf)) return 0;
  }
  return length;
}

// YAML is UTF-8 text without control characters, and a binary file fed to yaml-cpp gives
// baffling messages, or none: on some malformed UTF-8 it never returns. So the text is checked
// first, naming the first offending byte.
Status CheckText(std::string_view text, const Parser& parser) {
  SourceMark mark;
  bool indenting = true;
  for (size_t i = 0; i < text.size(); ++mark.column) {
    auto byte = static_cast<unsigned char>(text[i]);
    if (byte == '\n') {
      ++mark.line;
      mark.column = 0;
      indenting = true;
      ++i;
      continue;
    }
    if (byte == '\t' && indenting) {
      return parser.Error(mark, "a tab indents this line; YAML indents with spaces only");
    }
    indenting = indenting && byte == ' ';
    const size_t length = Utf8SequenceLength(text.substr(i));
    if (length == 0) {
      return parser.Error(mark, fmt::format("byte 0x{:02x} is not UTF-8: a sweep is a UTF-8 text "
                                            "file (is this the right file, in this encoding?)",
                                            byte));
    }
    // C0 and C1 control characters, and DEL.
    const bool c1 = length == 2 && byte == 0xc2 && static_cast<unsigned char>(text[i + 1]) < 0xa0;
    if ((byte < 0x20 && byte != '\t' && byte != '\r') || byte == 0x7f || c1) {
      return parser.Error(mark, fmt::format("byte 0x{:02x} is not text: a sweep is a YAML text "
                                            "file (is this the right file?)",
                                            byte));
    }
    i += length;
  }
  return Status::Ok();
}

Expected<Sweep> Parser::Parse(std::string_view text) {
  RETURN_IF_ERROR(CheckText(text, *this));
  YAML::Node root;
  std::optional<SourceMark> second_document;
  try {
    root = YAML::Load(std::string(text));
    second_document = SecondDocument(text);
  } catch (const YAML::ParserException& e) {
    return Error(SourceMark{e.mark.line + 1, e.mark.column + 1}, "malformed YAML: " + e.msg);
  } catch (const YAML::Exception& e) {
    return Error(SourceMark{}, std::string("malformed YAML: ") + e.what());
  }
  const char* kMinimal = "a sweep needs at least `name:`, `recipe:` and a model (docs/sweeps.md)";
  if (root.IsNull()) return Error(SourceMark{}, std::string("the file is empty; ") + kMinimal);
  if (second_document) {
    return Error(*second_document,
                 "a sweep file holds one YAML document; remove the `---` "
                 "and what follows, or split it into two files");
  }
  if (!root.IsMap())
    return Error(root, std::string("the top level must be a mapping; ") + kMinimal);

  ASSIGN_OR_RETURN(std::vector<Entry> entries,
                   Entries(root, "the sweep",
                           {"name", "description", "recipe", "pretrain", "grid", "transfer",
                            "resources", "priority"}));
  std::map<std::string, const Entry*> by_key;
  for (const Entry& e : entries) by_key[e.key] = &e;

  Sweep sweep;
  sweep.file = file_;
  if (!by_key.count("name")) return Error(root, "the sweep needs a 'name:'");
  ASSIGN_OR_RETURN(sweep.name, Text(by_key["name"]->value, "'name'"));
  if (by_key.count("description")) {
    ASSIGN_OR_RETURN(sweep.description, Text(by_key["description"]->value, "'description'"));
  }
  if (!by_key.count("recipe")) {
    return Error(root, "the sweep needs a 'recipe:', one of " + JoinNames(RecipeNames()));
  }
  const YAML::Node& recipe_node = by_key["recipe"]->value;
  ASSIGN_OR_RETURN(std::string recipe_name, Text(recipe_node, "'recipe'"));
  Expected<Recipe> recipe = LookupRecipe(recipe_name);
  if (!recipe.ok()) return Error(recipe_node, recipe.status().message());
  recipe_ = *recipe;
  sweep.recipe = *recipe;
  sweep.recipe_mark = MarkOf(recipe_node);
  sweep.few_shot.shots = recipe_.few_shot_shots;
  sweep.few_shot.seeds = recipe_.few_shot_seeds;
  sweep.few_shot.l2 = recipe_.few_shot_l2;

  if (by_key.count("pretrain")) {
    const YAML::Node& node = by_key["pretrain"]->value;
    sweep.pretrain_mark = MarkOf(by_key["pretrain"]->key_node);
    ASSIGN_OR_RETURN(sweep.pretrain, ParsePretrain(node));
  }
  if (by_key.count("grid")) {
    const YAML::Node& node = by_key["grid"]->value;
    if (node.IsMap()) {
      ASSIGN_OR_RETURN(GridBlock block, ParseBlock(node));
      sweep.grid.push_back(std::move(block));
    } else if (node.IsSequence() && node.size() > 0) {
      for (const YAML::Node& item : node) {
        ASSIGN_OR_RETURN(GridBlock block, ParseBlock(item));
        sweep.grid.push_back(std::move(block));
      }
    } else {
      return Error(node, "grid must be a block (`key: [values]` lines) or a list of blocks");
    }
  }
  if (by_key.count("transfer")) {
    RETURN_IF_ERROR(ParseTransfer(by_key["transfer"]->value, &sweep));
  }
  if (by_key.count("resources")) {
    ASSIGN_OR_RETURN(sweep.resources, ParseResources(by_key["resources"]->value, Resources{}));
  }
  if (by_key.count("priority")) {
    ASSIGN_OR_RETURN(sweep.priority, Integer(by_key["priority"]->value, "'priority'",
                                             std::numeric_limits<int64_t>::min()));
  }
  return sweep;
}

// ---------------------------------------------------------------------------------------------
// Expansion.

class Expander {
 public:
  explicit Expander(const Sweep& sweep) : sweep_(sweep), parser_(sweep.file) {}

  Status ExpandBlock(const GridBlock* block, SourceMark block_mark) {
    std::vector<const AxisGroup*> groups;
    if (block != nullptr) {
      for (const AxisGroup& g : block->groups) groups.push_back(&g);
    }
    std::vector<const Setting*> chosen;
    return Walk(block, block_mark, groups, 0, &chosen);
  }

  std::vector<Job> TakeJobs() { return std::move(jobs_); }

 private:
  Status Walk(const GridBlock* block, SourceMark block_mark,
              const std::vector<const AxisGroup*>& groups, size_t depth,
              std::vector<const Setting*>* chosen) {
    if (depth == groups.size()) return MakeJob(block, block_mark, *chosen);
    const AxisGroup& group = *groups[depth];
    for (size_t i = 0; i < group.size(); ++i) {
      size_t before = chosen->size();
      for (const Axis& axis : group.axes) chosen->push_back(&axis.values[i]);
      RETURN_IF_ERROR(Walk(block, block_mark, groups, depth + 1, chosen));
      chosen->resize(before);
    }
    return Status::Ok();
  }

  Status MakeJob(const GridBlock* block, SourceMark block_mark,
                 const std::vector<const Setting*>& block_settings) {
    // Grid values override `pretrain:`, which overrides the recipe (the block's, else the
    // sweep's). A training length given
    // at a level replaces the other form given below it.
    std::map<std::string, const Setting*> settings;
    auto apply = [&settings](const Setting* s) {
      if (s->key == "epochs") settings.erase("steps");
      if (s->key == "steps") settings.erase("epochs");
      settings[s->key] = s;
    };
    for (const Setting& s : sweep_.pretrain) apply(&s);
    for (const Setting* s : block_settings) apply(s);
    auto get = [&settings](const char* key) -> const Setting* {
      auto it = settings.find(key);
      return it == settings.end() ? nullptr : it->second;
    };
    auto integer = [&](const char* key, int64_t fallback) {
      const Setting* s = get(key);
      return s ? std::get<int64_t>(s->value) : fallback;
    };
    auto real = [&](const char* key, double fallback) {
      const Setting* s = get(key);
      return s ? std::get<double>(s->value) : fallback;
    };
    auto text = [&](const char* key, const std::string& fallback) {
      const Setting* s = get(key);
      return s ? std::get<std::string>(s->value) : fallback;
    };

    const Setting* model_setting = get("model");
    if (model_setting == nullptr) {
      return parser_.Error(block ? block_mark : sweep_.pretrain_mark,
                           "no model for this job: set 'model:' in this grid block or under "
                           "pretrain");
    }
    JobConfig c;
    c.model = std::get<std::string>(model_setting->value);
    models::ModelConfig model = models::LookupModel(c.model).value();
    const Recipe& recipe = block && block->recipe ? *block->recipe : sweep_.recipe;
    c.dataset = text("dataset", recipe.dataset);
    DatasetInfo dataset = LookupDataset(c.dataset).value();
    c.subset = integer("subset", dataset.train_size);
    if (c.subset > dataset.train_size) {
      return parser_.Error(
          get("subset")->mark,
          fmt::format("subset {} is larger than {}'s {} training examples; use "
                      "at most {}",
                      c.subset, c.dataset, dataset.train_size, dataset.train_size));
    }
    c.subset_seed = integer("subset_seed", 0);
    c.seed = integer("seed", 0);

    const TrainConfig& d = recipe.train;
    TrainConfig& t = c.train;
    t.optimizer = text("optimizer", d.optimizer);
    t.batch_size = integer("batch_size", d.batch_size);
    t.weight_decay = real("weight_decay", d.weight_decay);
    t.beta1 = real("beta1", d.beta1);
    t.beta2 = real("beta2", d.beta2);
    t.warmup_steps = integer("warmup_steps", d.warmup_steps);
    t.lr_decay = text("lr_decay", d.lr_decay);
    t.grad_clip_norm = real("grad_clip_norm", d.grad_clip_norm);
    t.dropout = real("dropout", d.dropout);
    t.resolution = integer("resolution", d.resolution);
    t.label_smoothing = real("label_smoothing", d.label_smoothing);
    t.crop_padding = get("crop_padding") ? integer("crop_padding", 0) : d.crop_padding;
    t.flip = get("flip") ? std::optional<bool>(text("flip", "") == "true") : d.flip;
    if (const Setting* pre_logits = get("pre_logits")) {
      const bool model_width = std::holds_alternative<std::string>(pre_logits->value);
      if (model.family == models::Family::kResNet) {
        // BiT has no pre_logits layer: `true` means "where the model has one".
        if (!model_width && std::get<int64_t>(pre_logits->value) > 0) {
          return parser_.Error(pre_logits->mark, c.model +
                                                     " is a ResNet: it has no pre_logits "
                                                     "layer (set it on ViTs and hybrids)");
        }
      } else {
        t.pre_logits = model_width ? model.transformer.width : std::get<int64_t>(pre_logits->value);
      }
    }
    t.early_stopping_every = integer("early_stopping_every", 0);
    if (const Setting* steps = get("steps")) {
      t.epochs = static_cast<double>(std::get<int64_t>(steps->value)) *
                 static_cast<double>(t.batch_size) / static_cast<double>(c.subset);
    } else {
      t.epochs = real("epochs", d.epochs);
    }
    if (const Setting* lr = get("lr")) {
      t.lr = std::get<double>(lr->value);
    } else if (std::optional<double> base = BaseLearningRate(recipe, c.model)) {
      t.lr = *base;
    } else {
      return parser_.Error(model_setting->mark,
                           fmt::format("recipe {} has no base learning rate for {} (the paper "
                                       "trains it with no such recipe); set 'lr'",
                                       recipe.name, c.model));
    }

    const Setting* resolution_setting = get("resolution");
    Status shape = models::CheckShape(model, static_cast<int>(t.resolution), dataset.num_classes);
    if (!shape.ok()) {
      return parser_.Error(resolution_setting ? resolution_setting->mark : model_setting->mark,
                           fmt::format("{} cannot pretrain at resolution {} on {}: {}", c.model,
                                       t.resolution, c.dataset, shape.message()));
    }
    if (t.early_stopping_every > 0 && dataset.test_size == 0) {
      // Without a test split, validation takes the tail of the subset permutation.
      const int64_t tail = ValidationTailSize(dataset.train_size);
      if (c.subset + tail > dataset.train_size) {
        return parser_.Error(
            get("subset") ? get("subset")->mark : get("early_stopping_every")->mark,
            fmt::format("early stopping on {} validates on the last {} examples of its "
                        "permutation, so the subset may be at most {}, not {}",
                        c.dataset, tail, dataset.train_size - tail, c.subset));
      }
    }
    c.inspect = text("inspect", "false") == "true";
    if (c.inspect && model.family == models::Family::kResNet) {
      return parser_.Error(get("inspect")->mark,
                           c.model +
                               " is a ResNet: the inspection evaluators read a "
                               "transformer's embeddings and attention");
    }
    c.few_shot = sweep_.few_shot;
    double fine_tune_flops = 0;
    const Setting* fine_tune_resolution = get("fine_tune_resolution");
    for (const FineTuneSpec& spec : sweep_.fine_tune) {
      FineTuneConfig ft = spec.config;
      if (fine_tune_resolution) {
        ft.resolution = std::get<int64_t>(fine_tune_resolution->value);
      } else if (!spec.resolution_given) {
        int64_t stride = models::InputStride(model);
        ft.resolution = std::max(stride, ft.resolution / stride * stride);
      }
      DatasetInfo target = LookupDataset(ft.dataset).value();
      Status ft_shape =
          models::CheckShape(model, static_cast<int>(ft.resolution), target.num_classes);
      if (!ft_shape.ok()) {
        return parser_.Error(fine_tune_resolution ? fine_tune_resolution->mark : spec.mark,
                             fmt::format("{} cannot fine-tune at resolution {} on {}: {}", c.model,
                                         ft.resolution, ft.dataset, ft_shape.message()));
      }
      // Every run of steps x batch images: the grid's and the final one.
      models::ModelCost ft_cost =
          models::ComputeCost(model, static_cast<int>(ft.resolution), target.num_classes);
      fine_tune_flops += models::TrainFlopsPerImage(ft_cost.forward_macs) *
                         static_cast<double>(ft.steps * ft.batch_size) *
                         static_cast<double>(FineTuneRuns(ft));
      c.fine_tune.push_back(std::move(ft));
    }

    Job job;
    job.config = c;
    job.canonical = ToJson(c);
    job.id = Sha256Hex(job.canonical.dump());
    job.family = models::FamilyName(model.family);
    double examples = t.epochs * static_cast<double>(c.subset);
    job.examples = std::llround(examples);
    models::ModelCost cost =
        models::ComputeCost(model, static_cast<int>(t.resolution), dataset.num_classes);
    job.train_flops = models::TrainFlopsPerImage(cost.forward_macs) * examples;
    job.fine_tune_flops = fine_tune_flops;
    job.priority = block && block->priority ? *block->priority : sweep_.priority;
    job.resources = block && block->resources ? *block->resources : sweep_.resources;

    auto [previous, inserted] = first_mark_.emplace(job.id, block_mark);
    if (!inserted) {
      return parser_.Error(
          block_mark,
          fmt::format("this block repeats a job made by the block at line {} "
                      "({} on {}, subset {}, {} epochs, seed {}); remove one",
                      previous->second.line, c.model, c.dataset, c.subset, t.epochs, c.seed));
    }
    jobs_.push_back(std::move(job));
    return Status::Ok();
  }

  const Sweep& sweep_;
  Parser parser_;
  std::vector<Job> jobs_;
  std::map<std::string, SourceMark> first_mark_;
};

}  // namespace

const std::vector<std::string>& JobSettingKeys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (const KeySpec& spec : KeySpecs()) k.push_back(spec.key);
    return k;
  }();
  return keys;
}

Expected<Sweep> ParseSweep(std::string_view text, const std::string& file) {
  // The parser checks node kinds before reading them, so yaml-cpp should not throw past the
  // load; this is the edge where a miss would still become a message rather than a crash.
  try {
    return Parser(file).Parse(text);
  } catch (const YAML::Exception& e) {
    return InvalidArgument(fmt::format("{}:{}:{}: cannot read the sweep: {}", file, e.mark.line + 1,
                                       e.mark.column + 1, e.msg));
  }
}

Expected<Sweep> LoadSweepFile(const std::string& path) {
  Expected<std::string> text = ReadFile(path);
  if (!text.ok()) {
    std::error_code error;
    if (!std::filesystem::is_directory(path, error)) return text.status();
    return InvalidArgument(text.status().message() + "; give one sweep file, e.g. " + path +
                           "/study.yaml");
  }
  return ParseSweep(*text, path);
}

Expected<std::vector<Job>> ExpandSweep(const Sweep& sweep) {
  // Counted first, saturating, so that a huge grid costs nothing before it is refused.
  int64_t jobs = sweep.grid.empty() ? 1 : 0;
  for (const GridBlock& block : sweep.grid) {
    int64_t product = 1;
    for (const AxisGroup& group : block.groups) {
      product = std::min(product * static_cast<int64_t>(group.size()), kMaxSweepJobs + 1);
    }
    jobs = std::min(jobs + product, kMaxSweepJobs + 1);
    if (jobs > kMaxSweepJobs) {
      return Parser(sweep.file)
          .Error(block.mark,
                 fmt::format("with this grid block the sweep makes more than {} jobs, the "
                             "most one sweep may have; split it into several sweeps",
                             kMaxSweepJobs));
    }
  }
  Expander expander(sweep);
  if (sweep.grid.empty()) {
    RETURN_IF_ERROR(expander.ExpandBlock(nullptr, sweep.pretrain_mark));
  }
  for (const GridBlock& block : sweep.grid) {
    RETURN_IF_ERROR(expander.ExpandBlock(&block, block.mark));
  }
  return expander.TakeJobs();
}

}  // namespace vitscale::sweep
