#include "worker/launcher.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace vitscale::worker {
namespace {

struct ProcStat {
  pid_t session = 0;
  char state = '?';
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
  if (close_paren == nullptr) return false;
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

}  // namespace

namespace {

// SIGKILL lands asynchronously, and a process may fork while the scan runs: scan again until
// nothing live is left, for at most about a second.
void KillSession(pid_t sid, pid_t except) {
  for (int round = 0; round < 100 && SignalSession(sid, SIGKILL, except) > 0; ++round) {
    ::usleep(10000);
  }
}

// The agent's environment with `overrides` (NAME=value) replacing or adding entries; built
// before fork, because setenv is not safe in the child of a multi-threaded process.
std::vector<std::string> MergedEnvironment(const std::vector<std::string>& overrides) {
  auto name_of = [](const std::string& entry) { return entry.substr(0, entry.find('=')); };
  std::vector<std::string> merged;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string text = *entry;
    bool replaced = std::any_of(overrides.begin(), overrides.end(), [&](const std::string& o) {
      return name_of(o) == name_of(text);
    });
    if (!replaced) merged.push_back(std::move(text));
  }
  merged.insert(merged.end(), overrides.begin(), overrides.end());
  return merged;
}

}  // namespace

int SignalSession(pid_t sid, int signal, pid_t except) {
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
    if (::kill(static_cast<pid_t>(pid), signal) == 0 && stat.state != 'Z') ++signalled;
  }
  ::closedir(dir);
  return signalled;
}

Expected<pid_t> ProcessLauncher::Start(const LaunchRequest& request) {
  if (request.argv.empty()) return InvalidArgument("launch request has an empty command line");
  std::error_code ec;
  std::filesystem::path log_path(request.log_path);
  if (log_path.has_parent_path()) std::filesystem::create_directories(log_path.parent_path(), ec);
  if (ec)
    return IOError("cannot create the directory of log " + request.log_path + ": " + ec.message());
  int log_fd = ::open(request.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return ErrnoStatus("cannot open log " + request.log_path);
  // The child reports a failed exec through this pipe; a successful exec closes it empty.
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    ::close(log_fd);
    return ErrnoStatus("cannot create a pipe");
  }
  // Everything the child needs is built before fork: after it, only system calls.
  std::vector<char*> argv;
  for (const std::string& arg : request.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> environment = MergedEnvironment(request.environment);
  std::vector<char*> envp;
  for (std::string& entry : environment) envp.push_back(entry.data());
  envp.push_back(nullptr);
  const char* work_dir = request.work_dir.empty() ? nullptr : request.work_dir.c_str();
  pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) {
    Status status = ErrnoStatus("cannot fork");
    ::close(log_fd);
    ::close(report[0]);
    ::close(report[1]);
    return status;
  }
  if (pid == 0) {
    ::setsid();
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the agent died before the line above
    // The agent blocks or handles these; the job starts with the defaults.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD, SIGUSR1, SIGUSR2})
      ::signal(s, SIG_DFL);
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    int error = 0;
    if (work_dir != nullptr && ::chdir(work_dir) != 0) {
      error = errno;
    } else {
      ::execvpe(argv[0], argv.data(), envp.data());
      error = errno;
    }
    ssize_t ignored = ::write(report[1], &error, sizeof(error));
    (void)ignored;
    ::_exit(127);
  }
  ::close(report[1]);
  int child_error = 0;
  ssize_t n;
  do {
    n = ::read(report[0], &child_error, sizeof(child_error));
  } while (n < 0 && errno == EINTR);
  ::close(report[0]);
  if (n == static_cast<ssize_t>(sizeof(child_error))) {
    ::waitpid(pid, nullptr, 0);
    std::string message = fmt::format("cannot run '{}'{}: {}", request.argv[0],
                                      work_dir ? fmt::format(" in {}", request.work_dir) : "",
                                      std::strerror(child_error));
    std::string line = "vitscale-agent: " + message + "\n";
    ssize_t ignored = ::write(log_fd, line.data(), line.size());
    (void)ignored;
    ::close(log_fd);
    return IOError(message);
  }
  ::close(log_fd);
  children_.push_back({pid, request.spare_leader_on_term});
  return pid;
}

Status ProcessLauncher::Signal(pid_t pid, int signal) {
  auto child = std::find_if(children_.begin(), children_.end(),
                            [pid](const Child& c) { return c.pid == pid; });
  if (child == children_.end()) return NotFound(fmt::format("no job process {} to signal", pid));
  if (signal == SIGTERM && child->spare_leader_on_term) {
    // Before mpirun has started its ranks there is no one else to tell: then it gets it.
    if (SignalSession(pid, SIGTERM, /*except=*/pid) == 0) ::kill(pid, SIGTERM);
    return Status::Ok();
  }
  if (signal == SIGKILL) {
    KillSession(pid, /*except=*/0);
    return Status::Ok();
  }
  SignalSession(pid, signal);
  return Status::Ok();
}

std::vector<ProcessExit> ProcessLauncher::Reap() {
  std::vector<ProcessExit> exits;
  for (auto it = children_.begin(); it != children_.end();) {
    siginfo_t info;
    std::memset(&info, 0, sizeof(info));
    // Look without reaping first: while the leader is a zombie its pid (the session id) cannot
    // be reused, so killing what it left in its session cannot hit a stranger.
    int rc = ::waitid(P_PID, static_cast<id_t>(it->pid), &info, WEXITED | WNOHANG | WNOWAIT);
    if (rc != 0 || info.si_pid != it->pid) {
      if (rc != 0 && errno == ECHILD) {
        it = children_.erase(it);  // reaped elsewhere: nothing to report
      } else {
        ++it;
      }
      continue;
    }
    KillSession(it->pid, /*except=*/it->pid);
    int status = 0;
    ::waitpid(it->pid, &status, 0);
    ProcessExit exit;
    exit.pid = it->pid;
    exit.signaled = WIFSIGNALED(status);
    exit.signal = exit.signaled ? WTERMSIG(status) : 0;
    exit.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
    exits.push_back(exit);
    it = children_.erase(it);
  }
  return exits;
}

}  // namespace vitscale::worker
