#include "planning/simulate.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <queue>
#include <random>
#include <set>

#include "common/clock.h"
#include "common/files.h"

namespace vitscale::planning {
namespace {

using coordinator::Action;
using coordinator::ExitKind;
using coordinator::Placement;
using coordinator::Reason;
using coordinator::Scheduler;
using coordinator::Transition;

constexpr double kDay = 86400;

bool IsCpuKind(const std::string& kind) { return SameKind(kind, "cpu"); }

// Ranks of a job that a host runs at once (the scheduler's own rule).
int RanksThatFit(int gpus_per_rank, int slots, int gpus) {
  if (gpus_per_rank <= 0) return std::max(slots, 0);
  return std::max(std::min(slots, gpus / gpus_per_rank), 0);
}

Expected<HostGroup> ParseGroup(const std::string& part, const std::string& spec) {
  // COUNTxDEVICES:KIND
  size_t x = part.find('x'), colon = part.find(':');
  auto bad = [&](const std::string& what) {
    return InvalidArgument(
        fmt::format("--hosts '{}': '{}' {}; write HOSTSxDEVICES:KIND, e.g. 8x8:H200 or 1x4:cpu",
                    spec, part, what));
  };
  if (x == std::string::npos || colon == std::string::npos || colon < x) {
    return bad("is not of the form HOSTSxDEVICES:KIND");
  }
  auto number = [](const std::string& text, int* out, int most) {
    if (text.empty() || text.size() > 6 ||
        text.find_first_not_of("0123456789") != std::string::npos)
      return false;
    *out = std::stoi(text);
    return *out > 0 && *out <= most;
  };
  HostGroup group;
  int devices = 0;
  if (!number(part.substr(0, x), &group.count, kMaxHosts)) {
    return bad(fmt::format("needs a host count of 1..{} before 'x'", kMaxHosts));
  }
  if (!number(part.substr(x + 1, colon - x - 1), &devices, kMaxDevicesPerHost)) {
    return bad(
        fmt::format("needs a device count of 1..{} between 'x' and ':'", kMaxDevicesPerHost));
  }
  group.kind = part.substr(colon + 1);
  if (group.kind.empty()) return bad("names no accelerator kind after ':'");
  group.slots = devices;
  group.gpus = IsCpuKind(group.kind) ? 0 : devices;
  return group;
}

}  // namespace

int Cluster::Hosts() const {
  int n = 0;
  for (const HostGroup& g : groups) n += g.count;
  return n;
}

int Cluster::Devices() const {
  int n = 0;
  for (const HostGroup& g : groups) n += g.count * (g.gpus > 0 ? g.gpus : g.slots);
  return n;
}

Expected<Cluster> ParseHostSpec(const std::string& spec) {
  Cluster cluster;
  cluster.description = spec;
  size_t start = 0;
  while (start <= spec.size()) {
    size_t comma = spec.find(',', start);
    std::string part =
        spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    ASSIGN_OR_RETURN(HostGroup group, ParseGroup(part, spec));
    cluster.groups.push_back(group);
    if (cluster.Hosts() > kMaxHosts) {
      return InvalidArgument(
          fmt::format("--hosts '{}': more than {} hosts in all", spec, kMaxHosts));
    }
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return cluster;
}

Expected<Cluster> LoadClusterFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  auto at = [&](const YAML::Node& node, const std::string& what) {
    YAML::Mark m = node.Mark();
    return InvalidArgument(fmt::format("{}:{}:{}: {}", path, m.line + 1, m.column + 1, what));
  };
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return InvalidArgument(
        fmt::format("{}:{}:{}: {}", path, e.mark.line + 1, e.mark.column + 1, e.msg));
  }
  if (!root.IsMap() || !root["hosts"] || !root["hosts"].IsSequence() || root["hosts"].size() == 0) {
    return at(root,
              "a cluster file is a map with `hosts:`, a list of {kind, count, gpus or slots}");
  }
  Cluster cluster;
  cluster.description = path;
  int hosts = 0;
  for (const YAML::Node& item : root["hosts"]) {
    if (!item.IsMap()) return at(item, "each host group is a map {kind, count, gpus or slots}");
    HostGroup group;
    int64_t count = 1, gpus = -1, slots = -1;
    double peak_tflops = -1;
    for (const auto& entry : item) {
      std::string key = entry.first.as<std::string>("");
      const YAML::Node& value = entry.second;
      try {
        if (key == "kind") {
          group.kind = value.as<std::string>();
        } else if (key == "count") {
          count = value.as<int64_t>();
        } else if (key == "gpus") {
          gpus = value.as<int64_t>();
        } else if (key == "slots") {
          slots = value.as<int64_t>();
        } else if (key == "peak_tflops") {
          peak_tflops = value.as<double>();
        } else {
          return at(entry.first, "unknown key '" + key +
                                     "'; a host group has kind, count, gpus, "
                                     "slots and peak_tflops");
        }
      } catch (const YAML::Exception&) {
        return at(value, "'" + key + "' must be " + (key == "kind" ? "a name" : "a number"));
      }
    }
    if (group.kind.empty()) return at(item, "a host group needs `kind` (e.g. H200, cpu)");
    if (count < 1 || count > kMaxHosts) {
      return at(item, fmt::format("`count` must be 1..{} hosts", kMaxHosts));
    }
    if (gpus < -1 || gpus > kMaxDevicesPerHost || slots < -1 || slots > kMaxDevicesPerHost ||
        (gpus <= 0 && slots <= 0)) {
      return at(item, fmt::format("give `gpus` for accelerator hosts or `slots` for CPU hosts, "
                                  "1..{}",
                                  kMaxDevicesPerHost));
    }
    if (peak_tflops != -1 && !(peak_tflops > 0)) return at(item, "`peak_tflops` must be > 0");
    group.count = static_cast<int>(count);
    group.gpus = static_cast<int>(std::max<int64_t>(gpus, 0));
    group.slots = static_cast<int>(slots > 0 ? slots : gpus);
    if (peak_tflops > 0) group.peak_flops = peak_tflops * 1e12;
    if ((hosts += group.count) > kMaxHosts)
      return at(item, fmt::format("more than {} hosts in all", kMaxHosts));
    cluster.groups.push_back(group);
  }
  return cluster;
}

Expected<Cluster> ParseHosts(const std::string& text) {
  std::error_code error;
  bool is_file = std::filesystem::exists(text, error);
  if (!is_file && text.find('x') != std::string::npos && text.find(':') != std::string::npos) {
    return ParseHostSpec(text);
  }
  if (!is_file) {
    return NotFound(fmt::format(
        "--hosts '{}' is neither HOSTSxDEVICES:KIND (e.g. 8x8:H200) nor an existing cluster file",
        text));
  }
  return LoadClusterFile(text);
}

Cluster ScaleCluster(const Cluster& cluster, double factor) {
  Cluster scaled = cluster;
  for (HostGroup& g : scaled.groups) {
    g.count = static_cast<int>(std::clamp<long>(std::lround(g.count * factor), 1, kMaxHosts));
  }
  std::string spec;
  for (const HostGroup& g : scaled.groups) {
    spec += fmt::format("{}{}x{}:{}", spec.empty() ? "" : ",", g.count,
                        g.gpus > 0 ? g.gpus : g.slots, g.kind);
  }
  scaled.description = spec;
  return scaled;
}

std::vector<PlannedJob> PlannedJobs(const std::vector<sweep::Job>& jobs) {
  std::vector<PlannedJob> planned;
  planned.reserve(jobs.size());
  for (const sweep::Job& j : jobs) {
    PlannedJob p;
    p.id = j.id;
    p.model = j.config.model;
    p.family = j.family;
    p.priority = static_cast<int>(j.priority);
    p.ranks = static_cast<int>(j.resources.ranks);
    p.gpus_per_rank = static_cast<int>(j.resources.gpus_per_rank);
    p.batch_size = j.config.train.batch_size;
    p.images = j.examples;
    p.train_flops = j.train_flops;
    p.fine_tune_flops = j.fine_tune_flops;
    planned.push_back(std::move(p));
  }
  return planned;
}

namespace {

struct Host {
  std::string id;
  const HostGroup* group;
};

// Why `job` can never run on `cluster`, or "" when it can.
std::string Infeasible(const PlannedJob& job, const Cluster& cluster) {
  int fit = 0, largest_gpus = 0, largest_slots = 0;
  for (const HostGroup& g : cluster.groups) {
    fit += g.count * RanksThatFit(job.gpus_per_rank, g.slots, g.gpus);
    largest_gpus = std::max(largest_gpus, g.gpus);
    largest_slots = std::max(largest_slots, g.slots);
  }
  if (fit >= job.ranks) return "";
  std::string need =
      job.gpus_per_rank > 0
          ? fmt::format("{} ranks x {} GPU{} = {} GPUs", job.ranks, job.gpus_per_rank,
                        job.gpus_per_rank == 1 ? "" : "s", job.ranks * job.gpus_per_rank)
          : fmt::format("{} CPU ranks", job.ranks);
  std::string have =
      job.gpus_per_rank > largest_gpus
          ? fmt::format("the largest host has {} GPU{}", largest_gpus, largest_gpus == 1 ? "" : "s")
          : fmt::format(
                "the cluster runs at most {} such rank{} at once ({} host{}, at most {} "
                "slots and {} GPUs each)",
                fit, fit == 1 ? "" : "s", cluster.Hosts(), cluster.Hosts() == 1 ? "" : "s",
                largest_slots, largest_gpus);
  return fmt::format("job {} ({}) needs {}, but {}", job.id.substr(0, 12), job.model, need, have);
}

struct Event {
  TimePoint at;
  int64_t seq = 0;
  bool wake = false;  // a backoff ends: only the clock moves
  size_t job = 0;
  int token = 0;  // the attempt it belongs to; a stale token is ignored
  ExitKind exit = ExitKind::kSucceeded;
  bool operator>(const Event& other) const {
    return at != other.at ? at > other.at : seq > other.seq;
  }
};

struct JobState {
  double progress = 0;  // fraction of the job's work kept (checkpointed)
  int token = 0;
  int attempt_index = -1;  // into result.attempts while an attempt runs
  TimePoint attempt_start;
  TimePoint scheduled_end;
  double overhead = 0;
  double work_seconds = 0;  // the whole job's work at this attempt's rate
  std::string leader;
  bool finished = false;
};

class Simulator {
 public:
  Simulator(const std::vector<PlannedJob>& jobs, const Cluster& cluster,
            const ThroughputTable& table, const SimulationOptions& options)
      : jobs_(jobs), cluster_(cluster), table_(table), options_(options), rng_(options.seed) {}

  Expected<SimulationResult> Run() {
    result_.cluster = cluster_;
    for (const PlannedJob& job : jobs_) {
      std::string why = Infeasible(job, cluster_);
      if (!why.empty()) {
        return InvalidArgument("the cluster " + cluster_.description +
                               " cannot run the sweep: " + why);
      }
    }
    RETURN_IF_ERROR(PriceJobs());
    coordinator::SchedulerOptions scheduler_options = options_.scheduler;
    // Simulated agents never miss a heartbeat; a century outlasts any sweep simulated here.
    scheduler_options.lease_duration = std::chrono::hours(24 * 365 * 100);
    ASSIGN_OR_RETURN(Scheduler created, Scheduler::Create(&clock_, scheduler_options));
    scheduler_.emplace(std::move(created));
    int n = 0;
    for (const HostGroup& g : cluster_.groups) {
      for (int i = 0; i < g.count; ++i) {
        std::string id = fmt::format("{}-{:03}", g.kind, n++);
        hosts_[id] = &g;
        RETURN_IF_ERROR(scheduler_->RegisterAgent({id, id, g.slots, g.gpus}));
      }
    }
    state_.resize(jobs_.size());
    for (size_t i = 0; i < jobs_.size(); ++i) {
      const PlannedJob& job = jobs_[i];
      index_[job.id] = i;
      coordinator::JobSpec spec;
      spec.id = job.id;
      spec.priority = job.priority;
      spec.submit_order = static_cast<int64_t>(i);
      spec.ranks = job.ranks;
      spec.gpus_per_rank = job.gpus_per_rank;
      spec.multi_host = true;  // as the coordinator queues every job (coordinator/core.cc)
      spec.retries_left = options_.max_retries;
      RETURN_IF_ERROR(scheduler_->AddJob(spec));
      SimulatedJob simulated;
      simulated.job = job;
      result_.jobs.push_back(std::move(simulated));
    }
    size_t finished = 0;
    for (;;) {
      RETURN_IF_ERROR(Apply(scheduler_->Schedule(), &finished));
      if (finished == jobs_.size()) break;
      if (events_.empty()) {
        return Internal(fmt::format("the simulation stalled with {} of {} jobs unfinished",
                                    jobs_.size() - finished, jobs_.size()));
      }
      TimePoint next = events_.top().at;
      if (next > clock_.Now()) clock_.Advance(next - clock_.Now());
      while (!events_.empty() && events_.top().at == next) {
        Event event = events_.top();
        events_.pop();
        if (event.wake || event.token != state_[event.job].token) continue;
        RETURN_IF_ERROR(EndAttempt(event, &finished));
      }
    }
    Summarise();
    return std::move(result_);
  }

 private:
  double Seconds(TimePoint t) const {
    return std::chrono::duration<double>(t - TimePoint{}).count();
  }
  TimePoint At(double seconds) const {
    return clock_.Now() +
           std::chrono::duration_cast<Duration>(std::chrono::duration<double>(seconds));
  }
  static std::string KindOfJob(const PlannedJob& job, const HostGroup& group) {
    return job.gpus_per_rank > 0 ? group.kind : "cpu";
  }

  // Every job on every kind it may run on, up front, so that a missing price is an error before
  // anything is simulated, and estimates are listed once.
  Status PriceJobs() {
    ThroughputTable table = table_;
    for (const HostGroup& g : cluster_.groups) {
      if (g.peak_flops) table.SetPeakFlops(g.kind, *g.peak_flops);
    }
    std::set<std::string> noted;
    for (const PlannedJob& job : jobs_) {
      RateQuery query{job.model, job.family, job.batch_size,
                      job.images > 0 ? job.train_flops / static_cast<double>(job.images) : 0};
      for (const HostGroup& g : cluster_.groups) {
        if (RanksThatFit(job.gpus_per_rank, g.slots, g.gpus) == 0) continue;
        std::string kind = KindOfJob(job, g);
        auto key = std::make_pair(job.id, kind);
        if (rates_.count(key)) continue;
        Expected<Rate> rate = table.Lookup(query, kind);
        if (!rate.ok()) return rate.status();
        if (rate->estimate) {
          std::string note = fmt::format("{} on {}: {}", job.model, kind, rate->basis);
          if (noted.insert(note).second) result_.estimated.push_back(note);
        }
        rates_[key] = *rate;
      }
    }
    return Status::Ok();
  }

  // The rate of an attempt: a gang runs at the pace of its slowest host.
  Rate RateOf(const PlannedJob& job, const std::vector<Placement>& placements) const {
    std::optional<Rate> slowest;
    for (const Placement& p : placements) {
      const Rate& r = rates_.at({job.id, KindOfJob(job, *hosts_.at(p.agent_id))});
      if (!slowest || r.images_per_second < slowest->images_per_second) slowest = r;
    }
    return *slowest;
  }

  static double WorkSeconds(const PlannedJob& job, const Rate& rate) {
    double flops_per_image = job.images > 0 ? job.train_flops / static_cast<double>(job.images) : 0;
    double fine_tune_images = flops_per_image > 0 ? job.fine_tune_flops / flops_per_image : 0;
    return (static_cast<double>(job.images) + fine_tune_images) /
           (rate.images_per_second * job.Devices());
  }

  void Push(Event event) {
    event.seq = seq_++;
    events_.push(event);
  }

  Status Apply(const std::vector<Action>& actions, size_t* finished) {
    for (const Action& action : actions) {
      if (const auto* t = std::get_if<Transition>(&action)) {
        size_t i = index_.at(t->job_id);
        if (protocol::IsFinal(t->to) && !state_[i].finished) {
          state_[i].finished = true;
          result_.jobs[i].state = protocol::JobStateName(t->to);
          ++*finished;
        }
        if (t->reason == Reason::kRetry && t->eligible_at > clock_.Now()) {
          Event wake;
          wake.at = t->eligible_at;
          wake.wake = true;
          Push(wake);
        }
      } else if (const auto* launch = std::get_if<coordinator::Launch>(&action)) {
        RETURN_IF_ERROR(StartAttempt(*launch, finished));
      } else if (const auto* signal = std::get_if<coordinator::Signal>(&action)) {
        // Priority preemption: the trainer checkpoints and exits, unless it ends first.
        size_t i = index_.at(signal->job_id);
        JobState& s = state_[i];
        TimePoint exit_at = At(options_.preempt_exit_seconds);
        if (s.attempt_index >= 0 && exit_at < s.scheduled_end) {
          Event end;
          end.at = exit_at;
          end.job = i;
          end.token = ++s.token;
          end.exit = ExitKind::kPreempted;
          s.scheduled_end = exit_at;
          Push(end);
        }
      } else {
        return Internal("the scheduler killed a job in a simulation where no agent is lost");
      }
    }
    return Status::Ok();
  }

  Status StartAttempt(const coordinator::Launch& launch, size_t* finished) {
    size_t i = index_.at(launch.job_id);
    const PlannedJob& job = jobs_[i];
    JobState& s = state_[i];
    Rate rate = RateOf(job, launch.placements);
    s.overhead = rate.overhead_seconds;
    s.work_seconds = WorkSeconds(job, rate);
    s.attempt_start = clock_.Now();
    s.leader = launch.placements.front().agent_id;
    double duration = s.overhead + (1.0 - s.progress) * s.work_seconds;
    Event end;
    end.job = i;
    end.token = ++s.token;
    end.exit = ExitKind::kSucceeded;
    double lambda = job.Devices() *
                    (options_.preempt_rate_per_device_day + options_.failure_rate_per_device_day) /
                    kDay;
    if (lambda > 0) {
      double until = std::exponential_distribution<double>(lambda)(rng_);
      if (until < duration) {
        duration = until;
        double p_preempt =
            options_.preempt_rate_per_device_day /
            (options_.preempt_rate_per_device_day + options_.failure_rate_per_device_day);
        end.exit = std::uniform_real_distribution<double>(0, 1)(rng_) < p_preempt
                       ? ExitKind::kPreempted
                       : ExitKind::kFailed;
      }
    }
    end.at = At(duration);
    s.scheduled_end = end.at;
    Push(end);
    SimulatedAttempt attempt;
    attempt.job_id = job.id;
    attempt.number = ++result_.jobs[i].attempts;
    attempt.placements = launch.placements;
    attempt.start = Seconds(clock_.Now());
    s.attempt_index = static_cast<int>(result_.attempts.size());
    result_.attempts.push_back(std::move(attempt));
    if (result_.jobs[i].attempts == 1) result_.jobs[i].first_start = Seconds(clock_.Now());
    result_.jobs[i].rate = rate;
    // The leader reports the processes started at once.
    ASSIGN_OR_RETURN(std::vector<Action> started, scheduler_->ReportStarted(s.leader, job.id));
    return Apply(started, finished);
  }

  Status EndAttempt(const Event& event, size_t* finished) {
    const PlannedJob& job = jobs_[event.job];
    JobState& s = state_[event.job];
    SimulatedJob& simulated = result_.jobs[event.job];
    double elapsed = std::chrono::duration<double>(clock_.Now() - s.attempt_start).count();
    double done = s.work_seconds > 0 ? std::max(0.0, elapsed - s.overhead) / s.work_seconds : 1;
    switch (event.exit) {
      case ExitKind::kSucceeded:
        s.progress = 1;
        break;
      case ExitKind::kPreempted:  // checkpointed on SIGTERM: nothing is lost
        s.progress = std::min(1.0, s.progress + done);
        ++result_.preemptions;
        break;
      default: {  // a crash: back to the last periodic checkpoint
        double reached = std::min(1.0, s.progress + done) * s.work_seconds;
        double kept = std::floor(reached / options_.checkpoint_every_seconds) *
                      options_.checkpoint_every_seconds;
        s.progress = std::max(s.progress, s.work_seconds > 0 ? kept / s.work_seconds : 0);
        ++result_.failures;
        break;
      }
    }
    SimulatedAttempt& attempt = result_.attempts[s.attempt_index];
    attempt.end = Seconds(clock_.Now());
    attempt.outcome = event.exit == ExitKind::kSucceeded   ? "succeeded"
                      : event.exit == ExitKind::kPreempted ? "preempted"
                                                           : "failed";
    simulated.busy_seconds += elapsed;
    simulated.end = attempt.end;
    result_.device_seconds += elapsed * job.Devices();
    simulated.ideal_seconds = s.overhead + s.work_seconds;
    s.attempt_index = -1;
    ++s.token;
    ASSIGN_OR_RETURN(std::vector<Action> actions,
                     scheduler_->ReportExit(s.leader, job.id, event.exit));
    return Apply(actions, finished);
  }

  void Summarise() {
    double makespan = 0, longest = 0, work = 0;
    for (const SimulatedJob& j : result_.jobs) {
      makespan = std::max(makespan, j.end);
      longest = std::max(longest, j.ideal_seconds);
      work += j.ideal_seconds * j.job.Devices();
    }
    result_.makespan_seconds = makespan;
    int devices = cluster_.Devices();
    result_.utilisation = makespan > 0 ? result_.device_seconds / (devices * makespan) : 0;
    result_.lower_bound_seconds = std::max(longest, work / devices);
    std::vector<size_t> order(result_.jobs.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return result_.jobs[a].end > result_.jobs[b].end; });
    for (size_t k = 0; k < order.size() && k < 3; ++k) result_.critical.push_back(order[k]);
    size_t longest_job = 0;
    for (size_t i = 0; i < result_.jobs.size(); ++i) {
      if (result_.jobs[i].ideal_seconds > result_.jobs[longest_job].ideal_seconds) longest_job = i;
    }
    if (!result_.jobs.empty() && std::find(result_.critical.begin(), result_.critical.end(),
                                           longest_job) == result_.critical.end()) {
      result_.critical.push_back(longest_job);
    }
  }

  const std::vector<PlannedJob>& jobs_;
  const Cluster& cluster_;
  const ThroughputTable& table_;
  SimulationOptions options_;
  std::mt19937_64 rng_;
  FakeClock clock_;
  std::optional<Scheduler> scheduler_;
  std::map<std::string, const HostGroup*> hosts_;
  std::map<std::string, size_t> index_;
  std::map<std::pair<std::string, std::string>, Rate> rates_;
  std::vector<JobState> state_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
  int64_t seq_ = 0;
  SimulationResult result_;
};

}  // namespace

Expected<SimulationResult> Simulate(const std::vector<PlannedJob>& jobs, const Cluster& cluster,
                                    const ThroughputTable& table,
                                    const SimulationOptions& options) {
  if (jobs.empty()) return InvalidArgument("the sweep has no jobs to simulate");
  if (cluster.groups.empty()) return InvalidArgument("the cluster has no hosts");
  if (!(options.preempt_rate_per_device_day >= 0) || !(options.failure_rate_per_device_day >= 0)) {
    return InvalidArgument("preemption and failure rates must be >= 0 per device-day");
  }
  if (!(options.checkpoint_every_seconds > 0) || !(options.preempt_exit_seconds >= 0)) {
    return InvalidArgument("the checkpoint interval must be > 0 and the exit time >= 0");
  }
  return Simulator(jobs, cluster, table, options).Run();
}

std::string FormatDuration(double seconds) {
  auto s = static_cast<int64_t>(std::llround(seconds));
  if (s >= 86400) return fmt::format("{}d {}h", s / 86400, s % 86400 / 3600);
  if (s >= 3600) return fmt::format("{}h {}m", s / 3600, s % 3600 / 60);
  if (s >= 60) return fmt::format("{}m {}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

nlohmann::json ToJson(const SimulationResult& r, bool with_attempts) {
  using nlohmann::json;
  auto job_json = [](const SimulatedJob& j) {
    return json{{"job", j.job.id},
                {"model", j.job.model},
                {"family", j.job.family},
                {"devices", j.job.Devices()},
                {"state", j.state},
                {"start", j.first_start},
                {"end", j.end},
                {"busy_seconds", j.busy_seconds},
                {"ideal_seconds", j.ideal_seconds},
                {"attempts", j.attempts},
                {"images_per_second", j.rate.images_per_second},
                {"overhead_seconds", j.rate.overhead_seconds},
                {"estimate", j.rate.estimate},
                {"basis", j.rate.basis}};
  };
  json out = {{"cluster", r.cluster.description},
              {"hosts", r.cluster.Hosts()},
              {"devices", r.cluster.Devices()},
              {"makespan_seconds", r.makespan_seconds},
              {"device_days", r.device_seconds / kDay},
              {"utilisation", r.utilisation},
              {"lower_bound_seconds", r.lower_bound_seconds},
              {"preemptions", r.preemptions},
              {"failures", r.failures},
              {"estimated", r.estimated}};
  json critical = json::array();
  for (size_t i : r.critical) critical.push_back(job_json(r.jobs[i]));
  out["critical"] = critical;
  if (with_attempts) {
    json jobs = json::array();
    for (const SimulatedJob& j : r.jobs) jobs.push_back(job_json(j));
    out["jobs"] = jobs;
    json attempts = json::array();
    for (const SimulatedAttempt& a : r.attempts) {
      json hosts = json::array();
      for (const Placement& p : a.placements)
        hosts.push_back({{"host", p.host}, {"ranks", p.ranks}});
      attempts.push_back({{"job", a.job_id},
                          {"number", a.number},
                          {"hosts", hosts},
                          {"start", a.start},
                          {"end", a.end},
                          {"outcome", a.outcome}});
    }
    out["attempts"] = attempts;
  }
  return out;
}

}  // namespace vitscale::planning
