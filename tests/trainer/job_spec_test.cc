#include "trainer/job_spec.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace vitscale::trainer {
namespace {

nlohmann::json ValidSpec() {
  return nlohmann::json::parse(R"({
    "job": {"version": 1, "model": "ViT-Mu/7", "dataset": "fashion-mnist/0-4", "subset": 500,
            "subset_seed": 0, "seed": 0,
            "train": {"optimizer": "adam", "batch_size": 32, "epochs": 1.0, "lr": 0.001,
                      "weight_decay": 0.01, "beta1": 0.9, "beta2": 0.999, "warmup_steps": 10,
                      "lr_decay": "cosine", "grad_clip_norm": 1.0, "dropout": 0.0,
                      "resolution": 28},
            "few_shot": {"datasets": ["digits"], "shots": [1, 5], "seeds": 2, "l2": 1024.0},
            "fine_tune": []},
    "run": {"dir": "runs/x", "threads": 2, "checkpoint_every_steps": 50}
  })");
}

std::string Error(const nlohmann::json& spec) {
  Expected<JobSpec> parsed = ParseJobSpec(spec.dump(), "spec.json");
  return parsed.ok() ? "" : parsed.status().message();
}

TEST(JobSpecTest, ParsesAValidSpecWithDefaults) {
  Expected<JobSpec> spec = ParseJobSpec(ValidSpec().dump(), "spec.json");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->job.model, "ViT-Mu/7");
  EXPECT_EQ(spec->run.threads, 2);
  EXPECT_EQ(spec->run.keep_checkpoints, 2);  // default
  EXPECT_EQ(spec->job_id, sweep::JobId(spec->job));
  EXPECT_EQ(spec->job_id.size(), 64u);
}

TEST(JobSpecTest, ErrorsNameTheField) {
  nlohmann::json s = ValidSpec();
  s["job"]["train"].erase("lr");
  EXPECT_NE(Error(s).find("'train.lr' is missing"), std::string::npos) << Error(s);
  s = ValidSpec();
  s["run"]["threads"] = "two";
  EXPECT_NE(Error(s).find("'run.threads' must be an integer"), std::string::npos) << Error(s);
  s = ValidSpec();
  s["run"]["checkpoint_evry_steps"] = 5;
  EXPECT_NE(Error(s).find("did you mean 'checkpoint_every_steps'"), std::string::npos)
      << Error(s);
  s = ValidSpec();
  s["run"].erase("dir");
  EXPECT_NE(Error(s).find("'run.dir' is missing"), std::string::npos) << Error(s);
  s = ValidSpec();
  s["job"]["model"] = "ViT-Mu/8";
  EXPECT_NE(Error(s).find("job.model"), std::string::npos) << Error(s);
  s = ValidSpec();
  s["job"]["train"]["lr_decay"] = "cosin";
  EXPECT_NE(Error(s).find("did you mean 'cosine'"), std::string::npos) << Error(s);
  s = ValidSpec();
  s["job"]["train"]["batch_size"] = 0;
  EXPECT_NE(Error(s).find("'job.train.batch_size' must be > 0"), std::string::npos) << Error(s);
  s = ValidSpec();
  s["job"]["train"]["label_smoothing"] = 1.0;
  EXPECT_NE(Error(s).find("'job.train.label_smoothing' must be in [0, 1)"), std::string::npos)
      << Error(s);
  s = ValidSpec();
  s["job"]["train"]["crop_padding"] = -2;
  EXPECT_NE(Error(s).find("'job.train.crop_padding' must be >= 0"), std::string::npos)
      << Error(s);
  s = ValidSpec();
  s["jobs"] = s["job"];
  EXPECT_NE(Error(s).find("did you mean 'job'"), std::string::npos) << Error(s);
  EXPECT_NE(ParseJobSpec("{\"job\": ", "spec.json").status().message().find("spec.json"),
            std::string::npos);
  EXPECT_EQ(LoadJobSpec("/nonexistent/spec.json").status().code(),
            StatusCode::kInvalidArgument);
}

TEST(JobSpecTest, ProtocolFieldsAreCheckedAgainstTheModel) {
  nlohmann::json s = ValidSpec();
  s["job"]["train"]["pre_logits"] = 64;
  s["job"]["train"]["early_stopping_every"] = 100;
  s["job"]["inspect"] = true;
  s["job"]["fine_tune"] = nlohmann::json::parse(
      R"([{"dataset": "digits", "steps": 10, "resolution": 28, "lrs": [0.01, 0.03],
           "batch_size": 32, "holdout": 0.2, "final_run": true, "polyak": 0.99}])");
  Expected<JobSpec> spec = ParseJobSpec(s.dump(), "spec.json");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->job.train.pre_logits, 64);
  EXPECT_EQ(spec->job.train.early_stopping_every, 100);
  EXPECT_TRUE(spec->job.inspect);
  EXPECT_EQ(spec->job.fine_tune[0].holdout, 0.2);
  EXPECT_EQ(spec->job.fine_tune[0].final_run, true);
  EXPECT_EQ(spec->job.fine_tune[0].polyak, 0.99);

  nlohmann::json resnet = s;
  resnet["job"]["model"] = "R11s";
  EXPECT_NE(Error(resnet).find("'job.train.pre_logits': R11s is a ResNet"), std::string::npos)
      << Error(resnet);
  resnet["job"]["train"].erase("pre_logits");
  EXPECT_NE(Error(resnet).find("'job.inspect': R11s is a ResNet"), std::string::npos)
      << Error(resnet);
  nlohmann::json bad = s;
  bad["job"]["fine_tune"][0]["holdout"] = 1.0;
  EXPECT_NE(Error(bad).find("'job.fine_tune[0].holdout' must be in (0, 1)"), std::string::npos)
      << Error(bad);
  bad = s;
  bad["job"]["fine_tune"][0]["polyak"] = -0.5;
  EXPECT_NE(Error(bad).find("'job.fine_tune[0].polyak' must be in [0, 1)"), std::string::npos)
      << Error(bad);
  bad = s;
  bad["job"]["train"]["early_stopping_every"] = -1;
  EXPECT_NE(Error(bad).find("'job.train.early_stopping_every' must be >= 0"), std::string::npos)
      << Error(bad);
  bad = s;
  bad["job"]["inspect"] = "yes";
  EXPECT_NE(Error(bad).find("'inspect' must be true or false"), std::string::npos) << Error(bad);
}

TEST(JobSpecTest, DeviceOptions) {
  Expected<JobSpec> spec = ParseJobSpec(ValidSpec().dump(), "spec.json");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->run.gpus_per_rank, 0);  // CPU ranks unless the spec asks
  EXPECT_EQ(spec->run.precision, Precision::kAuto);
  EXPECT_TRUE(spec->run.cuda_graphs);
  EXPECT_FALSE(spec->run.deterministic);

  nlohmann::json s = ValidSpec();
  s["run"]["gpus_per_rank"] = 1;
  s["run"]["precision"] = "fp32";
  s["run"]["cuda_graphs"] = false;
  s["run"]["deterministic"] = true;
  spec = ParseJobSpec(s.dump(), "spec.json");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->run.gpus_per_rank, 1);
  EXPECT_EQ(spec->run.precision, Precision::kFloat32);
  EXPECT_FALSE(spec->run.cuda_graphs);
  EXPECT_TRUE(spec->run.deterministic);

  s = ValidSpec();
  s["run"]["gpus_per_rank"] = 2;
  EXPECT_NE(Error(s).find("'run.gpus_per_rank' is 2; a rank drives 0 (CPU) or 1 GPU"),
            std::string::npos) << Error(s);
  s = ValidSpec();
  s["run"]["precision"] = "bf61";
  EXPECT_NE(Error(s).find("'run.precision' is 'bf61'; use auto, fp32 or bf16"), std::string::npos)
      << Error(s);
  EXPECT_NE(Error(s).find("did you mean 'bf16'"), std::string::npos) << Error(s);
}

}  // namespace
}  // namespace vitscale::trainer
