#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>

#include "planning/fit.h"
#include "planning/simulate.h"
#include "planning/study_fits.h"
#include "planning/throughput.h"
#include "storage/store.h"
#include "tests/storage/test_util.h"

namespace vitscale::planning {
namespace {

using storage::testing::TempDir;

// A table where `model` runs `rate` images/s per device after `overhead` seconds on `kind`.
ThroughputTable TableOf(const std::string& model, const std::string& kind, double rate,
                        double overhead = 0, int64_t batch = 32, double flops_per_image = 1e9) {
  ThroughputEntry e;
  e.model = model;
  e.device_kind = kind;
  e.precision = DefaultPrecision(kind);
  e.batch_size = batch;
  e.images_per_second = rate;
  e.overhead_seconds = overhead;
  e.flops_per_image = flops_per_image;
  e.source = "test";
  return ThroughputTable({e});
}

PlannedJob Job(const std::string& id, int64_t images, int ranks = 1, int gpus_per_rank = 0,
               int priority = 0, const std::string& model = "ViT-Mu/7") {
  PlannedJob job;
  job.id = id;
  job.model = model;
  job.family = "ViT";
  job.priority = priority;
  job.ranks = ranks;
  job.gpus_per_rank = gpus_per_rank;
  job.batch_size = 32;
  job.images = images;
  job.train_flops = 1e9 * static_cast<double>(images);
  return job;
}

Cluster Hosts(const std::string& spec) {
  Expected<Cluster> cluster = ParseHostSpec(spec);
  EXPECT_TRUE(cluster.ok()) << cluster.status().ToString();
  return *cluster;
}

// Host specs ---------------------------------------------------------------------------------

TEST(HostSpec, ParsesGroupsAndCountsDevices) {
  Cluster c = Hosts("8x8:H200");
  EXPECT_EQ(c.Hosts(), 8);
  EXPECT_EQ(c.Devices(), 64);
  EXPECT_EQ(c.groups[0].gpus, 8);
  Cluster mixed = Hosts("2x4:cpu,1x8:A100");
  EXPECT_EQ(mixed.Hosts(), 3);
  EXPECT_EQ(mixed.groups[0].gpus, 0);
  EXPECT_EQ(mixed.groups[0].slots, 4);
  EXPECT_EQ(mixed.Devices(), 16);
  EXPECT_EQ(ScaleCluster(c, 2).Hosts(), 16);
  EXPECT_EQ(ScaleCluster(c, 2).description, "16x8:H200");
}

TEST(HostSpec, RefusesMalformedSpecsSayingWhy) {
  for (const char* bad :
       {"8:H200", "0x8:H200", "8x0:H200", "8x8:", "x8:H200", "8x8H200", "8x8:H200,"}) {
    Expected<Cluster> c = ParseHostSpec(bad);
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(c.status().message().find("HOSTSxDEVICES:KIND"), std::string::npos);
  }
}

TEST(HostSpec, ReadsAClusterFileAndPointsAtItsErrors) {
  TempDir dir;
  std::ofstream(dir.File("ok.yaml")) << "hosts:\n  - {kind: H100, count: 4, gpus: 8}\n"
                                        "  - {kind: cpu, count: 2, slots: 16, peak_tflops: 2}\n";
  Expected<Cluster> c = ParseHosts(dir.File("ok.yaml"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->Hosts(), 6);
  EXPECT_EQ(c->Devices(), 64);
  ASSERT_TRUE(c->groups[1].peak_flops.has_value());
  EXPECT_DOUBLE_EQ(*c->groups[1].peak_flops, 2e12);

  std::ofstream(dir.File("bad.yaml")) << "hosts:\n  - kind: H100\n    count: 4\n    gpu: 8\n";
  Expected<Cluster> bad = ParseHosts(dir.File("bad.yaml"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bad.yaml:4:"), std::string::npos)
      << bad.status().message();
  EXPECT_NE(bad.status().message().find("unknown key 'gpu'"), std::string::npos);
  EXPECT_EQ(ParseHosts(dir.File("missing.yaml")).status().code(), StatusCode::kNotFound);
}

// Throughput ---------------------------------------------------------------------------------

TEST(Throughput, LedgerSamplesGiveRateAndOverheadByLeastSquares) {
  // 20 s of overhead, then 100 images/s per device; one job on two devices.
  std::vector<storage::ThroughputSample> samples;
  for (int64_t images : {1000, 4000, 16000}) {
    samples.push_back({"j", "ViT-Mu/7", "cpu", 32, 1, images, 6e6 * images, 20 + images / 100.0});
  }
  samples.push_back({"j2", "ViT-Mu/7", "cpu", 32, 2, 8000, 6e6 * 8000, 20 + 4000 / 100.0});
  std::vector<ThroughputEntry> table = BuildThroughputTable(samples, {});
  ASSERT_EQ(table.size(), 1u);
  EXPECT_NEAR(table[0].images_per_second, 100, 1e-6);
  EXPECT_NEAR(table[0].overhead_seconds, 20, 1e-6);
  EXPECT_NEAR(table[0].flops_per_image, 6e6, 1e-3);
  EXPECT_EQ(table[0].precision, "fp32");
  EXPECT_EQ(table[0].jobs, 4);
  EXPECT_EQ(table[0].source, "ledger");
}

TEST(Throughput, OneSizeGivesTheMeanRateAndAnImportOfTheSameKeyYields) {
  std::vector<storage::ThroughputSample> samples = {
      {"j", "R11s", "NVIDIA H100", 64, 8, 80000, 1e15, 100}};
  storage::ThroughputImport same{"R11s", "NVIDIA H100", "bf16", 64, 5, 1e9, 0, "bench", 0};
  storage::ThroughputImport other{"R20s", "NVIDIA H100", "bf16", 64, 50, 2e9, 3, "bench", 0};
  std::vector<ThroughputEntry> table = BuildThroughputTable(samples, {same, other});
  ASSERT_EQ(table.size(), 2u);
  EXPECT_NEAR(table[0].images_per_second, 100, 1e-9);  // 80000 / 8 devices / 100 s
  EXPECT_EQ(table[0].overhead_seconds, 0);
  EXPECT_EQ(table[0].source, "ledger");
  EXPECT_EQ(table[1].model, "R20s");
  EXPECT_EQ(table[1].source, "benchmark: bench");
}

TEST(Throughput, LookupMeasuredThenEstimatedAndMarked) {
  ThroughputTable table = TableOf("ViT-B/16", "NVIDIA H200", 500, 10, 4096, 6e10);
  RateQuery query{"ViT-B/16", "ViT", 4096, 6e10};
  Expected<Rate> measured = table.Lookup(query, "H200");
  ASSERT_TRUE(measured.ok()) << measured.status().ToString();
  EXPECT_FALSE(measured->estimate);
  EXPECT_DOUBLE_EQ(measured->images_per_second, 500);

  query.batch_size = 1024;
  Expected<Rate> other_batch = table.Lookup(query, "H200");
  ASSERT_TRUE(other_batch.ok());
  EXPECT_TRUE(other_batch->estimate);
  EXPECT_NE(other_batch->basis.find("batch 4096"), std::string::npos);

  // A related model: the same FLOP/s spent on 4x the FLOPs per image.
  RateQuery larger{"ViT-L/16", "ViT", 4096, 2.4e11};
  Expected<Rate> related = table.Lookup(larger, "h200");
  ASSERT_TRUE(related.ok());
  EXPECT_TRUE(related->estimate);
  EXPECT_NEAR(related->images_per_second, 125, 1e-9);
  EXPECT_NE(related->basis.find("ViT-B/16"), std::string::npos);

  // Nothing on this kind: the nominal peak at the assumed utilisation, marked.
  Expected<Rate> nominal = table.Lookup(larger, "A100");
  ASSERT_TRUE(nominal.ok());
  EXPECT_TRUE(nominal->estimate);
  EXPECT_NEAR(nominal->images_per_second, 312e12 * ThroughputTable::kAssumedUtilisation / 2.4e11,
              1e-6);
  EXPECT_NE(nominal->basis.find("nominal peak"), std::string::npos);

  Expected<Rate> unknown = table.Lookup(larger, "TPUv9");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  EXPECT_NE(unknown.status().message().find("vitscale throughput import"), std::string::npos);
}

TEST(Throughput, KindsMatchWithoutVendorAndMemorySuffix) {
  EXPECT_TRUE(SameKind("NVIDIA H100 80GB HBM3", "H100"));
  EXPECT_TRUE(SameKind("h200", "NVIDIA H200"));
  EXPECT_FALSE(SameKind("H100", "H10"));
  EXPECT_FALSE(SameKind("A100", "H100"));
}

TEST(Throughput, ImportFileIsCheckedFieldByField) {
  Expected<std::vector<storage::ThroughputImport>> rows = ParseThroughputImport(
      R"({"rows": [{"model": "ViT-B/16", "device_kind": "H100", "batch_size": 4096,
                    "images_per_second": 900}]})",
      "bench.json");
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  EXPECT_EQ((*rows)[0].precision, "bf16");
  EXPECT_GT((*rows)[0].flops_per_image, 1e10);  // from the registry at 224 pixels
  Expected<std::vector<storage::ThroughputImport>> bad = ParseThroughputImport(
      R"([{"model": "ViT-B/16", "device_kind": "H100", "batch_size": 0, "images_per_second": 9}])",
      "bench.json");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bench.json: rows[0].batch_size"), std::string::npos)
      << bad.status().message();
  EXPECT_FALSE(ParseThroughputImport(R"([{"model": "ViT-Q/3", "device_kind": "H100",
      "batch_size": 8, "images_per_second": 9}])",
                                     "b")
                   .ok());
}

TEST(Throughput, ImportsTheGpuBenchmarksLines) {
  Expected<std::vector<storage::ThroughputImport>> rows = ParseThroughputImport(
      "{\"impl\": \"vitscale\", \"model\": \"ViT-B/16\", \"batch\": 256, \"resolution\": 224, "
      "\"precision\": \"bf16\", \"cuda_graph\": true, \"images_per_sec\": 1510.5, "
      "\"step_ms\": 169.5, \"peak_gib\": 40.1, \"device\": \"NVIDIA H200\"}\n\n"
      "{\"impl\": \"vitscale\", \"model\": \"R50x1\", \"batch\": 256, \"resolution\": 224, "
      "\"precision\": \"bf16\", \"images_per_sec\": 2900, \"device\": \"NVIDIA H200\"}\n",
      "gpu.jsonl");
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].device_kind, "NVIDIA H200");
  EXPECT_EQ((*rows)[0].batch_size, 256);
  EXPECT_DOUBLE_EQ((*rows)[0].images_per_second, 1510.5);
  EXPECT_GT((*rows)[0].flops_per_image, 5e10);  // ViT-B/16 at 224: about 3 x 17.6 GMACs x 2
  Expected<std::vector<storage::ThroughputImport>> bad = ParseThroughputImport(
      "{\"model\": \"ViT-B/16\", \"batch\": 256, \"resolution\": 224, \"precision\": \"bf16\", "
      "\"images_per_sec\": 1, \"device\": \"H200\"}\n{\"model\": \"ViT-B/16\", \"images_per_sec\": "
      "1}",
      "gpu.jsonl");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("gpu.jsonl:2:"), std::string::npos)
      << bad.status().message();
}

// The simulator ------------------------------------------------------------------------------

TEST(Simulate, QueuesOnOneSlotAndRunsSideBySideOnTwo) {
  ThroughputTable table = TableOf("ViT-Mu/7", "cpu", 10, 5);  // 100 images: 5 + 10 s
  std::vector<PlannedJob> jobs = {Job("a", 100), Job("b", 100), Job("c", 100)};
  Expected<SimulationResult> one = Simulate(jobs, Hosts("1x1:cpu"), table, {});
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  EXPECT_DOUBLE_EQ(one->makespan_seconds, 45);
  EXPECT_NEAR(one->utilisation, 1.0, 1e-12);
  EXPECT_DOUBLE_EQ(one->jobs[2].first_start, 30);  // submission order
  Expected<SimulationResult> two = Simulate(jobs, Hosts("1x2:cpu"), table, {});
  ASSERT_TRUE(two.ok());
  EXPECT_DOUBLE_EQ(two->makespan_seconds, 30);
  EXPECT_NEAR(two->utilisation, 45.0 / 60.0, 1e-12);
  EXPECT_DOUBLE_EQ(two->lower_bound_seconds, 22.5);
  for (const SimulatedJob& j : two->jobs) EXPECT_EQ(j.state, "succeeded");
  // The last to end leads the critical jobs.
  EXPECT_EQ(two->jobs[two->critical.front()].job.id, "c");
}

TEST(Simulate, HigherPriorityRunsFirst) {
  ThroughputTable table = TableOf("ViT-Mu/7", "cpu", 10);
  std::vector<PlannedJob> jobs = {Job("low", 100), Job("high", 100, 1, 0, /*priority=*/5)};
  Expected<SimulationResult> r = Simulate(jobs, Hosts("1x1:cpu"), table, {});
  ASSERT_TRUE(r.ok());
  EXPECT_DOUBLE_EQ(r->jobs[1].first_start, 0);
  EXPECT_DOUBLE_EQ(r->jobs[0].first_start, 10);
}

TEST(Simulate, GangsSpreadOverHostsAndRunAtTheSlowestHostsPace) {
  ThroughputEntry fast{"ViT-Mu/7", "H100", "bf16", 32, 100, 1e9, 0, "t", 1};
  ThroughputEntry slow{"ViT-Mu/7", "A100", "bf16", 32, 50, 1e9, 0, "t", 1};
  ThroughputTable table({fast, slow});
  // 8 ranks of one GPU each: no host has 8, so the gang spans both.
  std::vector<PlannedJob> jobs = {Job("gang", 8000, 8, 1)};
  Expected<SimulationResult> r = Simulate(jobs, Hosts("1x4:H100,1x4:A100"), table, {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->attempts.size(), 1u);
  EXPECT_EQ(r->attempts[0].placements.size(), 2u);
  EXPECT_DOUBLE_EQ(r->makespan_seconds, 8000.0 / (50 * 8));
  EXPECT_NEAR(r->device_seconds, 8 * 20.0, 1e-9);
}

TEST(Simulate, RefusesAClusterThatCannotRunAJobNamingTheNumbers) {
  ThroughputTable table = TableOf("ViT-Mu/7", "H200", 10);
  std::vector<PlannedJob> jobs = {Job("0123456789abcdef", 100, 16, 1)};
  Expected<SimulationResult> r = Simulate(jobs, Hosts("1x8:H200"), table, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  const std::string& m = r.status().message();
  EXPECT_NE(m.find("0123456789ab (ViT-Mu/7)"), std::string::npos) << m;
  EXPECT_NE(m.find("16 ranks x 1 GPU = 16 GPUs"), std::string::npos) << m;
  EXPECT_NE(m.find("at most 8"), std::string::npos) << m;
  // A GPU job on CPU hosts, and a rank wider than any host.
  EXPECT_FALSE(Simulate({Job("g", 100, 1, 1)}, Hosts("4x8:cpu"), table, {}).ok());
  Expected<SimulationResult> wide = Simulate({Job("w", 100, 1, 16)}, Hosts("4x8:H200"), table, {});
  ASSERT_FALSE(wide.ok());
  EXPECT_NE(wide.status().message().find("the largest host has 8 GPUs"), std::string::npos);
}

TEST(Simulate, EstimatesAreListedWhenNothingIsMeasured) {
  ThroughputTable empty({});
  Expected<SimulationResult> r = Simulate({Job("a", 1000, 8, 1)}, Hosts("2x8:H200"), empty, {});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->estimated.size(), 1u);
  EXPECT_NE(r->estimated[0].find("nominal peak"), std::string::npos);
  EXPECT_TRUE(r->jobs[0].rate.estimate);
}

TEST(Simulate, RandomPreemptionsResumeFromWhereTheyStoppedAndRepeatWithTheSeed) {
  ThroughputTable table = TableOf("ViT-Mu/7", "cpu", 1);
  std::vector<PlannedJob> jobs;
  for (int i = 0; i < 20; ++i) jobs.push_back(Job("j" + std::to_string(i), 3600));  // 1 h each
  SimulationOptions options;
  options.preempt_rate_per_device_day = 24;  // one an hour per device
  options.preempt_exit_seconds = 0;
  Expected<SimulationResult> a = Simulate(jobs, Hosts("4x1:cpu"), table, options);
  Expected<SimulationResult> b = Simulate(jobs, Hosts("4x1:cpu"), table, options);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_GT(a->preemptions, 5);
  EXPECT_EQ(a->preemptions, b->preemptions);
  EXPECT_DOUBLE_EQ(a->makespan_seconds, b->makespan_seconds);
  EXPECT_GT(a->attempts.size(), jobs.size());
  // A preemption loses nothing: the work done equals the jobs' work exactly.
  EXPECT_NEAR(a->device_seconds, 20 * 3600.0, 1e-6);
  for (const SimulatedJob& j : a->jobs) EXPECT_EQ(j.state, "succeeded");
}

TEST(Simulate, FailuresLoseWorkSinceTheCheckpointAndRunOutOfRetries) {
  ThroughputTable table = TableOf("ViT-Mu/7", "cpu", 1);
  SimulationOptions options;
  options.failure_rate_per_device_day = 48;
  options.checkpoint_every_seconds = 600;
  Expected<SimulationResult> retried =
      Simulate({Job("a", 7200), Job("b", 7200)}, Hosts("2x1:cpu"), table, options);
  ASSERT_TRUE(retried.ok());
  EXPECT_GT(retried->failures, 0);
  options.max_retries = 0;
  options.failure_rate_per_device_day = 1e4;  // fails within seconds
  Expected<SimulationResult> failed = Simulate({Job("a", 7200)}, Hosts("1x1:cpu"), table, options);
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed->jobs[0].state, "failed");
  EXPECT_EQ(failed->jobs[0].attempts, 1);
}

// Fits ---------------------------------------------------------------------------------------

TEST(Fit, RecoversAKnownPowerLaw) {
  PowerLaw truth{0.5, 0.35, 0.08, 2.0};
  std::vector<FitPoint> points;
  for (double x : {0.5, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0}) {
    points.push_back({x, truth.Eval(x)});
  }
  Expected<PowerLaw> law = FitPowerLaw(points);
  ASSERT_TRUE(law.ok()) << law.status().ToString();
  for (double x : {0.5, 10.0, 1000.0, 10000.0}) {
    EXPECT_NEAR(law->Eval(x), truth.Eval(x), 1e-4) << x;
  }
  EXPECT_NEAR(law->b, truth.b, 0.02);
  EXPECT_NEAR(law->c, truth.c, 0.01);
}

TEST(Fit, FewerPointsThanParametersIsRefused) {
  CurveFit fit = FitWithBand({{1, 0.5}, {2, 0.4}, {4, 0.35}}, nullptr);
  EXPECT_EQ(fit.status, "too_few_points");
  EXPECT_NE(fit.message.find("3 points for 4 parameters"), std::string::npos) << fit.message;
  EXPECT_TRUE(fit.curve.empty());
}

TEST(Fit, BandBracketsTheFitAndExtendsADecade) {
  PowerLaw truth{0.4, 0.3, 0.1, 1.0};
  std::vector<FitPoint> points;
  int i = 0;
  for (double x : {1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0}) {
    points.push_back({x, truth.Eval(x) * (1 + 0.02 * ((i++ % 3) - 1))});
  }
  CurveFit fit = FitWithBand(points, nullptr, 100, 7);
  ASSERT_EQ(fit.status, "ok") << fit.message;
  EXPECT_GE(fit.resamples_fitted, 20);
  EXPECT_DOUBLE_EQ(fit.extrapolated_from, 512);
  EXPECT_NEAR(fit.curve.back().x, 5120, 1e-6);
  for (const BandPoint& p : fit.curve) {
    ASSERT_TRUE(p.low && p.high);
    EXPECT_LE(*p.low, *p.high);
  }
  // The same seed gives the same band, whatever the order the points come in.
  CurveFit again = FitWithBand(points, nullptr, 100, 7);
  EXPECT_EQ(*again.curve.back().high, *fit.curve.back().high);
  std::reverse(points.begin(), points.end());
  CurveFit reversed = FitWithBand(points, nullptr, 100, 7);
  for (size_t g = 0; g < fit.curve.size(); ++g) {
    EXPECT_EQ(*reversed.curve[g].low, *fit.curve[g].low) << g;
    EXPECT_EQ(*reversed.curve[g].high, *fit.curve[g].high) << g;
  }
}

// Draws that select the same points (they share one fit) each count: a family whose frontier
// is the same in every draw (each point many times over) has a band of no width, from all 200
// draws.
TEST(Fit, DrawsSelectingTheSamePointsCountEachTime) {
  PowerLaw truth{0.4, 0.3, 0.1, 1.0};
  std::vector<FitPoint> points;
  for (double x : {1.0, 2.0, 4.0, 8.0, 16.0, 32.0}) {
    for (int copy = 0; copy < 100; ++copy) points.push_back({x, truth.Eval(x)});
  }
  auto frontier = [](const std::vector<FitPoint>& all) {
    std::vector<FitPoint> kept;
    for (size_t i : ParetoFrontier(all)) kept.push_back(all[i]);
    return kept;
  };
  CurveFit fit = FitWithBand(points, frontier);
  ASSERT_EQ(fit.status, "ok") << fit.message;
  EXPECT_EQ(fit.points, 6);
  EXPECT_EQ(fit.resamples_fitted, 200);
  for (const BandPoint& p : fit.curve) {
    ASSERT_TRUE(p.low && p.high);
    EXPECT_EQ(*p.low, *p.high) << p.x;
  }
}

TEST(Fit, ParetoFrontierKeepsOnlyUnbeatenPoints) {
  std::vector<FitPoint> points = {{1, 0.5}, {2, 0.6}, {3, 0.4}, {3, 0.45}, {5, 0.41}, {8, 0.3}};
  std::vector<size_t> frontier = ParetoFrontier(points);
  EXPECT_EQ(frontier, (std::vector<size_t>{0, 2, 5}));
}

TEST(StudyFits, FitsFamiliesOnTheirFrontierAndSaysWhenTooFew) {
  storage::ResultsTable table;
  table.sweep = "s";
  table.columns.push_back({protocol::Evaluation::kFewShot, "cifar10", 5});
  PowerLaw truth{0.5, 0.3, 0.1, 0.5};
  int n = 0;
  auto add = [&](const std::string& model, const std::string& family, double exaflops,
                 int64_t examples, double accuracy) {
    storage::ResultsTableRow row;
    row.job_id = "job" + std::to_string(n++);
    row.model = model;
    row.family = family;
    row.epochs = 7;
    row.examples = examples;
    row.exaflops = exaflops;
    row.compute_planned = false;
    row.transfer = {100 * accuracy};
    row.average = 100 * accuracy;
    table.rows.push_back(row);
  };
  for (double c : {0.1, 0.3, 1.0, 3.0, 10.0, 30.0}) {
    add("ViT-B/16", "ViT", c, static_cast<int64_t>(c * 1e6), 1 - truth.Eval(c));
  }
  add("R50x1", "ResNet", 1.0, 1000, 0.5);
  add("R50x1", "ResNet", 2.0, 2000, 0.6);
  Expected<StudyFits> fits = FitStudy(table, "average");
  ASSERT_TRUE(fits.ok()) << fits.status().ToString();
  ASSERT_EQ(fits->compute.size(), 2u);
  EXPECT_EQ(fits->compute[0].family, "ResNet");
  EXPECT_EQ(fits->compute[0].fit.status, "too_few_points");
  EXPECT_EQ(fits->compute[1].fit.status, "ok");
  EXPECT_NEAR(fits->compute[1].fit.law.Eval(100), truth.Eval(100), 1e-3);
  ASSERT_EQ(fits->data_size.size(), 2u);
  EXPECT_EQ(fits->data_size[1].group, "ViT-B/16");
  EXPECT_EQ(fits->data_size[1].fit.status, "ok");

  Expected<StudyFits> column = FitStudy(table, "cifar10 5-shot");
  ASSERT_TRUE(column.ok());
  Expected<StudyFits> unknown = FitStudy(table, "imagenet 5-shot");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("cifar10 5-shot"), std::string::npos);

  std::string csv = FormatFits(*fits, storage::TableFormat::kCsv);
  EXPECT_NE(csv.find("figure,group,points,a,b,c,d"), std::string::npos) << csv;
  EXPECT_NE(csv.find("2 points for 4 parameters"), std::string::npos) << csv;
  std::string latex = FormatFits(*fits, storage::TableFormat::kLatex);
  EXPECT_NE(latex.find("\\begin{tabular}"), std::string::npos);
}

// The store's side -----------------------------------------------------------------------------

TEST(ThroughputStore, SamplesComeFromWholeSucceededAttemptsOnly) {
  TempDir dir;
  auto store = storage::Store::Open(dir.File("db.sqlite"));
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  storage::Store& s = **store;
  storage::JobRecord a = storage::testing::MakeJob("ViT-Mu/7", "fashion-mnist", 500, 1);
  a.config_json = R"({"model":"ViT-Mu/7","train":{"batch_size":32}})";
  a.id = Sha256Hex(a.config_json);
  storage::JobRecord b = a;
  b.config_json = R"({"model":"ViT-Mu/7","train":{"batch_size":32},"seed":1})";
  b.id = Sha256Hex(b.config_json);
  ASSERT_TRUE(s.AddSweep("s", "name: s", {a, b}).ok());
  // a: one whole attempt. b: preempted, then resumed to success (its ledger counts both).
  ASSERT_TRUE(s.AddAttempt(a.id, std::nullopt, "localhost:1").ok());
  ASSERT_TRUE(s.EndAttempt(a.id, 1, protocol::AttemptOutcome::kSucceeded, 0).ok());
  ASSERT_TRUE(s.AddLedgerEntry({a.id, 1, 6e9, 0, 1000, "cpu", 10, 10}).ok());
  ASSERT_TRUE(s.AddAttempt(b.id, std::nullopt, "localhost:1").ok());
  ASSERT_TRUE(s.EndAttempt(b.id, 1, protocol::AttemptOutcome::kPreempted, 75).ok());
  ASSERT_TRUE(s.AddAttempt(b.id, std::nullopt, "localhost:1", 100).ok());
  ASSERT_TRUE(s.EndAttempt(b.id, 2, protocol::AttemptOutcome::kSucceeded, 0).ok());
  ASSERT_TRUE(s.AddLedgerEntry({b.id, 2, 6e9, 0, 1000, "cpu", 5, 5}).ok());
  Expected<std::vector<storage::ThroughputSample>> samples = s.ThroughputSamples();
  ASSERT_TRUE(samples.ok()) << samples.status().ToString();
  ASSERT_EQ(samples->size(), 1u);
  EXPECT_EQ((*samples)[0].job_id, a.id);
  EXPECT_EQ((*samples)[0].batch_size, 32);
  EXPECT_EQ((*samples)[0].images, 1000);

  storage::ThroughputImport row{"R11s", "H100", "bf16", 128, 900, 1e9, 2, "bench.json", 0};
  ASSERT_TRUE(s.ImportThroughput({row}).ok());
  row.images_per_second = 1000;
  ASSERT_TRUE(s.ImportThroughput({row}).ok());  // the same key replaces
  Expected<std::vector<storage::ThroughputImport>> imports = s.ListThroughputImports();
  ASSERT_TRUE(imports.ok());
  ASSERT_EQ(imports->size(), 1u);
  EXPECT_EQ((*imports)[0].images_per_second, 1000);
  row.batch_size = 0;
  EXPECT_EQ(s.ImportThroughput({row}).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace vitscale::planning
