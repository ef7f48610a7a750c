#include "storage/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "storage/migrations.h"
#include "tests/storage/test_util.h"

namespace vitscale::storage {
namespace {

using testing::MakeJob;
using testing::TempDir;

// SQL that takes a version 5 database back to what version 4 was.
std::string UndoMigration5() {
  std::string sql;
  for (const char* index :
       {"priority", "subset", "updated", "state", "state_priority", "state_model", "state_subset",
        "state_updated", "model_priority", "model_subset", "model_state", "model_updated",
        "subset_priority", "subset_model", "subset_state", "subset_updated"}) {
    sql += fmt::format("DROP INDEX jobs_list_{};", index);
  }
  for (const char* trigger :
       {"job_counts_insert", "job_counts_delete", "job_counts_state", "sweep_counts_new_sweep",
        "sweep_counts_link", "sweep_compute_ledger_insert", "sweep_compute_ledger_update"}) {
    sql += fmt::format("DROP TRIGGER IF EXISTS {};", trigger);  // 10 dropped two of them
  }
  return sql + "DROP TABLE job_counts; DROP TABLE sweep_counts; DROP TABLE sweep_compute;";
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    OpenOptions options;
    options.clock = &clock_;
    auto store = Store::Open(dir_.File("vitscale.db"), options);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
  }

  // Runs `sql` on its own connection and returns the first column of the first row as text.
  std::string QueryText(const std::string& sql) {
    sqlite3* db = nullptr;
    sqlite3_open_v2(dir_.File("vitscale.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_stmt* stmt = nullptr;
    std::string text = "<error>";
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      const unsigned char* value = sqlite3_column_text(stmt, 0);
      text = value ? reinterpret_cast<const char*>(value) : "NULL";
    }
    sqlite3_finalize(stmt);
    sqlite3_close(db);
    return text;
  }

  TempDir dir_;
  FakeClock clock_{TimePoint{}, 1700000000.0};
  double now() const { return clock_.WallSeconds(); }
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, FreshDatabaseHasLatestSchemaWalAndForeignKeys) {
  auto version = store_->SchemaVersion();
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(*version, LatestSchemaVersion());
  EXPECT_EQ(QueryText("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(QueryText("SELECT count(*) FROM sqlite_schema WHERE type = 'table'"), "14");
}

TEST_F(StoreTest, SweepAndJobsRoundTrip) {
  std::vector<JobRecord> jobs = {MakeJob("ViT-B/16", "jft-300m", 303000000, 7),
                                 MakeJob("R50x1", "jft-300m", 303000000, 7),
                                 MakeJob("R50+ViT-B/16", "jft-300m", 303000000, 7)};
  jobs[1].priority = 5;
  jobs[2].ranks = 4;
  jobs[2].gpus_per_rank = 8;
  jobs[2].gpu_kind = "NVIDIA H200";
  jobs[2].one_host = true;
  jobs[2].retries_left = 2;
  auto added = store_->AddSweep("scaling", "name: scaling\n", jobs);
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  EXPECT_EQ(added->added, 3);
  EXPECT_EQ(added->already_known, 0);

  auto sweep = store_->GetSweep("scaling");
  ASSERT_TRUE(sweep.ok());
  EXPECT_EQ(sweep->definition, "name: scaling\n");
  EXPECT_EQ(sweep->created_at, now());

  auto job = store_->GetJob(jobs[2].id);
  ASSERT_TRUE(job.ok()) << job.status().ToString();
  EXPECT_EQ(job->model, "R50+ViT-B/16");
  EXPECT_EQ(job->family, "hybrid");
  EXPECT_EQ(job->dataset, "jft-300m");
  EXPECT_EQ(job->subset_size, 303000000);
  EXPECT_EQ(job->epochs, 7.0);
  EXPECT_EQ(job->config_json, jobs[2].config_json);
  EXPECT_EQ(job->planned_train_flops, jobs[2].planned_train_flops);
  EXPECT_EQ(job->state, JobState::kPending);
  EXPECT_EQ(job->ranks, 4);
  EXPECT_EQ(job->gpus_per_rank, 8);
  EXPECT_EQ(job->gpu_kind, "NVIDIA H200");
  EXPECT_TRUE(job->one_host);
  EXPECT_EQ(job->retries_left, 2);
  EXPECT_EQ(job->submit_order, 3);
  EXPECT_EQ(job->submitted_at, now());

  auto all = store_->ListJobs({});
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].id, jobs[0].id);

  JobFilter paged;
  paged.limit = 2;
  paged.offset = 1;
  auto page = store_->ListJobs(paged);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].id, jobs[1].id);
  EXPECT_EQ((*page)[1].id, jobs[2].id);

  JobFilter by_model;
  by_model.model = "R50x1";
  auto r50 = store_->ListJobs(by_model);
  ASSERT_TRUE(r50.ok());
  ASSERT_EQ(r50->size(), 1u);
  EXPECT_EQ((*r50)[0].priority, 5);

  EXPECT_EQ(store_->GetJob(std::string(64, 'f')).status().code(), StatusCode::kNotFound);
}

// A submission counts its jobs itself (migration 10): the new ones by their state, and for the
// new sweep every job it links, known ones in whatever state they are, with their planned FLOPs
// and what the ledger already holds for them. The counters then equal a recount.
TEST_F(StoreTest, ASubmissionCountsItsNewAndItsKnownJobs) {
  std::vector<JobRecord> first = {MakeJob("ViT-B/32", "imagenet21k", 14000000, 30),
                                  MakeJob("ViT-L/16", "imagenet21k", 14000000, 30)};
  ASSERT_TRUE(store_->AddSweep("fig3", "a", first).ok());
  ASSERT_TRUE(store_->AddAttempt(first[0].id, std::nullopt, "h:1").ok());
  ASSERT_TRUE(store_->AddLedgerEntry({first[0].id, 1, 3e12, 0, 10, "cpu", 1, 1}).ok());
  ASSERT_TRUE(store_->SetJobState(first[0].id, JobState::kSucceeded).ok());

  std::vector<JobRecord> second = {first[0], first[1],
                                   MakeJob("ViT-H/14", "imagenet21k", 14000000, 30)};
  ASSERT_TRUE(store_->AddSweep("table5", "b", second).ok());
  auto summaries = store_->SweepSummaries();
  ASSERT_TRUE(summaries.ok());
  ASSERT_EQ(summaries->size(), 2u);
  const SweepSummary& table5 = (*summaries)[1];
  EXPECT_EQ(table5.jobs, 3);
  EXPECT_EQ(table5.jobs_by_state.at("succeeded"), 1);
  EXPECT_EQ(table5.jobs_by_state.at("pending"), 2);
  EXPECT_DOUBLE_EQ(table5.planned_train_flops, second[0].planned_train_flops +
                                                   second[1].planned_train_flops +
                                                   second[2].planned_train_flops);
  EXPECT_DOUBLE_EQ(table5.spent_train_flops, 3e12);
  JobFilter pending;
  pending.states = {JobState::kPending};
  EXPECT_EQ(store_->CountJobs(pending)->jobs, 2);
  EXPECT_EQ(QueryText("SELECT count(*) FROM job_counts c "
                      "WHERE c.jobs != (SELECT count(*) FROM jobs j WHERE j.state = c.state)"),
            "0");
  EXPECT_EQ(QueryText("SELECT count(*) FROM sweep_counts c WHERE c.jobs != (SELECT count(*) "
                      "FROM sweep_jobs sj JOIN jobs j ON j.id = sj.job_id "
                      "WHERE sj.sweep_id = c.sweep_id AND j.state = c.state)"),
            "0");
}

TEST_F(StoreTest, ReaddedSweepAddsNothingAndSharedJobsAreLinked) {
  std::vector<JobRecord> jobs = {MakeJob("ViT-B/32", "imagenet21k", 14000000, 30),
                                 MakeJob("ViT-L/16", "imagenet21k", 14000000, 30)};
  ASSERT_TRUE(store_->AddSweep("fig3", "a", jobs).ok());
  auto again = store_->AddSweep("fig3", "a  # same, reformatted", jobs);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->added, 0);
  EXPECT_EQ(again->already_known, 2);

  // Another sweep sharing one job links it instead of copying it.
  std::vector<JobRecord> other = {jobs[1], MakeJob("ViT-H/14", "imagenet21k", 14000000, 30)};
  auto shared = store_->AddSweep("table5", "b", other);
  ASSERT_TRUE(shared.ok());
  EXPECT_EQ(shared->added, 1);
  EXPECT_EQ(shared->already_known, 1);
  EXPECT_EQ(QueryText("SELECT count(*) FROM jobs"), "3");
  // The new job comes back as stored, the known one not at all.
  ASSERT_EQ(shared->added_jobs.size(), 1u);
  EXPECT_TRUE(again->added_jobs.empty());
  const JobRecord& returned = shared->added_jobs[0];
  auto read = store_->GetJob(other[1].id);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(returned.id, read->id);
  EXPECT_EQ(returned.config_json, read->config_json);
  EXPECT_EQ(returned.state, read->state);
  EXPECT_EQ(returned.submit_order, read->submit_order);
  EXPECT_EQ(returned.submitted_at, read->submitted_at);
  EXPECT_EQ(returned.updated_at, read->updated_at);
  EXPECT_EQ(returned.retries_left, read->retries_left);
  EXPECT_EQ(returned.attempts, read->attempts);
  EXPECT_EQ(returned.images_seen, read->images_seen);
  EXPECT_FALSE(returned.phase.has_value());

  JobFilter in_table5;
  in_table5.sweep = "table5";
  auto listed = store_->ListJobs(in_table5);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].id, jobs[1].id);

  // The same name with different jobs is refused, and nothing of it is written.
  auto changed = store_->AddSweep("fig3", "c", other);
  EXPECT_EQ(changed.status().code(), StatusCode::kAlreadyExists);
  EXPECT_NE(changed.status().message().find("new sweep name"), std::string::npos);
  EXPECT_EQ(QueryText("SELECT count(*) FROM jobs"), "3");

  JobFilter typo;
  typo.sweep = "fig";
  auto unknown = store_->ListJobs(typo);
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);
  EXPECT_NE(unknown.status().message().find("did you mean 'fig3'"), std::string::npos)
      << unknown.status().message();
}

// The bulk path writes each job once in its own state and times, and the maintained counters
// agree with the rows as they would after AddSweep and the state changes.
TEST_F(StoreTest, ImportedSweepKeepsStatesAndTimesAndCounts) {
  const JobState kStates[] = {JobState::kSucceeded, JobState::kPending, JobState::kFailed,
                              JobState::kSucceeded, JobState::kCancelled};
  std::vector<JobRecord> jobs;
  for (int seed = 0; seed < 5; ++seed) {
    JobRecord job = MakeJob("ViT-S/16", "fashion-mnist", 1000, 2, seed);
    job.state = kStates[seed];
    job.submitted_at = 1735689600.0 + seed;
    job.updated_at = job.submitted_at + 3600.0 * (5 - seed);
    jobs.push_back(job);
  }
  auto imported = store_->ImportSweep("year", "d", jobs);
  ASSERT_TRUE(imported.ok()) << imported.status().ToString();
  EXPECT_EQ(imported->added, 5);

  for (const JobRecord& want : jobs) {
    auto got = store_->GetJob(want.id);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->state, want.state);
    EXPECT_EQ(got->submitted_at, want.submitted_at);
    EXPECT_EQ(got->updated_at, want.updated_at);
  }
  JobFilter succeeded;
  succeeded.states = {JobState::kSucceeded};
  auto count = store_->CountJobs(succeeded);
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(count->jobs, 2);
  EXPECT_TRUE(count->exact);
  auto summaries = store_->SweepSummaries();
  ASSERT_TRUE(summaries.ok());
  ASSERT_EQ(summaries->size(), 1u);
  EXPECT_EQ((*summaries)[0].jobs, 5);
  EXPECT_EQ((*summaries)[0].jobs_by_state["succeeded"], 2);
  EXPECT_EQ((*summaries)[0].jobs_by_state["pending"], 1);
  EXPECT_EQ((*summaries)[0].jobs_by_state["failed"], 1);
  EXPECT_EQ((*summaries)[0].jobs_by_state["cancelled"], 1);
  // The counters are those a recount gives.
  EXPECT_EQ(QueryText("SELECT count(*) FROM job_counts c "
                      "WHERE c.jobs != (SELECT count(*) FROM jobs j WHERE j.state = c.state)"),
            "0");
  // Most recently updated first is the order of the times given, not of the submission.
  JobFilter by_update;
  by_update.sort = JobSort::kUpdated;
  by_update.descending = true;
  auto listed = store_->ListJobs(by_update);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 5u);
  EXPECT_EQ((*listed)[0].id, jobs[0].id);
  EXPECT_EQ((*listed)[4].id, jobs[4].id);

  // A state that needs an attempt, or missing times, is refused naming the job; nothing is
  // written.
  JobRecord running = MakeJob("R26s", "fashion-mnist", 1000, 2);
  running.state = JobState::kRunning;
  running.submitted_at = running.updated_at = 1735689600.0;
  auto refused = store_->ImportSweep("bad", "d", {running});
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("job 0 (R26s)"), std::string::npos)
      << refused.status().message();
  JobRecord untimed = MakeJob("R26s", "fashion-mnist", 1000, 2);
  untimed.state = JobState::kSucceeded;
  refused = store_->ImportSweep("bad", "d", {untimed});
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("submitted_at"), std::string::npos);
  EXPECT_EQ(QueryText("SELECT count(*) FROM jobs"), "5");
  EXPECT_EQ(QueryText("SELECT count(*) FROM sweeps"), "1");
}

TEST_F(StoreTest, InvalidJobIsRefusedWholeSweepUnwritten) {
  std::vector<JobRecord> jobs = {MakeJob("ViT-B/16", "cifar10", 50000, 7),
                                 MakeJob("ViT-B/32", "cifar10", 50000, 7)};
  jobs[1].subset_size = 0;
  auto added = store_->AddSweep("bad", "x", jobs);
  ASSERT_EQ(added.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(added.status().message().find("job 1 (ViT-B/32"), std::string::npos);
  EXPECT_NE(added.status().message().find("subset_size"), std::string::npos);
  jobs[1] = MakeJob("ViT-B/32", "cifar10", 50000, 7);
  jobs[1].id = "not-a-hash";
  EXPECT_EQ(store_->AddSweep("bad", "x", jobs).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(QueryText("SELECT count(*) FROM sweeps"), "0");
  EXPECT_EQ(QueryText("SELECT count(*) FROM jobs"), "0");
}

TEST_F(StoreTest, JobStateCompareAndSet) {
  JobRecord job = MakeJob("R50x2", "jft-300m", 303000000, 7);
  ASSERT_TRUE(store_->AddSweep("s", "d", {job}).ok());
  clock_.Advance(std::chrono::seconds(10));
  ASSERT_TRUE(store_->SetJobState(job.id, JobState::kLeased, JobState::kPending).ok());
  Status lost_race = store_->SetJobState(job.id, JobState::kLeased, JobState::kPending);
  EXPECT_EQ(lost_race.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(lost_race.message().find("is leased, not pending"), std::string::npos);
  ASSERT_TRUE(store_->SetJobState(job.id, JobState::kCancelled).ok());
  auto read = store_->GetJob(job.id);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->state, JobState::kCancelled);
  EXPECT_EQ(read->updated_at, now());
  JobFilter cancelled;
  cancelled.states = {JobState::kCancelled};
  EXPECT_EQ(store_->ListJobs(cancelled)->size(), 1u);
  EXPECT_EQ(store_->SetJobState(std::string(64, '0'), JobState::kRunning).code(),
            StatusCode::kNotFound);
}

TEST_F(StoreTest, AtomicallyCommitsOnceAndUndoesOnlyTheFailedCall) {
  JobRecord a = MakeJob("R50x1", "jft-300m", 303000000, 7);
  JobRecord b = MakeJob("R50x2", "jft-300m", 303000000, 7);
  ASSERT_TRUE(store_->AddSweep("s", "d", {a, b}).ok());
  std::vector<JobRecord> bad = {MakeJob("ViT-B/16", "cifar10", 50000, 7),
                                MakeJob("ViT-B/32", "cifar10", 50000, 7)};
  bad[1].subset_size = 0;  // refused after the sweep row and the first job are written
  Status done = store_->Atomically([&] {
    EXPECT_TRUE(store_->SetJobState(a.id, JobState::kLeased, JobState::kPending).ok());
    EXPECT_FALSE(store_->AddSweep("bad", "x", bad).ok());
    EXPECT_TRUE(store_->AddAttempt(a.id, std::nullopt, "h:1").ok());
    // Another connection sees nothing until the one commit.
    EXPECT_EQ(QueryText("SELECT state FROM jobs WHERE id = '" + a.id + "'"), "pending");
    return Status::Ok();
  });
  ASSERT_TRUE(done.ok()) << done.ToString();
  EXPECT_EQ(QueryText("SELECT state FROM jobs WHERE id = '" + a.id + "'"), "leased");
  EXPECT_EQ(QueryText("SELECT count(*) FROM attempts"), "1");
  EXPECT_EQ(QueryText("SELECT count(*) FROM sweeps"), "1");  // the failed AddSweep left nothing
  EXPECT_EQ(QueryText("SELECT count(*) FROM jobs"), "2");

  // A body that fails undoes everything it wrote.
  Status failed = store_->Atomically([&] {
    EXPECT_TRUE(store_->SetJobState(b.id, JobState::kLeased, JobState::kPending).ok());
    return Internal("changed my mind");
  });
  EXPECT_EQ(failed.code(), StatusCode::kInternal);
  EXPECT_EQ(QueryText("SELECT state FROM jobs WHERE id = '" + b.id + "'"), "pending");
  // The store is usable afterwards, in and out of a transaction.
  EXPECT_TRUE(store_->SetJobState(b.id, JobState::kLeased, JobState::kPending).ok());
  EXPECT_EQ(QueryText("SELECT state FROM jobs WHERE id = '" + b.id + "'"), "leased");
}

// The scheduler's actions are one call each: a launch starts an attempt (resumed from the newest
// checkpoint, with its token's hash), a transition moves the job and ends that attempt together,
// and a transition from the wrong state changes nothing at all.
TEST_F(StoreTest, ActionsAreOneCallEach) {
  JobRecord job = MakeJob("ViT-B/16", "jft-300m", 303000000, 7);
  ASSERT_TRUE(store_->AddSweep("s", "d", {job}).ok());
  ASSERT_TRUE(store_->UpsertAgent({"host-a", "host-a", 4, 0, 0}).ok());
  const std::string hash(64, 'a');
  auto first = store_->StartAttempt(job.id, "host-a", "host-a:1", hash);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->number, 1);
  EXPECT_FALSE(first->resumed_from_step.has_value());
  EXPECT_EQ(first->report_token_sha256, hash);
  auto open = store_->OpenAttempt(job.id);
  ASSERT_TRUE(open.ok() && open->has_value());
  EXPECT_EQ((*open)->number, 1);

  auto moved = store_->ApplyTransition(job.id, JobState::kPending, JobState::kLeased, 2, {});
  ASSERT_TRUE(moved.ok()) << moved.status().ToString();
  EXPECT_EQ(moved->state, JobState::kLeased);
  EXPECT_EQ(moved->attempts, 1);
  // From the wrong state: refused, and neither the job nor the attempt changes.
  auto refused = store_->ApplyTransition(job.id, JobState::kRunning, JobState::kPending, 0,
                                         AttemptEnd{AttemptOutcome::kFailed, 1});
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(QueryText("SELECT state || retries_left FROM jobs"), "leased2");
  EXPECT_EQ(QueryText("SELECT count(*) FROM attempts WHERE ended_at IS NULL"), "1");

  ASSERT_TRUE(store_->AddCheckpoint({job.id, 400, "/runs/x/ckpt-400", std::string(64, 'b'), 0}).ok());
  auto ended = store_->ApplyTransition(job.id, JobState::kLeased, JobState::kPending, 1,
                                       AttemptEnd{AttemptOutcome::kFailed, 1});
  ASSERT_TRUE(ended.ok()) << ended.status().ToString();
  EXPECT_EQ(ended->retries_left, 1);
  EXPECT_EQ(QueryText("SELECT outcome || exit_status FROM attempts WHERE number = 1"), "failed1");
  EXPECT_FALSE(store_->OpenAttempt(job.id)->has_value());
  auto second = store_->StartAttempt(job.id, "host-a", "host-a:1", hash);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->number, 2);
  EXPECT_EQ(second->resumed_from_step, 400);
  EXPECT_EQ(store_->GetAttempt(job.id, 3).status().code(), StatusCode::kNotFound);
}

// A start names what it lacks, an unknown job or an unregistered agent (looked up once the
// foreign keys have refused the insert), and writes nothing; the light reads a launch and an
// exit use answer as GetJob would.
TEST_F(StoreTest, AStartRefusedForAnUnknownJobOrAgentSaysWhich) {
  JobRecord job = MakeJob("ViT-B/16", "jft-300m", 303000000, 7);
  ASSERT_TRUE(store_->AddSweep("s", "d", {job}).ok());
  ASSERT_TRUE(store_->UpsertAgent({"host-a", "host-a", 4, 0, 0}).ok());
  const std::string hash(64, 'a');
  const std::string unknown(64, '0');
  Expected<AttemptRecord> no_job = store_->StartAttempt(unknown, "host-a", "host-a:1", hash);
  EXPECT_EQ(no_job.status().code(), StatusCode::kNotFound);
  EXPECT_NE(no_job.status().message().find("no job with id '" + unknown + "'"), std::string::npos)
      << no_job.status().ToString();
  Expected<AttemptRecord> no_agent = store_->StartAttempt(job.id, "host-b", "host-b:1", hash);
  EXPECT_EQ(no_agent.status().code(), StatusCode::kNotFound);
  EXPECT_NE(no_agent.status().message().find("agent 'host-b' is not registered"), std::string::npos)
      << no_agent.status().ToString();
  EXPECT_EQ(QueryText("SELECT count(*) FROM attempts"), "0");

  Expected<int> none = store_->CountAttempts(job.id);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_EQ(*none, 0);
  EXPECT_EQ(store_->CountAttempts(unknown).status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(store_->StartAttempt(job.id, "host-a", "host-a:1", hash).ok());
  Expected<int> one = store_->CountAttempts(job.id);
  Expected<JobRecord> read = store_->GetJob(job.id);
  Expected<std::string> config = store_->GetJobConfig(job.id);
  ASSERT_TRUE(one.ok() && read.ok() && config.ok());
  EXPECT_EQ(*one, 1);
  EXPECT_EQ(*one, read->attempts);
  EXPECT_EQ(*config, read->config_json);
  EXPECT_EQ(store_->GetJobConfig(unknown).status().code(), StatusCode::kNotFound);
}

// Inside a transaction (how the coordinator applies a scheduling pass) a refused action changes
// nothing, also where the store takes no savepoint of its own for it, and the rest commits.
TEST_F(StoreTest, ActionsRefusedInsideATransactionChangeNothing) {
  JobRecord a = MakeJob("ViT-B/16", "jft-300m", 303000000, 7);
  JobRecord b = MakeJob("ViT-B/32", "jft-300m", 303000000, 7);
  ASSERT_TRUE(store_->AddSweep("s", "d", {a, b}).ok());
  ASSERT_TRUE(store_->UpsertAgent({"host-a", "host-a", 4, 0, 0}).ok());
  const std::string hash(64, 'a');
  ASSERT_TRUE(store_->StartAttempt(b.id, "host-a", "host-a:1", hash).ok());
  ASSERT_TRUE(store_->ApplyTransition(b.id, JobState::kPending, JobState::kLeased, 2, {}).ok());
  Status done = store_->Atomically([&] {
    EXPECT_TRUE(store_->StartAttempt(a.id, "host-a", "host-a:1", hash).ok());
    EXPECT_TRUE(store_->ApplyTransition(a.id, JobState::kPending, JobState::kLeased, 2, {}).ok());
    // b is leased, not pending or running: refused, with and without an attempt to end.
    EXPECT_EQ(store_->ApplyTransition(b.id, JobState::kPending, JobState::kLeased, 0, {})
                  .status()
                  .code(),
              StatusCode::kFailedPrecondition);
    EXPECT_EQ(store_->ApplyTransition(b.id, JobState::kRunning, JobState::kSucceeded, 0,
                                      AttemptEnd{AttemptOutcome::kSucceeded, 0})
                  .status()
                  .code(),
              StatusCode::kFailedPrecondition);
    // b's attempt is open: no second one.
    EXPECT_EQ(store_->StartAttempt(b.id, "host-a", "host-a:1", hash).status().code(),
              StatusCode::kFailedPrecondition);
    EXPECT_EQ(store_->ApplyTransition(std::string(64, '0'), JobState::kPending,
                                      JobState::kLeased, 0, {})
                  .status()
                  .code(),
              StatusCode::kNotFound);
    return Status::Ok();
  });
  ASSERT_TRUE(done.ok()) << done.ToString();
  EXPECT_EQ(QueryText("SELECT state || retries_left FROM jobs WHERE id = '" + a.id + "'"),
            "leased2");
  EXPECT_EQ(QueryText("SELECT state || retries_left FROM jobs WHERE id = '" + b.id + "'"),
            "leased2");
  EXPECT_EQ(QueryText("SELECT count(*) FROM attempts WHERE job_id = '" + b.id + "'"), "1");
  EXPECT_EQ(QueryText("SELECT count(*) FROM attempts WHERE ended_at IS NULL"), "2");
  // The job returned by a transition that ends its attempt shows no open attempt's phase.
  auto ended = store_->ApplyTransition(b.id, JobState::kLeased, JobState::kSucceeded, 0,
                                       AttemptEnd{AttemptOutcome::kSucceeded, 0});
  ASSERT_TRUE(ended.ok()) << ended.status().ToString();
  EXPECT_EQ(ended->state, JobState::kSucceeded);
  EXPECT_EQ(ended->attempts, 1);
  EXPECT_EQ(QueryText("SELECT outcome FROM attempts WHERE job_id = '" + b.id + "'"), "succeeded");
}

TEST_F(StoreTest, APhaseBelongsToTheOpenAttempt) {
  JobRecord job = MakeJob("ViT-B/16", "jft-300m", 303000000, 7);
  ASSERT_TRUE(store_->AddSweep("s", "d", {job}).ok());
  EXPECT_EQ(store_->SetAttemptPhase(job.id, 1, {}).code(), StatusCode::kNotFound);
  ASSERT_TRUE(store_->AddAttempt(job.id, std::nullopt, "h:1").ok());
  EXPECT_FALSE(store_->GetJob(job.id)->phase.has_value());
  ASSERT_TRUE(store_->SetAttemptPhase(job.id, 1, {JobPhase::kFewShot, 2, 6, "digits seed 1"}).ok());
  ASSERT_TRUE(store_->SetAttemptPhase(job.id, 1, {JobPhase::kFineTune, 1, 4, "lr=0.01"}).ok());
  Expected<JobRecord> read = store_->GetJob(job.id);
  ASSERT_TRUE(read.ok() && read->phase.has_value());
  EXPECT_EQ(read->phase->phase, JobPhase::kFineTune);
  EXPECT_EQ(read->phase->index, 1);
  EXPECT_EQ(read->phase->count, 4);
  EXPECT_EQ(read->phase->detail, "lr=0.01");
  // Listing reads the same columns.
  Expected<std::vector<JobRecord>> listed = store_->ListJobs(JobFilter{});
  ASSERT_TRUE(listed.ok() && listed->size() == 1u);
  EXPECT_EQ(listed->front().phase->detail, "lr=0.01");

  // An ended attempt takes its phase with it; the next one starts without.
  ASSERT_TRUE(store_->EndAttempt(job.id, 1, AttemptOutcome::kPreempted, 75).ok());
  EXPECT_FALSE(store_->GetJob(job.id)->phase.has_value());
  EXPECT_EQ(store_->SetAttemptPhase(job.id, 1, {JobPhase::kInspection, 0, 0, ""}).code(),
            StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store_->AddAttempt(job.id, std::nullopt, "h:1").ok());
  EXPECT_FALSE(store_->GetJob(job.id)->phase.has_value());
  ASSERT_TRUE(store_->SetAttemptPhase(job.id, 2, {JobPhase::kPretraining, 0, 0, ""}).ok());
  EXPECT_EQ(store_->GetJob(job.id)->phase->phase, JobPhase::kPretraining);
}

TEST_F(StoreTest, AgentCredentialsKeepOnlyHashesAndReplace) {
  ASSERT_TRUE(store_->PutAgentCredential("h1", std::string(64, '1')).ok());
  ASSERT_TRUE(store_->PutAgentCredential("h2", std::string(64, '2')).ok());
  ASSERT_TRUE(store_->PutAgentCredential("h1", std::string(64, '3')).ok());  // replaces
  auto listed = store_->ListAgentCredentials();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].host, "h1");
  EXPECT_EQ((*listed)[0].token_sha256, std::string(64, '3'));
  EXPECT_EQ(store_->PutAgentCredential("h3", "not-a-hash").code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(store_->DeleteAgentCredential("h2").ok());
  EXPECT_EQ(store_->DeleteAgentCredential("h2").code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->ListAgentCredentials()->size(), 1u);
}

TEST_F(StoreTest, AttemptsAgentsCheckpointsResultsLedgerRoundTrip) {
  JobRecord job = MakeJob("ViT-B/16", "jft-300m", 303000000, 7);
  ASSERT_TRUE(store_->AddSweep("s", "d", {job}).ok());
  ASSERT_TRUE(store_->UpsertAgent({"agent-a", "host-a", 8, 8, 0}).ok());
  clock_.Advance(std::chrono::seconds(5));
  ASSERT_TRUE(store_->UpsertAgent({"agent-a", "host-a", 4, 4, 0, "NVIDIA H200"}).ok());
  auto agents = store_->ListAgents();
  ASSERT_TRUE(agents.ok());
  ASSERT_EQ(agents->size(), 1u);
  EXPECT_EQ((*agents)[0].slots, 4);
  EXPECT_EQ((*agents)[0].gpu_kind, "NVIDIA H200");
  EXPECT_EQ((*agents)[0].last_heartbeat_at, now());

  auto first = store_->AddAttempt(job.id, std::string("agent-a"), "host-a:4");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(*first, 1);
  EXPECT_EQ(store_->AddAttempt(job.id, std::nullopt, "x").status().code(),
            StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store_->EndAttempt(job.id, 1, AttemptOutcome::kPreempted, 143).ok());
  EXPECT_EQ(store_->EndAttempt(job.id, 1, AttemptOutcome::kFailed, 1).code(),
            StatusCode::kFailedPrecondition);
  auto second = store_->AddAttempt(job.id, std::nullopt, "localhost:2", 1200);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*second, 2);
  auto attempts = store_->ListAttempts(job.id);
  ASSERT_TRUE(attempts.ok());
  ASSERT_EQ(attempts->size(), 2u);
  EXPECT_EQ((*attempts)[0].agent_id, "agent-a");
  EXPECT_EQ((*attempts)[0].outcome, AttemptOutcome::kPreempted);
  EXPECT_EQ((*attempts)[0].exit_status, 143);
  EXPECT_FALSE((*attempts)[1].agent_id.has_value());
  EXPECT_FALSE((*attempts)[1].ended_at.has_value());
  EXPECT_EQ((*attempts)[1].resumed_from_step, 1200);

  std::vector<MetricPoint> points = {{1200, "train/loss", 2.5, now()},
                                     {1300, "train/loss", std::nan(""), now() + 1},
                                     {1300, "lr", 8e-4, now() + 1}};
  ASSERT_TRUE(store_->AppendMetrics(job.id, 2, points).ok());
  auto read = store_->ReadMetrics(job.id, 1200);
  ASSERT_TRUE(read.ok());
  ASSERT_EQ(read->size(), 2u);
  EXPECT_TRUE(std::isnan((*read)[0].value));
  EXPECT_EQ((*read)[1].name, "lr");
  EXPECT_EQ(*store_->CountMetrics(job.id), 3);
  // A retried batch (its answer was lost) stores nothing twice; new points in it are stored.
  ASSERT_TRUE(store_->AppendMetrics(job.id, 2, points).ok());
  EXPECT_EQ(*store_->CountMetrics(job.id), 3);
  points.push_back({1400, "lr", 7e-4, now() + 2});
  ASSERT_TRUE(store_->AppendMetrics(job.id, 2, points).ok());
  EXPECT_EQ(*store_->CountMetrics(job.id), 4);
  EXPECT_EQ(store_->AppendMetrics(job.id, 3, points).code(), StatusCode::kNotFound);

  std::string digest(64, 'a');
  ASSERT_TRUE(store_->AddCheckpoint({job.id, 1000, "/ckpt/1000", digest, 0}).ok());
  ASSERT_TRUE(store_->AddCheckpoint({job.id, 1000, "/ckpt/1000b", digest, 0}).ok());
  auto checkpoints = store_->ListCheckpoints(job.id);
  ASSERT_TRUE(checkpoints.ok());
  ASSERT_EQ(checkpoints->size(), 1u);
  EXPECT_EQ((*checkpoints)[0].path, "/ckpt/1000b");

  std::vector<ResultRecord> results = {
      {job.id, Evaluation::kFewShot, "imagenet", 5, 0, "accuracy", 0.70},
      {job.id, Evaluation::kFewShot, "imagenet", 5, 1, "accuracy", 0.72},
      {job.id, Evaluation::kFineTune, "cifar10", std::nullopt, std::nullopt, "accuracy", 0.98}};
  ASSERT_TRUE(store_->AddResults(results).ok());
  results[2].value = 0.99;  // reported again: replaces
  ASSERT_TRUE(store_->AddResults({results[2]}).ok());
  auto listed = store_->ListResults(job.id);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 3u);
  EXPECT_EQ((*listed)[0].evaluation, Evaluation::kFewShot);
  EXPECT_EQ((*listed)[2].value, 0.99);
  ResultRecord no_shots = results[0];
  no_shots.shots.reset();
  EXPECT_EQ(store_->AddResults({no_shots}).code(), StatusCode::kInvalidArgument);

  ASSERT_TRUE(store_->AddLedgerEntry({job.id, 1, 1e20, 1e18, 1000, "tpu", 3600, 60}).ok());
  ASSERT_TRUE(store_->AddLedgerEntry({job.id, 2, 2e20, 1e18, 2000, "tpu", 7200, 120}).ok());
  ASSERT_TRUE(store_->AddResults({{job.id, Evaluation::kPretrain, "jft", std::nullopt,
                                    std::nullopt, "accuracy", 0.5},
                                   {job.id, Evaluation::kFewShot, "imagenet", 5, 0, "loss", 1.5}})
                  .ok());
  auto table = store_->ReadSweepTable("s");
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  ASSERT_EQ(table->jobs.size(), 1u);
  EXPECT_EQ(table->jobs[0].id, job.id);
  EXPECT_EQ(table->jobs[0].ledger_entries, 2);
  EXPECT_DOUBLE_EQ(table->jobs[0].train_flops, 3e20);
  EXPECT_DOUBLE_EQ(table->jobs[0].device_seconds, 10800);
  // Transfer accuracies only (no pretraining figure, no loss), fine-tune before few-shot as
  // the evaluation's name sorts, seeds averaged.
  ASSERT_EQ(table->results.size(), 2u);
  EXPECT_EQ(table->results[0].evaluation, Evaluation::kFewShot);
  EXPECT_EQ(table->results[0].row, 0u);
  EXPECT_EQ(table->results[0].runs, 2);
  EXPECT_DOUBLE_EQ(table->results[0].mean, 0.71);
  EXPECT_EQ(table->results[1].evaluation, Evaluation::kFineTune);
  EXPECT_DOUBLE_EQ(table->results[1].mean, 0.99);
  EXPECT_EQ(store_->ReadSweepTable("nope").status().code(), StatusCode::kNotFound);
}

TEST_F(StoreTest, ForeignKeyViolationsAreErrors) {
  std::string ghost(64, 'e');
  EXPECT_EQ(store_->AddAttempt(ghost, std::nullopt, "h").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->AppendMetrics(ghost, 1, {{0, "loss", 1, 0}}).code(), StatusCode::kNotFound);
  EXPECT_EQ(
      store_->AddResults({{ghost, Evaluation::kFineTune, "cifar10", {}, {}, "accuracy", 1}}).code(),
      StatusCode::kNotFound);
  EXPECT_EQ(store_->AddLedgerEntry({ghost, 1, 0, 0, 0, "cpu", 0, 0}).code(), StatusCode::kNotFound);
  JobRecord job = MakeJob("R50x1", "cifar10", 50000, 1);
  ASSERT_TRUE(store_->AddSweep("s", "d", {job}).ok());
  EXPECT_EQ(store_->AddAttempt(job.id, std::string("no-such-agent"), "h").status().code(),
            StatusCode::kNotFound);
  ASSERT_TRUE(store_->AddAttempt(job.id, std::nullopt, "h").ok());
  ASSERT_TRUE(store_->AppendMetrics(job.id, 1, {{0, "loss", 1, 0}}).ok());

  // Below the Store's own checks, SQLite's foreign keys still hold: a raw insert on a second
  // connection with foreign_keys on is refused.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir_.File("vitscale.db").c_str(), &db), SQLITE_OK);
  sqlite3_exec(db, "PRAGMA foreign_keys = ON", nullptr, nullptr, nullptr);
  std::string insert = "INSERT INTO metrics VALUES ('" + ghost + "', 1, 0, 'loss', 1, 0)";
  EXPECT_NE(sqlite3_exec(db, insert.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  EXPECT_NE(std::string(sqlite3_errmsg(db)).find("FOREIGN KEY"), std::string::npos);
  // Metrics are append-only.
  EXPECT_NE(sqlite3_exec(db, "DELETE FROM metrics", nullptr, nullptr, nullptr), SQLITE_OK);
  EXPECT_NE(std::string(sqlite3_errmsg(db)).find("append-only"), std::string::npos);
  EXPECT_NE(sqlite3_exec(db, "UPDATE metrics SET value = 2", nullptr, nullptr, nullptr), SQLITE_OK);
  EXPECT_EQ(*store_->CountMetrics(job.id), 1);
  sqlite3_close(db);
}

TEST_F(StoreTest, FiltersSortsCountsAndPages) {
  std::vector<JobRecord> jobs;
  for (int i = 0; i < 6; ++i) {
    std::string model = i % 2 ? "ViT-S/7" : "R26s";
    jobs.push_back(MakeJob(model, "fashion-mnist", i < 3 ? 10000 : 30000, 2, i));
    jobs.back().priority = i;
  }
  jobs[4].priority = 9;
  ASSERT_TRUE(store_->AddSweep("fm", "d", jobs).ok());
  ASSERT_TRUE(store_->SetJobState(jobs[1].id, JobState::kRunning).ok());
  ASSERT_TRUE(store_->SetJobState(jobs[2].id, JobState::kFailed).ok());

  JobFilter filter;
  filter.states = {JobState::kRunning, JobState::kFailed};
  EXPECT_EQ(store_->CountJobs(filter)->jobs, 2);
  filter.states.clear();
  filter.subset_size = 30000;
  filter.model = "R26s";
  auto r26 = store_->ListJobs(filter);
  ASSERT_TRUE(r26.ok());
  ASSERT_EQ(r26->size(), 1u);  // jobs 3 (ViT), 4 (R26s), 5 (ViT)
  EXPECT_EQ((*r26)[0].id, jobs[4].id);

  JobFilter by_priority;
  by_priority.sort = JobSort::kPriority;
  by_priority.descending = true;
  by_priority.limit = 2;
  auto top = store_->ListJobs(by_priority);
  ASSERT_TRUE(top.ok());
  ASSERT_EQ(top->size(), 2u);
  EXPECT_EQ((*top)[0].id, jobs[4].id);
  EXPECT_EQ(store_->CountJobs(by_priority)->jobs, 6);  // paging does not change the total

  ASSERT_TRUE(store_->SetJobPriority(jobs[0].id, 100).ok());
  top = store_->ListJobs(by_priority);
  EXPECT_EQ((*top)[0].id, jobs[0].id);
  EXPECT_EQ(store_->SetJobPriority(std::string(64, '1'), 1).code(), StatusCode::kNotFound);
  EXPECT_EQ(*ParseJobSort("updated"), JobSort::kUpdated);
  EXPECT_FALSE(ParseJobSort("speed").ok());
}

TEST_F(StoreTest, JobByUniquePrefix) {
  JobRecord a = MakeJob("ViT-B/16", "cifar10", 50000, 1, 1);
  JobRecord b = MakeJob("ViT-B/16", "cifar10", 50000, 1, 2);
  ASSERT_TRUE(store_->AddSweep("s", "d", {a, b}).ok());
  auto found = store_->GetJobByPrefix(a.id.substr(0, 12));
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  EXPECT_EQ(found->id, a.id);
  EXPECT_EQ(store_->GetJobByPrefix(a.id)->id, a.id);
  EXPECT_EQ(store_->GetJobByPrefix("").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->GetJobByPrefix("*").status().code(), StatusCode::kInvalidArgument);
  // The prefix both ids share is ambiguous; one digit more, unlike either, matches nothing.
  size_t common = 0;
  while (a.id[common] == b.id[common]) ++common;
  if (common > 0) {
    EXPECT_EQ(store_->GetJobByPrefix(a.id.substr(0, common)).status().code(),
              StatusCode::kInvalidArgument);
  }
  std::string other_digit = "0";
  while (other_digit[0] == a.id[common] || other_digit[0] == b.id[common]) ++other_digit[0];
  EXPECT_EQ(store_->GetJobByPrefix(a.id.substr(0, common) + other_digit).status().code(),
            StatusCode::kNotFound);
}

TEST_F(StoreTest, SweepSummariesLedgerAndLatestMetric) {
  JobRecord a = MakeJob("ViT-Ti/7", "fashion-mnist", 10000, 2);
  JobRecord b = MakeJob("R26s", "fashion-mnist", 10000, 2);
  ASSERT_TRUE(store_->AddSweep("one", "d", {a, b}).ok());
  ASSERT_TRUE(store_->AddSweep("two", "d", {b}).ok());
  ASSERT_TRUE(store_->AddSweep("empty", "d", {}).ok());
  ASSERT_TRUE(store_->SetJobState(a.id, JobState::kSucceeded).ok());
  ASSERT_TRUE(store_->AddAttempt(a.id, std::nullopt, "localhost:1").ok());
  ASSERT_TRUE(
      store_
          ->AppendMetrics(
              a.id, 1,
              {{5, "images_seen", 640, 0}, {10, "images_seen", 1280, 1}, {10, "loss", 0.5, 1}})
          .ok());
  EXPECT_EQ(*store_->LatestMetric(a.id, "images_seen"), 1280);
  EXPECT_FALSE(store_->LatestMetric(b.id, "images_seen")->has_value());

  // Results and ledger land together or not at all.
  std::vector<ResultRecord> results = {
      {a.id, Evaluation::kFewShot, "digits", 5, std::nullopt, "accuracy", 0.8}};
  LedgerEntry bad{a.id, 7, 1e12, 0, 20000, "cpu", 10, 5};  // attempt 7 does not exist
  EXPECT_EQ(store_->AddResultsAndLedger(results, bad).code(), StatusCode::kNotFound);
  EXPECT_TRUE(store_->ListResults(a.id)->empty());
  LedgerEntry good{a.id, 1, 1e12, 1e10, 20000, "cpu", 10, 5};
  ASSERT_TRUE(store_->AddResultsAndLedger(results, good).ok());
  EXPECT_EQ(store_->ListResults(a.id)->size(), 1u);
  auto ledger = store_->ListLedger(a.id);
  ASSERT_TRUE(ledger.ok());
  ASSERT_EQ(ledger->size(), 1u);
  EXPECT_EQ((*ledger)[0].images_seen, 20000);
  EXPECT_EQ((*ledger)[0].device_kind, "cpu");

  auto summaries = store_->SweepSummaries();
  ASSERT_TRUE(summaries.ok()) << summaries.status().ToString();
  ASSERT_EQ(summaries->size(), 3u);
  const SweepSummary& one = (*summaries)[0];
  EXPECT_EQ(one.name, "one");
  EXPECT_EQ(one.jobs, 2);
  EXPECT_EQ(one.jobs_by_state.at("succeeded"), 1);
  EXPECT_EQ(one.jobs_by_state.at("pending"), 1);
  EXPECT_DOUBLE_EQ(one.planned_train_flops, a.planned_train_flops + b.planned_train_flops);
  EXPECT_DOUBLE_EQ(one.spent_train_flops, 1e12);
  EXPECT_EQ((*summaries)[1].jobs, 1);
  EXPECT_EQ((*summaries)[1].spent_train_flops, 0);
  EXPECT_EQ((*summaries)[2].jobs, 0);

  auto sweeps_of_b = store_->JobSweeps(b.id);
  ASSERT_TRUE(sweeps_of_b.ok());
  EXPECT_EQ(*sweeps_of_b, (std::vector<std::string>{"one", "two"}));
}

TEST_F(StoreTest, RetentionThinsOldFinishedCurvesOnlyAndArchivesWhatItRemoves) {
  JobRecord old_done = MakeJob("ViT-Ti/7", "fashion-mnist", 10000, 2);
  JobRecord running = MakeJob("R26s", "fashion-mnist", 10000, 2);
  JobRecord new_done = MakeJob("R26s", "fashion-mnist", 20000, 2);
  ASSERT_TRUE(store_->AddSweep("s", "d", {old_done, running, new_done}).ok());
  for (const JobRecord& job : {old_done, running, new_done}) {
    ASSERT_TRUE(store_->AddAttempt(job.id, std::nullopt, "h:1").ok());
    std::vector<MetricPoint> points;
    for (int step = 0; step < 100; ++step) {
      points.push_back({step, "loss", 1.0 / (step + 1), now()});
      points.push_back({step, "images_seen", 64.0 * step, now()});
    }
    ASSERT_TRUE(store_->AppendMetrics(job.id, 1, points).ok());
  }
  ASSERT_TRUE(store_->SetJobState(old_done.id, JobState::kSucceeded).ok());
  ASSERT_TRUE(store_->AddResultsAndLedger(
                        {{old_done.id, Evaluation::kFewShot, "digits", 5, 0, "accuracy", 0.8}},
                        LedgerEntry{old_done.id, 1, 1e12, 0, 6400, "cpu", 10, 10})
                  .ok());
  ASSERT_TRUE(store_->AddCheckpoint({old_done.id, 99, "/runs/x/step-99", std::string(64, 'c'), 0}).ok());
  ASSERT_TRUE(store_->SetJobState(running.id, JobState::kRunning).ok());
  clock_.Advance(std::chrono::hours(24 * 100));
  ASSERT_TRUE(store_->SetJobState(new_done.id, JobState::kSucceeded).ok());

  RetentionRule rule;
  rule.finished_before = now() - 90 * 86400;
  rule.keep_every = 10;
  rule.archive = dir_.File("archive.db");
  auto outcome = store_->ApplyRetention(rule);
  ASSERT_TRUE(outcome.ok()) << outcome.status().ToString();
  EXPECT_EQ(outcome->jobs, 1);
  EXPECT_EQ(outcome->points_removed, 2 * 89);
  // Steps 0, 10, ..., 90 and the last (99) of each curve stay; the newest value is unchanged.
  auto kept = store_->ReadMetrics(old_done.id);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->size(), 2u * 11);
  for (const MetricPoint& p : *kept) EXPECT_TRUE(p.step % 10 == 0 || p.step == 99) << p.step;
  EXPECT_EQ(*store_->LatestMetric(old_done.id, "images_seen"), 64.0 * 99);
  EXPECT_EQ(*store_->CountMetrics(running.id), 200);
  EXPECT_EQ(*store_->CountMetrics(new_done.id), 200);
  // Results, ledger and checkpoints are untouched; the removed points are in the archive.
  EXPECT_EQ(store_->ListResults(old_done.id)->size(), 1u);
  EXPECT_EQ(store_->ListLedger(old_done.id)->size(), 1u);
  EXPECT_EQ(store_->ListCheckpoints(old_done.id)->size(), 1u);
  sqlite3* archive = nullptr;
  ASSERT_EQ(sqlite3_open_v2(rule.archive->c_str(), &archive, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(archive, "SELECT count(*), min(step), max(step) FROM metrics", -1,
                               &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 2 * 89);
  EXPECT_EQ(sqlite3_column_int(stmt, 1), 1);
  EXPECT_EQ(sqlite3_column_int(stmt, 2), 98);
  sqlite3_finalize(stmt);
  sqlite3_close(archive);
  // Metrics are append-only again afterwards, and a second pass finds nothing more to remove.
  EXPECT_EQ(QueryText("SELECT count(*) FROM sqlite_schema WHERE name = 'metrics_no_delete'"), "1");
  auto again = store_->ApplyRetention(rule);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->points_removed, 0);
  rule.keep_every = 0;
  EXPECT_EQ(store_->ApplyRetention(rule).status().code(), StatusCode::kInvalidArgument);
}

TEST(StoreOpenTest, NewerSchemaVersionIsRefusedAndFileLeftAlone) {
  TempDir dir;
  std::string path = dir.File("future.db");
  { ASSERT_TRUE(Store::Open(path).ok()); }
  int newer = LatestSchemaVersion() + 1;
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  std::string bump = "PRAGMA user_version = " + std::to_string(newer);
  ASSERT_EQ(sqlite3_exec(db, bump.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);

  for (bool read_only : {false, true}) {
    OpenOptions options;
    options.read_only = read_only;
    auto store = Store::Open(path, options);
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.status().code(), StatusCode::kFailedPrecondition);
    const std::string& message = store.status().message();
    EXPECT_NE(message.find("schema version " + std::to_string(newer)), std::string::npos)
        << message;
    EXPECT_NE(message.find("versions up to " + std::to_string(LatestSchemaVersion())),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("upgrade vitscale"), std::string::npos) << message;
  }
}

TEST(StoreOpenTest, NonSqliteFileGivesClearErrorAndIsNotTouched) {
  TempDir dir;
  std::string path = dir.File("notes.txt");
  std::string content(4096, 'x');
  content.replace(0, 26, "this is not a database at");
  { std::ofstream(path) << content; }
  for (bool read_only : {false, true}) {
    OpenOptions options;
    options.read_only = read_only;
    auto store = Store::Open(path, options);
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.status().code(), StatusCode::kCorruption);
    EXPECT_NE(store.status().message().find("is not a vitscale database"), std::string::npos)
        << store.status().message();
  }
  std::ifstream in(path);
  std::string after((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(after, content);
}

TEST(StoreOpenTest, DamagedDatabaseGivesCorruptionNotCrash) {
  TempDir dir;
  std::string path = dir.File("damaged.db");
  {
    auto store = Store::Open(path);
    ASSERT_TRUE(store.ok());
    std::vector<JobRecord> jobs;
    for (int i = 0; i < 200; ++i) jobs.push_back(MakeJob("ViT-B/16", "cifar10", 50000, 1, i));
    ASSERT_TRUE((*store)->AddSweep("s", std::string(10000, 'y'), jobs).ok());
  }
  // Overwrite the pages after the first with garbage; the header still says SQLite.
  {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(4096);
    std::string garbage(8 * 4096, '\xa5');
    file.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  auto store = Store::Open(path);
  if (!store.ok()) {
    EXPECT_NE(store.status().message().find(path), std::string::npos);
    return;
  }
  // If the schema page survived, reads of the damaged pages fail with an error, not a crash.
  auto jobs = (*store)->ListJobs({});
  EXPECT_FALSE(jobs.ok());
}

TEST(StoreOpenTest, ReadOnlyOpenOfMissingFileCreatesNothing) {
  TempDir dir;
  std::string path = dir.File("missing.db");
  OpenOptions options;
  options.read_only = true;
  auto store = Store::Open(path, options);
  ASSERT_EQ(store.status().code(), StatusCode::kNotFound);
  EXPECT_NE(store.status().message().find("does not exist"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));

  auto no_dir = Store::Open(dir.File("no/such/dir/x.db"));
  EXPECT_EQ(no_dir.status().code(), StatusCode::kIOError);
  EXPECT_NE(no_dir.status().message().find("directory exists"), std::string::npos);
}

TEST(StoreOpenTest, ForeignSqliteDatabaseIsNotMigrated) {
  TempDir dir;
  std::string path = dir.File("other.db");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE t (x)", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto store = Store::Open(path);
  ASSERT_EQ(store.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(store.status().message().find("not a vitscale one"), std::string::npos);
}

TEST(MigrationTest, Version2DropsDuplicateMetricPointsOfAVersion1Database) {
  TempDir dir;
  std::string path = dir.File("v1.db");
  {
    auto store = Store::Open(path);
    ASSERT_TRUE(store.ok());
    JobRecord job = MakeJob("R50x1", "jft-300m", 303000000, 7);
    ASSERT_TRUE((*store)->AddSweep("s", "d", {job}).ok());
    ASSERT_TRUE((*store)->AddAttempt(job.id, std::nullopt, "h:1").ok());
    ASSERT_TRUE((*store)->AppendMetrics(job.id, 1, {{0, "loss", 2, 0}, {1, "loss", 1, 0}}).ok());
  }
  // Make it what version 1 was, with each point stored twice (a retried batch).
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  std::string to_v1 = UndoMigration5() +
      "ALTER TABLE jobs DROP COLUMN gpu_kind;"
      "ALTER TABLE agents DROP COLUMN gpu_kind;"
      "DROP TABLE throughput_imports;"
      "DROP TABLE agent_credentials;"
      "ALTER TABLE attempts DROP COLUMN phase;"
      "ALTER TABLE attempts DROP COLUMN phase_index;"
      "ALTER TABLE attempts DROP COLUMN phase_count;"
      "ALTER TABLE attempts DROP COLUMN phase_detail;"
      "ALTER TABLE attempts DROP COLUMN report_token_sha256;"
      "ALTER TABLE jobs DROP COLUMN one_host;"
      "DROP INDEX metrics_by_job_step_name;"
      "CREATE INDEX metrics_by_job_step ON metrics (job_id, step);"
      "INSERT INTO metrics SELECT * FROM metrics;"
      "PRAGMA user_version = 1;";
  ASSERT_EQ(sqlite3_exec(db, to_v1.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);

  auto store = Store::Open(path);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ(*(*store)->SchemaVersion(), LatestSchemaVersion());
  JobRecord job = MakeJob("R50x1", "jft-300m", 303000000, 7);
  EXPECT_EQ((*store)->GetAttempt(job.id, 1)->report_token_sha256, "");  // migration 3
  EXPECT_TRUE((*store)->ListThroughputImports()->empty());              // migration 4
  EXPECT_EQ((*store)->GetJob(job.id)->gpu_kind, "");                     // migration 6
  EXPECT_FALSE((*store)->GetJob(job.id)->one_host);  // migration 7: the ranks may span hosts
  EXPECT_FALSE((*store)->GetJob(job.id)->phase.has_value());            // migration 8
  EXPECT_EQ(*(*store)->CountMetrics(job.id), 2);
  auto points = (*store)->ReadMetrics(job.id);
  ASSERT_TRUE(points.ok());
  ASSERT_EQ(points->size(), 2u);
  EXPECT_EQ((*points)[0].value, 2);
  EXPECT_EQ((*points)[1].value, 1);
}

TEST(MigrationTest, Version5IndexesAndCountsAVersion4Database) {
  TempDir dir;
  std::string path = dir.File("v3.db");
  std::vector<JobRecord> jobs;
  for (int seed = 0; seed < 6; ++seed) jobs.push_back(MakeJob("R26s", "fashion-mnist", 1000, 2, seed));
  {
    auto store = Store::Open(path);
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->AddSweep("a", "d", jobs).ok());
    ASSERT_TRUE((*store)->AddSweep("b", "d", {jobs[0], jobs[1]}).ok());
    ASSERT_TRUE((*store)->SetJobState(jobs[0].id, JobState::kSucceeded).ok());
    ASSERT_TRUE((*store)->SetJobState(jobs[2].id, JobState::kFailed).ok());
    ASSERT_TRUE((*store)->AddAttempt(jobs[0].id, std::nullopt, "h:1").ok());
    ASSERT_TRUE((*store)->AddLedgerEntry({jobs[0].id, 1, 3e12, 0, 10, "cpu", 1, 1}).ok());
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  std::string to_v4 = "ALTER TABLE attempts DROP COLUMN phase;"
                      "ALTER TABLE attempts DROP COLUMN phase_index;"
                      "ALTER TABLE attempts DROP COLUMN phase_count;"
                      "ALTER TABLE attempts DROP COLUMN phase_detail;"
                      "ALTER TABLE jobs DROP COLUMN one_host;"
                      "ALTER TABLE jobs DROP COLUMN gpu_kind;"
                          "ALTER TABLE agents DROP COLUMN gpu_kind;" +
                          UndoMigration5() + "PRAGMA user_version = 4;";
  ASSERT_EQ(sqlite3_exec(db, to_v4.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  sqlite3_close(db);

  auto store = Store::Open(path);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ(*(*store)->SchemaVersion(), LatestSchemaVersion());
  // The counters start from what the old database holds, and then follow changes.
  JobFilter pending;
  pending.states = {JobState::kPending};
  EXPECT_EQ((*store)->CountJobs(pending)->jobs, 4);
  EXPECT_EQ((*store)->CountJobs({})->jobs, 6);
  auto summaries = (*store)->SweepSummaries();
  ASSERT_TRUE(summaries.ok());
  ASSERT_EQ(summaries->size(), 2u);
  EXPECT_EQ((*summaries)[0].jobs_by_state.at("pending"), 4);
  EXPECT_EQ((*summaries)[1].jobs, 2);
  EXPECT_EQ((*summaries)[1].jobs_by_state.at("succeeded"), 1);
  EXPECT_DOUBLE_EQ((*summaries)[1].spent_train_flops, 3e12);
  EXPECT_DOUBLE_EQ((*summaries)[1].planned_train_flops,
                   jobs[0].planned_train_flops + jobs[1].planned_train_flops);
  ASSERT_TRUE((*store)->SetJobState(jobs[1].id, JobState::kRunning).ok());
  pending.sweep = "b";
  EXPECT_EQ((*store)->CountJobs(pending)->jobs, 0);
  auto last = (*store)->ListJobPage({JobFilter{}, PageFrom::kLast, {}, 2});
  ASSERT_TRUE(last.ok());
  ASSERT_EQ(last->jobs.size(), 2u);
  EXPECT_EQ(last->jobs[1].id, jobs[5].id);
}

TEST(MigrationTest, AppendedMigrationUpgradesOldDatabaseOnce) {
  TempDir dir;
  std::string path = dir.File("old.db");
  { ASSERT_TRUE(Store::Open(path).ok()); }
  std::vector<Migration> next = Migrations();
  int version = LatestSchemaVersion() + 1;
  next.push_back({version, "add a note to sweeps", "ALTER TABLE sweeps ADD COLUMN note TEXT;"});

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_TRUE(Migrate(db, path, next).ok());
  // Running it again (another process, a restart) changes nothing.
  Status again = Migrate(db, path, next);
  EXPECT_TRUE(again.ok()) << again.ToString();
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), version);
  sqlite3_finalize(stmt);
  EXPECT_EQ(sqlite3_exec(db, "SELECT note FROM sweeps", nullptr, nullptr, nullptr), SQLITE_OK);

  // A migration that fails leaves the version where it was.
  next.push_back({version + 1, "broken", "ALTER TABLE no_such_table ADD COLUMN y;"});
  Status broken = Migrate(db, path, next);
  EXPECT_FALSE(broken.ok());
  EXPECT_NE(broken.message().find("migration " + std::to_string(version + 1)), std::string::npos);
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), version);
  sqlite3_finalize(stmt);
  sqlite3_close(db);

  // This build's Store refuses the upgraded file.
  EXPECT_EQ(Store::Open(path).status().code(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace vitscale::storage
