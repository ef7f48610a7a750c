// A writer killed with SIGKILL in the middle of a metric batch leaves a database that opens,
// passes integrity_check, and holds whole batches only.
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>

#include "storage/store.h"
#include "tests/storage/test_util.h"

namespace vitscale::storage {
namespace {

using testing::MakeJob;
using testing::TempDir;

constexpr int kBatchSize = 200000;

// The child: appends batch after batch, telling the parent on `report` when each begins ('b')
// and ends ('e'). Never returns.
[[noreturn]] void WriteBatchesForever(const std::string& path, const std::string& job_id,
                                      int report) {
  auto store = Store::Open(path);
  if (!store.ok()) _exit(2);
  // Steps continue from the points already there, so that all rounds form one curve.
  auto first = (*store)->CountMetrics(job_id);
  if (!first.ok()) _exit(2);
  std::vector<MetricPoint> batch(kBatchSize);
  for (int64_t round = 0;; ++round) {
    for (int i = 0; i < kBatchSize; ++i) {
      batch[i] = {*first + round * kBatchSize + i, i % 2 ? "train/loss" : "lr", 1.0 / (i + 1),
                  0.5 * i};
    }
    if (::write(report, "b", 1) != 1) _exit(3);
    if (!(*store)->AppendMetrics(job_id, 1, batch).ok()) _exit(4);
    if (::write(report, "e", 1) != 1) _exit(3);
  }
}

std::string IntegrityCheck(const std::string& path) {
  sqlite3* db = nullptr;
  sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* stmt = nullptr;
  std::string result = "cannot run integrity_check";
  if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, nullptr) == SQLITE_OK &&
      sqlite3_step(stmt) == SQLITE_ROW) {
    result = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return result;
}

TEST(CrashTest, SigkillDuringBatchLeavesWholeBatchesOnly) {
  TempDir dir;
  std::string path = dir.File("crash.db");
  JobRecord job = MakeJob("ViT-Ti/7", "fashion-mnist", 60000, 10);
  {
    auto store = Store::Open(path);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    ASSERT_TRUE((*store)->AddSweep("crash", "d", {job}).ok());
    ASSERT_TRUE((*store)->AddAttempt(job.id, std::nullopt, "localhost:1").ok());
  }  // closed before fork: a connection must not cross fork()

  unsigned seed = std::random_device{}();
  std::mt19937 random(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  constexpr int kKills = 4;
  int killed_mid_batch = 0;
  int64_t previous = 0;
  // How long one batch takes here, measured as the writer runs; a first guess until then.
  std::chrono::duration<double> batch_time = std::chrono::milliseconds(300);
  for (int kill = 0; kill < kKills; ++kill) {
    int pipe_fds[2];
    ASSERT_EQ(::pipe(pipe_fds), 0);
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::close(pipe_fds[0]);
      WriteBatchesForever(path, job.id, pipe_fds[1]);
    }
    ::close(pipe_fds[1]);
    // Let 0-2 batches commit, then kill at a random moment within about one batch's time.
    std::uniform_int_distribution<int> whole_batches(0, 2);
    int wait_for = whole_batches(random);
    char mark = 0;
    auto batch_start = std::chrono::steady_clock::now();
    for (int ended = 0; ended <= wait_for;) {
      ASSERT_EQ(::read(pipe_fds[0], &mark, 1), 1);
      if (mark == 'b') batch_start = std::chrono::steady_clock::now();
      if (mark == 'e') {
        batch_time = std::chrono::steady_clock::now() - batch_start;
        ++ended;
      }
      if (mark == 'b' && ended == wait_for) break;
    }
    std::uniform_real_distribution<double> fraction(0.0, 1.2);
    std::this_thread::sleep_for(batch_time * fraction(random));
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer exited by itself with " << WEXITSTATUS(status);
    // The last mark tells whether the kill landed inside AppendMetrics.
    while (::read(pipe_fds[0], &mark, 1) == 1) {
    }
    ::close(pipe_fds[0]);
    killed_mid_batch += mark == 'b';

    EXPECT_EQ(IntegrityCheck(path), "ok");
    auto store = Store::Open(path);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    auto count = (*store)->CountMetrics(job.id);
    ASSERT_TRUE(count.ok()) << count.status().ToString();
    EXPECT_EQ(*count % kBatchSize, 0) << "a torn batch: " << *count << " points";
    EXPECT_GE(*count, previous);
    previous = *count;
    // The points kept are whole batches in step order: the last one ends the last batch.
    auto tail = (*store)->ReadMetrics(job.id, *count - 2);
    ASSERT_TRUE(tail.ok());
    if (*count > 0) {
      ASSERT_EQ(tail->size(), 1u);
      EXPECT_EQ(tail->back().name, "train/loss");
    }
  }
  std::printf(
      "[ crash    ] %d kills, %d inside a batch, %lld points kept, %.0f ms a batch "
      "of %d (seed %u)\n",
      kKills, killed_mid_batch, static_cast<long long>(previous), 1000 * batch_time.count(),
      kBatchSize, seed);
  EXPECT_GE(killed_mid_batch, 1) << "no kill landed inside a batch; the test proved nothing";
}

}  // namespace
}  // namespace vitscale::storage
