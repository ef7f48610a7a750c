// Faults of the coordinator's disk while jobs report, with real processes on loopback: the real
// vitscale-coordinator, a real vitscale-agent, and a stand-in trainer (a shell script the agent
// runs) whose reports go through the trainer's own HttpSink, so that the retries tested are the
// ones vitscale-train makes. Each fault is made real: a small tmpfs that fills up, an ext4 image
// that turns read-only after an error, another process holding SQLite's write lock.
//
// What must hold (docs/storage.md, "Faults"): every refused write gets a 5xx naming the cause
// (507 for a full disk) and is logged; nothing is half-written; the coordinator stays up; the
// trainer and the agent send again what was refused, and once the disk is fixed every report is
// stored exactly once (counted in the database, not inferred from the end state).
//
// Mounting needs root (CAP_SYS_ADMIN): without it those tests are skipped and say so.
#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>

#include "tests/coordinator/cluster.h"
#include "trainer/http_sink.h"

namespace vitscale::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kSweep[] = R"(name: faults
recipe: small-images
pretrain:
  dataset: fashion-mnist/0-4
  epochs: 1
  batch_size: 32
  subset_seed: 0
grid:
  model: [ViT-Mu/7]
  subset: [256]
resources:
  ranks: 1
  gpus_per_rank: 0
)";

// A filesystem mounted for the test and unmounted (lazily, so a crashed child cannot block it)
// when it ends.
class Mount {
 public:
  ~Mount() {
    if (!target_.empty()) ::umount2(target_.c_str(), MNT_DETACH);
  }
  // A tmpfs of `size` at `target`; the error when mounting is impossible here.
  std::string Tmpfs(const std::string& target, const std::string& size) {
    std::filesystem::create_directories(target);
    std::string options = "size=" + size + ",mode=0700";
    if (::mount("tmpfs", target.c_str(), "tmpfs", 0, options.c_str()) != 0) {
      return std::string("cannot mount a tmpfs (needs root): ") + std::strerror(errno);
    }
    target_ = target;
    return "";
  }
  // A fresh ext4 image of `megabytes` at `image`, loop-mounted at `target` so that an error
  // turns it read-only (errors=remount-ro).
  std::string Ext4(const std::string& image, const std::string& target, int megabytes) {
    std::filesystem::create_directories(target);
    std::string make = "truncate -s " + std::to_string(megabytes) + "M " + image +
                       " && mkfs.ext4 -q -F " + image + " >/dev/null 2>&1";
    if (std::system(make.c_str()) != 0) return "cannot make an ext4 image (mkfs.ext4)";
    return Remount(image, target);
  }
  // Mounts the ext4 image again (after e2fsck repaired it).
  std::string Remount(const std::string& image, const std::string& target) {
    std::string mount = "mount -o loop,errors=remount-ro " + image + " " + target + " 2>&1";
    if (std::system(mount.c_str()) != 0) return "cannot loop-mount an ext4 image (needs root)";
    target_ = target;
    return "";
  }
  void Unmount() {
    if (!target_.empty()) ::umount2(target_.c_str(), MNT_DETACH);
    target_.clear();
  }

 private:
  std::string target_;
};

// Fills the filesystem of `dir` with a file until the disk is full; deleting it gives the space
// back.
void FillDisk(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0) << path;
  std::vector<char> block(64 << 10, 'x');
  while (::write(fd, block.data(), block.size()) > 0) {
  }
  for (size_t size = 4096; size > 0; size /= 2) {  // the last bytes too
    while (::write(fd, block.data(), size) > 0) {
    }
  }
  ::close(fd);
}

// A row count of the database; -1 (and a test failure) when it cannot be read.
int64_t CountRows(const std::string& db_path, const std::string& sql) {
  std::string rows = DbRows(db_path, sql);
  bool number = !rows.empty() && rows.find_first_not_of("0123456789") == std::string::npos;
  EXPECT_TRUE(number) << sql << ": " << rows;
  return number ? std::stoll(rows) : -1;
}

std::vector<trainer::MetricPoint> Points(int64_t first_step, int count) {
  std::vector<trainer::MetricPoint> points;
  for (int i = 0; i < count; ++i) {
    points.push_back({first_step + i, "loss", 2.0 + 0.001 * i});
  }
  return points;
}

class FaultsTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (agent_) {
      agent_->Signal(SIGKILL);
      agent_->Wait(seconds(10));
    }
    if (HasFailure() && coordinator_) {
      std::fprintf(stderr, "--- coordinator log\n%s\n--- agent log\n%s\n",
                   Slurp(CoordinatorLog()).c_str(), Slurp(dir_.File("agent.log")).c_str());
    }
    sink_.reset();
    coordinator_.reset();
  }

  std::string StateDir() const { return dir_.File("state"); }
  std::string DbPath() const { return StateDir() + "/vitscale.db"; }
  std::string CoordinatorLog() const { return dir_.File("coordinator.log"); }

  // The coordinator over StateDir() (runs and log outside it, on the test's own disk), one agent
  // with one slot whose "trainer" copies its spec out and exits 0 once the file `go` exists,
  // and a one-job sweep; returns when the stand-in trainer runs and its spec is read.
  void StartCluster() {
    std::string runs = dir_.File("runs");
    coordinator_ = std::make_unique<Coordinator>(
        StateDir(), std::vector<std::string>{"--runs-dir", runs, "--lease-seconds", "30"});
    coordinator_->SetLog(CoordinatorLog());
    ASSERT_TRUE(coordinator_->Start());
    client_ = coordinator_->Client();
    std::string trainer = dir_.File("fake-train.sh");
    {
      std::ofstream script(trainer);
      script << "#!/bin/sh\n"
             << "cp \"$2\" " << dir_.File("spec.tmp") << " && mv " << dir_.File("spec.tmp") << " "
             << dir_.File("spec.json") << "\n"
             << "while [ ! -e " << dir_.File("go") << " ]; do sleep 0.05; done\n"
             << "exit 0\n";
    }
    std::filesystem::permissions(trainer, std::filesystem::perms::owner_all);
    std::string work = dir_.File("agent");
    agent_ = std::make_unique<Process>(
        std::vector<std::string>{BinPath("vitscale-agent"), "--coordinator", coordinator_->url(),
                                 "--token-file", coordinator_->AgentTokenFile("host-a"), "--host",
                                 "host-a", "--slots", "1", "--gpus", "0", "--work-dir", work,
                                 "--runs-dir", runs, "--train-command", trainer},
        dir_.File("agent.log"));
    std::vector<std::string> jobs = SubmitSweep(*client_, kSweep);
    ASSERT_EQ(jobs.size(), 1u);
    job_ = jobs[0];
    ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(dir_.File("spec.json")); },
                        seconds(30)))
        << "the agent never ran the stand-in trainer";
    json spec = json::parse(Slurp(dir_.File("spec.json")), nullptr, false);
    ASSERT_TRUE(spec.is_object());
    report_token_ = spec["run"].value("report_token", "");
    attempt_ = spec["run"].value("attempt", 0);
    ASSERT_EQ(attempt_, 1);
    reports_ = coordinator_->ClientWithToken(report_token_);
    auto sink = trainer::HttpSink::Create(coordinator_->url(), report_token_, job_, attempt_);
    ASSERT_TRUE(sink.ok()) << sink.status().ToString();
    sink_ = std::move(sink).value();
    // The agent's poll reported the start; a tick writes it about a second later.
    ASSERT_TRUE(WaitFor([&] { return JobState() == "running"; }, seconds(30))) << JobState();
  }

  std::string ReportPath(const std::string& what) const {
    return "/api/v1/jobs/" + job_ + "/attempts/" + std::to_string(attempt_) + "/" + what;
  }
  // A metric batch posted as the trainer would, bypassing its sink's retries.
  HttpReply PostPoints(int64_t first_step, int count) {
    json points = json::array();
    for (const trainer::MetricPoint& p : Points(first_step, count)) {
      points.push_back({{"step", p.step}, {"name", p.name}, {"value", p.value}});
    }
    return Call(*reports_, "POST", ReportPath("metrics"), json{{"points", points}}.dump());
  }
  std::string JobState() {
    return JsonOf(Call(*client_, "GET", "/api/v1/jobs/" + job_)).value("state", "");
  }
  // Sends the job's results and ledger through the sink (queued; delivered when possible).
  void SendResults() {
    trainer::ComputeLedger ledger;
    ledger.train_flops = 1e9;
    ledger.images_seen = 256;
    ledger.device_kind = "cpu";
    ledger.device_seconds = 1;
    ledger.wall_seconds = 1;
    ASSERT_TRUE(sink_->Final({{"pretrain", "fashion-mnist/0-4", 0, -1, "accuracy", 0.5},
                              {"pretrain", "fashion-mnist/0-4", 0, -1, "loss", 1.5}},
                             ledger)
                    .ok());
  }
  // The stand-in trainer exits 0 (after its reports were delivered, as vitscale-train does).
  void FinishTrainer() { std::ofstream(dir_.File("go")) << "go\n"; }

  // What every fault test ends with: exactly what was reported is stored, once.
  void ExpectStoredOnce(int64_t metric_points) {
    std::string where = " WHERE job_id = '" + job_ + "'";
    EXPECT_EQ(CountRows(DbPath(), "SELECT count(*) FROM metrics" + where), metric_points);
    EXPECT_EQ(CountRows(DbPath(), "SELECT count(*) FROM results" + where), 2);
    EXPECT_EQ(CountRows(DbPath(), "SELECT count(*) FROM compute_ledger" + where), 1);
    EXPECT_EQ(CountRows(DbPath(), "SELECT count(*) FROM attempts" + where), 1);
    EXPECT_EQ(CountRows(DbPath(), "SELECT count(*) FROM attempts" + where +
                                      " AND outcome = 'succeeded'"),
              1);
  }

  TempDir dir_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<HttpClient> client_;
  std::unique_ptr<HttpClient> reports_;
  std::unique_ptr<Process> agent_;
  std::unique_ptr<trainer::HttpSink> sink_;
  std::string job_;
  std::string report_token_;
  int attempt_ = 0;
};

// The disk under the database fills up while the job reports: 507 naming the full disk, the
// coordinator stays up and keeps answering reads, and once space returns the trainer's retries
// store every point and result exactly once.
TEST_F(FaultsTest, ADiskFullRefusesWith507AndTheRetriesLoseNothing) {
  Mount mount;
  std::string why = mount.Tmpfs(StateDir(), "8m");
  if (!why.empty()) GTEST_SKIP() << why;
  StartCluster();
  ASSERT_NE(sink_, nullptr);
  ASSERT_TRUE(sink_->Metrics(Points(0, 10)).ok());
  ASSERT_TRUE(sink_->Flush(seconds(30)).ok());

  FillDisk(StateDir() + "/filler");
  // Big enough that SQLite must grow its files for it, which the full disk refuses.
  HttpReply refused = PostPoints(1000, 5000);
  EXPECT_EQ(refused.status, 507) << refused.body;
  EXPECT_NE(refused.body.find("disk holding the database is full"), std::string::npos)
      << refused.body;
  EXPECT_EQ(CountRows(DbPath(), "SELECT count(*) FROM metrics"), 10) << "nothing half-written";
  // The trainer sends the same batch and its results; both wait in its sink, retried.
  ASSERT_TRUE(sink_->Metrics(Points(1000, 5000)).ok());
  SendResults();
  EXPECT_FALSE(sink_->Flush(seconds(2)).ok()) << "stored although the disk is full";
  EXPECT_TRUE(coordinator_->process().Running());
  EXPECT_EQ(JobState(), "running");  // reads still work

  std::filesystem::remove(StateDir() + "/filler");  // space returns
  ASSERT_TRUE(sink_->Flush(seconds(60)).ok());
  // A batch sent twice (its answer lost, say) is stored once.
  ASSERT_TRUE(sink_->Metrics(Points(1000, 100)).ok());
  ASSERT_TRUE(sink_->Flush(seconds(30)).ok());
  FinishTrainer();
  ASSERT_TRUE(WaitFor([&] { return JobState() == "succeeded"; }, seconds(60))) << JobState();
  ExpectStoredOnce(10 + 5000);
  EXPECT_NE(Slurp(CoordinatorLog()).find("/metrics -> 507"), std::string::npos)
      << "the refusal is logged";
}

// Another process holds SQLite's write lock (a long transaction of a script, a backup): every
// write is answered within a fraction of a second with a 503 instead of stalling the server's one
// thread; reads go on; the trainer's and the agent's retries land once the lock is released.
TEST_F(FaultsTest, ALockedDatabaseIsA503NotAStall) {
  StartCluster();
  ASSERT_NE(sink_, nullptr);
  sqlite3* holder = nullptr;
  ASSERT_EQ(sqlite3_open(DbPath().c_str(), &holder), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(holder, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);

  for (int i = 0; i < 3; ++i) {
    auto start = std::chrono::steady_clock::now();
    HttpReply busy = PostPoints(100 * i, 10);
    auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(busy.status, 503) << busy.body;
    EXPECT_NE(busy.body.find("another process holds the database"), std::string::npos) << busy.body;
    // The server's busy timeout is 100 ms; the old 5 s one stalled every client for that long.
    EXPECT_LT(took, seconds(2)) << "a locked database stalled the server";
  }
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(JobState(), "running");  // a read is not held up by the writer elsewhere
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(2));

  ASSERT_TRUE(sink_->Metrics(Points(0, 50)).ok());
  SendResults();
  EXPECT_FALSE(sink_->Flush(seconds(1)).ok());
  ASSERT_EQ(sqlite3_exec(holder, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  ASSERT_TRUE(sink_->Flush(seconds(30)).ok());

  // The agent's exit report meets the lock: refused, retried, stored once the lock goes.
  ASSERT_EQ(sqlite3_exec(holder, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  FinishTrainer();
  EXPECT_TRUE(WaitFor([&] { return Slurp(CoordinatorLog()).find("/exits -> 503") != std::string::npos; },
                      seconds(30)))
      << "the agent's exit report never met the lock";
  EXPECT_EQ(JobState(), "running");
  ASSERT_EQ(sqlite3_exec(holder, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(holder);
  ASSERT_TRUE(WaitFor([&] { return JobState() == "succeeded"; }, seconds(60))) << JobState();
  ExpectStoredOnce(50);
}

// The filesystem of the database turns read-only under the running coordinator (ext4 does after
// an error): writes get a 5xx naming it, reads go on, nothing crashes. The operator repairs the
// filesystem and restarts the coordinator; the trainer's retries then store everything once,
// with the attempt and its report token intact.
TEST_F(FaultsTest, AReadOnlyFilesystemRefusesWritesAndTheRetriesLandAfterRepair) {
  Mount mount;
  std::string image = dir_.File("state.ext4");
  std::string why = mount.Ext4(image, StateDir(), 32);
  if (!why.empty()) GTEST_SKIP() << why;
  StartCluster();
  ASSERT_NE(sink_, nullptr);
  ASSERT_TRUE(sink_->Metrics(Points(0, 10)).ok());
  ASSERT_TRUE(sink_->Flush(seconds(30)).ok());

  // The loop device's ext4 sysfs folder; writing to trigger_fs_error records an error, and
  // errors=remount-ro makes the filesystem read-only as a real one would.
  std::string device;
  FILE* mounts = ::popen(("findmnt -no SOURCE " + StateDir()).c_str(), "r");
  ASSERT_NE(mounts, nullptr);
  char line[256] = {};
  if (std::fgets(line, sizeof line, mounts)) device = line;
  ::pclose(mounts);
  while (!device.empty() && device.back() == '\n') device.pop_back();
  std::string trigger =
      "/sys/fs/ext4/" + std::filesystem::path(device).filename().string() + "/trigger_fs_error";
  if (!std::filesystem::exists(trigger)) GTEST_SKIP() << "this kernel has no " << trigger;
  std::ofstream(trigger) << "vitscale faults_test\n";

  HttpReply refused = PostPoints(100, 1000);
  EXPECT_GE(refused.status, 500) << refused.body;
  EXPECT_NE(refused.body.find("read-only"), std::string::npos) << refused.body;
  EXPECT_NE(refused.body.find("nothing of this write was stored"), std::string::npos)
      << refused.body;
  ASSERT_TRUE(sink_->Metrics(Points(100, 1000)).ok());
  SendResults();
  EXPECT_FALSE(sink_->Flush(seconds(2)).ok()) << "stored on a read-only filesystem";
  EXPECT_TRUE(coordinator_->process().Running());
  EXPECT_EQ(JobState(), "running");

  // The repair: stop the coordinator, fsck the filesystem, mount it again, start again.
  coordinator_->process().Signal(SIGTERM);
  EXPECT_NE(coordinator_->process().Wait(seconds(20)), -1);
  mount.Unmount();
  std::system(("e2fsck -fy " + image + " >/dev/null 2>&1").c_str());
  why = mount.Remount(image, StateDir());
  ASSERT_TRUE(why.empty()) << why;
  ASSERT_TRUE(coordinator_->Start());
  client_ = coordinator_->Client();
  ASSERT_TRUE(sink_->Flush(seconds(60)).ok());
  FinishTrainer();
  ASSERT_TRUE(WaitFor([&] { return JobState() == "succeeded"; }, seconds(60))) << JobState();
  ExpectStoredOnce(10 + 1000);
}

}  // namespace
}  // namespace vitscale::testing
