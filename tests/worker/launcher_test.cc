#include "worker/launcher.h"

#include <gtest/gtest.h>
#include <signal.h>
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
  Expected<pid_t> second = launcher_.Start(Shell("echo again"));
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(WaitExit(*second));
  EXPECT_EQ(Log(), "out\nerr\n" + dir_.string() + "\nagain\n");
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
