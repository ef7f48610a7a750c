#include "sweep/sweep.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "models/registry.h"
#include "sweep/datasets.h"
#include "sweep/job_config.h"
#include "sweep/recipes.h"

namespace vitscale::sweep {
namespace {

Expected<std::vector<Job>> Expand(const std::string& text) {
  Expected<Sweep> sweep = ParseSweep(text, "s.yaml");
  if (!sweep.ok()) return sweep.status();
  return ExpandSweep(*sweep);
}

std::vector<Job> ExpandOk(const std::string& text) {
  Expected<std::vector<Job>> jobs = Expand(text);
  EXPECT_TRUE(jobs.ok()) << jobs.status().ToString() << "\n" << text;
  return jobs.ok() ? *jobs : std::vector<Job>{};
}

// The error of a sweep that must fail, as "s.yaml:LINE:COL: message".
std::string ErrorOf(const std::string& text) {
  Expected<std::vector<Job>> jobs = Expand(text);
  EXPECT_FALSE(jobs.ok()) << "accepted:\n" << text;
  if (jobs.ok()) return "";
  EXPECT_EQ(jobs.status().code(), StatusCode::kInvalidArgument) << jobs.status().ToString();
  return jobs.status().message();
}

const char* kMinimal = R"(name: tiny
recipe: jft-300m
pretrain:
  model: ViT-B/16
)";

TEST(DatasetCatalog, KnowsThePaperAndLocalSets) {
  Expected<DatasetInfo> jft = LookupDataset("jft-300m");
  ASSERT_TRUE(jft.ok());
  EXPECT_EQ(jft->train_size, 303'000'000);
  EXPECT_EQ(jft->num_classes, 18291);
  EXPECT_EQ(LookupDataset("imagenet21k")->num_classes, 21843);
  EXPECT_EQ(LookupDataset("imagenet")->train_size, 1'281'167);
  EXPECT_EQ(LookupDataset("pets")->test_size, 3669);
  EXPECT_EQ(LookupDataset("flowers")->num_classes, 102);
  Expected<DatasetInfo> first = LookupDataset("fashion-mnist/0-4");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->train_size, 30000);
  EXPECT_EQ(first->num_classes, 5);
  EXPECT_EQ(first->image_size, 28);
  EXPECT_EQ(first->channels, 1);
  EXPECT_EQ(LookupDataset("digits")->train_size + LookupDataset("digits")->test_size, 1797);
}

TEST(DatasetCatalog, UnknownNameSuggestsNearest) {
  Expected<DatasetInfo> d = LookupDataset("cifar-10");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kNotFound);
  EXPECT_NE(d.status().message().find("did you mean 'cifar10'"), std::string::npos);
}

TEST(Recipes, JftLearningRatesFollowTable3) {
  Recipe jft = LookupRecipe("jft-300m").value();
  EXPECT_DOUBLE_EQ(*BaseLearningRate(jft, "ViT-B/16"), 8e-4);
  EXPECT_DOUBLE_EQ(*BaseLearningRate(jft, "ViT-L/16"), 4e-4);
  EXPECT_DOUBLE_EQ(*BaseLearningRate(jft, "R50+ViT-L/32"), 2e-4);
  EXPECT_FALSE(BaseLearningRate(jft, "ViT-Ti/7").has_value());
  EXPECT_DOUBLE_EQ(*BaseLearningRate(LookupRecipe("imagenet").value(), "ViT-B/16"), 3e-3);
  EXPECT_FALSE(LookupRecipe("jft300m").ok());
}

TEST(Expand, MinimalSweepFillsEveryDefault) {
  std::vector<Job> jobs = ExpandOk(kMinimal);
  ASSERT_EQ(jobs.size(), 1u);
  const Job& job = jobs[0];
  EXPECT_EQ(job.id.size(), 64u);
  EXPECT_EQ(job.family, "ViT");
  EXPECT_EQ(job.config.dataset, "jft-300m");
  EXPECT_EQ(job.config.subset, 303'000'000);
  const nlohmann::json& c = job.canonical;
  EXPECT_EQ(c["train"]["batch_size"], 4096);
  EXPECT_DOUBLE_EQ(c["train"]["lr"].get<double>(), 8e-4);
  EXPECT_DOUBLE_EQ(c["train"]["epochs"].get<double>(), 7.0);
  EXPECT_DOUBLE_EQ(c["train"]["weight_decay"].get<double>(), 0.1);
  EXPECT_EQ(c["train"]["warmup_steps"], 10000);
  EXPECT_EQ(c["train"]["lr_decay"], "linear");
  EXPECT_EQ(c["train"]["resolution"], 224);
  EXPECT_EQ(c["few_shot"]["datasets"].size(), 0u);
  EXPECT_EQ(c["few_shot"]["shots"], nlohmann::json({1, 5, 10, 25}));
  EXPECT_EQ(c["few_shot"]["seeds"], 3);
  EXPECT_EQ(job.examples, 7LL * 303'000'000);
  // The brief's check: 17.56 GMACs x 6 x 303M x 7 = 224e18.
  EXPECT_NEAR(job.train_flops / 1e18, 224, 224 * 0.02);
  EXPECT_EQ(job.id, JobId(job.config));
}

TEST(Expand, IdIgnoresSpellingOrderCommentsAndSpelledOutDefaults) {
  std::string spelled = R"(
# the same job, written differently
pretrain: {epochs: 7.0, seed: 0, subset: 303M, model: "ViT-B/16",   lr: 0.0008,
           weight_decay: 1e-1, dataset: jft-300m, warmup_steps: 10k, resolution: 224,
           batch_size: 4096, subset_seed: 0, lr_decay: linear, beta1: 0.9}
recipe: jft-300m   # trailing comment
name: tiny
)";
  std::vector<Job> a = ExpandOk(kMinimal);
  std::vector<Job> b = ExpandOk(spelled);
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(a[0].id, b[0].id);
  EXPECT_EQ(a[0].canonical.dump(), b[0].canonical.dump());
}

TEST(Expand, PriorityAndResourcesDoNotChangeTheId) {
  std::string scheduled =
      std::string(kMinimal) + "priority: 5\nresources: {ranks: 8, gpus_per_rank: 1}\n";
  std::vector<Job> a = ExpandOk(kMinimal);
  std::vector<Job> b = ExpandOk(scheduled);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(a[0].id, b[0].id);
  EXPECT_EQ(b[0].priority, 5);
  EXPECT_EQ(b[0].resources.ranks, 8);
  EXPECT_EQ(b[0].resources.gpus_per_rank, 1);
  EXPECT_FALSE(b[0].resources.one_host) << "by default the ranks may span hosts";
  std::vector<Job> c = ExpandOk(std::string(kMinimal) + "resources: {ranks: 8, hosts: one}\n");
  EXPECT_TRUE(c[0].resources.one_host);
  EXPECT_EQ(c[0].id, a[0].id);
  std::string error = ErrorOf(std::string(kMinimal) + "resources: {ranks: 8, hosts: 2}\n");
  EXPECT_NE(error.find("'hosts' must be 'one' (every rank on one host) or 'any'"),
            std::string::npos)
      << error;
}

// The accelerator kind a job's ranks need: a GPU model for GPU ranks (any GPU when absent),
// `cpu` for CPU ranks; a kind that contradicts gpus_per_rank is refused where it is written. Like
// the other resources, it does not change the job's id.
TEST(Expand, AcceleratorNamesTheGpuModelOrCpu) {
  std::vector<Job> h200 = ExpandOk(std::string(kMinimal) +
                                   "resources: {ranks: 2, gpus_per_rank: 1, accelerator: NVIDIA H200}\n");
  ASSERT_EQ(h200.size(), 1u);
  EXPECT_EQ(h200[0].resources.gpu_kind, "NVIDIA H200");
  EXPECT_EQ(h200[0].id, ExpandOk(kMinimal)[0].id);
  EXPECT_EQ(ExpandOk(std::string(kMinimal) + "resources: {gpus_per_rank: 1}\n")[0].resources.gpu_kind,
            "");
  EXPECT_EQ(ExpandOk(std::string(kMinimal) + "resources: {accelerator: cpu}\n")[0].resources.gpu_kind,
            "");
  EXPECT_NE(ErrorOf(std::string(kMinimal) + "resources: {gpus_per_rank: 1, accelerator: cpu}\n")
                .find("'accelerator: cpu' but 'gpus_per_rank' is 1"),
            std::string::npos);
  EXPECT_NE(ErrorOf(std::string(kMinimal) + "resources: {accelerator: NVIDIA H200}\n")
                .find("names a GPU model, but 'gpus_per_rank' is 0"),
            std::string::npos);
}

TEST(Expand, AnyTrainingFieldChangesTheId) {
  std::vector<Job> base = ExpandOk(kMinimal);
  for (const char* change :
       {"  lr: 0.0009\n", "  seed: 1\n", "  subset: 30M\n", "  dropout: 0.1\n", "  epochs: 14\n",
        "  label_smoothing: 0.1\n", "  crop_padding: 2\n", "  flip: true\n"}) {
    std::vector<Job> changed = ExpandOk(std::string(kMinimal) + change);
    ASSERT_EQ(changed.size(), 1u);
    EXPECT_NE(changed[0].id, base[0].id) << change;
  }
}

TEST(Expand, IdsOfExistingJobsStayTheSame) {
  // Pinned: a job's id is its identity in every database; fields added later must not move it.
  EXPECT_EQ(ExpandOk(kMinimal)[0].id,
            "4d5bc0635502acaf7331a3843acd2fd9427d07873b8c1dc38464c76924f8dfc5");
}

TEST(Expand, AugmentationAndLabelSmoothingAreWrittenOnlyWhenSet) {
  // A copy: the expanded jobs are a temporary that ends with this statement.
  const nlohmann::json plain = ExpandOk(kMinimal)[0].canonical["train"];
  EXPECT_FALSE(plain.contains("crop_padding"));
  EXPECT_FALSE(plain.contains("flip"));
  EXPECT_FALSE(plain.contains("label_smoothing"));
  std::vector<Job> set = ExpandOk(std::string(kMinimal) +
                                  "  crop_padding: 0\n  flip: false\n  label_smoothing: 0.1\n");
  ASSERT_EQ(set.size(), 1u);
  const nlohmann::json& train = set[0].canonical["train"];
  EXPECT_EQ(train["crop_padding"], 0);
  EXPECT_EQ(train["flip"], false);
  EXPECT_DOUBLE_EQ(train["label_smoothing"].get<double>(), 0.1);
  EXPECT_EQ(set[0].config.train.crop_padding, 0);
  EXPECT_EQ(set[0].config.train.flip, false);
  Expected<JobConfig> back = JobConfigFromJson(set[0].canonical);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(JobId(*back), set[0].id);
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "  flip: sometimes\n"),
            "s.yaml:5:9: 'flip' must be one of true, false, not 'sometimes'");
}

TEST(Expand, ProductWalksTheFirstAxisSlowest) {
  std::vector<Job> jobs = ExpandOk(R"(name: grid
recipe: small-images
grid:
  model: [ViT-Mu/7, R11s]
  seed: [0, 1, 2]
)");
  ASSERT_EQ(jobs.size(), 6u);
  EXPECT_EQ(jobs[0].config.model, "ViT-Mu/7");
  EXPECT_EQ(jobs[2].config.seed, 2);
  EXPECT_EQ(jobs[3].config.model, "R11s");
  EXPECT_EQ(jobs[3].config.seed, 0);
  EXPECT_EQ(jobs[0].config.dataset, "fashion-mnist");
}

TEST(Expand, ZipPairsValuesAndBlocksAddUp) {
  std::vector<Job> jobs = ExpandOk(R"(name: zip
recipe: small-images
pretrain: {dataset: fashion-mnist/0-4}
grid:
  - model: [ViT-Mu/7, ViT-Mi/7]
    zip:
      subset: [3k, 10k, 30k]
      lr: [3e-3, 2e-3, 1e-3]
  - model: R11s
    epochs: 2
)");
  ASSERT_EQ(jobs.size(), 7u);
  EXPECT_EQ(jobs[0].config.subset, 3000);
  EXPECT_DOUBLE_EQ(jobs[0].config.train.lr, 3e-3);
  EXPECT_EQ(jobs[2].config.subset, 30000);
  EXPECT_DOUBLE_EQ(jobs[2].config.train.lr, 1e-3);
  EXPECT_EQ(jobs[3].config.model, "ViT-Mi/7");
  EXPECT_EQ(jobs[6].config.model, "R11s");
  EXPECT_EQ(jobs[6].config.subset, 30000);
  EXPECT_DOUBLE_EQ(jobs[6].config.train.epochs, 2.0);
}

TEST(Expand, StepsConvertToEpochs) {
  std::vector<Job> jobs = ExpandOk(R"(name: steps
recipe: small-images
pretrain: {model: ViT-Mu/7, dataset: fashion-mnist/0-4, subset: 10000, batch_size: 100}
grid:
  - steps: 500
  - epochs: 3
)");
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_DOUBLE_EQ(jobs[0].config.train.epochs, 5.0);
  EXPECT_EQ(jobs[0].examples, 50000);
  // 500 steps of 100 on 10000 images is 5 epochs: the same job as writing epochs: 5.
  std::vector<Job> same = ExpandOk(R"(name: steps
recipe: small-images
pretrain: {model: ViT-Mu/7, dataset: fashion-mnist/0-4, subset: 10000, batch_size: 100, epochs: 5}
)");
  EXPECT_EQ(jobs[0].id, same[0].id);
}

TEST(Expand, TransferDefaultsFollowTable4) {
  std::vector<Job> jobs = ExpandOk(R"(name: transfer
recipe: jft-300m
grid:
  model: [ViT-B/16, ViT-H/14]
transfer:
  few_shot:
    datasets: [imagenet, cifar10]
  fine_tune:
    - dataset: imagenet
    - dataset: pets
      lrs: [0.01]
)");
  ASSERT_EQ(jobs.size(), 2u);
  const JobConfig& b16 = jobs[0].config;
  EXPECT_EQ(b16.few_shot.datasets, (std::vector<std::string>{"imagenet", "cifar10"}));
  EXPECT_EQ(b16.few_shot.shots, (std::vector<int64_t>{1, 5, 10, 25}));
  EXPECT_DOUBLE_EQ(b16.few_shot.l2, 1024);
  ASSERT_EQ(b16.fine_tune.size(), 2u);
  EXPECT_EQ(b16.fine_tune[0].steps, 20000);
  EXPECT_EQ(b16.fine_tune[0].resolution, 384);
  EXPECT_EQ(b16.fine_tune[0].batch_size, 512);
  // ImageNet's own grid, chosen on 1% of train, then a final run on all of it (App. B.1.1).
  EXPECT_EQ(b16.fine_tune[0].lrs, (std::vector<double>{0.003, 0.01, 0.03, 0.06}));
  EXPECT_EQ(b16.fine_tune[0].holdout, 0.01);
  EXPECT_EQ(b16.fine_tune[0].final_run, true);
  EXPECT_FALSE(b16.fine_tune[0].polyak.has_value());
  EXPECT_EQ(FineTuneRuns(b16.fine_tune[0]), 5);
  // One rate given: nothing to choose, so nothing held out and only the final run.
  EXPECT_EQ(b16.fine_tune[1].steps, 500);
  EXPECT_EQ(b16.fine_tune[1].lrs, (std::vector<double>{0.01}));
  EXPECT_FALSE(b16.fine_tune[1].holdout.has_value());
  EXPECT_EQ(FineTuneRuns(b16.fine_tune[1]), 1);
  // H/14's patch does not divide 384: it fine-tunes at 378, as an unpadded patch conv would.
  EXPECT_EQ(jobs[1].config.fine_tune[0].resolution, 378);

  // Fine-tuning compute: every run, the grid's and the final one, at its own resolution and
  // class count.
  models::ModelConfig model = models::LookupModel("ViT-B/16").value();
  auto run_flops = [&](const FineTuneConfig& ft, int classes) {
    return models::TrainFlopsPerImage(
               models::ComputeCost(model, static_cast<int>(ft.resolution), classes).forward_macs) *
           static_cast<double>(ft.steps * ft.batch_size) * static_cast<double>(FineTuneRuns(ft));
  };
  const double expected = run_flops(b16.fine_tune[0], 1000) + run_flops(b16.fine_tune[1], 37);
  EXPECT_NEAR(jobs[0].fine_tune_flops, expected, 1e-9 * expected);
  // ViT-B/16 at 384: about 55.5 GMACs; 5 x 20000 x 512 images of it is about 17.1 exaFLOPs.
  EXPECT_NEAR(jobs[0].fine_tune_flops / 1e18, 17.1, 0.5);
  EXPECT_EQ(ExpandOk(kMinimal)[0].fine_tune_flops, 0.0);
}

TEST(Expand, FineTuneProtocolPerDataset) {
  std::vector<Job> jobs = ExpandOk(R"(name: protocol
recipe: jft-300m
pretrain: {model: ViT-B/16}
transfer:
  fine_tune:
    - dataset: cifar10
    - dataset: pets
    - dataset: flowers
      final_run: false
    - dataset: digits
    - dataset: cifar100
      lrs: [0.01, 0.03]
      holdout: 0.05
      polyak: 0.9999
)");
  ASSERT_EQ(jobs.size(), 1u);
  const std::vector<FineTuneConfig>& ft = jobs[0].config.fine_tune;
  ASSERT_EQ(ft.size(), 5u);
  EXPECT_EQ(ft[0].lrs, (std::vector<double>{0.001, 0.003, 0.01, 0.03}));
  EXPECT_EQ(ft[0].holdout, 0.02);
  EXPECT_EQ(ft[1].holdout, 0.10);
  EXPECT_EQ(ft[2].final_run, false);
  EXPECT_EQ(FineTuneRuns(ft[2]), 4);
  // VTAB's protocol for a dataset Table 4 does not list: 0.01 alone.
  EXPECT_EQ(ft[3].lrs, (std::vector<double>{0.01}));
  EXPECT_EQ(ft[4].lrs, (std::vector<double>{0.01, 0.03}));
  EXPECT_EQ(ft[4].holdout, 0.05);
  EXPECT_EQ(ft[4].polyak, 0.9999);
  const nlohmann::json& written = jobs[0].canonical["fine_tune"][4];
  EXPECT_EQ(written["holdout"], 0.05);
  EXPECT_EQ(written["final_run"], true);
  EXPECT_EQ(written["polyak"], 0.9999);
  EXPECT_FALSE(jobs[0].canonical["fine_tune"][3].contains("holdout"));
  Expected<JobConfig> back = JobConfigFromJson(jobs[0].canonical);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(JobId(*back), jobs[0].id);

  const std::string base =
      "name: x\nrecipe: jft-300m\npretrain: {model: ViT-B/16}\n"
      "transfer:\n  fine_tune:\n    - dataset: pets\n";
  EXPECT_EQ(ErrorOf(base + "      holdout: 1.5\n"),
            "s.yaml:7:16: 'holdout' is a fraction of train: below 1");
  EXPECT_EQ(ErrorOf(base + "      polyak: 1\n"),
            "s.yaml:7:15: 'polyak' is the averaging decay, e.g. 0.9999: below 1");
  EXPECT_EQ(ErrorOf(base + "      final_run: maybe\n"),
            "s.yaml:7:18: 'final_run' must be true or false, not 'maybe'");
}

// Table 2 fine-tunes ViT-L/16 at 512 and ViT-H/14 at 518: a per-job resolution.
TEST(Expand, FineTuneResolutionPerJob) {
  std::vector<Job> jobs = ExpandOk(R"(name: table2
recipe: jft-300m
grid:
  - model: ViT-L/16
    fine_tune_resolution: 512
  - model: ViT-H/14
    fine_tune_resolution: 518
  - model: ViT-B/16
transfer:
  fine_tune: [{dataset: imagenet}]
)");
  ASSERT_EQ(jobs.size(), 3u);
  EXPECT_EQ(jobs[0].config.fine_tune[0].resolution, 512);
  EXPECT_EQ(jobs[1].config.fine_tune[0].resolution, 518);
  EXPECT_EQ(jobs[2].config.fine_tune[0].resolution, 384);
  const std::string e = ErrorOf(R"(name: x
recipe: jft-300m
grid:
  - model: ViT-L/16
    fine_tune_resolution: 500
transfer:
  fine_tune: [{dataset: imagenet}]
)");
  EXPECT_EQ(e.rfind("s.yaml:5:27: ViT-L/16 cannot fine-tune at resolution 500 on imagenet", 0), 0u)
      << e;
}

TEST(Expand, PreLogitsEarlyStoppingAndInspectAreJobFields) {
  std::vector<Job> jobs = ExpandOk(R"(name: protocol
recipe: jft-300m
pretrain: {pre_logits: true, subset: 30M, early_stopping_every: 2000}
grid:
  model: [ViT-B/16, R50+ViT-L/16, R50x1]
)");
  ASSERT_EQ(jobs.size(), 3u);
  EXPECT_EQ(jobs[0].config.train.pre_logits, 768);
  EXPECT_EQ(jobs[1].config.train.pre_logits, 1024);
  EXPECT_EQ(jobs[2].config.train.pre_logits, 0);  // BiT has no pre_logits layer
  EXPECT_EQ(jobs[0].canonical["train"]["pre_logits"], 768);
  EXPECT_FALSE(jobs[2].canonical["train"].contains("pre_logits"));
  EXPECT_EQ(jobs[0].canonical["train"]["early_stopping_every"], 2000);
  EXPECT_FALSE(ExpandOk(kMinimal)[0].canonical["train"].contains("pre_logits"));
  EXPECT_FALSE(ExpandOk(kMinimal)[0].canonical["train"].contains("early_stopping_every"));
  EXPECT_FALSE(ExpandOk(kMinimal)[0].canonical.contains("inspect"));
  EXPECT_NE(ExpandOk(std::string(kMinimal) + "  pre_logits: 512\n")[0].id,
            ExpandOk(kMinimal)[0].id);
  EXPECT_EQ(ExpandOk(std::string(kMinimal) + "  pre_logits: false\n")[0].id,
            ExpandOk(kMinimal)[0].id);

  std::vector<Job> inspected = ExpandOk(std::string(kMinimal) + "  inspect: true\n");
  EXPECT_TRUE(inspected[0].config.inspect);
  EXPECT_EQ(inspected[0].canonical["inspect"], true);
  Expected<JobConfig> back = JobConfigFromJson(inspected[0].canonical);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(JobId(*back), inspected[0].id);
  EXPECT_EQ(ExpandOk(std::string(kMinimal) + "  inspect: false\n")[0].id, ExpandOk(kMinimal)[0].id);

  EXPECT_EQ(ErrorOf("name: x\nrecipe: jft-300m\npretrain: {model: R50x1, pre_logits: 64}\n"),
            "s.yaml:3:38: R50x1 is a ResNet: it has no pre_logits layer (set it on ViTs and "
            "hybrids)");
  EXPECT_EQ(ErrorOf("name: x\nrecipe: jft-300m\npretrain: {model: R50x1, inspect: true}\n"),
            "s.yaml:3:35: R50x1 is a ResNet: the inspection evaluators read a transformer's "
            "embeddings and attention");
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "  pre_logits: wide\n"),
            "s.yaml:5:15: 'pre_logits' must be true (the model's width), false or a width >= 0, "
            "not 'wide'");
  // JFT has no test split: validation takes 50,000 examples the subsets must leave free.
  EXPECT_EQ(ErrorOf(std::string(kMinimal) + "  early_stopping_every: 1000\n"),
            "s.yaml:5:25: early stopping on jft-300m validates on the last 50000 examples of its "
            "permutation, so the subset may be at most 302950000, not 303000000");
}

TEST(JobConfigJson, RoundTripsAndNamesBadFields) {
  std::vector<Job> jobs = ExpandOk(R"(name: rt
recipe: jft-300m
pretrain: {model: ViT-L/16}
transfer: {few_shot: {datasets: [pets]}, fine_tune: [{dataset: cifar100}]}
)");
  ASSERT_EQ(jobs.size(), 1u);
  Expected<JobConfig> back = JobConfigFromJson(nlohmann::json::parse(jobs[0].canonical.dump()));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(JobId(*back), jobs[0].id);

  nlohmann::json broken = jobs[0].canonical;
  broken["train"]["lr"] = "fast";
  Expected<JobConfig> bad = JobConfigFromJson(broken);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("train.lr"), std::string::npos);
  broken = jobs[0].canonical;
  broken["train"]["flip"] = 1;
  EXPECT_NE(JobConfigFromJson(broken).status().message().find("'train.flip' must be true or false"),
            std::string::npos);
  broken = jobs[0].canonical;
  broken.erase("subset");
  EXPECT_NE(JobConfigFromJson(broken).status().message().find("'subset' is missing"),
            std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Bad input: each error names file:line:column and what to fix.

TEST(BadInput, MalformedYaml) {
  std::string e = ErrorOf("name: x\nrecipe: [jft-300m\npretrain: {model: ViT-B/16}\n");
  EXPECT_EQ(e.rfind("s.yaml:", 0), 0u) << e;
  EXPECT_NE(e.find("malformed YAML"), std::string::npos) << e;
}

TEST(BadInput, TabIndentation) {
  std::string e = ErrorOf("name: x\nrecipe: jft-300m\npretrain:\n \tmodel: ViT-B/16\n");
  EXPECT_EQ(e.rfind("s.yaml:4:2: a tab indents this line", 0), 0u) << e;
}

TEST(BadInput, UnknownTopLevelKeySuggestsNearest) {
  std::string e = ErrorOf(std::string(kMinimal) + "recipie: imagenet\n");
  EXPECT_EQ(e.rfind("s.yaml:5:1: unknown key 'recipie'", 0), 0u) << e;
  EXPECT_NE(e.find("did you mean 'recipe'"), std::string::npos) << e;
}

TEST(BadInput, UnknownSettingKeySuggestsNearest) {
  std::string e =
      ErrorOf("name: x\nrecipe: jft-300m\ngrid:\n  - model: ViT-B/16\n    weight_dacay: 0.1\n");
  EXPECT_EQ(e.rfind("s.yaml:5:5: unknown key 'weight_dacay'", 0), 0u) << e;
  EXPECT_NE(e.find("did you mean 'weight_decay'"), std::string::npos) << e;
}

TEST(BadInput, UnknownModelSuggestsNearest) {
  std::string e = ErrorOf("name: x\nrecipe: jft-300m\ngrid:\n  model: [ViT-B/16, ViT-B/61]\n");
  EXPECT_EQ(e.rfind("s.yaml:4:21: ", 0), 0u) << e;
  EXPECT_NE(e.find("ViT-B/61"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean"), std::string::npos) << e;
}

TEST(BadInput, UnknownDatasetSuggestsNearest) {
  std::string e = ErrorOf(std::string(kMinimal) + "  dataset: imagenet-21k\n");
  EXPECT_EQ(e.rfind("s.yaml:5:12: unknown dataset 'imagenet-21k'", 0), 0u) << e;
  EXPECT_NE(e.find("did you mean 'imagenet21k'"), std::string::npos) << e;
  e = ErrorOf(std::string(kMinimal) + "transfer: {few_shot: {datasets: [cifar-10]}}\n");
  EXPECT_NE(e.find("did you mean 'cifar10'"), std::string::npos) << e;
}

TEST(BadInput, ZeroAndNegativeSizes) {
  EXPECT_NE(ErrorOf(std::string(kMinimal) + "  subset: 0\n")
                .find("s.yaml:5:11: 'subset' must be above 0"),
            std::string::npos);
  EXPECT_NE(
      ErrorOf(std::string(kMinimal) + "  batch_size: -8\n").find("'batch_size' must be above 0"),
      std::string::npos);
  EXPECT_NE(ErrorOf(std::string(kMinimal) + "  lr: -1e-3\n").find("'lr' must be above 0"),
            std::string::npos);
  EXPECT_NE(ErrorOf(std::string(kMinimal) + "  epochs: 0\n").find("'epochs' must be above 0"),
            std::string::npos);
  EXPECT_NE(ErrorOf(std::string(kMinimal) + "  subset: 1.5\n").find("must be an integer"),
            std::string::npos);
  EXPECT_NE(ErrorOf(std::string(kMinimal) + "  dropout: 1.5\n").find("below 1"), std::string::npos);
  EXPECT_NE(
      ErrorOf(std::string(kMinimal) + "resources: {ranks: 0}\n").find("'ranks' must be at least 1"),
      std::string::npos);
  EXPECT_NE(
      ErrorOf(std::string(kMinimal) + "transfer: {few_shot: {datasets: [pets], shots: [0, 5]}}\n")
          .find("'shots' must be above 0"),
      std::string::npos);
}

TEST(BadInput, DuplicateAxisValuesComparedAsTypedValues) {
  std::string e = ErrorOf(
      "name: x\nrecipe: jft-300m\ngrid:\n  model: ViT-B/16\n  subset: [9M, 30M, 9000000]\n");
  EXPECT_EQ(e.rfind("s.yaml:5:21: 'subset' lists 9000000 twice (first at line 5, column 12)", 0),
            0u)
      << e;
  e = ErrorOf("name: x\nrecipe: jft-300m\ngrid:\n  model: ViT-B/16\n  lr: [1e-3, 0.001]\n");
  EXPECT_NE(e.find("twice"), std::string::npos) << e;
}

TEST(BadInput, ZipAxesOfUnequalLength) {
  std::string e = ErrorOf(R"(name: x
recipe: jft-300m
grid:
  model: ViT-B/16
  zip:
    subset: [9M, 30M, 90M]
    lr: [1e-3, 8e-4]
)");
  EXPECT_EQ(
      e.rfind("s.yaml:7:5: zip axes must have equal lengths: 'lr' has 2 values but 'subset' has 3",
              0),
      0u)
      << e;
}

TEST(BadInput, SameKeyInZipAndBesideIt) {
  std::string e = ErrorOf(
      "name: x\nrecipe: jft-300m\ngrid:\n  model: ViT-B/16\n  lr: 1e-3\n  zip: {lr: [1e-3], seed: "
      "[1]}\n");
  EXPECT_NE(e.find("'lr' is already an axis of this block"), std::string::npos) << e;
}

TEST(BadInput, SubsetLargerThanItsDataset) {
  std::string e = ErrorOf(R"(name: x
recipe: small-images
pretrain: {dataset: fashion-mnist/0-4}
grid:
  model: ViT-Mu/7
  subset: [3000, 40000]
)");
  EXPECT_EQ(
      e.rfind(
          "s.yaml:6:18: subset 40000 is larger than fashion-mnist/0-4's 30000 training examples",
          0),
      0u)
      << e;
}

TEST(BadInput, EmptyAndBinaryFiles) {
  EXPECT_EQ(ErrorOf("").rfind("s.yaml:1:1: the file is empty", 0), 0u);
  EXPECT_EQ(ErrorOf("# only a comment\n\n").rfind("s.yaml:1:1: the file is empty", 0), 0u);
  std::string binary("name: x\nrec\x00ipe\x01\x02", 16);
  std::string e = ErrorOf(binary);
  EXPECT_EQ(e.rfind("s.yaml:2:4: byte 0x00 is not text", 0), 0u) << e;
  EXPECT_EQ(ErrorOf("\x89PNG\r\n\x1a\n").rfind("s.yaml:1:1: byte 0x89 is not UTF-8", 0), 0u)
      << ErrorOf("\x89PNG\r\n\x1a\n");
}

// YAML is UTF-8 text: malformed sequences are named where they are, before yaml-cpp sees them
// (the fuzzer found one that made yaml-cpp loop). Names and descriptions reach JSON, which
// holds only valid UTF-8.
TEST(BadInput, TextThatIsNotUtf8IsNamedWhereItIs) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"name: x # caf\xc3(\n", "s.yaml:1:14: byte 0xc3 is not UTF-8"},             // cut short
      {"name: \xc0\xaf\n", "s.yaml:1:7: byte 0xc0 is not UTF-8"},                  // overlong '/'
      {"name: \xed\xa0\x80\n", "s.yaml:1:7: byte 0xed is not UTF-8"},              // a surrogate
      {"name: \xf4\x90\x80\x80\n", "s.yaml:1:7: byte 0xf4 is not UTF-8"},          // past U+10FFFF
      {"name: \x80\n", "s.yaml:1:7: byte 0x80 is not UTF-8"},                      // stray
      {"name: x\ndescription: a\xe2\x82", "s.yaml:2:15: byte 0xe2 is not UTF-8"},  // at the end
      {"name: \xc2\x85\n", "s.yaml:1:7: byte 0xc2 is not text"},                   // C1 control
  };
  for (const auto& [text, error] : cases) {
    std::string e = ErrorOf(text);
    EXPECT_EQ(e.rfind(error, 0), 0u) << e;
  }
  std::ifstream fuzzed(std::string(VITSCALE_SOURCE_DIR) + "/fuzz/corpus/sweep/invalid-utf8.yaml");
  std::string text((std::istreambuf_iterator<char>(fuzzed)), {});
  ASSERT_FALSE(text.empty());
  std::string e = ErrorOf(text);
  EXPECT_EQ(e.rfind("s.yaml:11:88: byte 0x94 is not UTF-8", 0), 0u) << e;
  // Well-formed text of any script, and a byte-order mark, are fine.
  std::string valid = std::string("\xef\xbb\xbf") + kMinimal +
                      "description: caf\xc3\xa9, \xe6\x97\xa5\xe6\x9c\xac, \xf0\x9f\x99\x82\n";
  EXPECT_EQ(ExpandOk(valid).size(), 1u);
}

// yaml-cpp 0.7.0's LoadAll never returns on a lone ',' (found by the fuzzer; upstream
// jbeder/yaml-cpp#1040). The parse runs in a child process so that a hang fails this test
// instead of stalling the suite.
TEST(BadInput, ALoneCommaIsAnErrorNotAHang) {
  const std::vector<std::string> texts = {",", ", a", " ,\n", std::string(kMinimal) + "---\n,\n"};
  for (const std::string& text : texts) {
    pid_t child = ::fork();
    if (child == 0) {
      Expected<Sweep> sweep = ParseSweep(text, "s.yaml");
      ::_exit(!sweep.ok() && sweep.status().code() == StatusCode::kInvalidArgument ? 0 : 1);
    }
    int status = 0;
    for (int i = 0; i < 1000 && ::waitpid(child, &status, WNOHANG) == 0; ++i) ::usleep(10000);
    if (::waitpid(child, &status, WNOHANG) == 0) {
      ::kill(child, SIGKILL);
      ::waitpid(child, &status, 0);
      ADD_FAILURE() << "parsing '" << text << "' did not end within 10 s";
      continue;
    }
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "accepted: " << text;
  }
}

TEST(BadInput, MoreJobsThanOneSweepMayHave) {
  std::string seeds, subset_seeds;
  for (int i = 0; i < 400; ++i) seeds += (i ? ", " : "") + std::to_string(i);
  for (int i = 0; i < 300; ++i) subset_seeds += (i ? ", " : "") + std::to_string(i);
  std::string e = ErrorOf(std::string(kMinimal) + "grid:\n  - seed: [0]\n  - seed: [" + seeds +
                          "]\n    subset_seed: [" + subset_seeds + "]\n");
  EXPECT_EQ(e.rfind("s.yaml:7:5: with this grid block the sweep makes more than 100000 jobs", 0),
            0u)
      << e;
}

TEST(BadInput, ShapeTheModelCannotRun) {
  std::string e = ErrorOf(R"(name: x
recipe: small-images
grid:
  model: ViT-Mu/7
  resolution: 30
)");
  EXPECT_EQ(e.rfind("s.yaml:5:15: ViT-Mu/7 cannot pretrain at resolution 30", 0), 0u) << e;
  EXPECT_NE(e.find("divisible"), std::string::npos) << e;
  e = ErrorOf(R"(name: x
recipe: small-images
pretrain: {model: ViT-Mu/7}
transfer:
  fine_tune:
    - dataset: digits
      resolution: 30
)");
  EXPECT_EQ(e.rfind("s.yaml:6:7: ViT-Mu/7 cannot fine-tune at resolution 30 on digits", 0), 0u)
      << e;
}

TEST(BadInput, StructuralMistakes) {
  // Repeated key, both training lengths, list where one value belongs, several documents.
  EXPECT_NE(ErrorOf(std::string(kMinimal) + "name: y\n").find("'name' appears twice"),
            std::string::npos);
  EXPECT_NE(ErrorOf(std::string(kMinimal) + "  epochs: 7\n  steps: 1000\n").find("not both"),
            std::string::npos);
  EXPECT_NE(ErrorOf(std::string(kMinimal) + "  seed: [0, 1]\n")
                .find("put a list of values in a grid block"),
            std::string::npos);
  EXPECT_NE(ErrorOf(std::string(kMinimal) + "---\nname: y\n").find("one YAML document"),
            std::string::npos);
  EXPECT_NE(ErrorOf("- a\n- b\n").find("top level must be a mapping"), std::string::npos);
  EXPECT_NE(ErrorOf("recipe: jft-300m\npretrain: {model: ViT-B/16}\n").find("needs a 'name:'"),
            std::string::npos);
  EXPECT_NE(ErrorOf("name: x\npretrain: {model: ViT-B/16}\n").find("needs a 'recipe:'"),
            std::string::npos);
  EXPECT_NE(ErrorOf("name: x\nrecipe: jft300m\npretrain: {model: ViT-B/16}\n")
                .find("did you mean 'jft-300m'"),
            std::string::npos);
  EXPECT_NE(
      ErrorOf("name: x\nrecipe: jft-300m\ngrid:\n  seed: [1, 2]\n").find("s.yaml:4:3: no model"),
      std::string::npos);
  EXPECT_NE(ErrorOf("name: x\nrecipe: jft-300m\ngrid:\n  model: ViT-B/16\n  lr: []\n")
                .find("lists no values"),
            std::string::npos);
  EXPECT_NE(ErrorOf("name: x\nrecipe: jft-300m\npretrain: {model: ViT-B/16, lr_decay: cosin}\n")
                .find("did you mean 'cosine'"),
            std::string::npos);
}

TEST(BadInput, RepeatedJobAcrossBlocks) {
  std::string e = ErrorOf(R"(name: x
recipe: jft-300m
grid:
  - model: [ViT-B/32, ViT-B/16]
  - model: ViT-B/16
    epochs: 7
)");
  EXPECT_EQ(e.rfind("s.yaml:5:5: this block repeats a job made by the block at line 4", 0), 0u)
      << e;
}

TEST(BadInput, NoPaperLearningRateForModel) {
  std::string e = ErrorOf("name: x\nrecipe: jft-300m\npretrain: {model: ViT-Ti/7}\n");
  EXPECT_NE(e.find("no base learning rate for ViT-Ti/7"), std::string::npos) << e;
  EXPECT_NE(e.find("set 'lr'"), std::string::npos) << e;
}

TEST(BadInput, TooManyShotsForTheDataset) {
  std::string e = ErrorOf(std::string(kMinimal) +
                          "transfer:\n  few_shot:\n    datasets: [flowers]\n    shots: [10, 25]\n");
  EXPECT_NE(e.find("25-shot needs 2550 training examples of flowers but it has 2040"),
            std::string::npos)
      << e;
}

TEST(BadInput, NoPrefixOrCorruptionOfAValidFileCrashes) {
  const std::string valid = R"(name: cut
recipe: small-images
pretrain: {dataset: fashion-mnist/0-4, epochs: 2}
grid:
  - model: [ViT-Mu/7, R11s+ViT-Mu/4]
    zip: {subset: [500, 5000], lr: [1e-3, 2e-3]}
    resources: {ranks: 2}
transfer:
  few_shot: {datasets: [digits], shots: [1, 5]}
  fine_tune:
    - dataset: fashion-mnist/5-9
      steps: 100
)";
  ASSERT_FALSE(ExpandOk(valid).empty());
  for (size_t cut = 0; cut < valid.size(); ++cut) {
    for (const std::string& text :
         {valid.substr(0, cut), valid.substr(0, cut) + "]" + valid.substr(cut + 1),
          valid.substr(0, cut) + ":" + valid.substr(cut + 1)}) {
      Expected<std::vector<Job>> jobs = Expand(text);
      if (!jobs.ok()) {
        EXPECT_EQ(jobs.status().code(), StatusCode::kInvalidArgument) << text;
        EXPECT_EQ(jobs.status().message().rfind("s.yaml:", 0), 0u) << jobs.status().message();
      }
    }
  }
}

}  // namespace
}  // namespace vitscale::sweep
