#include "sweep/job_config.h"

#include <algorithm>
#include <string_view>

#include "common/sha256.h"

namespace vitscale::sweep {

using nlohmann::json;

json ToJson(const JobConfig& c) {
  const TrainConfig& t = c.train;
  json train = {
      {"optimizer", t.optimizer},
      {"batch_size", t.batch_size},
      {"epochs", t.epochs},
      {"lr", t.lr},
      {"weight_decay", t.weight_decay},
      {"beta1", t.beta1},
      {"beta2", t.beta2},
      {"warmup_steps", t.warmup_steps},
      {"lr_decay", t.lr_decay},
      {"grad_clip_norm", t.grad_clip_norm},
      {"dropout", t.dropout},
      {"resolution", t.resolution},
  };
  if (t.label_smoothing != 0) train["label_smoothing"] = t.label_smoothing;
  if (t.crop_padding) train["crop_padding"] = *t.crop_padding;
  if (t.flip) train["flip"] = *t.flip;
  if (t.pre_logits != 0) train["pre_logits"] = t.pre_logits;
  if (t.early_stopping_every != 0) train["early_stopping_every"] = t.early_stopping_every;
  json few_shot = {{"datasets", c.few_shot.datasets},
                   {"shots", c.few_shot.shots},
                   {"seeds", c.few_shot.seeds},
                   {"l2", c.few_shot.l2}};
  json fine_tune = json::array();
  for (const FineTuneConfig& f : c.fine_tune) {
    json entry = {{"dataset", f.dataset},
                  {"steps", f.steps},
                  {"resolution", f.resolution},
                  {"lrs", f.lrs},
                  {"batch_size", f.batch_size}};
    if (f.holdout) entry["holdout"] = *f.holdout;
    if (f.final_run) entry["final_run"] = *f.final_run;
    if (f.polyak) entry["polyak"] = *f.polyak;
    fine_tune.push_back(entry);
  }
  json job = {{"version", kJobConfigVersion},
              {"model", c.model},
              {"dataset", c.dataset},
              {"subset", c.subset},
              {"subset_seed", c.subset_seed},
              {"seed", c.seed},
              {"train", train},
              {"few_shot", few_shot},
              {"fine_tune", fine_tune}};
  if (c.inspect) job["inspect"] = true;
  return job;
}

int64_t FineTuneRuns(const FineTuneConfig& config) {
  const int64_t grid = static_cast<int64_t>(config.lrs.size());
  if (!config.final_run.value_or(false)) return grid;
  return grid > 1 ? grid + 1 : 1;
}

int64_t ValidationTailSize(int64_t train_size) {
  return std::min<int64_t>(50'000, train_size / 100);
}

std::string JobId(const JobConfig& config) { return Sha256Hex(ToJson(config).dump()); }

namespace {

// Reads typed fields out of a JSON object, remembering the first error with its field path.
class Reader {
 public:
  Status status() const { return status_; }

  const json* Field(const json& object, const std::string& path, std::string_view key) {
    if (!status_.ok()) return nullptr;
    auto it = object.find(key);
    if (it == object.end()) {
      Fail(path + std::string(key), "is missing");
      return nullptr;
    }
    return &*it;
  }

  void Get(const json& object, const std::string& path, std::string_view key, std::string* out) {
    const json* v = Field(object, path, key);
    if (v == nullptr) return;
    if (!v->is_string()) return Fail(path + std::string(key), "must be a string");
    *out = v->get<std::string>();
  }
  void Get(const json& object, const std::string& path, std::string_view key, int64_t* out) {
    const json* v = Field(object, path, key);
    if (v == nullptr) return;
    if (!v->is_number_integer()) return Fail(path + std::string(key), "must be an integer");
    *out = v->get<int64_t>();
  }
  void Get(const json& object, const std::string& path, std::string_view key, double* out) {
    const json* v = Field(object, path, key);
    if (v == nullptr) return;
    if (!v->is_number()) return Fail(path + std::string(key), "must be a number");
    *out = v->get<double>();
  }
  template <typename T>
  void Get(const json& object, const std::string& path, std::string_view key, std::vector<T>* out) {
    const json* v = Field(object, path, key);
    if (v == nullptr) return;
    if (!v->is_array()) return Fail(path + std::string(key), "must be a list");
    out->clear();
    for (size_t i = 0; i < v->size(); ++i) {
      T item{};
      json holder = {{"item", (*v)[i]}};
      Get(holder, path + std::string(key) + "[" + std::to_string(i) + "].", "item", &item);
      out->push_back(item);
    }
  }
  // The optional fields: absent leaves `out` as it is.
  template <typename T>
  void GetIfPresent(const json& object, const std::string& path, std::string_view key, T* out) {
    if (object.contains(key)) Get(object, path, key, out);
  }
  template <typename T>
  void GetIfPresent(const json& object, const std::string& path, std::string_view key,
                    std::optional<T>* out) {
    if (!object.contains(key)) return;
    T value{};
    Get(object, path, key, &value);
    *out = value;
  }
  void Get(const json& object, const std::string& path, std::string_view key, bool* out) {
    const json* v = Field(object, path, key);
    if (v == nullptr) return;
    if (!v->is_boolean()) return Fail(path + std::string(key), "must be true or false");
    *out = v->get<bool>();
  }
  const json* Object(const json& object, const std::string& path, std::string_view key) {
    const json* v = Field(object, path, key);
    if (v != nullptr && !v->is_object()) {
      Fail(path + std::string(key), "must be an object");
      return nullptr;
    }
    return v;
  }
  void Fail(const std::string& field, const std::string& what) {
    if (status_.ok()) status_ = InvalidArgument("job config field '" + field + "' " + what);
  }

 private:
  Status status_;
};

}  // namespace

Expected<JobConfig> JobConfigFromJson(const json& j) {
  Reader r;
  if (!j.is_object()) return InvalidArgument("a job config must be a JSON object");
  int64_t version = 0;
  r.Get(j, "", "version", &version);
  if (r.status().ok() && version != kJobConfigVersion) {
    return InvalidArgument("job config version " + std::to_string(version) +
                           " is not supported; this build reads version " +
                           std::to_string(kJobConfigVersion));
  }
  JobConfig c;
  r.Get(j, "", "model", &c.model);
  r.Get(j, "", "dataset", &c.dataset);
  r.Get(j, "", "subset", &c.subset);
  r.Get(j, "", "subset_seed", &c.subset_seed);
  r.Get(j, "", "seed", &c.seed);
  if (const json* t = r.Object(j, "", "train")) {
    TrainConfig& tc = c.train;
    r.Get(*t, "train.", "optimizer", &tc.optimizer);
    r.Get(*t, "train.", "batch_size", &tc.batch_size);
    r.Get(*t, "train.", "epochs", &tc.epochs);
    r.Get(*t, "train.", "lr", &tc.lr);
    r.Get(*t, "train.", "weight_decay", &tc.weight_decay);
    r.Get(*t, "train.", "beta1", &tc.beta1);
    r.Get(*t, "train.", "beta2", &tc.beta2);
    r.Get(*t, "train.", "warmup_steps", &tc.warmup_steps);
    r.Get(*t, "train.", "lr_decay", &tc.lr_decay);
    r.Get(*t, "train.", "grad_clip_norm", &tc.grad_clip_norm);
    r.Get(*t, "train.", "dropout", &tc.dropout);
    r.Get(*t, "train.", "resolution", &tc.resolution);
    r.GetIfPresent(*t, "train.", "label_smoothing", &tc.label_smoothing);
    r.GetIfPresent(*t, "train.", "crop_padding", &tc.crop_padding);
    r.GetIfPresent(*t, "train.", "flip", &tc.flip);
    r.GetIfPresent(*t, "train.", "pre_logits", &tc.pre_logits);
    r.GetIfPresent(*t, "train.", "early_stopping_every", &tc.early_stopping_every);
  }
  if (const json* f = r.Object(j, "", "few_shot")) {
    r.Get(*f, "few_shot.", "datasets", &c.few_shot.datasets);
    r.Get(*f, "few_shot.", "shots", &c.few_shot.shots);
    r.Get(*f, "few_shot.", "seeds", &c.few_shot.seeds);
    r.Get(*f, "few_shot.", "l2", &c.few_shot.l2);
  }
  if (const json* list = r.Field(j, "", "fine_tune")) {
    if (!list->is_array()) r.Fail("fine_tune", "must be a list");
    for (size_t i = 0; r.status().ok() && i < list->size(); ++i) {
      const json& item = (*list)[i];
      std::string path = "fine_tune[" + std::to_string(i) + "].";
      if (!item.is_object()) {
        r.Fail(path, "must be an object");
        break;
      }
      FineTuneConfig ft;
      r.Get(item, path, "dataset", &ft.dataset);
      r.Get(item, path, "steps", &ft.steps);
      r.Get(item, path, "resolution", &ft.resolution);
      r.Get(item, path, "lrs", &ft.lrs);
      r.Get(item, path, "batch_size", &ft.batch_size);
      r.GetIfPresent(item, path, "holdout", &ft.holdout);
      r.GetIfPresent(item, path, "final_run", &ft.final_run);
      r.GetIfPresent(item, path, "polyak", &ft.polyak);
      c.fine_tune.push_back(ft);
    }
  }
  r.GetIfPresent(j, "", "inspect", &c.inspect);
  if (!r.status().ok()) return r.status();
  return c;
}

}  // namespace vitscale::sweep
