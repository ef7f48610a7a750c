#include "worker/agent.h"

#include <fmt/format.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fcntl.h>
#include <unistd.h>

#include "common/files.h"
#include "common/text.h"

namespace vitscale::worker {
namespace {

using protocol::ExitOutcome;
using protocol::Json;
using std::chrono::milliseconds;

constexpr milliseconds kFirstBackoff{100};
constexpr milliseconds kControlTick{50};
// A 404 to an exit report right after a coordinator restart means "register first": the poller
// is about to. After this many the job itself is unknown, and retrying cannot help.
constexpr int kMaxNotFoundReplies = 10;

void Log(const std::string& message) {
  std::time_t now = std::time(nullptr);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", std::localtime(&now));
  std::fprintf(stderr, "%s vitscale-agent: %s\n", stamp, message.c_str());
}

}  // namespace

ExitOutcome ClassifyExit(const ProcessExit& exit, bool preempt_requested, bool kill_requested) {
  if (exit.signaled && exit.signal == SIGKILL) {
    if (kill_requested) return ExitOutcome::kKilled;
    if (preempt_requested) return ExitOutcome::kPreempted;
    return ExitOutcome::kFailed;
  }
  if (exit.signaled) return ExitOutcome::kFailed;
  switch (exit.exit_code) {
    case protocol::kTrainExitSucceeded:
      return ExitOutcome::kSucceeded;
    case protocol::kTrainExitPreempted:
      return ExitOutcome::kPreempted;
    case protocol::kTrainExitConfigError:
      return ExitOutcome::kConfigError;
    default:
      return ExitOutcome::kFailed;
  }
}

std::string MpirunHosts(const std::vector<protocol::HostRanks>& hosts,
                        const std::string& own_host) {
  std::vector<protocol::HostRanks> local = hosts;
  for (protocol::HostRanks& h : local) {
    if (h.host == own_host) h.host = "localhost";
  }
  return protocol::HostsString(local);
}

bool PathWithin(const std::string& path, const std::vector<std::string>& dirs) {
  for (std::string dir : dirs) {
    if (dir.empty()) continue;
    if (dir.back() != '/') dir += '/';
    if (path.compare(0, dir.size(), dir) == 0 && path.size() > dir.size()) return true;
  }
  return false;
}

std::vector<std::string> MpirunCommand(const AgentOptions& options, int ranks,
                                       const std::string& hosts, const std::string& spec_file) {
  std::vector<std::string> argv = {options.mpirun};
  if (options.allow_run_as_root) argv.push_back("--allow-run-as-root");
  // More ranks than cores is the norm on a small CPU host; without this Open MPI refuses.
  argv.push_back("--oversubscribe");
  // Local ranks inherit the environment; ranks on other hosts get only what -x names.
  argv.insert(argv.end(), {"-x", "OMP_WAIT_POLICY"});
  for (const std::string& arg : {std::string("-np"), std::to_string(ranks), std::string("-H"),
                                 hosts, options.train_command, std::string("--spec"), spec_file}) {
    argv.push_back(arg);
  }
  return argv;
}

int DetectGpus() {
  FILE* pipe = ::popen("nvidia-smi -L 2>/dev/null", "r");
  if (pipe == nullptr) return 0;
  int gpus = 0;
  char line[512];
  while (std::fgets(line, sizeof(line), pipe) != nullptr) {
    if (std::string(line).rfind("GPU ", 0) == 0) ++gpus;
  }
  int status = ::pclose(pipe);
  return status == 0 ? gpus : 0;
}

Expected<std::unique_ptr<Agent>> Agent::Create(AgentOptions options, Launcher& launcher) {
  RETURN_IF_ERROR(protocol::CheckText("--host", options.host, protocol::kHostRule));
  for (const std::string* dir : {&options.work_dir, &options.runs_dir}) {
    if (!dir->empty()) RETURN_IF_ERROR(protocol::CheckText("a directory", *dir, protocol::kPathRule));
  }
  if (options.slots < 0 || options.gpus < 0) {
    return InvalidArgument("--slots and --gpus must be >= 0");
  }
  if (options.train_command.empty()) return InvalidArgument("--train-command must not be empty");
  HttpClientOptions poll_options{options.coordinator_url, options.token, milliseconds(3000),
                                 options.poll_read_timeout};
  ASSIGN_OR_RETURN(std::unique_ptr<HttpClient> poll_client, HttpClient::Create(poll_options));
  HttpClientOptions report_options{options.coordinator_url, options.token, milliseconds(3000),
                                   milliseconds(10000)};
  ASSIGN_OR_RETURN(std::unique_ptr<HttpClient> report_client, HttpClient::Create(report_options));
  return std::unique_ptr<Agent>(new Agent(std::move(options), launcher, poll_options,
                                          std::move(poll_client), std::move(report_client)));
}

Agent::Agent(AgentOptions options, Launcher& launcher, HttpClientOptions poll_options,
             std::unique_ptr<HttpClient> poll_client, std::unique_ptr<HttpClient> report_client)
    : options_(std::move(options)),
      clock_(options_.clock ? *options_.clock : SystemClock::Get()),
      launcher_(launcher),
      poll_options_(std::move(poll_options)),
      poll_client_(std::move(poll_client)),
      report_client_(std::move(report_client)) {}

Agent::~Agent() = default;

void Agent::RequestStop() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!stopping_) {
    stopping_ = true;
    poll_client_aborted_ = true;
    poll_client_->Abort();
  }
  cv_.notify_all();
}

std::vector<std::pair<std::string, int>> Agent::Jobs() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<std::string, int>> jobs;
  for (const auto& [id, job] : jobs_) jobs.emplace_back(id, job.attempt);
  return jobs;
}

void Agent::WaitLocked(std::unique_lock<std::mutex>& lock, milliseconds delay) {
  TimePoint deadline = clock_.Now() + delay;
  while (!finished_ && clock_.Now() < deadline) {
    // Real time passes in short slices, so that a FakeClock a test moves ends the wait too.
    auto left = std::chrono::duration_cast<milliseconds>(deadline - clock_.Now()) + milliseconds(1);
    cv_.wait_for(lock, std::min(left, kControlTick), [this] { return finished_; });
  }
}

Status Agent::Run() {
  Log(fmt::format("host {} offers {} slots and {} GPUs to {}", options_.host, options_.slots,
                  options_.gpus, poll_client_->base_url()));
  std::thread poller([this] { PollLoop(); });
  std::thread reporter([this] { ReportLoop(); });
  while (ControlPass()) {
    std::unique_lock<std::mutex> lock(mu_);
    // The tick reaps children; new work from a poll wakes the control thread at once.
    cv_.wait_for(lock, kControlTick, [this] { return finished_ || control_work_; });
    control_work_ = false;
  }
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, options_.shutdown_report_timeout, [this] { return reports_.empty(); });
    for (const ExitReport& report : reports_) {
      Log(
          fmt::format("gave up reporting the exit of job {} attempt {}: the coordinator is away; "
                      "its lease will run out and the job will be requeued",
                      report.job, report.attempt));
    }
    finished_ = true;
    cv_.notify_all();
    poll_client_->Abort();
  }
  report_client_->Abort();
  poller.join();
  reporter.join();
  Log("stopped");
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Control thread

bool Agent::ControlPass() {
  std::vector<Job> to_launch;
  std::vector<std::pair<pid_t, int>> to_signal;
  {
    std::lock_guard<std::mutex> lock(mu_);
    TimePoint now = clock_.Now();
    for (pid_t pid : orphans_to_kill_) to_signal.emplace_back(pid, SIGKILL);
    orphans_to_kill_.clear();
    for (auto& [id, job] : jobs_) {
      if (stopping_) job.preempt_requested = true;
      if (job.state == JobState::kStarting) {
        if (job.kill_requested) {
          QueueExitLocked(job, ExitOutcome::kKilled, std::nullopt);
        } else if (job.preempt_requested) {
          QueueExitLocked(job, ExitOutcome::kPreempted, std::nullopt);
        } else {
          to_launch.push_back(job);
        }
      } else if (job.state == JobState::kRunning) {
        if (job.kill_requested && !job.kill_sent) {
          to_signal.emplace_back(job.pid, SIGKILL);
          job.kill_sent = true;
        } else if (job.preempt_requested && !job.term_sent) {
          to_signal.emplace_back(job.pid, SIGTERM);
          job.term_sent = true;
          job.kill_at = now + std::chrono::seconds(job.grace_seconds);
          Log(fmt::format("preempting job {} attempt {}: SIGTERM, SIGKILL in {} s if still running",
                          id, job.attempt, job.grace_seconds));
        } else if (job.term_sent && !job.kill_sent && now >= job.kill_at) {
          to_signal.emplace_back(job.pid, SIGKILL);
          job.kill_sent = true;
          Log(fmt::format("job {} attempt {} outlived its {} s grace: SIGKILL", id, job.attempt,
                          job.grace_seconds));
        }
      }
    }
  }

  for (const Job& job : to_launch) {
    Expected<pid_t> pid = LaunchJob(job);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = jobs_.find(job.id);
    if (!pid.ok()) {
      Log(fmt::format("cannot launch job {} attempt {}: {}", job.id, job.attempt,
                      pid.status().message()));
      if (it != jobs_.end() && it->second.attempt == job.attempt) {
        QueueExitLocked(it->second, ExitOutcome::kFailed, std::nullopt);
      }
      continue;
    }
    Log(fmt::format("launched job {} attempt {} as process {}", job.id, job.attempt, *pid));
    if (it != jobs_.end() && it->second.attempt == job.attempt) {
      it->second.state = JobState::kRunning;
      it->second.pid = *pid;
    } else {
      to_signal.emplace_back(*pid, SIGKILL);  // dropped while it was starting
    }
  }
  for (const auto& [pid, signal] : to_signal) {
    Status status = launcher_.Signal(pid, signal);
    if (!status.ok()) Log(status.ToString());
  }

  std::vector<ProcessExit> exits = launcher_.Reap();
  std::lock_guard<std::mutex> lock(mu_);
  for (const ProcessExit& exit : exits) {
    auto it = std::find_if(jobs_.begin(), jobs_.end(), [&](const auto& entry) {
      return entry.second.state == JobState::kRunning && entry.second.pid == exit.pid;
    });
    if (it == jobs_.end()) continue;  // a process of a job dropped as not held
    Job& job = it->second;
    QueueExitLocked(job, ClassifyExit(exit, job.preempt_requested, job.kill_requested),
                    exit.ShellStatus());
  }
  bool active = std::any_of(jobs_.begin(), jobs_.end(), [](const auto& entry) {
    return entry.second.state == JobState::kStarting || entry.second.state == JobState::kRunning;
  });
  return !stopping_ || active;
}

Expected<pid_t> Agent::LaunchJob(const Job& job) {
  namespace fs = std::filesystem;
  const protocol::LaunchEntry& launch = job.launch;
  // Where the job may write: this agent's own folders only. A launch that names a log or a run
  // folder anywhere else is refused, whoever sent it.
  std::vector<std::string> own = {options_.work_dir, options_.runs_dir};
  if (!PathWithin(launch.log, own)) {
    return PermissionDenied("the log path " + launch.log + " is outside this agent's folders (" +
                            options_.work_dir +
                            (options_.runs_dir.empty() ? "" : ", " + options_.runs_dir) +
                            "); give the agent the coordinator's runs folder with --runs-dir");
  }
  auto run = launch.spec.find("run");
  if (run != launch.spec.end() && run->is_object()) {
    auto dir = run->find("dir");
    if (dir != run->end() && dir->is_string()) {
      const std::string& run_dir = dir->get_ref<const std::string&>();
      Status path = protocol::CheckText("spec.run.dir", run_dir, protocol::kPathRule);
      if (!path.ok() || !PathWithin(run_dir, own)) {
        return PermissionDenied("the run folder " + Printable(run_dir) +
                                " is outside this agent's folders; give the agent the "
                                "coordinator's runs folder with --runs-dir");
      }
    }
  }
  fs::path spec_dir = fs::path(options_.work_dir) / "specs" / job.id;
  std::error_code ec;
  fs::create_directories(spec_dir, ec);
  if (ec) return IOError("cannot create " + spec_dir.string() + ": " + ec.message());
  std::string spec_file = (spec_dir / fmt::format("attempt-{}.json", job.attempt)).string();
  // The spec holds the attempt's report token: its owner alone may read it. Only this job's
  // processes read it, and they die with this host: old-or-new content across kill -9 is all it
  // needs, so it skips the two fsyncs of a durable write.
  RETURN_IF_ERROR(WriteFileAtomically(spec_file, launch.spec.dump(2) + "\n", 0600,
                                      Durability::kProcessCrash));

  std::string hosts = MpirunHosts(launch.hosts, options_.host);
  LaunchRequest request;
  if (hosts == "localhost:1") {
    // One rank here: mpirun would only add its own start-up (about 50 ms of CPU and a daemon)
    // in front of the trainer. Started directly, the trainer's MPI_Init makes it a one-rank
    // world; "isolated" keeps Open MPI from forking a helper daemon for it. The trainer is the
    // session leader and gets SIGTERM itself.
    request.argv = {options_.train_command, "--spec", spec_file};
    request.environment = {"OMPI_MCA_ess_singleton_isolated=1"};
  } else {
    request.argv = MpirunCommand(options_, launch.ranks, hosts, spec_file);
    request.spare_leader_on_term = true;
  }
  // With libgomp's default spin-waiting, a job of several LibTorch threads runs up to 6x slower
  // as soon as anything else wants its cores (docs/results.md, section 1), and an agent's jobs
  // share its host. A value in the agent's own environment wins.
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    request.environment.push_back("OMP_WAIT_POLICY=passive");
  }
  request.log_path = launch.log;
  request.work_dir = options_.work_dir;
  // A header line per attempt, so that a log read alone says what ran. The agent creates the
  // log itself, readable by its owner only.
  fs::path log_path(launch.log);
  if (log_path.has_parent_path()) fs::create_directories(log_path.parent_path(), ec);
  std::string command;
  for (const std::string& arg : request.argv) command += (command.empty() ? "" : " ") + arg;
  std::string header = fmt::format("vitscale-agent: job {} attempt {} on {}: {}\n", job.id,
                                   job.attempt, options_.host, command);
  int fd = ::open(launch.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return IOError("cannot open log " + launch.log + ": " + std::strerror(errno));
  ssize_t written = ::write(fd, header.data(), header.size());
  ::close(fd);
  if (written != static_cast<ssize_t>(header.size())) {
    return IOError("cannot write log " + launch.log);
  }
  return launcher_.Start(request);
}

void Agent::QueueExitLocked(Job& job, ExitOutcome outcome, std::optional<int> exit_status) {
  job.state = JobState::kExited;
  protocol::ExitReport body{options_.host, outcome, exit_status};
  Log(fmt::format("job {} attempt {} ended: {}{}", job.id, job.attempt,
                  protocol::ExitOutcomeName(outcome),
                  exit_status ? fmt::format(" (exit status {})", *exit_status) : ""));
  reports_.push_back({job.id, job.attempt, std::move(body), 0});
  cv_.notify_all();
}

// ---------------------------------------------------------------------------------------------
// Poller

std::vector<protocol::RunningEntry> Agent::RunningLocked() const {
  std::vector<protocol::RunningEntry> running;
  for (const auto& [id, job] : jobs_) running.push_back({id, job.attempt});
  return running;
}

void Agent::ApplyPollLocked(const protocol::PollReply& reply) {
  lease_seconds_ = reply.lease_seconds;
  for (const protocol::LaunchEntry& entry : reply.launch) {
    if (auto known = jobs_.find(entry.job); known != jobs_.end()) {
      // The coordinator answers an exit report by placing the job again at once, often here,
      // before that report's delivery has cleared the entry. The old attempt is over and its
      // report stays queued, so the newer attempt takes its place.
      if (known->second.state == JobState::kExited && known->second.attempt < entry.attempt) {
        jobs_.erase(known);
      } else {
        if (known->second.attempt != entry.attempt) {
          Log(fmt::format("ignored launch of job {} attempt {}: attempt {} is still here",
                          entry.job, entry.attempt, known->second.attempt));
        }
        continue;
      }
    }
    Job job;
    job.id = entry.job;
    job.attempt = entry.attempt;
    job.launch = entry;
    job.grace_seconds = entry.grace_seconds;
    job.state = entry.hold ? JobState::kHolding : JobState::kStarting;
    if (job.state == JobState::kHolding && stopping_) continue;
    Log(fmt::format("{} job {} attempt {}",
                    job.state == JobState::kHolding ? "holding slots for" : "told to launch",
                    entry.job, entry.attempt));
    jobs_[entry.job] = std::move(job);
  }
  for (const protocol::SignalEntry& entry : reply.signal) {
    auto it = jobs_.find(entry.job);
    if (it == jobs_.end()) continue;
    Job& job = it->second;
    if (entry.attempt && *entry.attempt != job.attempt) continue;  // meant for an older attempt
    if (job.state == JobState::kHolding) {
      // The leader's agent stops the processes.
      if (entry.action == protocol::SignalAction::kKill) jobs_.erase(it);
      continue;
    }
    if (entry.action == protocol::SignalAction::kKill) {
      job.kill_requested = true;
    } else {
      job.preempt_requested = true;
      if (entry.grace_seconds) job.grace_seconds = *entry.grace_seconds;
    }
  }
  control_work_ = true;
  cv_.notify_all();
}

void Agent::DropNotHeldLocked(const std::vector<protocol::RunningEntry>& not_held) {
  for (const protocol::RunningEntry& entry : not_held) {
    auto it = jobs_.find(entry.job);
    if (it == jobs_.end()) continue;
    Job& job = it->second;
    Log(fmt::format("the coordinator says job {} attempt {} is no longer ours: stopping it", job.id,
                    job.attempt));
    reports_.erase(std::remove_if(reports_.begin(), reports_.end(),
                                  [&](const ExitReport& r) { return r.job == job.id; }),
                   reports_.end());
    if (job.state == JobState::kRunning) {
      // Killed without a report: the process stays in the launcher until reaped, and no entry
      // is left to match it.
      pid_t pid = job.pid;
      jobs_.erase(it);
      orphans_to_kill_.push_back(pid);
    } else {
      jobs_.erase(it);
    }
  }
  cv_.notify_all();
}

void Agent::PollLoop() {
  milliseconds backoff = kFirstBackoff;
  bool away = false;
  std::unique_lock<std::mutex> lock(mu_);
  auto failed = [&](const std::string& why) {
    registered_ = false;
    draining_registered_ = false;
    if (!away) Log("coordinator unreachable (" + why + "); retrying");
    away = true;
    WaitLocked(lock, backoff);
    backoff = std::min(backoff * 2, options_.max_backoff);
  };
  while (!finished_) {
    if (poll_client_aborted_) {
      Expected<std::unique_ptr<HttpClient>> fresh = HttpClient::Create(poll_options_);
      if (fresh.ok()) {
        std::unique_ptr<HttpClient> old = std::move(poll_client_);
        poll_client_ = std::move(fresh).value();
      }
      poll_client_aborted_ = false;
    }
    bool stopping = stopping_;
    if (!registered_ || (stopping && !draining_registered_)) {
      // Stopping: offering no slots keeps new work away while the heartbeats go on.
      protocol::RegisterRequest body{options_.host, stopping ? 0 : options_.slots,
                                     stopping ? 0 : options_.gpus, RunningLocked()};
      lock.unlock();
      Expected<HttpReply> reply =
          poll_client_->PostJson("/api/v1/agents/register", protocol::Dump(body.ToJson()));
      lock.lock();
      if (finished_) break;
      if (!reply.ok()) {
        if (!poll_client_aborted_) failed(reply.status().message());
        continue;
      }
      if (reply->status != 200) {
        failed(fmt::format("register answered {}: {}", reply->status, HttpErrorMessage(*reply)));
        continue;
      }
      Expected<protocol::RegisterReply> parsed = protocol::Decode<protocol::RegisterReply>(reply->body);
      if (!parsed.ok()) {
        failed("the coordinator's register reply is not understood: " + parsed.status().message());
        continue;
      }
      lease_seconds_ = parsed->lease_seconds;
      DropNotHeldLocked(parsed->not_held);
      Log(stopping ? "told the coordinator this host takes no more work"
                   : "registered with the coordinator");
      registered_ = true;
      draining_registered_ = stopping;
      away = false;
      backoff = kFirstBackoff;
      cv_.notify_all();
      continue;
    }
    protocol::PollRequest body{RunningLocked()};
    lock.unlock();
    Expected<HttpReply> reply = poll_client_->PostJson(
        "/api/v1/agents/" + options_.host + "/poll", protocol::Dump(body.ToJson()));
    lock.lock();
    if (finished_) break;
    if (!reply.ok()) {
      if (!poll_client_aborted_) failed(reply.status().message());
      continue;
    }
    if (reply->status == 409) {
      Expected<protocol::NotHeldReply> refused = protocol::Decode<protocol::NotHeldReply>(reply->body);
      if (refused.ok()) {
        DropNotHeldLocked(refused->not_held);
        continue;
      }
    }
    if (reply->status == 404) {  // the coordinator forgot us (a restart): register again
      registered_ = false;
      continue;
    }
    if (reply->status != 200) {
      failed(fmt::format("poll answered {}: {}", reply->status, HttpErrorMessage(*reply)));
      continue;
    }
    // A reply that does not decode is refused whole: nothing of it is acted on.
    Expected<protocol::PollReply> parsed = protocol::Decode<protocol::PollReply>(reply->body);
    if (!parsed.ok()) {
      failed("the coordinator's poll reply is not understood: " + parsed.status().message());
      continue;
    }
    backoff = kFirstBackoff;
    ApplyPollLocked(*parsed);
  }
}

// ---------------------------------------------------------------------------------------------
// Reporter

void Agent::ReportLoop() {
  milliseconds backoff = kFirstBackoff;
  bool away = false;
  std::unique_lock<std::mutex> lock(mu_);
  while (!finished_) {
    // Only to a coordinator that knows this agent: after a restart it answers an exit report
    // from an agent that has not registered again with a 404.
    if (reports_.empty() || !registered_) {
      cv_.wait(lock, [this] { return finished_ || (!reports_.empty() && registered_); });
      continue;
    }
    ExitReport report = reports_.front();
    lock.unlock();
    Expected<HttpReply> reply = report_client_->PostJson(
        fmt::format("/api/v1/jobs/{}/attempts/{}/exit", report.job, report.attempt),
        protocol::Dump(report.body.ToJson()));
    lock.lock();
    auto queued = std::find_if(reports_.begin(), reports_.end(), [&](const ExitReport& r) {
      return r.job == report.job && r.attempt == report.attempt;
    });
    bool done = false;
    if (reply.ok()) {
      int status = reply->status;
      if (status >= 200 && status < 300) {
        done = true;
      } else if (status == 404 && queued != reports_.end() &&
                 ++queued->not_found_replies < kMaxNotFoundReplies) {
        registered_ = false;  // most likely a restarted coordinator: the poller registers again
        cv_.notify_all();
      } else if (status >= 400 && status < 500 && status != 401 && status != 408 && status != 429) {
        Log(fmt::format("the coordinator refused the exit report of job {} attempt {} ({}): {}",
                        report.job, report.attempt, status, HttpErrorMessage(*reply)));
        done = true;
      }
    }
    if (done) {
      if (queued != reports_.end()) reports_.erase(queued);
      auto job = jobs_.find(report.job);
      if (job != jobs_.end() && job->second.attempt == report.attempt &&
          job->second.state == JobState::kExited) {
        jobs_.erase(job);
      }
      away = false;
      backoff = kFirstBackoff;
      cv_.notify_all();
      continue;
    }
    if (!reply.ok()) registered_ = false;  // the poller registers again once it is back
    if (!away) {
      Log(fmt::format(
          "cannot report the exit of job {} attempt {} yet ({}); retrying", report.job,
          report.attempt,
          reply.ok() ? fmt::format("HTTP {}", reply->status) : reply.status().message()));
    }
    away = true;
    WaitLocked(lock, backoff);
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

}  // namespace vitscale::worker
