#include "worker/launcher.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

namespace vitscale::worker {
namespace {

struct ProcStat {
  pid_t session = 0;
  char state = '?';
  std::string name;  // the command name (/proc/<pid>/comm), at most 15 bytes
};

// Fields 3 (state) and 6 (session) of /proc/<pid>/stat; the command name (field 2) may hold
// spaces and parentheses, so parsing starts after its last ')'.
bool ReadProcStat(pid_t pid, ProcStat& out) {
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buffer[1024];
  ssize_t n = ::read(fd, buffer, sizeof(buffer) - 1);
  ::close(fd);
  if (n <= 0) return false;
  buffer[n] = '\0';
  char* close_paren = std::strrchr(buffer, ')');
  char* open_paren = std::strchr(buffer, '(');
  if (close_paren == nullptr || open_paren == nullptr || open_paren > close_paren) return false;
  out.name.assign(open_paren + 1, close_paren);
  char state = 0;
  int ppid = 0, pgrp = 0, session = 0;
  if (std::sscanf(close_paren + 1, " %c %d %d %d", &state, &ppid, &pgrp, &session) != 4) {
    return false;
  }
  out.state = state;
  out.session = session;
  return true;
}

Status ErrnoStatus(const std::string& what) { return IOError(what + ": " + std::strerror(errno)); }

// Creates `dir` and any missing parents. A job's log folder is new and its parent exists: one
// mkdir, where create_directories first stats the folder and each parent it walks up to.
Status MakeDirectory(const std::filesystem::path& dir) {
  if (::mkdir(dir.c_str(), 0777) == 0 || errno == EEXIST) return Status::Ok();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return IOError("cannot create the folder " + dir.string() + ": " + ec.message());
  return Status::Ok();
}

}  // namespace

namespace {

// SIGKILL lands asynchronously, and a process may fork while the scan runs: scan again until
// nothing live is left, for at most about a second.
void KillSession(pid_t sid, pid_t except) {
  for (int round = 0; round < 100 && SignalSession(sid, SIGKILL, except) > 0; ++round) {
    ::usleep(10000);
  }
}

// The children of this process: each thread lists those it forked, and orphans re-parented to
// a subreaper go to one of its threads.
std::vector<pid_t> OwnChildren() {
  std::vector<pid_t> children;
  DIR* tasks = ::opendir("/proc/self/task");
  if (tasks == nullptr) return children;
  while (dirent* entry = ::readdir(tasks)) {
    if (entry->d_name[0] == '.') continue;
    std::string path = std::string("/proc/self/task/") + entry->d_name + "/children";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    std::string text;
    char buffer[512];
    ssize_t n;
    while ((n = ::read(fd, buffer, sizeof(buffer))) > 0) text.append(buffer, n);
    ::close(fd);
    const char* p = text.c_str();
    char* end = nullptr;
    for (long pid = std::strtol(p, &end, 10); end != p; pid = std::strtol(p, &end, 10)) {
      children.push_back(static_cast<pid_t>(pid));
      p = end;
    }
  }
  ::closedir(tasks);
  return children;
}

// The agent's environment with `overrides` (NAME=value) replacing or adding entries; built
// before fork, because setenv is not safe in the child of a multi-threaded process.
std::vector<std::string> MergedEnvironment(const std::vector<std::string>& overrides) {
  auto name_of = [](const std::string& entry) { return entry.substr(0, entry.find('=')); };
  std::vector<std::string> merged;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string text = *entry;
    bool replaced = std::any_of(overrides.begin(), overrides.end(),
                                [&](const std::string& o) { return name_of(o) == name_of(text); });
    if (!replaced) merged.push_back(std::move(text));
  }
  merged.insert(merged.end(), overrides.begin(), overrides.end());
  return merged;
}

// What the child of Start() needs. It runs in the agent's memory until it execs (vfork
// semantics), so it only makes system calls and sets `error`.
struct ChildSetup {
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  const char* work_dir = nullptr;  // nullptr: the agent's
  int log_fd = -1;
  int null_fd = -1;
  pid_t parent = 0;
  int error = 0;  // why the program could not be run; 0 after a successful exec
};

int RunChild(void* arg) {
  ChildSetup& setup = *static_cast<ChildSetup*>(arg);
  ::setsid();
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != setup.parent) ::_exit(127);  // the agent died before the line above
  // Every signal starts with its default action, and no handler of the agent may run here, in
  // the agent's memory: SpawnChild blocked them all, and they are unblocked only after this.
  // The raw system call also reaches the two real-time signals glibc keeps for itself and
  // refuses in sigaction(): a parent may have left them ignored, and an ignored signal survives
  // exec. An all-zero kernel sigaction is SIG_DFL with no flags on every architecture.
  static const char kDefaultAction[64] = {};
  for (int s = 1; s < NSIG; ++s) {
    if (s != SIGKILL && s != SIGSTOP) {
      ::syscall(SYS_rt_sigaction, s, kDefaultAction, nullptr, (NSIG - 1) / 8);
    }
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (setup.null_fd >= 0) ::dup2(setup.null_fd, STDIN_FILENO);
  ::dup2(setup.log_fd, STDOUT_FILENO);
  ::dup2(setup.log_fd, STDERR_FILENO);
  if (setup.work_dir != nullptr && ::chdir(setup.work_dir) != 0) {
    setup.error = errno;
  } else {
    ::execvpe(setup.argv[0], setup.argv, setup.envp);
    setup.error = errno;
  }
  ::_exit(127);
}

// Starts RunChild(setup) as a new process that shares this one's memory, on the stack whose top
// is `stack_top`, and returns once it has exec'd or exited (CLONE_VFORK), as posix_spawn does.
// Unlike fork,
// nothing of the agent's memory is copied, which made starting a job the agent's largest cost
// (docs/benchmarks.md); unlike posix_spawn, the child can set its parent-death signal.
Expected<pid_t> SpawnChild(ChildSetup& setup, void* stack_top) {
  sigset_t all, previous;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &previous);
  pid_t pid = ::clone(RunChild, stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD, &setup);
  int clone_error = errno;
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (pid < 0) {
    errno = clone_error;
    return ErrnoStatus("cannot start a process");
  }
  return pid;
}

}  // namespace

// A stack for the child of SpawnChild: one mapping, reused by every start. CLONE_VFORK returns
// only once the child has exec'd or exited, so no two children use it at once; mapping and
// unmapping it per start cost as much as the clone itself.
ProcessLauncher::ChildStack::ChildStack() {
  page_ = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  void* mapped = ::mmap(nullptr, kBytes + page_, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (mapped == MAP_FAILED) {
    error_ = errno;
    return;
  }
  ::mprotect(mapped, page_, PROT_NONE);  // a guard below the stack, which grows down
  base_ = mapped;
}

ProcessLauncher::ChildStack::~ChildStack() {
  if (base_ != nullptr) ::munmap(base_, kBytes + page_);
}

int SignalSession(pid_t sid, int signal, pid_t except, const std::vector<std::string>& spare) {
  if (sid <= 1) return 0;  // never the whole machine
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return 0;
  int signalled = 0;
  while (dirent* entry = ::readdir(dir)) {
    char* end = nullptr;
    long pid = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || pid <= 0 || pid == except) continue;
    ProcStat stat;
    if (!ReadProcStat(static_cast<pid_t>(pid), stat) || stat.session != sid) continue;
    if (std::find(spare.begin(), spare.end(), stat.name) != spare.end()) continue;
    if (::kill(static_cast<pid_t>(pid), signal) == 0 && stat.state != 'Z') ++signalled;
  }
  ::closedir(dir);
  return signalled;
}

ProcessLauncher::ProcessLauncher()
    : own_pid_(::getpid()),
      own_session_(::getsid(0)),
      null_fd_(::open("/dev/null", O_RDONLY | O_CLOEXEC)),
      exit_fd_(::epoll_create1(EPOLL_CLOEXEC)) {
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
}

ProcessLauncher::~ProcessLauncher() {
  for (const Child& child : children_) ForgetPidfd(child);
  if (exit_fd_ >= 0) ::close(exit_fd_);
  if (null_fd_ >= 0) ::close(null_fd_);
}

void ProcessLauncher::ForgetPidfd(const Child& child) {
  if (child.pidfd >= 0) ::close(child.pidfd);
}

Expected<pid_t> ProcessLauncher::Start(const LaunchRequest& request) {
  if (request.argv.empty()) return InvalidArgument("launch request has an empty command line");
  if (child_stack_.top() == nullptr) {
    errno = child_stack_.error();
    return ErrnoStatus("cannot map a stack to start a process");
  }
  std::filesystem::path log_path(request.log_path);
  if (log_path.has_parent_path()) RETURN_IF_ERROR(MakeDirectory(log_path.parent_path()));
  int log_fd = ::open(request.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) return ErrnoStatus("cannot open log " + request.log_path);
  if (!request.log_header.empty() &&
      ::write(log_fd, request.log_header.data(), request.log_header.size()) !=
          static_cast<ssize_t>(request.log_header.size())) {
    Status status = ErrnoStatus("cannot write log " + request.log_path);
    ::close(log_fd);
    return status;
  }
  // Everything the child needs is built before it starts: it may only make system calls.
  std::vector<char*> argv;
  for (const std::string& arg : request.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> environment = MergedEnvironment(request.environment);
  std::vector<char*> envp;
  for (std::string& entry : environment) envp.push_back(entry.data());
  envp.push_back(nullptr);
  ChildSetup setup;
  setup.argv = argv.data();
  setup.envp = envp.data();
  setup.work_dir = request.work_dir.empty() ? nullptr : request.work_dir.c_str();
  setup.log_fd = log_fd;
  setup.null_fd = null_fd_;
  setup.parent = own_pid_;

  Expected<pid_t> pid = SpawnChild(setup, child_stack_.top());
  if (pid.ok() && setup.error != 0) {
    ::waitpid(*pid, nullptr, 0);
    std::string message = fmt::format("cannot run '{}'{}: {}", request.argv[0],
                                      setup.work_dir ? fmt::format(" in {}", request.work_dir) : "",
                                      std::strerror(setup.error));
    std::string line = "vitscale-agent: " + message + "\n";
    ssize_t ignored = ::write(log_fd, line.data(), line.size());
    (void)ignored;
    pid = IOError(message);
  }
  ::close(log_fd);
  if (!pid.ok()) return pid;
  // Not reaped before Reap() reaps it, so the pid names this process even if it has ended. A
  // pidfd polls readable once its process has ended; it is opened close-on-exec.
  int pidfd = -1;
  if (exit_fd_ >= 0) {
    pidfd = static_cast<int>(::syscall(SYS_pidfd_open, *pid, 0));
    epoll_event event{};
    event.events = EPOLLIN;
    if (pidfd >= 0 && ::epoll_ctl(exit_fd_, EPOLL_CTL_ADD, pidfd, &event) != 0) {
      ::close(pidfd);
      pidfd = -1;
    }
  }
  children_.push_back({*pid, pidfd, request.spare_leader_on_term, request.spare_on_term});
  return pid;
}

Status ProcessLauncher::Signal(pid_t pid, int signal) {
  auto child = std::find_if(children_.begin(), children_.end(),
                            [pid](const Child& c) { return c.pid == pid; });
  if (child == children_.end()) return NotFound(fmt::format("no job process {} to signal", pid));
  if (signal == SIGTERM && child->spare_leader_on_term) {
    // Before mpirun has started its ranks there is no one else to tell: then it gets it.
    if (SignalSession(pid, SIGTERM, /*except=*/pid, child->spare_on_term) == 0) {
      ::kill(pid, SIGTERM);
    }
    return Status::Ok();
  }
  if (signal == SIGKILL) {
    KillSession(pid, /*except=*/0);
    return Status::Ok();
  }
  SignalSession(pid, signal);
  return Status::Ok();
}

bool ProcessLauncher::IsLeader(pid_t pid) const {
  return std::any_of(children_.begin(), children_.end(),
                     [pid](const Child& c) { return c.pid == pid; });
}

void ProcessLauncher::KillOrphans(pid_t sid) {
  // Killing one orphan re-parents its own children here, so scan until a scan finds none.
  for (int round = 0; round < 100; ++round) {
    int left = 0;
    for (pid_t pid : OwnChildren()) {
      if (IsLeader(pid) || ::getsid(pid) != sid) continue;
      ++left;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, WNOHANG);  // reaped if already dead, else in a later round
    }
    if (left == 0) return;
    ::usleep(10000);
  }
}

void ProcessLauncher::TidyOrphans(const std::vector<pid_t>& ended) {
  // One scan of this process's children per pass, however many jobs ended: the leftovers of an
  // ended job (its leader still a zombie, so its pid, the session id, cannot be reused yet) and
  // orphans of jobs that ended before, or that left their job's session, are killed.
  std::vector<pid_t> killed_in;  // ended jobs whose leftovers were found
  for (pid_t pid : OwnChildren()) {
    if (IsLeader(pid)) continue;
    pid_t sid = ::getsid(pid);
    if (sid < 0 || sid == own_session_) continue;  // gone, or none of the jobs'
    bool of_ended = std::find(ended.begin(), ended.end(), sid) != ended.end();
    // Not in the session of a job that runs: its job ended, or it left its job's session.
    if (of_ended || !IsLeader(sid)) ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, WNOHANG);  // reaped if already dead, else in a later pass
    if (of_ended) killed_in.push_back(sid);
  }
  // Killing one re-parents its own children here: scan those sessions until they are empty.
  std::sort(killed_in.begin(), killed_in.end());
  killed_in.erase(std::unique(killed_in.begin(), killed_in.end()), killed_in.end());
  for (pid_t sid : killed_in) KillOrphans(sid);
}

std::vector<ProcessExit> ProcessLauncher::Reap() {
  // Look without reaping first: while a leader is a zombie its pid (the session id) cannot be
  // reused, so the session's leftovers are told apart from a new job's processes.
  std::vector<pid_t> ended;
  for (auto it = children_.begin(); it != children_.end();) {
    siginfo_t info;
    std::memset(&info, 0, sizeof(info));
    int rc = ::waitid(P_PID, static_cast<id_t>(it->pid), &info, WEXITED | WNOHANG | WNOWAIT);
    if (rc == 0 && info.si_pid == it->pid) {
      ended.push_back(it->pid);
    } else if (rc != 0 && errno == ECHILD) {
      ForgetPidfd(*it);
      it = children_.erase(it);  // reaped elsewhere: nothing to report
      continue;
    }
    ++it;
  }
  TidyOrphans(ended);
  std::vector<ProcessExit> exits;
  for (pid_t pid : ended) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    ProcessExit exit;
    exit.pid = pid;
    exit.signaled = WIFSIGNALED(status);
    exit.signal = exit.signaled ? WTERMSIG(status) : 0;
    exit.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
    exits.push_back(exit);
    auto child = std::find_if(children_.begin(), children_.end(),
                              [pid](const Child& c) { return c.pid == pid; });
    ForgetPidfd(*child);
    children_.erase(child);
  }
  return exits;
}

}  // namespace vitscale::worker
