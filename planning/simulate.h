// The sweep simulator: the coordinator's own Scheduler (coordinator/scheduler.h), driven over a
// sweep's jobs on a described cluster under a FakeClock, with each attempt's duration priced by
// the throughput table. Events (an attempt starts, ends, is preempted, fails; a backoff ends)
// advance the clock straight to the next one: no threads, no sleeps, so a study of months runs
// in milliseconds. Gang placement, priorities, priority preemption, multi-host spreading,
// reservations and retry backoff are the scheduler's; this file adds only time and chance.
// docs/planning.md explains the model and its limits.
//
// Plain functions over values: safe from any thread.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/scheduler.h"
#include "planning/throughput.h"
#include "sweep/sweep.h"

namespace vitscale::planning {

// What one cluster description may hold: enough for any real cluster, and a bound on what a
// request to the coordinator's timeline route can make it simulate.
inline constexpr int kMaxHosts = 10000;
inline constexpr int kMaxDevicesPerHost = 1024;

// Hosts alike: `count` hosts of `kind`, each running `slots` ranks with `gpus` accelerators.
struct HostGroup {
  std::string kind;  // "H200", "cpu", ...
  int count = 0;
  int slots = 0;
  int gpus = 0;
  std::optional<double> peak_flops;  // per device; overrides the built-in nominal peak
};

struct Cluster {
  std::string description;  // as given ("8x8:H200" or the file name)
  std::vector<HostGroup> groups;
  int Hosts() const;
  int Devices() const;  // GPUs, or slots on hosts without GPUs
};

// "8x8:H200" (8 hosts of 8 H200s), "1x2:cpu" (one host of 2 CPU slots), groups joined by ','
// ("4x8:H100,4x8:A100"). kInvalidArgument says what is wrong with which part.
Expected<Cluster> ParseHostSpec(const std::string& spec);
// A YAML cluster file: `hosts:` a list of {kind, count, gpus | slots, peak_tflops?}
// (docs/planning.md). Errors are "file:line:column: what to fix".
Expected<Cluster> LoadClusterFile(const std::string& path);
// A spec when `text` contains 'x' and ':' and names no file, the file otherwise.
Expected<Cluster> ParseHosts(const std::string& text);
// The cluster with every group's host count scaled by `factor` (at least one host each).
Cluster ScaleCluster(const Cluster& cluster, double factor);

// What the simulator needs of one job.
struct PlannedJob {
  std::string id;
  std::string model;
  std::string family;
  int priority = 0;
  int ranks = 1;
  int gpus_per_rank = 0;
  int64_t batch_size = 0;
  int64_t images = 0;          // pretraining images
  double train_flops = 0;      // pretraining
  double fine_tune_flops = 0;  // the fine-tuning runs after it, priced at the same FLOP/s
  int Devices() const { return ranks * std::max(gpus_per_rank, 1); }
};
std::vector<PlannedJob> PlannedJobs(const std::vector<sweep::Job>& jobs);

struct SimulationOptions {
  // Random interruptions, each an exponential clock per device of a running attempt.
  double preempt_rate_per_device_day = 0;  // cloud preemptions: checkpoint, requeue, resume
  double failure_rate_per_device_day = 0;  // crashes: back to the last periodic checkpoint
  double checkpoint_every_seconds = 1800;  // of a job's work, for what a crash loses
  double preempt_exit_seconds = 30;        // checkpoint and exit after SIGTERM
  int max_retries = 2;                     // the coordinator's default
  uint64_t seed = 1;
  coordinator::SchedulerOptions scheduler;  // its lease is ignored: simulated agents never die
};

struct SimulatedAttempt {
  std::string job_id;
  int number = 0;
  std::vector<coordinator::Placement> placements;
  double start = 0;  // seconds from the sweep's start
  double end = 0;
  std::string outcome;  // "succeeded", "preempted", "failed"
};

struct SimulatedJob {
  PlannedJob job;
  std::string state;  // final: "succeeded" or "failed"
  double first_start = 0;
  double end = 0;
  double busy_seconds = 0;   // summed over attempts, wasted work included
  double ideal_seconds = 0;  // one uninterrupted attempt on the slowest kind it could get
  int attempts = 0;
  Rate rate;  // as priced on the kind its last attempt ran on
};

struct SimulationResult {
  Cluster cluster;
  double makespan_seconds = 0;
  double device_seconds = 0;  // devices held by attempts, preempted and failed work included
  double utilisation = 0;     // device_seconds / (devices x makespan)
  // No schedule can beat max(longest job, all work / devices): how far off the makespan is.
  double lower_bound_seconds = 0;
  int preemptions = 0;  // by priority or at random
  int failures = 0;
  std::vector<SimulatedJob> jobs;  // in the sweep's order
  std::vector<SimulatedAttempt> attempts;
  std::vector<std::string> estimated;  // "model on kind: basis" for every estimated rate
  // Indices into `jobs`: the jobs that end last (what the makespan waits for) and the longest.
  std::vector<size_t> critical;
};

// Refuses (kInvalidArgument) a cluster on which some job can never run, naming the job and the
// numbers; kNotFound when a job cannot be priced on a kind of the cluster.
Expected<SimulationResult> Simulate(const std::vector<PlannedJob>& jobs, const Cluster& cluster,
                                    const ThroughputTable& table, const SimulationOptions& options);

nlohmann::json ToJson(const SimulationResult& result, bool with_attempts);
// "3d 4h", "5h 12m", "42m 10s", "12s".
std::string FormatDuration(double seconds);

}  // namespace vitscale::planning
