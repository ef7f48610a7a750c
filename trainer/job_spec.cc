#include "trainer/job_spec.h"

#include <nlohmann/json.hpp>
#include <vector>

#include "common/files.h"
#include "common/names.h"
#include "models/registry.h"

namespace vitscale::trainer {
namespace {

using nlohmann::json;

Status FieldError(const std::string& origin, const std::string& field, const std::string& what) {
  return InvalidArgument(origin + ": field '" + field + "' " + what);
}

// Reads the optional fields of the "run" object; unknown keys are errors.
class RunReader {
 public:
  RunReader(const json& run, std::string origin) : run_(run), origin_(std::move(origin)) {}

  void String(const char* key, std::string* out) {
    if (const json* v = Take(key)) {
      if (v->is_string()) *out = v->get<std::string>();
      else Fail(key, "must be a string");
    }
  }
  void Int(const char* key, int64_t* out) {
    if (const json* v = Take(key)) {
      if (v->is_number_integer()) *out = v->get<int64_t>();
      else Fail(key, "must be an integer");
    }
  }
  void Number(const char* key, double* out) {
    if (const json* v = Take(key)) {
      if (v->is_number()) *out = v->get<double>();
      else Fail(key, "must be a number");
    }
  }
  void Bool(const char* key, bool* out) {
    if (const json* v = Take(key)) {
      if (v->is_boolean()) *out = v->get<bool>();
      else Fail(key, "must be true or false");
    }
  }
  Status Finish() {
    for (auto it = run_.begin(); status_.ok() && it != run_.end(); ++it) {
      bool known = false;
      for (const std::string& k : known_) known = known || k == it.key();
      if (!known) Fail(it.key(), "is not a run option" + DidYouMean(it.key(), known_));
    }
    return status_;
  }

 private:
  const json* Take(const char* key) {
    known_.push_back(key);
    auto it = run_.find(key);
    return it == run_.end() ? nullptr : &*it;
  }
  void Fail(const std::string& key, const std::string& what) {
    if (status_.ok()) status_ = FieldError(origin_, "run." + key, what);
  }

  const json& run_;
  std::string origin_;
  std::vector<std::string> known_;
  Status status_;
};

}  // namespace

Expected<JobSpec> ParseJobSpec(const std::string& text, const std::string& origin) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    return InvalidArgument(origin + ": not valid JSON: " + e.what());
  }
  if (!root.is_object()) return InvalidArgument(origin + ": a job spec is a JSON object");
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it.key() != "job" && it.key() != "run") {
      return FieldError(origin, it.key(),
                        "is not a spec section (use \"job\" and \"run\")" +
                            DidYouMean(it.key(), {"job", "run"}));
    }
  }
  if (!root.contains("job")) return FieldError(origin, "job", "is missing");
  if (!root.contains("run")) return FieldError(origin, "run", "is missing");
  if (!root["run"].is_object()) return FieldError(origin, "run", "must be an object");

  JobSpec spec;
  Expected<sweep::JobConfig> job = sweep::JobConfigFromJson(root["job"]);
  if (!job.ok()) return InvalidArgument(origin + ": in \"job\": " + job.status().message());
  spec.job = std::move(job).value();
  spec.job_id = sweep::JobId(spec.job);

  RunOptions& r = spec.run;
  RunReader reader(root["run"], origin);
  reader.String("dir", &r.dir);
  reader.Int("checkpoint_every_steps", &r.checkpoint_every_steps);
  reader.Int("keep_checkpoints", &r.keep_checkpoints);
  reader.Number("grace_seconds", &r.grace_seconds);
  reader.String("init_from", &r.init_from);
  reader.Bool("stdout_report", &r.stdout_report);
  reader.Int("metrics_every_steps", &r.metrics_every_steps);
  reader.Int("threads", &r.threads);
  reader.Int("loader_threads", &r.loader_threads);
  reader.Int("max_bad_samples", &r.max_bad_samples);
  reader.Int("micro_batch", &r.micro_batch);
  reader.Int("eval_batch", &r.eval_batch);
  reader.String("datasets_dir", &r.datasets_dir);
  reader.Bool("verify_replicas", &r.verify_replicas);
  reader.String("report_url", &r.report_url);
  reader.String("report_token", &r.report_token);
  reader.Int("attempt", &r.attempt);
  reader.Int("gpus_per_rank", &r.gpus_per_rank);
  std::string precision = PrecisionName(r.precision);
  reader.String("precision", &precision);
  reader.Bool("cuda_graphs", &r.cuda_graphs);
  reader.Bool("deterministic", &r.deterministic);
  RETURN_IF_ERROR(reader.Finish());
  Expected<Precision> parsed = ParsePrecision(precision);
  if (!parsed.ok()) return FieldError(origin, "run.precision", parsed.status().message());
  r.precision = *parsed;
  if (r.dir.empty()) return FieldError(origin, "run.dir", "is missing");
  if (!r.report_url.empty() && r.attempt < 1) {
    return FieldError(origin, "run.attempt", "must be >= 1 when run.report_url is set");
  }
  Status valid = ValidateJobSpec(spec);
  if (!valid.ok()) return InvalidArgument(origin + ": " + valid.message());
  return spec;
}

Expected<JobSpec> LoadJobSpec(const std::string& path) {
  Expected<std::string> text = ReadFile(path);
  if (!text.ok()) {
    if (text.status().code() == StatusCode::kNotFound) {
      return InvalidArgument("job spec " + path + " does not exist");
    }
    return text.status();
  }
  return ParseJobSpec(*text, path);
}

Status ValidateJobSpec(const JobSpec& spec) {
  const sweep::JobConfig& j = spec.job;
  const sweep::TrainConfig& t = j.train;
  auto positive = [](const char* field, double value) -> Status {
    if (value > 0) return Status::Ok();
    return InvalidArgument(std::string("field '") + field + "' must be > 0");
  };
  auto non_negative = [](const char* field, double value) -> Status {
    if (value >= 0) return Status::Ok();
    return InvalidArgument(std::string("field '") + field + "' must be >= 0");
  };
  Expected<models::ModelConfig> model = models::LookupModel(j.model);
  if (!model.ok()) return InvalidArgument("field 'job.model': " + model.status().message());
  if (t.optimizer != "adam" && t.optimizer != "sgd") {
    return InvalidArgument("field 'job.train.optimizer' is '" + t.optimizer +
                           "'; use adam or sgd" + DidYouMean(t.optimizer, {"adam", "sgd"}));
  }
  if (t.lr_decay != "linear" && t.lr_decay != "cosine") {
    return InvalidArgument("field 'job.train.lr_decay' is '" + t.lr_decay +
                           "'; use linear or cosine" +
                           DidYouMean(t.lr_decay, {"linear", "cosine"}));
  }
  RETURN_IF_ERROR(positive("job.train.batch_size", static_cast<double>(t.batch_size)));
  RETURN_IF_ERROR(positive("job.train.epochs", t.epochs));
  RETURN_IF_ERROR(positive("job.train.lr", t.lr));
  RETURN_IF_ERROR(positive("job.train.resolution", static_cast<double>(t.resolution)));
  RETURN_IF_ERROR(non_negative("job.train.weight_decay", t.weight_decay));
  RETURN_IF_ERROR(non_negative("job.train.warmup_steps", static_cast<double>(t.warmup_steps)));
  RETURN_IF_ERROR(non_negative("job.train.grad_clip_norm", t.grad_clip_norm));
  RETURN_IF_ERROR(non_negative("job.subset", static_cast<double>(j.subset)));
  if (t.dropout < 0 || t.dropout >= 1) {
    return InvalidArgument("field 'job.train.dropout' must be in [0, 1)");
  }
  if (t.label_smoothing < 0 || t.label_smoothing >= 1) {
    return InvalidArgument("field 'job.train.label_smoothing' must be in [0, 1)");
  }
  if (t.crop_padding) {
    RETURN_IF_ERROR(non_negative("job.train.crop_padding", static_cast<double>(*t.crop_padding)));
  }
  RETURN_IF_ERROR(non_negative("job.train.pre_logits", static_cast<double>(t.pre_logits)));
  if (t.pre_logits > 0 && model->family == models::Family::kResNet) {
    return InvalidArgument("field 'job.train.pre_logits': " + j.model +
                           " is a ResNet, which has no pre_logits layer");
  }
  RETURN_IF_ERROR(
      non_negative("job.train.early_stopping_every", static_cast<double>(t.early_stopping_every)));
  if (j.inspect && model->family == models::Family::kResNet) {
    return InvalidArgument("field 'job.inspect': " + j.model +
                           " is a ResNet; the inspection reads a transformer's embeddings and "
                           "attention");
  }
  for (size_t i = 0; i < j.few_shot.shots.size(); ++i) {
    if (j.few_shot.shots[i] <= 0) {
      return InvalidArgument("field 'job.few_shot.shots[" + std::to_string(i) + "]' must be > 0");
    }
  }
  if (!j.few_shot.datasets.empty()) {
    RETURN_IF_ERROR(positive("job.few_shot.seeds", static_cast<double>(j.few_shot.seeds)));
    RETURN_IF_ERROR(positive("job.few_shot.l2", j.few_shot.l2));
    if (j.few_shot.shots.empty()) return InvalidArgument("field 'job.few_shot.shots' is empty");
  }
  for (size_t i = 0; i < j.fine_tune.size(); ++i) {
    const sweep::FineTuneConfig& f = j.fine_tune[i];
    const std::string at = "job.fine_tune[" + std::to_string(i) + "].";
    if (f.steps <= 0) return InvalidArgument("field '" + at + "steps' must be > 0");
    if (f.batch_size <= 0) return InvalidArgument("field '" + at + "batch_size' must be > 0");
    if (f.resolution <= 0) return InvalidArgument("field '" + at + "resolution' must be > 0");
    if (f.lrs.empty()) return InvalidArgument("field '" + at + "lrs' is empty");
    if (f.holdout && !(*f.holdout > 0 && *f.holdout < 1)) {
      return InvalidArgument("field '" + at + "holdout' must be in (0, 1)");
    }
    if (f.polyak && !(*f.polyak >= 0 && *f.polyak < 1)) {
      return InvalidArgument("field '" + at + "polyak' must be in [0, 1)");
    }
  }
  const RunOptions& r = spec.run;
  RETURN_IF_ERROR(non_negative("run.checkpoint_every_steps",
                               static_cast<double>(r.checkpoint_every_steps)));
  RETURN_IF_ERROR(positive("run.keep_checkpoints", static_cast<double>(r.keep_checkpoints)));
  RETURN_IF_ERROR(positive("run.metrics_every_steps", static_cast<double>(r.metrics_every_steps)));
  RETURN_IF_ERROR(positive("run.threads", static_cast<double>(r.threads)));
  RETURN_IF_ERROR(positive("run.loader_threads", static_cast<double>(r.loader_threads)));
  RETURN_IF_ERROR(non_negative("run.micro_batch", static_cast<double>(r.micro_batch)));
  RETURN_IF_ERROR(non_negative("run.max_bad_samples", static_cast<double>(r.max_bad_samples)));
  RETURN_IF_ERROR(positive("run.eval_batch", static_cast<double>(r.eval_batch)));
  if (r.gpus_per_rank != 0 && r.gpus_per_rank != 1) {
    return InvalidArgument("field 'run.gpus_per_rank' is " + std::to_string(r.gpus_per_rank) +
                           "; a rank drives 0 (CPU) or 1 GPU: use one rank per GPU");
  }
  return Status::Ok();
}

}  // namespace vitscale::trainer
