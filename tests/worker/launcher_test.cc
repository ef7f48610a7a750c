#include "worker/launcher.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <thread>

#include "common/files.h"

namespace vitscale::worker {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

class LauncherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("vitscale-launcher-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  LaunchRequest Shell(const std::string& script, const std::string& log = "logs/a/attempt-1.log") {
    LaunchRequest request;
    request.argv = {"/bin/sh", "-c", script};
    request.log_path = (dir_ / log).string();
    request.work_dir = dir_.string();
    return request;
  }

  // Reaps until `pid` ends or `timeout` passes.
  std::optional<ProcessExit> WaitExit(pid_t pid, milliseconds timeout = milliseconds(10000)) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      for (const ProcessExit& exit : launcher_.Reap()) {
        if (exit.pid == pid) return exit;
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
    return std::nullopt;
  }

  // Waits until the session holds at least `count` live processes.
  bool WaitForSession(pid_t sid, int count) {
    for (int i = 0; i < 500; ++i) {
      if (SignalSession(sid, 0) >= count) return true;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return false;
  }

  std::string Log(const std::string& log = "logs/a/attempt-1.log") {
    Expected<std::string> text = ReadFile((dir_ / log).string());
    return text.ok() ? *text : "";
  }

  fs::path dir_;
  ProcessLauncher launcher_;
};

TEST_F(LauncherTest, ReportsTheExitCodeAndAppendsOutputToTheLog) {
  ASSERT_TRUE(WriteFileAtomically((dir_ / "seed").string(), "").ok());
  Expected<pid_t> first = launcher_.Start(Shell("echo out; echo err >&2; pwd; exit 3"));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  std::optional<ProcessExit> exit = WaitExit(*first);
  ASSERT_TRUE(exit);
  EXPECT_FALSE(exit->signaled);
  EXPECT_EQ(exit->exit_code, 3);
  EXPECT_EQ(exit->ShellStatus(), 3);
  LaunchRequest again = Shell("echo again");
  again.log_header = "header of the second\n";
  Expected<pid_t> second = launcher_.Start(again);
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(WaitExit(*second));
  EXPECT_EQ(Log(), "out\nerr\n" + dir_.string() + "\nheader of the second\nagain\n");
  // Made with its folder, readable by its owner only, whatever the umask.
  EXPECT_EQ(fs::status(dir_ / "logs/a/attempt-1.log").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
}

// The exit descriptor is readable exactly while an ended process waits to be reaped: not while
// its jobs run, at once when one ends, and no longer once Reap() has reported it.
TEST_F(LauncherTest, TheExitDescriptorIsReadableWhileAnEndedJobWaitsForReap) {
  ASSERT_GE(launcher_.ExitFd(), 0);
  auto readable = [&](int timeout_ms) {
    pollfd fd{launcher_.ExitFd(), POLLIN, 0};
    return ::poll(&fd, 1, timeout_ms) == 1 && (fd.revents & POLLIN) != 0;
  };
  Expected<pid_t> running = launcher_.Start(Shell("sleep 30"));
  ASSERT_TRUE(running.ok());
  EXPECT_FALSE(readable(200)) << "nothing has ended";
  Expected<pid_t> quick = launcher_.Start(Shell("exit 4", "logs/b/attempt-1.log"));
  ASSERT_TRUE(quick.ok());
  ASSERT_TRUE(readable(10000)) << "a process that ended must wake the caller";
  EXPECT_TRUE(readable(0)) << "still readable until reaped";
  std::vector<ProcessExit> exits = launcher_.Reap();
  ASSERT_EQ(exits.size(), 1u);
  EXPECT_EQ(exits[0].pid, *quick);
  EXPECT_EQ(exits[0].exit_code, 4);
  EXPECT_FALSE(readable(0)) << "reaped: nothing left to wake for";
  ASSERT_TRUE(launcher_.Signal(*running, SIGKILL).ok());
  ASSERT_TRUE(readable(10000));
  ASSERT_TRUE(WaitExit(*running).has_value());
  EXPECT_FALSE(readable(0));
}

TEST_F(LauncherTest, AProgramThatCannotRunIsAnErrorAndSaysSoInTheLog) {
  LaunchRequest request = Shell("");
  request.argv = {(dir_ / "no-such-trainer").string(), "--spec", "x"};
  Expected<pid_t> pid = launcher_.Start(request);
  ASSERT_FALSE(pid.ok());
  EXPECT_EQ(pid.status().code(), StatusCode::kIOError);
  EXPECT_NE(pid.status().message().find("no-such-trainer"), std::string::npos);
  EXPECT_NE(Log().find("No such file or directory"), std::string::npos) << Log();
  EXPECT_TRUE(launcher_.Reap().empty());
}

TEST_F(LauncherTest, SigtermReachesEveryProcessOfTheSession) {
  Expected<pid_t> pid = launcher_.Start(Shell("sleep 30 & sleep 30 & wait"));
  ASSERT_TRUE(pid.ok());
  ASSERT_TRUE(WaitForSession(*pid, 3));
  EXPECT_EQ(::getsid(*pid), *pid);  // a session of its own
  ASSERT_TRUE(launcher_.Signal(*pid, SIGTERM).ok());
  std::optional<ProcessExit> exit = WaitExit(*pid, milliseconds(3000));
  ASSERT_TRUE(exit);
  EXPECT_TRUE(exit->signaled);
  EXPECT_EQ(exit->signal, SIGTERM);
  EXPECT_EQ(exit->ShellStatus(), 128 + SIGTERM);
  EXPECT_EQ(SignalSession(*pid, 0), 0);
}

TEST_F(LauncherTest, AJobThatTrapsSigtermExitsWithItsOwnStatus) {
  Expected<pid_t> pid = launcher_.Start(Shell("trap 'echo saving; exit 75' TERM; sleep 30 & wait"));
  ASSERT_TRUE(pid.ok());
  ASSERT_TRUE(WaitForSession(*pid, 2));
  ASSERT_TRUE(launcher_.Signal(*pid, SIGTERM).ok());
  std::optional<ProcessExit> exit = WaitExit(*pid, milliseconds(3000));
  ASSERT_TRUE(exit);
  EXPECT_FALSE(exit->signaled);
  EXPECT_EQ(exit->exit_code, 75);
  EXPECT_NE(Log().find("saving"), std::string::npos);
}

// mpirun's ssh connections to other hosts' daemons must outlive a preemption's SIGTERM: killed,
// they make mpirun abort the job before the ranks can checkpoint. Here a sleep named
// "ssh" (a link to sleep) stands in for one.
TEST_F(LauncherTest, SigtermSparesTheLeaderAndTheNamedPrograms) {
  fs::create_symlink("/bin/sleep", dir_ / "ssh");  // its command name is "ssh"
  LaunchRequest request = Shell("'" + (dir_ / "ssh").string() + "' 30 & sleep 30 & wait");
  request.spare_leader_on_term = true;
  request.spare_on_term = {"ssh"};
  Expected<pid_t> pid = launcher_.Start(request);
  ASSERT_TRUE(pid.ok());
  ASSERT_TRUE(WaitForSession(*pid, 3));
  // A forked child of the shell is named "sh" until it execs: wait for the name.
  for (int i = 0; i < 500 && SignalSession(*pid, 0) - SignalSession(*pid, 0, 0, {"ssh"}) != 1;
       ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_TRUE(launcher_.Signal(*pid, SIGTERM).ok());
  EXPECT_FALSE(WaitExit(*pid, milliseconds(500)));
  EXPECT_EQ(SignalSession(*pid, 0), 2) << "the shell and the spared program still run";
  ASSERT_TRUE(launcher_.Signal(*pid, SIGKILL).ok());
  ASSERT_TRUE(WaitExit(*pid, milliseconds(3000)));
  EXPECT_EQ(SignalSession(*pid, 0), 0);
}

TEST_F(LauncherTest, SigkillEndsAJobThatIgnoresSigterm) {
  Expected<pid_t> pid = launcher_.Start(Shell("trap '' TERM; sleep 30 & sleep 30; wait"));
  ASSERT_TRUE(pid.ok());
  ASSERT_TRUE(WaitForSession(*pid, 3));
  ASSERT_TRUE(launcher_.Signal(*pid, SIGTERM).ok());
  EXPECT_FALSE(WaitExit(*pid, milliseconds(300)));  // the grace: still running
  EXPECT_EQ(SignalSession(*pid, 0), 3);
  ASSERT_TRUE(launcher_.Signal(*pid, SIGKILL).ok());
  std::optional<ProcessExit> exit = WaitExit(*pid, milliseconds(3000));
  ASSERT_TRUE(exit);
  EXPECT_TRUE(exit->signaled);
  EXPECT_EQ(exit->signal, SIGKILL);
  EXPECT_EQ(SignalSession(*pid, 0), 0);
}

TEST_F(LauncherTest, WhatALeaderLeavesBehindDiesWithIt) {
  Expected<pid_t> pid = launcher_.Start(Shell("sleep 30 & echo $! > straggler; exit 0"));
  ASSERT_TRUE(pid.ok());
  std::optional<ProcessExit> exit = WaitExit(*pid);
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->exit_code, 0);
  EXPECT_EQ(SignalSession(*pid, 0), 0);
}

// The agent ignores and blocks signals of its own, and may inherit ignored ones, even of the
// real-time signals glibc keeps for itself (a CI runner left 32 and 33 ignored); a job starts
// with none ignored or blocked.
TEST_F(LauncherTest, AJobStartsWithDefaultSignalDispositions) {
  struct sigaction ignore {
  }, previous_action{};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGUSR1, &ignore, &previous_action), 0);
  // The kernel's own sigaction, whose handler comes first on these architectures; glibc's
  // sigaction() refuses signal 32.
#if defined(__x86_64__) || defined(__aarch64__)
  struct KernelSigaction {
    void* handler;
    unsigned long flags;
    void* restorer;
    unsigned long mask;
  } ignore_32{reinterpret_cast<void*>(SIG_IGN), 0, nullptr, 0}, previous_32{};
  ASSERT_EQ(::syscall(SYS_rt_sigaction, 32, &ignore_32, &previous_32, sizeof(unsigned long)), 0);
#endif
  sigset_t usr2, previous_mask;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  ASSERT_EQ(::pthread_sigmask(SIG_BLOCK, &usr2, &previous_mask), 0);
  LaunchRequest request = Shell("");
  request.argv = {"/bin/cat", "/proc/self/status"};
  Expected<pid_t> pid = launcher_.Start(request);
  ::pthread_sigmask(SIG_SETMASK, &previous_mask, nullptr);
  ::sigaction(SIGUSR1, &previous_action, nullptr);
#if defined(__x86_64__) || defined(__aarch64__)
  ::syscall(SYS_rt_sigaction, 32, &previous_32, nullptr, sizeof(unsigned long));
#endif
  ASSERT_TRUE(pid.ok());
  ASSERT_TRUE(WaitExit(*pid));
  EXPECT_NE(Log().find("SigBlk:\t0000000000000000\n"), std::string::npos) << Log();
  EXPECT_NE(Log().find("SigIgn:\t0000000000000000\n"), std::string::npos) << Log();
}

// A leftover whose parent still lives when the leader ends is no child of the launcher's process
// yet: it becomes one when its parent is killed, and is killed in turn.
TEST_F(LauncherTest, WhatALeaderLeavesBehindDiesWithItDownToGrandchildren) {
  Expected<pid_t> pid =
      launcher_.Start(Shell("sh -c 'sleep 30 & echo $! > grandchild; sleep 30' & echo $! > child; "
                            "while [ ! -s grandchild ]; do sleep 0.01; done; exit 0"));
  ASSERT_TRUE(pid.ok());
  std::optional<ProcessExit> exit = WaitExit(*pid);
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->exit_code, 0);
  EXPECT_EQ(SignalSession(*pid, 0), 0);
  for (const char* file : {"child", "grandchild"}) {
    Expected<std::string> leftover = ReadFile((dir_ / file).string());
    ASSERT_TRUE(leftover.ok());
    EXPECT_FALSE(fs::exists("/proc/" + std::to_string(std::stoi(*leftover)))) << file;
  }
}

// Reads the pid a job wrote to `file`, waiting for it.
pid_t PidFrom(const fs::path& file) {
  for (int i = 0; i < 500; ++i) {
    Expected<std::string> text = ReadFile(file.string());
    if (text.ok() && !text->empty() && text->back() == '\n') return std::stoi(*text);
    std::this_thread::sleep_for(milliseconds(10));
  }
  return 0;
}

// Waits until `pid` no longer exists, not even as a zombie, calling Reap() meanwhile.
bool ReapedWhileWaiting(ProcessLauncher& launcher, pid_t pid) {
  for (int i = 0; i < 300; ++i) {
    launcher.Reap();
    if (!fs::exists("/proc/" + std::to_string(pid))) return true;
    std::this_thread::sleep_for(milliseconds(10));
  }
  return false;
}

// Orphans of a running job are re-parented to the launcher's process: one that ends is reaped
// (no zombie piles up), one that left the job's session is killed; the job runs on.
TEST_F(LauncherTest, OrphansOfARunningJobAreReapedAndEscapedOnesKilled) {
  Expected<pid_t> pid = launcher_.Start(
      Shell("(sleep 0.2 & echo $! > ended) ; (setsid sleep 30 & echo $! > escaped) ; "
            "sleep 30"));
  ASSERT_TRUE(pid.ok());
  pid_t ended = PidFrom(dir_ / "ended");
  pid_t escaped = PidFrom(dir_ / "escaped");
  ASSERT_GT(ended, 0);
  ASSERT_GT(escaped, 0);
  EXPECT_TRUE(ReapedWhileWaiting(launcher_, ended));
  EXPECT_TRUE(ReapedWhileWaiting(launcher_, escaped));
  EXPECT_EQ(SignalSession(*pid, 0), 2) << "the job's shell and its sleep still run";
  ASSERT_TRUE(launcher_.Signal(*pid, SIGKILL).ok());
  ASSERT_TRUE(WaitExit(*pid));
}

// Children of the process that no job started (a popen, say) are left to their owner.
TEST_F(LauncherTest, ChildrenItDidNotStartAreLeftAlone) {
  pid_t own = ::fork();
  if (own == 0) {
    ::execl("/bin/sh", "sh", "-c", "exit 7", nullptr);
    ::_exit(127);
  }
  ASSERT_GT(own, 0);
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_TRUE(launcher_.Reap().empty());
  int status = 0;
  ASSERT_EQ(::waitpid(own, &status, 0), own) << "Reap() must not have reaped it";
  EXPECT_EQ(WEXITSTATUS(status), 7);
}

TEST_F(LauncherTest, SignalForAnUnknownProcessIsNotFound) {
  EXPECT_EQ(launcher_.Signal(1, SIGTERM).code(), StatusCode::kNotFound);
  EXPECT_EQ(SignalSession(1, 0), 0);  // never the whole machine
}

// The real path: mpirun starts two ranks; the launcher sees mpirun's status.
class MpirunLauncherTest : public LauncherTest {
 protected:
  LaunchRequest Mpirun(const std::string& rank_script) {
    LaunchRequest request = Shell("");
    request.argv = {"mpirun"};
    if (::geteuid() == 0) request.argv.push_back("--allow-run-as-root");
    for (const char* arg : {"--oversubscribe", "-np", "2", "-H", "localhost:2", "/bin/sh", "-c"}) {
      request.argv.push_back(arg);
    }
    request.argv.push_back(rank_script);
    request.spare_leader_on_term = true;
    return request;
  }
};

TEST_F(MpirunLauncherTest, TwoRanksRunAndExitZero) {
  Expected<pid_t> pid = launcher_.Start(Mpirun("echo rank-$OMPI_COMM_WORLD_RANK; exit 0"));
  ASSERT_TRUE(pid.ok()) << pid.status().ToString();
  std::optional<ProcessExit> exit = WaitExit(*pid, milliseconds(30000));
  ASSERT_TRUE(exit);
  EXPECT_FALSE(exit->signaled);
  EXPECT_EQ(exit->exit_code, 0) << Log();
  EXPECT_NE(Log().find("rank-0"), std::string::npos) << Log();
  EXPECT_NE(Log().find("rank-1"), std::string::npos) << Log();
}

TEST_F(MpirunLauncherTest, TheRanksStatusComesBackThroughMpirun) {
  Expected<pid_t> pid = launcher_.Start(Mpirun("exit 78"));
  ASSERT_TRUE(pid.ok());
  std::optional<ProcessExit> exit = WaitExit(*pid, milliseconds(30000));
  ASSERT_TRUE(exit);
  EXPECT_EQ(exit->ShellStatus(), 78) << Log();
}

// Preemption must leave the ranks time to checkpoint: mpirun's own SIGTERM handling would kill
// them about a second later, so the ranks get the signal and mpirun passes their status on.
TEST_F(MpirunLauncherTest, SigtermGivesTheRanksTimeToCheckpointAndExit75) {
  Expected<pid_t> pid = launcher_.Start(
      Mpirun("trap 'sleep 2; echo checkpointed-$OMPI_COMM_WORLD_RANK; exit 75' TERM; "
             "sleep 60 & wait"));
  ASSERT_TRUE(pid.ok());
  ASSERT_TRUE(WaitForSession(*pid, 5));  // mpirun, two ranks, their sleeps
  auto start = Clock::now();
  ASSERT_TRUE(launcher_.Signal(*pid, SIGTERM).ok());
  std::optional<ProcessExit> exit = WaitExit(*pid, milliseconds(15000));
  ASSERT_TRUE(exit);
  EXPECT_GE(Clock::now() - start, milliseconds(1900));
  EXPECT_EQ(exit->ShellStatus(), 75) << Log();
  EXPECT_NE(Log().find("checkpointed-0"), std::string::npos) << Log();
  EXPECT_NE(Log().find("checkpointed-1"), std::string::npos) << Log();
  EXPECT_EQ(SignalSession(*pid, 0), 0);
}

TEST_F(MpirunLauncherTest, SigkillEndsMpirunAndItsRanks) {
  Expected<pid_t> pid = launcher_.Start(Mpirun("trap '' TERM; sleep 60"));
  ASSERT_TRUE(pid.ok());
  ASSERT_TRUE(WaitForSession(*pid, 5));
  ASSERT_TRUE(launcher_.Signal(*pid, SIGKILL).ok());
  std::optional<ProcessExit> exit = WaitExit(*pid, milliseconds(5000));
  ASSERT_TRUE(exit);
  EXPECT_TRUE(exit->signaled);
  EXPECT_EQ(exit->signal, SIGKILL);
  EXPECT_EQ(SignalSession(*pid, 0), 0);
}

}  // namespace
}  // namespace vitscale::worker
