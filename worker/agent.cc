#include "worker/agent.h"

#include <fmt/format.h>
#include <signal.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/files.h"
#include "common/text.h"

namespace vitscale::worker {
namespace {

using protocol::ExitOutcome;
using protocol::Json;
using std::chrono::milliseconds;

constexpr milliseconds kFirstBackoff{100};
// A wait on the agent's clock checks it this often in real time.
constexpr milliseconds kClockSlice{50};

void Log(const std::string& message) {
  std::time_t now = std::time(nullptr);
  char stamp[32];
  // localtime_r, unlike localtime, does not look the time zone up again on every call.
  std::tm local{};
  ::localtime_r(&now, &local);
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &local);
  std::fprintf(stderr, "%s vitscale-agent: %s\n", stamp, message.c_str());
}

// Writes a job's spec to `path`, a new file in `dir` that its owner alone may read (the spec
// holds the attempt's report token), made with `dir` when that is missing. One file, written in
// place once: no folder of its own and no temporary file renamed over it, since each costs an
// inode, the largest cost of a start on ext4 when many files were deleted recently
// (docs/agent.md). Nothing needs more: only this attempt's processes read the spec, they start
// after it is written, and they die with the agent, so none sees it half-written; a spec a
// crash left half-written names an attempt that never runs again.
Status WriteSpec(const std::string& dir, const std::string& path, std::string_view text) {
  int fd = -1;
  for (int tries = 0; tries < 3 && fd < 0; ++tries) {
    // O_EXCL: the file is new, so it has the mode given here and is no link to elsewhere.
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) break;
    if (errno == ENOENT) {
      std::error_code ec;
      std::filesystem::create_directories(dir, ec);
      if (ec) return IOError("cannot create " + dir + ": " + ec.message());
    } else if (errno == EEXIST) {
      ::unlink(path.c_str());  // left by an earlier agent
    } else {
      break;
    }
  }
  if (fd < 0) return IOError("cannot create spec " + path + ": " + std::strerror(errno));
  ssize_t written = ::write(fd, text.data(), text.size());
  int write_error = errno;
  ::close(fd);
  if (written != static_cast<ssize_t>(text.size())) {
    return IOError("cannot write spec " + path + ": " +
                   (written < 0 ? std::strerror(write_error) : "short write"));
  }
  return Status::Ok();
}

}  // namespace

ExitOutcome ClassifyExit(const ProcessExit& exit, bool preempt_requested, bool kill_requested) {
  if (exit.signaled && exit.signal == SIGKILL) {
    if (kill_requested) return ExitOutcome::kKilled;
    if (preempt_requested) return ExitOutcome::kPreempted;
    return ExitOutcome::kFailed;
  }
  if (exit.signaled) {
    // SIGTERM kills a launch that has not started mpirun yet (the reachability check).
    return preempt_requested && exit.signal == SIGTERM ? ExitOutcome::kPreempted
                                                       : ExitOutcome::kFailed;
  }
  switch (exit.exit_code) {
    case protocol::kTrainExitSucceeded:
      return ExitOutcome::kSucceeded;
    case protocol::kTrainExitPreempted:
      return ExitOutcome::kPreempted;
    case protocol::kTrainExitConfigError:
      return ExitOutcome::kConfigError;
    default:
      if (preempt_requested) return ExitOutcome::kPreempted;
      if (exit.exit_code == protocol::kAgentExitUnreachable) return ExitOutcome::kUnreachable;
      return ExitOutcome::kFailed;
  }
}

Expected<std::vector<std::string>> ParseForwardEnv(std::string_view list) {
  std::vector<std::string> patterns;
  if (list.empty()) return patterns;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = std::min(list.find(',', start), list.size());
    std::string item(list.substr(start, comma - start));
    start = comma + 1;
    std::string name = item;
    if (!name.empty() && name.back() == '*') name.pop_back();
    bool valid = !name.empty() && !std::isdigit(static_cast<unsigned char>(name[0]));
    for (char c : name) valid = valid && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
    if (!valid) {
      return InvalidArgument("--forward-env: '" + Printable(item) +
                             "' is not a variable name or a prefix of one followed by '*'");
    }
    patterns.push_back(item);
  }
  return patterns;
}

std::vector<std::string> ForwardedNames(const std::vector<std::string>& patterns,
                                        const std::vector<std::string>& environment) {
  std::vector<std::string> names;
  for (const std::string& entry : environment) {
    std::string name = entry.substr(0, entry.find('='));
    for (const std::string& pattern : patterns) {
      bool prefix = !pattern.empty() && pattern.back() == '*';
      if (prefix ? name.compare(0, pattern.size() - 1, pattern, 0, pattern.size() - 1) == 0
                 : name == pattern) {
        names.push_back(name);
        break;
      }
    }
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

std::vector<std::string> ReachThenRun(const std::string& rsh_agent,
                                      const std::vector<std::string>& remote_hosts,
                                      const std::vector<std::string>& mpirun_argv) {
  static_assert(protocol::kAgentExitUnreachable == 68, "the script below exits 68");
  // $1 is the launcher, word-split as Open MPI splits plm_rsh_agent; the hosts follow, then
  // "--" and mpirun's arguments. The hosts were checked as RFC 1123 names.
  static const char kScript[] =
      "agent=$1; shift\n"
      "while [ \"$1\" != -- ]; do\n"
      "  if ! why=$(timeout 30 $agent \"$1\" true 2>&1 </dev/null); then\n"
      "    echo \"vitscale-agent: cannot reach host $1 with '$agent': ${why:-timed out}\"\n"
      "    exit 68\n"
      "  fi\n"
      "  shift\n"
      "done\n"
      "shift\n"
      "exec \"$@\"\n";
  std::vector<std::string> argv = {"/bin/sh", "-c", kScript, "vitscale-launch", rsh_agent};
  argv.insert(argv.end(), remote_hosts.begin(), remote_hosts.end());
  argv.push_back("--");
  argv.insert(argv.end(), mpirun_argv.begin(), mpirun_argv.end());
  return argv;
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

namespace {

// mpirun's options for every job, before its app context(s).
std::vector<std::string> MpirunGlobalOptions(const AgentOptions& options,
                                             const std::vector<std::string>& forward) {
  std::vector<std::string> argv = {options.mpirun};
  if (options.allow_run_as_root) argv.push_back("--allow-run-as-root");
  // More ranks than cores is the norm on a small CPU host; without this Open MPI refuses.
  argv.push_back("--oversubscribe");
  if (!options.bind_to.empty()) argv.insert(argv.end(), {"--bind-to", options.bind_to});
  if (!options.rsh_agent.empty()) {
    argv.insert(argv.end(), {"--mca", "plm_rsh_agent", options.rsh_agent});
  }
  if (!options.network.empty()) {
    argv.insert(argv.end(), {"--mca", "btl_tcp_if_include", options.network, "--mca",
                             "oob_tcp_if_include", options.network});
  }
  // Local ranks inherit the environment; ranks on other hosts get only what -x names.
  for (const std::string& name : forward) argv.insert(argv.end(), {"-x", name});
  return argv;
}

// CUDA numbers GPUs fastest first unless told otherwise; nvidia-smi, whose numbers the
// coordinator hands out, numbers them in PCI bus order.
constexpr char kCudaDeviceOrder[] = "CUDA_DEVICE_ORDER=PCI_BUS_ID";

}  // namespace

std::vector<std::string> MpirunCommand(const AgentOptions& options, int ranks,
                                       const std::string& hosts, const std::string& spec_file,
                                       const std::vector<std::string>& forward) {
  std::vector<std::string> argv = MpirunGlobalOptions(options, forward);
  for (const std::string& arg : {std::string("-np"), std::to_string(ranks), std::string("-H"),
                                 hosts, options.train_command, std::string("--spec"), spec_file}) {
    argv.push_back(arg);
  }
  return argv;
}

std::string CudaVisibleDevices(const std::vector<int>& gpus,
                               const std::vector<std::string>& gpu_devices) {
  if (gpu_devices.empty()) return protocol::GpuIndicesString(gpus);
  std::string value;
  for (int index : gpus) {
    if (!value.empty()) value += ",";
    // The agent checked the index against its GPUs, which gpu_devices covers.
    value += gpu_devices.at(static_cast<size_t>(index));
  }
  return value;
}

std::vector<std::string> MpirunGpuCommand(const AgentOptions& options,
                                          const std::vector<protocol::HostRanks>& hosts,
                                          const std::vector<protocol::HostGpus>& gpus,
                                          const std::string& spec_file,
                                          const std::vector<std::string>& forward) {
  std::vector<std::string> argv = MpirunGlobalOptions(options, forward);
  for (size_t i = 0; i < hosts.size() && i < gpus.size(); ++i) {
    if (i > 0) argv.push_back(":");
    for (const std::string& arg :
         {std::string("-np"), std::to_string(hosts[i].ranks), std::string("-H"),
          protocol::HostsString({hosts[i]}), std::string("env"), std::string(kCudaDeviceOrder),
          // This host's GPUs by the names it was given; other hosts' by index.
          "CUDA_VISIBLE_DEVICES=" +
              (hosts[i].host == "localhost"
                   ? CudaVisibleDevices(gpus[i].gpus, options.gpu_devices)
                   : protocol::GpuIndicesString(gpus[i].gpus)),
          options.train_command, std::string("--spec"), spec_file}) {
      argv.push_back(arg);
    }
  }
  return argv;
}

Expected<std::unique_ptr<Agent>> Agent::Create(AgentOptions options, Launcher& launcher) {
  RETURN_IF_ERROR(protocol::CheckText("--host", options.host, protocol::kHostRule));
  for (const std::string* dir : {&options.work_dir, &options.runs_dir}) {
    if (!dir->empty()) RETURN_IF_ERROR(protocol::CheckText("a directory", *dir, protocol::kPathRule));
  }
  if (options.slots < 0 || options.gpus < 0) {
    return InvalidArgument("--slots and --gpus must be >= 0");
  }
  if (options.gpus > 0) RETURN_IF_ERROR(protocol::CheckGpuKind("--gpu-kind", options.gpu_kind));
  if (!options.gpu_devices.empty() && options.gpus > static_cast<int>(options.gpu_devices.size())) {
    return InvalidArgument(fmt::format(
        "--gpus {}: the agent's CUDA_VISIBLE_DEVICES gives it {} GPUs; offer at most that many",
        options.gpus, options.gpu_devices.size()));
  }
  if (options.train_command.empty()) return InvalidArgument("--train-command must not be empty");
  if (std::getenv("OMPI_MCA_mca_base_env_list") != nullptr) {
    // Open MPI refuses to run when both name variables to pass on.
    return InvalidArgument(
        "OMPI_MCA_mca_base_env_list is set, but the agent forwards variables with mpirun -x, "
        "which Open MPI cannot mix with it: unset it and name the variables in --forward-env");
  }
  HttpClientOptions poll_options{options.coordinator_url, options.token, milliseconds(3000),
                                 options.poll_read_timeout};
  ASSIGN_OR_RETURN(std::unique_ptr<HttpClient> poll_client, HttpClient::Create(poll_options));
  HttpClientOptions report_options{options.coordinator_url, options.token, milliseconds(3000),
                                   milliseconds(10000)};
  ASSIGN_OR_RETURN(std::unique_ptr<HttpClient> report_client, HttpClient::Create(report_options));
  int wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd < 0) return IOError(std::string("cannot create an eventfd: ") + std::strerror(errno));
  return std::unique_ptr<Agent>(new Agent(std::move(options), launcher, poll_options,
                                          std::move(poll_client), std::move(report_client),
                                          wake_fd));
}

Agent::Agent(AgentOptions options, Launcher& launcher, HttpClientOptions poll_options,
             std::unique_ptr<HttpClient> poll_client, std::unique_ptr<HttpClient> report_client,
             int wake_fd)
    : options_(std::move(options)),
      clock_(options_.clock ? *options_.clock : SystemClock::Get()),
      launcher_(launcher),
      poll_options_(std::move(poll_options)),
      poll_client_(std::move(poll_client)),
      report_client_(std::move(report_client)),
      wake_fd_(wake_fd) {}

Agent::~Agent() { ::close(wake_fd_); }

void Agent::WakeControl() {
  uint64_t one = 1;
  // Fails only when the counter is near 2^64, which leaves it readable all the same.
  ssize_t ignored = ::write(wake_fd_, &one, sizeof(one));
  (void)ignored;
}

void Agent::WaitForControlWork() {
  pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {launcher_.ExitFd(), POLLIN, 0}};
  // A negative fd is skipped by poll().
  int ready = ::poll(fds, 2, static_cast<int>(options_.control_tick.count()));
  if (ready > 0 && (fds[0].revents & POLLIN) != 0) {
    uint64_t count;
    ssize_t ignored = ::read(wake_fd_, &count, sizeof(count));  // resets the counter
    (void)ignored;
  }
  // An ended process keeps the exit descriptor readable until the next pass reaps it.
}

void Agent::RequestStop() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!stopping_) {
    stopping_ = true;
    poll_client_aborted_ = true;
    poll_client_->Abort();
  }
  cv_.notify_all();
  WakeControl();
}

std::vector<std::pair<std::string, int>> Agent::Jobs() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<std::string, int>> jobs;
  for (const auto& [id, job] : jobs_) jobs.emplace_back(id, job.attempt);
  for (const auto& [id, job] : successors_) jobs.emplace_back(id, job.attempt);
  return jobs;
}

void Agent::WaitLocked(std::unique_lock<std::mutex>& lock, milliseconds delay) {
  TimePoint deadline = clock_.Now() + delay;
  while (!finished_ && clock_.Now() < deadline) {
    // Real time passes in short slices, so that a FakeClock a test moves ends the wait too.
    auto left = std::chrono::duration_cast<milliseconds>(deadline - clock_.Now()) + milliseconds(1);
    cv_.wait_for(lock, std::min(left, kClockSlice), [this] { return finished_; });
  }
}

Status Agent::Run() {
  Log(fmt::format("host {} offers {} slots and {} GPUs{} to {}", options_.host, options_.slots,
                  options_.gpus, options_.gpus > 0 ? " (" + options_.gpu_kind + ")" : "",
                  poll_client_->base_url()));
  std::thread poller([this] { PollLoop(); });
  std::thread reporter([this] { ReportLoop(); });
  // A job that ends, or new work from a poll, wakes the control thread at once; the tick is
  // for its timers.
  while (ControlPass()) WaitForControlWork();
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, options_.shutdown_report_timeout, [this] { return reports_.empty(); });
    for (const protocol::ExitEntry& report : reports_) {
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
  std::vector<pid_t> late_kills;
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
          // Only LaunchJob reads the launch entry: its spec moves out instead of being copied.
          Job& starting = to_launch.emplace_back();
          starting.id = id;
          starting.attempt = job.attempt;
          starting.gpus = job.gpus;
          starting.launch = std::move(job.launch);
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

  // Signals first: what is told to stop frees its cores before anything new starts.
  for (const auto& [pid, signal] : to_signal) {
    Status status = launcher_.Signal(pid, signal);
    if (!status.ok()) Log(status.ToString());
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
      late_kills.push_back(*pid);  // dropped while it was starting
    }
  }
  for (pid_t pid : late_kills) {
    Status status = launcher_.Signal(pid, SIGKILL);
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
    // The attempt that waited for this one starts now; the ended one's report stays queued.
    if (auto next = successors_.find(job.id); next != successors_.end()) {
      Log(fmt::format("job {} attempt {} may start now", job.id, next->second.attempt));
      it->second = std::move(next->second);
      successors_.erase(next);
      WakeControl();
    }
  }
  bool active = std::any_of(jobs_.begin(), jobs_.end(), [](const auto& entry) {
    return entry.second.state == JobState::kStarting || entry.second.state == JobState::kRunning;
  });
  return !stopping_ || active;
}

Expected<pid_t> Agent::LaunchJob(const Job& job) {
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
  std::string spec_dir = options_.work_dir + "/specs";
  std::string spec_file = fmt::format("{}/{}.attempt-{}.json", spec_dir, job.id, job.attempt);
  RETURN_IF_ERROR(WriteSpec(spec_dir, spec_file, launch.spec.dump() + "\n"));

  std::string hosts = MpirunHosts(launch.hosts, options_.host);
  LaunchRequest request;
  if (!job.gpus.empty()) {
    // Every rank here sees the job's GPUs only, numbered from 0 in this order; rank r of the
    // host takes device r (its local rank).
    request.environment.push_back(kCudaDeviceOrder);
    request.environment.push_back("CUDA_VISIBLE_DEVICES=" +
                                  CudaVisibleDevices(job.gpus, options_.gpu_devices));
  }
  // With libgomp's default spin-waiting, a job of several LibTorch threads runs up to 6x slower
  // as soon as anything else wants its cores (docs/results.md, section 1), and an agent's jobs
  // share its host. A value in the agent's own environment wins.
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    request.environment.push_back("OMP_WAIT_POLICY=passive");
  }
  if (hosts == "localhost:1") {
    // One rank here: mpirun would only add its own start-up (about 50 ms of CPU and a daemon)
    // in front of the trainer. Started directly, the trainer's MPI_Init makes it a one-rank
    // world; "isolated" keeps Open MPI from forking a helper daemon for it. The trainer is the
    // session leader and gets SIGTERM itself.
    request.argv = {options_.train_command, "--spec", spec_file};
    request.environment.push_back("OMPI_MCA_ess_singleton_isolated=1");
  } else {
    std::vector<std::string> environment = request.environment;
    for (char** entry = environ; *entry != nullptr; ++entry) environment.emplace_back(*entry);
    std::vector<std::string> forward = ForwardedNames(options_.forward_env, environment);
    if (std::find(forward.begin(), forward.end(), "OMP_WAIT_POLICY") == forward.end()) {
      forward.push_back("OMP_WAIT_POLICY");
    }
    if (!launch.gpus.empty() && launch.hosts.size() > 1) {
      // Each host's ranks get that host's GPUs (docs/gpu.md).
      std::vector<protocol::HostRanks> local = launch.hosts;
      for (protocol::HostRanks& h : local) {
        if (h.host == options_.host) h.host = "localhost";
      }
      request.argv = MpirunGpuCommand(options_, local, launch.gpus, spec_file, forward);
    } else {
      request.argv = MpirunCommand(options_, launch.ranks, hosts, spec_file, forward);
    }
    std::vector<std::string> remote;
    for (const protocol::HostRanks& h : launch.hosts) {
      if (h.host != options_.host) remote.push_back(h.host);
    }
    if (!remote.empty()) {
      std::string rsh_agent = options_.rsh_agent.empty() ? "ssh" : options_.rsh_agent;
      request.argv = ReachThenRun(rsh_agent, remote, request.argv);
      // Its program's command name, as /proc shows it (the kernel keeps 15 bytes).
      std::string program = rsh_agent.substr(0, rsh_agent.find(' '));
      program = program.substr(program.rfind('/') + 1).substr(0, 15);
      request.spare_on_term = {program};
    }
    request.spare_leader_on_term = true;
  }
  request.log_path = launch.log;
  request.work_dir = options_.work_dir;
  // A header line per attempt, so that a log read alone says what ran.
  std::string command;
  for (const std::string& arg : request.argv) command += (command.empty() ? "" : " ") + arg;
  request.log_header = fmt::format("vitscale-agent: job {} attempt {} on {}: {}\n", job.id,
                                   job.attempt, options_.host, command);
  return launcher_.Start(request);
}

void Agent::QueueExitLocked(Job& job, ExitOutcome outcome, std::optional<int> exit_status) {
  job.state = JobState::kExited;
  Log(fmt::format("job {} attempt {} ended: {}{}", job.id, job.attempt,
                  protocol::ExitOutcomeName(outcome),
                  exit_status ? fmt::format(" (exit status {})", *exit_status) : ""));
  reports_.push_back({job.id, job.attempt, outcome, exit_status});
  cv_.notify_all();
}

// ---------------------------------------------------------------------------------------------
// Poller

std::optional<std::string> Agent::RunsMark() const {
  if (options_.runs_dir.empty()) return std::nullopt;
  std::string path = options_.runs_dir + "/" + protocol::kRunsMarkFile;
  Expected<std::string> mark = ReadTokenFile(path);
  if (!mark.ok() || !protocol::CheckText("runs_mark", *mark, protocol::kTokenRule).ok()) {
    Log("cannot read the coordinator's runs mark " + path + " (" +
        (mark.ok() ? "not a token" : mark.status().message()) +
        "): this host takes no part in jobs that span hosts until --runs-dir is the "
        "coordinator's runs folder, shared");
    return std::nullopt;
  }
  return *mark;
}

std::vector<protocol::RunningEntry> Agent::RunningLocked() const {
  std::vector<protocol::RunningEntry> running;
  for (const auto& [id, job] : jobs_) {
    // A successor waiting for its predecessor to end is the attempt the coordinator knows; the
    // GPUs are those in use now.
    auto next = successors_.find(id);
    running.push_back(
        {id, next != successors_.end() ? next->second.attempt : job.attempt, job.gpus});
  }
  return running;
}

void Agent::ApplyPollLocked(protocol::PollReply& reply) {
  lease_seconds_ = reply.lease_seconds;
  // Signals first, each to the attempt it names only: one reply may carry the kill of a job's
  // old attempt and the launch of its next one (the coordinator requeues a job whose gang lost a
  // host and may place it here again in the same pass), and a kill queued for this host before
  // a restart names an attempt this agent never had.
  for (const protocol::SignalEntry& entry : reply.signal) {
    std::map<std::string, Job>* table = nullptr;
    for (std::map<std::string, Job>* t : {&jobs_, &successors_}) {
      auto it = t->find(entry.job);
      if (it != t->end() && it->second.attempt == entry.attempt) table = t;
    }
    if (table == nullptr) {
      Log(fmt::format("ignored {} of job {} attempt {}: not here",
                      protocol::SignalActionName(entry.action), entry.job, entry.attempt));
      continue;
    }
    Job* job = &table->at(entry.job);
    if (job->state == JobState::kHolding) {
      // The leader's agent stops the processes; a holder only lets the slots go.
      if (entry.action == protocol::SignalAction::kKill) table->erase(entry.job);
      continue;
    }
    if (entry.action == protocol::SignalAction::kKill) {
      job->kill_requested = true;
    } else {
      job->preempt_requested = true;
      if (entry.grace_seconds) job->grace_seconds = *entry.grace_seconds;
    }
  }
  for (protocol::LaunchEntry& entry : reply.launch) {
    Job job;
    job.id = entry.job;
    job.attempt = entry.attempt;
    for (const protocol::HostGpus& g : entry.gpus) {
      if (g.host == options_.host) job.gpus = g.gpus;
    }
    if (std::string clash = GpuClashLocked(job.gpus); !clash.empty()) {
      // Only a coordinator that lost track of its GPUs could ask this: run nothing on them.
      Log(fmt::format("refused job {} attempt {}: {}", entry.job, entry.attempt, clash));
      if (!entry.hold) {
        job.gpus.clear();
        jobs_[entry.job] = std::move(job);
        QueueExitLocked(jobs_[entry.job], ExitOutcome::kFailed, std::nullopt);
      }
      continue;
    }
    job.grace_seconds = entry.grace_seconds;
    job.state = entry.hold ? JobState::kHolding : JobState::kStarting;
    if (job.state == JobState::kHolding && stopping_) continue;
    if (auto known = jobs_.find(entry.job); known != jobs_.end()) {
      Job& old = known->second;
      if (old.attempt >= entry.attempt) {
        if (old.attempt != entry.attempt) {
          Log(fmt::format("ignored launch of job {} attempt {}: attempt {} is newer", entry.job,
                          entry.attempt, old.attempt));
        }
        continue;
      }
      // A newer attempt means the coordinator has ended the old one. One that has ended here
      // too (its report may still be on its way), or only held slots, gives way at once; one
      // whose processes still run is killed, and the new attempt waits for them to be gone, so
      // that two attempts never run, or write checkpoints, at once.
      if (old.state == JobState::kRunning) {
        if (!old.kill_requested) {
          Log(fmt::format("job {} attempt {} is superseded by attempt {}: stopping it", entry.job,
                          old.attempt, entry.attempt));
        }
        old.kill_requested = true;
        auto waiting = successors_.find(entry.job);
        if (waiting == successors_.end() || waiting->second.attempt < entry.attempt) {
          Log(fmt::format("job {} attempt {} waits for attempt {} to end", entry.job,
                          entry.attempt, old.attempt));
          job.launch = std::move(entry);
          successors_[job.id] = std::move(job);
        }
        continue;
      }
      jobs_.erase(known);
    }
    // A launch is logged once it has started ("launched job ..."), or failed to.
    if (job.state == JobState::kHolding) {
      Log(fmt::format("holding slots for job {} attempt {}", entry.job, entry.attempt));
    }
    job.launch = std::move(entry);
    jobs_[job.id] = std::move(job);
  }
  cv_.notify_all();
  WakeControl();
}

std::string Agent::GpuClashLocked(const std::vector<int>& gpus) const {
  for (int index : gpus) {
    if (index >= options_.gpus) {
      return fmt::format("GPU {} is not one of the {} this host offers", index, options_.gpus);
    }
    for (const auto& [id, other] : jobs_) {
      if (other.state == JobState::kExited) continue;
      if (std::find(other.gpus.begin(), other.gpus.end(), index) != other.gpus.end()) {
        return fmt::format("GPU {} is in use by job {} attempt {}", index, id, other.attempt);
      }
    }
  }
  return "";
}

void Agent::DropNotHeldLocked(const std::vector<protocol::RunningEntry>& not_held) {
  for (const protocol::RunningEntry& entry : not_held) {
    successors_.erase(entry.job);
    auto it = jobs_.find(entry.job);
    if (it == jobs_.end()) continue;
    Job& job = it->second;
    Log(fmt::format("the coordinator says job {} attempt {} is no longer ours: stopping it", job.id,
                    job.attempt));
    reports_.erase(std::remove_if(reports_.begin(), reports_.end(),
                                  [&](const protocol::ExitEntry& r) { return r.job == job.id; }),
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
  WakeControl();
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
                                     stopping ? 0 : options_.gpus,
                                     stopping ? "" : options_.gpu_kind, RunningLocked(),
                                     RunsMark()};
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
    // Decoded before the lock is taken, so that the control thread and the reporter do not wait
    // for the parse of the launches' specs.
    std::optional<Expected<protocol::PollReply>> parsed;
    if (reply.ok() && reply->status == 200) {
      parsed.emplace(protocol::Decode<protocol::PollReply>(reply->body));
    }
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
    if (!parsed->ok()) {
      failed("the coordinator's poll reply is not understood: " + parsed->status().message());
      continue;
    }
    backoff = kFirstBackoff;
    ApplyPollLocked(**parsed);
  }
}

// ---------------------------------------------------------------------------------------------
// Reporter

void Agent::ReportLoop() {
  milliseconds backoff = kFirstBackoff;
  bool away = false;
  std::unique_lock<std::mutex> lock(mu_);
  while (!finished_) {
    // Only to a coordinator that knows this agent: after a restart it answers an exit batch
    // from an agent that has not registered again with a 404.
    if (reports_.empty() || !registered_) {
      cv_.wait(lock, [this] { return finished_ || (!reports_.empty() && registered_); });
      continue;
    }
    // Every exit waiting, in one request, which the coordinator records in one transaction:
    // the exits reaped while the previous batch was on its way go together in the next.
    protocol::ExitBatch batch;
    for (const protocol::ExitEntry& exit : reports_) {
      if (batch.exits.size() == protocol::kMaxExits) break;
      batch.exits.push_back(exit);
    }
    lock.unlock();
    Expected<HttpReply> reply =
        report_client_->PostJson(fmt::format("/api/v1/agents/{}/exits", options_.host),
                                 protocol::Dump(batch.ToJson()));
    lock.lock();
    // The exits the coordinator has answered for; the others are sent again.
    std::vector<std::pair<std::string, int>> answered;
    std::string problem;  // why the batch is sent again
    if (!reply.ok()) {
      problem = reply.status().message();
      registered_ = false;  // the poller registers again once it is back
    } else if (reply->status >= 200 && reply->status < 300) {
      Expected<protocol::ExitBatchReply> results =
          protocol::Decode<protocol::ExitBatchReply>(reply->body);
      if (!results.ok()) {
        // Recorded or not, the exits are safe to send again: a recorded one comes back "ended".
        problem = "its answer is malformed: " + results.status().message();
      } else {
        for (const protocol::ExitResultEntry& result : results->results) {
          if (result.result == protocol::ExitResult::kRefused) {
            Log(fmt::format("the coordinator refused the exit of job {} attempt {}: {}",
                            result.job, result.attempt, result.message));
          }
          answered.emplace_back(result.job, result.attempt);
        }
      }
    } else if (reply->status == 404) {
      problem = "this agent is not registered (a restarted coordinator?)";
      registered_ = false;
      cv_.notify_all();
    } else if (reply->status >= 400 && reply->status < 500 && reply->status != 401 &&
               reply->status != 408 && reply->status != 429) {
      // The whole batch refused as malformed: sending it again cannot help. The attempts'
      // leases run out and their jobs are requeued.
      Log(fmt::format("the coordinator refused a batch of {} exits ({}): {}", batch.exits.size(),
                      reply->status, HttpErrorMessage(*reply)));
      for (const protocol::ExitEntry& exit : batch.exits) answered.emplace_back(exit.job, exit.attempt);
    } else {
      problem = fmt::format("HTTP {}: {}", reply->status, HttpErrorMessage(*reply));
    }
    if (problem.empty()) {
      for (const auto& [job_id, attempt] : answered) {
        reports_.erase(std::remove_if(reports_.begin(), reports_.end(),
                                      [&](const protocol::ExitEntry& r) {
                                        return r.job == job_id && r.attempt == attempt;
                                      }),
                       reports_.end());
        auto job = jobs_.find(job_id);
        if (job != jobs_.end() && job->second.attempt == attempt &&
            job->second.state == JobState::kExited) {
          jobs_.erase(job);
        }
      }
      away = false;
      backoff = kFirstBackoff;
      cv_.notify_all();
      continue;
    }
    if (!away) {
      Log(fmt::format("cannot report {} exits yet ({}); retrying", batch.exits.size(), problem));
    }
    away = true;
    WaitLocked(lock, backoff);
    backoff = std::min(backoff * 2, options_.max_backoff);
  }
}

}  // namespace vitscale::worker
