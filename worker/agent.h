// Agent: the worker daemon's logic (vitscale-agent is main.cc around it). See docs/agent.md.
//
// Three threads share one table of jobs under one mutex:
//  - the control thread (the caller of Run()) starts, signals and reaps job processes; it is
//    the only thread that touches the Launcher, so a job's death signal follows a thread that
//    lives as long as the agent. It waits for a job to end (Launcher::ExitFd), for the other
//    threads to bring it work (an eventfd), or for its tick, whichever comes first;
//  - the poller registers, then long-polls POST /agents/{host}/poll with what the agent runs
//    (the poll is the heartbeat), and writes what it is told into the table;
//  - the reporter delivers the exits waiting, all in one batch, retrying until the coordinator
//    has answered for each.
// The coordinator may vanish at any time: both HTTP threads retry with a capped backoff, the
// poller registers again after any failure, and nothing is dropped while it is away.
//
// Ownership: the Agent does not own the Launcher, which must outlive it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/http_client.h"
#include "common/status.h"
#include "protocol/agent.h"
#include "worker/launcher.h"

namespace vitscale::worker {

struct AgentOptions {
  std::string coordinator_url;  // http://host:port (the API is under /api/v1 there)
  std::string token;            // this host's agent credential (docs/security.md)
  std::string host;  // the agent's id, and the name mpirun -H gets for this host (RFC 1123)
  int slots = 1;
  int gpus = 0;          // GPUs 0..gpus-1 of this host (worker/gpus.h)
  std::string gpu_kind;  // their model; required when gpus > 0
  // How GPU i of this host is named to CUDA: empty = by i; else entry i of the agent's own
  // CUDA_VISIBLE_DEVICES (a Slurm allocation or a container hands the agent some GPUs, by index
  // or UUID). At least `gpus` entries.
  std::vector<std::string> gpu_devices;
  std::string work_dir;  // absolute: spec files, and logs when a launch names none
  // Absolute: the coordinator's runs folder as this host sees it (shared by the hosts). A launch
  // whose log or run folder lies outside work_dir and runs_dir is refused.
  std::string runs_dir;
  std::string train_command;  // run by every rank as `<train_command> --spec FILE`
  std::string mpirun = "mpirun";
  bool allow_run_as_root = false;  // passes --allow-run-as-root (Open MPI refuses root without)
  // Environment variables every rank gets from this agent's environment, on every host: names,
  // or prefixes ending in '*' (kDefaultForwardEnv). Ranks on other hosts get an ssh login's
  // environment plus only these, so numeric-library settings must be among them.
  std::vector<std::string> forward_env;
  // mpirun --bind-to (none, core, socket, ...); empty: Open MPI's default. Hosts that share
  // cores (containers, or test hosts on one machine) want "none".
  std::string bind_to;
  // The network (CIDR, or an interface name) Open MPI's TCP traffic between hosts uses; empty:
  // Open MPI picks.
  std::string network;
  // How mpirun starts its daemons on the gang's other hosts (Open MPI's plm_rsh_agent; empty:
  // Open MPI's default, ssh). The agent also runs `<rsh_agent> HOST true` to check each of them
  // before a multi-host launch.
  std::string rsh_agent;
  std::chrono::milliseconds max_backoff{2000};
  // How long the coordinator may hold a poll, plus slack; the coordinator answers within 20 s.
  std::chrono::milliseconds poll_read_timeout{30000};
  // At shutdown, how long undelivered exit reports are retried before the agent gives up.
  std::chrono::milliseconds shutdown_report_timeout{10000};
  // How often the control thread looks at its timers (preemption grace) without being woken.
  // It is woken at once when a job's process ends (Launcher::ExitFd) and when a poll brings
  // work; with a launcher that gives no exit descriptor, this is also how often it reaps.
  std::chrono::milliseconds control_tick{50};
  // Preemption grace and retry backoff run on this clock (tests pass a FakeClock); the system
  // clock when unset. Must outlive the agent.
  const Clock* clock = nullptr;
};

// The trainer's documented exit statuses (docs/train-spec.md, protocol/enums.h): 0 done, 75
// checkpointed after SIGTERM, 78 the spec is wrong; and the launch's own 68, a host of the gang
// unreachable. A process we SIGKILLed after a cancel was killed; one we SIGKILLed after its
// preemption grace ran out was preempted (it resumes from its newest good checkpoint, which is
// what a preemption means). So is one that exits with a failure status while being preempted:
// mpirun that gets SIGTERM itself (Slurm signals every process of its step) ends its job with
// status 1 even when every rank checkpointed. Everything else failed.
protocol::ExitOutcome ClassifyExit(const ProcessExit& exit, bool preempt_requested,
                                   bool kill_requested);

// The -H argument for mpirun: the launch's hosts with this agent's own host written as
// localhost, which Open MPI runs locally without a remote launch. The names were checked
// (RFC 1123) when the poll reply was decoded.
std::string MpirunHosts(const std::vector<protocol::HostRanks>& hosts, const std::string& own_host);

// Is `path` (absolute, no '.' or '..' segments: the protocol checked) inside one of `dirs`?
bool PathWithin(const std::string& path, const std::vector<std::string>& dirs);

// What --forward-env defaults to: threading and kernel selection of the numeric libraries
// (OpenMP, OpenBLAS, MKL, BLIS, oneDNN), and the paths a rank's programs and libraries are
// found by.
inline constexpr const char* kDefaultForwardEnv =
    "OMP_*,GOMP_*,KMP_*,OPENBLAS_*,GOTO_*,MKL_*,BLIS_*,DNNL_*,ONEDNN_*,LD_LIBRARY_PATH,PATH,LANG,"
    "LC_*,TZ";

// Checks and splits a comma-separated --forward-env list: each item a variable name or a
// prefix of one followed by '*'.
Expected<std::vector<std::string>> ParseForwardEnv(std::string_view list);

// The names of `environment` (NAME=value entries) that `patterns` select, sorted, each once.
std::vector<std::string> ForwardedNames(const std::vector<std::string>& patterns,
                                        const std::vector<std::string>& environment);

// mpirun [--allow-run-as-root] --oversubscribe [--bind-to B] [--mca plm_rsh_agent R]
//   [--mca btl_tcp_if_include N --mca oob_tcp_if_include N] -x NAME... -np R -H HOSTS TRAIN
//   --spec SPEC_FILE
// `forward` are the variables -x names (mpirun passes their values to every rank).
std::vector<std::string> MpirunCommand(const AgentOptions& options, int ranks,
                                       const std::string& hosts, const std::string& spec_file,
                                       const std::vector<std::string>& forward);

// The command that launches a gang spanning other hosts: a shell that first runs
// `<rsh_agent> HOST true` for each of `remote_hosts` and exits kAgentExitUnreachable, saying
// which host and why in the log, when one fails; then it becomes `mpirun_argv`.
std::vector<std::string> ReachThenRun(const std::string& rsh_agent,
                                      const std::vector<std::string>& remote_hosts,
                                      const std::vector<std::string>& mpirun_argv);

// A GPU job's command when its ranks span hosts: Open MPI's one-context-per-host form
// (`mpirun GLOBAL -np 2 -H h1:2 env CUDA_DEVICE_ORDER=PCI_BUS_ID CUDA_VISIBLE_DEVICES=0,1 TRAIN
// --spec F : -np 2 -H h2:2 env ... TRAIN --spec F`), so that each host's ranks see that host's
// devices: -x could only give every rank the same value. `hosts` as MpirunHosts writes them;
// `gpus` in the same order.
// CUDA_VISIBLE_DEVICES's value for the host's GPUs `gpus`, named through `gpu_devices` (see
// AgentOptions) where it is not empty.
std::string CudaVisibleDevices(const std::vector<int>& gpus,
                               const std::vector<std::string>& gpu_devices);

std::vector<std::string> MpirunGpuCommand(const AgentOptions& options,
                                          const std::vector<protocol::HostRanks>& hosts,
                                          const std::vector<protocol::HostGpus>& gpus,
                                          const std::string& spec_file,
                                          const std::vector<std::string>& forward);

class Agent {
 public:
  // kInvalidArgument for a bad URL or empty host.
  static Expected<std::unique_ptr<Agent>> Create(AgentOptions options, Launcher& launcher);
  ~Agent();

  // Runs until RequestStop(), then preempts the running jobs, waits for them (each up to its
  // grace), reports their exits and returns. Call it once, from a thread that outlives the jobs.
  Status Run();
  // Thread-safe. Not async-signal-safe: a signal handler should wake a thread that calls it.
  void RequestStop();

  // (job, attempt) of every job the agent runs or holds, in the form the poll sends. Thread-safe.
  std::vector<std::pair<std::string, int>> Jobs() const;

 private:
  enum class JobState {
    kStarting,  // told to launch; the control thread has not started it yet
    kRunning,   // a process runs
    kHolding,   // a gang member: slots held for another host's mpirun, nothing runs here
    kExited,    // ended; its exit report waits for delivery
  };
  struct Job {
    std::string id;
    int attempt = 0;
    JobState state = JobState::kStarting;
    protocol::LaunchEntry launch;  // the poll's launch entry
    std::vector<int> gpus;         // the GPUs of this host it uses (held for it)
    pid_t pid = 0;
    int grace_seconds = 60;
    bool preempt_requested = false;
    bool kill_requested = false;
    bool term_sent = false;
    bool kill_sent = false;
    TimePoint kill_at;  // when term_sent: the end of the grace
  };

  Agent(AgentOptions options, Launcher& launcher, HttpClientOptions poll_options,
        std::unique_ptr<HttpClient> poll_client, std::unique_ptr<HttpClient> report_client,
        int wake_fd);

  void PollLoop();
  void ReportLoop();
  // One pass of the control thread over the table; false once stopping and nothing runs.
  bool ControlPass();
  Expected<pid_t> LaunchJob(const Job& job);
  // Waits until a job's process ends, WakeControl() is called or the control tick passes.
  void WaitForControlWork();
  // Makes the control thread run a pass now. Thread-safe.
  void WakeControl();

  // What this host reads in the coordinator's runs folder (RegisterRequest::runs_mark).
  std::optional<std::string> RunsMark() const;
  // REQUIRES: mu_ held.
  std::vector<protocol::RunningEntry> RunningLocked() const;
  // Moves the launch entries out of `reply`.
  void ApplyPollLocked(protocol::PollReply& reply);
  void DropNotHeldLocked(const std::vector<protocol::RunningEntry>& not_held);
  // Why a job may not use `gpus` of this host (one is not offered, or another job here uses
  // it); "" when it may.
  std::string GpuClashLocked(const std::vector<int>& gpus) const;
  void QueueExitLocked(Job& job, protocol::ExitOutcome outcome, std::optional<int> exit_status);
  // Waits up to `delay` on the agent's clock, or until finished_ is set. REQUIRES: `lock` holds
  // mu_.
  void WaitLocked(std::unique_lock<std::mutex>& lock, std::chrono::milliseconds delay);

  const AgentOptions options_;
  const Clock& clock_;
  Launcher& launcher_;
  const HttpClientOptions poll_options_;
  // Replaced (under mu_) by the poller only: RequestStop() aborts the long poll in flight so
  // that the poller can tell the coordinator at once that this host takes no more work.
  std::unique_ptr<HttpClient> poll_client_;
  bool poll_client_aborted_ = false;
  std::unique_ptr<HttpClient> report_client_;
  // An eventfd: readable when another thread (or a pass itself) has work for the control thread.
  const int wake_fd_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Job> jobs_;  // by job id
  // A job's newer attempt that waits here for the processes of its older one (in jobs_, being
  // killed) to end, by job id.
  std::map<std::string, Job> successors_;
  std::deque<protocol::ExitEntry> reports_;  // exits not yet answered, oldest first
  std::vector<pid_t> orphans_to_kill_;  // processes of jobs dropped as not held
  bool stopping_ = false;               // RequestStop() was called
  bool finished_ = false;               // the control thread is done; the HTTP threads may end
  bool registered_ = false;             // since the last failure to reach the coordinator
  bool draining_registered_ = false;    // told the coordinator it offers no slots any more
  int lease_seconds_ = 30;
};

}  // namespace vitscale::worker
