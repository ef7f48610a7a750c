// Launcher: how the agent starts, signals and reaps job processes.
//
// Each job is one process (normally `mpirun`) started in a session of its own (setsid), with
// stdout and stderr appended to the attempt's log. The session, not the process group, is the
// unit that signals reach: Open MPI puts every rank in a process group of its own, but the ranks
// stay in mpirun's session. Signal() therefore walks /proc for the session's members.
//
// Reaping needs no such walk. A ProcessLauncher makes its process a child subreaper
// (PR_SET_CHILD_SUBREAPER), so whatever a job leaves behind when a process of it dies is
// re-parented to this process rather than to init: when a job's leader ends, everything left of
// its session is a child of this process or descends from one, and Reap() kills it by reading
// this process's short list of children (/proc/self/task/*/children). Reap() also reaps those
// orphans when they end, and kills an orphan whose job has ended or that left its job's session.
// Children of this process in its own session (say, a popen) are never touched.
//
// The caller learns that a job has ended by waiting for ExitFd() to poll readable (it gathers a
// pidfd per job in one epoll descriptor), not on a timer. What ended is still what Reap() finds
// with waitid: a wake-up that finds nothing costs one pass, and an exit missed by the
// descriptor is found by the caller's next Reap().
//
// A job dies with the agent: the launched process gets PR_SET_PDEATHSIG(SIGKILL), and Open MPI
// ranks end when their mpirun dies. A restarted agent does not adopt old jobs; their leases run
// out and the coordinator resumes them from their checkpoints. The death signal follows the
// THREAD that called Start(), so call Start() from a thread that lives as long as the jobs.
//
// Threads: a ProcessLauncher is used by one thread at a time, and one per process.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <vector>

#include "common/status.h"

namespace vitscale::worker {

struct LaunchRequest {
  std::vector<std::string> argv;  // argv[0] is a path, or a name looked up in PATH
  std::string log_path;  // created (owner-only) with its directories; appended to
  std::string log_header;  // written to the log before the process starts
  std::string work_dir;           // the process's working directory; "" = the agent's
  // SIGTERM spares the session leader (and reaches everything else in the session). Set for
  // mpirun, which answers SIGTERM by killing its ranks about a second later (Open MPI 4.1),
  // before they can checkpoint; the ranks get SIGTERM directly, and mpirun exits with the status
  // they exit with.
  bool spare_leader_on_term = false;
  // With spare_leader_on_term: command names (as /proc/<pid>/comm shows them, at most 15 bytes)
  // SIGTERM spares too. mpirun's rsh agent (ssh) holds its daemon on another host: killed, it
  // makes mpirun abort the whole job before any rank can checkpoint. The ranks there hear of
  // the preemption from the ranks here (they agree on stopping at a step boundary).
  std::vector<std::string> spare_on_term;
  std::vector<std::string> environment;  // NAME=value entries set on top of the agent's own
};

struct ProcessExit {
  pid_t pid = 0;
  bool signaled = false;  // killed by `signal`, else exited with `exit_code`
  int exit_code = 0;
  int signal = 0;
  // exit_code, or 128 + signal, as a shell reports it.
  int ShellStatus() const { return signaled ? 128 + signal : exit_code; }
};

class Launcher {
 public:
  virtual ~Launcher() = default;
  // Starts the process; returns its pid, which is also its session id. kIOError when the log
  // cannot be opened or the program cannot be run (the log says why, too).
  virtual Expected<pid_t> Start(const LaunchRequest& request) = 0;
  // SIGTERM: the session (see LaunchRequest::spare_leader_on_term). SIGKILL and others: every
  // process of the session. A session that has already ended is not an error.
  virtual Status Signal(pid_t pid, int signal) = 0;
  // Processes started here that have ended since the last call; does not wait for running ones.
  // Whatever an ended leader left behind in its session is killed before the leader is reaped.
  virtual std::vector<ProcessExit> Reap() = 0;
  // A descriptor that polls readable while a process started here has ended and Reap() has not
  // reported it, so that the caller can wait for exits instead of calling Reap() on a timer; -1
  // when there is none (the caller then calls Reap() on its timer). Owned by the launcher.
  virtual int ExitFd() const { return -1; }
};

// Start and Signal are called from one thread at a time (the agent's control thread).
class ProcessLauncher : public Launcher {
 public:
  // Makes this process a child subreaper (see above).
  ProcessLauncher();
  ~ProcessLauncher() override;
  ProcessLauncher(const ProcessLauncher&) = delete;
  ProcessLauncher& operator=(const ProcessLauncher&) = delete;
  Expected<pid_t> Start(const LaunchRequest& request) override;
  Status Signal(pid_t pid, int signal) override;
  std::vector<ProcessExit> Reap() override;
  // An epoll descriptor over a pidfd per started process (Linux >= 5.3); -1 where the kernel
  // has none. A process whose pidfd could not be opened is still reaped, on the caller's timer.
  int ExitFd() const override { return exit_fd_; }

 private:
  // The stack a started process runs on until it execs, mapped once (launcher.cc). top() is
  // nullptr if the mapping failed, and error() says why.
  class ChildStack {
   public:
    ChildStack();
    ~ChildStack();
    ChildStack(const ChildStack&) = delete;
    ChildStack& operator=(const ChildStack&) = delete;
    void* top() const {
      return base_ == nullptr ? nullptr : static_cast<char*>(base_) + page_ + kBytes;
    }
    int error() const { return error_; }

   private:
    static constexpr size_t kBytes = 256 * 1024;  // execvpe's PATH search uses a little of it
    size_t page_ = 0;
    void* base_ = nullptr;
    int error_ = 0;
  };

  struct Child {
    pid_t pid;
    int pidfd;  // -1: none (Reap still finds the process)
    bool spare_leader_on_term;
    std::vector<std::string> spare_on_term;
  };
  bool IsLeader(pid_t pid) const;
  // Kills, and reaps once dead, the children of this process in session `sid` other than its
  // leader, until none is left (for at most about a second).
  void KillOrphans(pid_t sid);
  // Reaps ended orphans of running jobs; kills orphans of ended jobs and escaped ones, and the
  // leftovers of the jobs whose leaders are `ended` (zombies not yet reaped).
  void TidyOrphans(const std::vector<pid_t>& ended);

  // Closes the child's pidfd, which also takes it out of exit_fd_.
  static void ForgetPidfd(const Child& child);

  std::vector<Child> children_;
  // Read once, not per start: this process's pid, its session, and /dev/null for the jobs'
  // stdin (-1 if it cannot be opened: a job then inherits the agent's).
  const pid_t own_pid_;
  const pid_t own_session_;
  const int null_fd_;
  int exit_fd_ = -1;
  ChildStack child_stack_;
};

// Sends `signal` to every process whose session id is `sid`, skipping `except` (0: none) and
// processes whose command name is in `spare`. Returns how many live (non-zombie) processes it
// signalled.
int SignalSession(pid_t sid, int signal, pid_t except = 0,
                  const std::vector<std::string>& spare = {});

}  // namespace vitscale::worker
