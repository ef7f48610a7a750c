// Store: the vitscale database (one SQLite file, WAL) behind a small typed API.
//
// Every method returns Status or Expected and never throws. Each mutating method is one
// transaction: it happens whole or not at all, also when the process is killed mid-call.
// Open() applies the migrations of storage/migrations.h and refuses a database written by a
// newer vitscale.
//
// Ownership and threads: a Store owns its SQLite connection and prepared statements; it is
// not thread-safe, so use one Store per thread (the coordinator keeps one on its io_context).
// Its connection is opened without SQLite's own per-connection mutex (SQLITE_OPEN_NOMUTEX),
// which would only guard what the Store's unguarded members already rule out.
// Several processes may open the same file: WAL lets readers run beside one writer, and a
// writer waits up to OpenOptions::busy_timeout_ms for another before giving kUnavailable.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "storage/records.h"

struct sqlite3;
struct sqlite3_stmt;

namespace vitscale::storage {

struct OpenOptions {
  // Read-only opens never create, migrate or write the file (exports, `vitscale show`).
  bool read_only = false;
  int busy_timeout_ms = 5000;
  // The clock whose wall time the store stamps rows with; the system clock when unset. Tests
  // pass a FakeClock. Must outlive the store.
  const Clock* clock = nullptr;
  // SQLite's page cache for this connection. Big enough that a transaction adding a 10,000-job
  // sweep (a row and 19 index entries per job) does not spill its pages to the WAL over and
  // over; bulk loads pass more.
  int cache_mib = 64;
  // Reads through a memory map of the file's first `mmap_mib` MiB (PRAGMA mmap_size; SQLite
  // caps it, at 2 GiB in Debian's build): a read that touches more pages than the page cache
  // holds (a 10,000-job sweep's table, whose jobs lie all over a million-job file) finds them
  // in the system's file cache instead of copying each in again. 0: no map.
  int mmap_mib = 4096;
  // false: commits are not synced to disk (PRAGMA synchronous = OFF), so a power loss may lose
  // or damage the database. Only for throwaway databases: the scale benchmark's fill.
  bool sync_commits = true;
};

// A job of a sweep as its results table reads it, with what its attempts cost (the ledger's
// sums; ledger_entries 0 = it has reported no compute yet).
struct SweepTableJob {
  int64_t position = 0;  // its place in the sweep's expansion
  std::string id;
  std::string model;
  std::string family;
  std::string dataset;
  int64_t subset_size = 0;
  double epochs = 0;
  JobState state = JobState::kPending;
  double planned_train_flops = 0;
  int ledger_entries = 0;
  double train_flops = 0;
  double device_seconds = 0;
};

// A transfer accuracy (metric "accuracy", not a pretraining figure) of the job at
// SweepTable::jobs[row], averaged over seeds.
struct SweepTableResult {
  size_t row = 0;
  Evaluation evaluation = Evaluation::kFewShot;
  std::string dataset;
  std::optional<int> shots;
  double mean = 0;
  int runs = 0;  // how many seeds went into the mean
};

struct SweepTable {
  std::vector<SweepTableJob> jobs;        // in the sweep's order
  std::vector<SweepTableResult> results;  // by row, then evaluation, dataset and shots
};

// A transfer accuracy's column: (evaluation, dataset, shots) of a result found in the sweep.
struct SweepTableColumn {
  Evaluation evaluation = Evaluation::kFewShot;
  std::string dataset;
  std::optional<int> shots;
};

// Keyset paging of a sweep's table (the study view's rows): `limit` jobs from one end of the
// sweep's order, or just after/before the job at `position` in it.
struct SweepTablePageRequest {
  PageFrom from = PageFrom::kFirst;
  int64_t position = 0;
  int64_t limit = 100;
};

struct SweepTablePage {
  int64_t sweep_id = 0;
  SweepTable table;                       // the page's jobs, in the sweep's order
  std::vector<SweepTableColumn> columns;  // every transfer column of the whole sweep
  int64_t jobs_before = 0;                // the sweep's jobs before the page's first
  int64_t total = 0;                      // the sweep's jobs
  bool more_before = false;               // a page before this one / after it exists
  bool more_after = false;
};

// What a sweep's finished work looked like at one moment, read in O(log n) without touching
// the sweep's rows: the coordinator keeps a sweep's scaling-law fits until SweepChangedSince
// says otherwise. The last three are the whole database's newest, so that a later check looks
// only at what was written after them.
struct SweepMark {
  int64_t sweep_id = 0;
  int64_t succeeded = 0;          // the sweep's succeeded jobs (sweep_counts)
  double spent_train_flops = 0;   // the sweep's ledger total (sweep_compute)
  double last_success = 0;        // the newest updated_at of a succeeded job, any sweep
  int64_t last_result = 0;        // the newest rowid of results, any sweep
  int64_t last_ledger = 0;        // the newest rowid of compute_ledger, any sweep
  bool operator==(const SweepMark& other) const;
};

class Store {
 public:
  // Opens (creating it unless read-only) the database at `path` and brings its schema to the
  // newest version this build knows.
  static Expected<std::unique_ptr<Store>> Open(const std::string& path, OpenOptions options = {});
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::string& path() const { return path_; }
  // What it was opened with: a second connection to the same file (the coordinator's metric
  // writer) opens with the same.
  const OpenOptions& options() const { return options_; }
  // PRAGMA user_version of the open database.
  Expected<int> SchemaVersion();

  // Sweeps and jobs -----------------------------------------------------------------------
  // Records a sweep and its jobs in one transaction. Jobs already in the database (by id) are
  // linked to the sweep, not duplicated. Re-adding a sweep with the same name and the same job
  // ids adds nothing; the same name with different jobs is kAlreadyExists.
  Expected<AddSweepOutcome> AddSweep(const std::string& name, const std::string& definition,
                                     const std::vector<JobRecord>& jobs);
  // The bulk path, for loading work done elsewhere (bench/scale fills a year of it): AddSweep,
  // but each new job is written once with its own state (pending, succeeded, failed or
  // cancelled), submitted_at and updated_at instead of as pending now, so a finished job costs
  // one insert rather than an insert and an update. The counters are kept as for any insert.
  Expected<AddSweepOutcome> ImportSweep(const std::string& name, const std::string& definition,
                                        const std::vector<JobRecord>& jobs);
  Expected<SweepRecord> GetSweep(const std::string& name);  // kNotFound suggests a near name
  Expected<std::vector<SweepRecord>> ListSweeps();          // oldest first
  // Every sweep, oldest first; or only the one with `sweep_id` (none when there is no such).
  Expected<std::vector<SweepSummary>> SweepSummaries(std::optional<int64_t> sweep_id = {});
  // Names of the sweeps a job belongs to, oldest first.
  Expected<std::vector<std::string>> JobSweeps(const std::string& job_id);

  Expected<JobRecord> GetJob(const std::string& id);
  // The job's canonical config alone, which a launch sends: without the columns GetJob derives
  // from the job's attempts and metrics. kNotFound for an unknown job.
  Expected<std::string> GetJobConfig(const std::string& id);
  // The one job whose id starts with `prefix` (hex digits); several matches are
  // kInvalidArgument asking for more digits.
  Expected<JobRecord> GetJobByPrefix(const std::string& prefix);
  // The whole list (or its first `limit` after `offset`): for exports and start-up, which read
  // every row they ask for. An unknown sweep is kNotFound suggesting a near name.
  Expected<std::vector<JobRecord>> ListJobs(const JobFilter& filter);
  // One page of the job list by keyset (docs/storage.md, "Paging"): the work is O(page) at any
  // depth for every single filter and sort the job table offers. An unknown sweep is an empty
  // page.
  Expected<JobPage> ListJobPage(const JobPageRequest& request);
  // Jobs matching `filter` (its limit and offset ignored): exact from the maintained counters
  // when it filters by sweep and state only, else counted up to `bound` (exact = false above).
  static constexpr int64_t kCountBound = 10000;
  Expected<JobCount> CountJobs(const JobFilter& filter, int64_t bound = kCountBound);
  // The query plans (EXPLAIN QUERY PLAN) of every statement ListJobPage and CountJobs run for
  // `filter`, each as its SQL followed by the plan's lines, indented two spaces per level of
  // the plan's tree: for the test that no listed query scans the jobs table.
  Expected<std::vector<std::string>> ExplainJobList(const JobFilter& filter);
  // Moves a job to `to`. With `expected_from`, the move happens only if the job is in that
  // state (kFailedPrecondition otherwise), so two deciders cannot both move one job.
  Status SetJobState(const std::string& id, JobState to,
                     std::optional<JobState> expected_from = std::nullopt);

  Status SetJobPriority(const std::string& id, int priority);

  // The scheduler's actions, one call each (coordinator/actions.h) ---------------------------
  // A Transition: moves the job from `from` to `to` (kFailedPrecondition, changing nothing, if it
  // is not in `from`), records its retries left and, with `end`, ends its open attempt. One
  // transaction; returns the job as it is afterwards.
  Expected<JobRecord> ApplyTransition(const std::string& job_id, JobState from, JobState to,
                                      int retries_left, std::optional<AttemptEnd> end);
  // A Launch: starts the job's next attempt led by `agent_id` on `hosts`, resumed from the
  // job's newest checkpoint if it has one, with the hash of its report token. One transaction.
  Expected<AttemptRecord> StartAttempt(const std::string& job_id, const std::string& agent_id,
                                       const std::string& hosts,
                                       const std::string& report_token_sha256);

  // Attempts and agents --------------------------------------------------------------------
  // Starts the job's next attempt (numbered 1, 2, ...) and returns its number.
  Expected<int> AddAttempt(const std::string& job_id, const std::optional<std::string>& agent_id,
                           const std::string& hosts,
                           std::optional<int64_t> resumed_from_step = std::nullopt);
  // Ends a running attempt; ending one twice is kFailedPrecondition.
  Status EndAttempt(const std::string& job_id, int number, AttemptOutcome outcome,
                    std::optional<int> exit_status);
  Expected<std::vector<AttemptRecord>> ListAttempts(const std::string& job_id);
  // One attempt; kNotFound naming the job and number.
  Expected<AttemptRecord> GetAttempt(const std::string& job_id, int number);
  // How many attempts the job has had: the number of its newest (0 before the first).
  // kNotFound for an unknown job.
  Expected<int> CountAttempts(const std::string& job_id);
  // Records the phase a running attempt reports (it replaces the one before); kNotFound for an
  // unknown attempt, kFailedPrecondition for one that has ended.
  Status SetAttemptPhase(const std::string& job_id, int number, const PhaseRecord& phase);
  // The attempt in progress (no end time), if any.
  Expected<std::optional<AttemptRecord>> OpenAttempt(const std::string& job_id);

  // Registers an agent or refreshes it; stamps last_heartbeat_at with the clock.
  Status UpsertAgent(const AgentRecord& agent);
  Expected<std::vector<AgentRecord>> ListAgents();

  // Agent credentials: the hash of each host's token (docs/security.md). Putting one for a host
  // replaces (revokes) the one it had; deleting one that does not exist is kNotFound.
  Status PutAgentCredential(const std::string& host, const std::string& token_sha256);
  Status DeleteAgentCredential(const std::string& host);
  Expected<std::vector<AgentCredential>> ListAgentCredentials();

  // Metrics, checkpoints, results, compute ------------------------------------------------
  // Appends the whole batch in one transaction: after a crash, all of it or none of it is there.
  // A point is named by (attempt, step, name); one already stored (a retried batch) is skipped.
  Status AppendMetrics(const std::string& job_id, int attempt,
                       const std::vector<MetricPoint>& points);
  // Points of a job with step > after_step, in step order (a live curve polls with its last step).
  Expected<std::vector<MetricPoint>> ReadMetrics(const std::string& job_id,
                                                 int64_t after_step = -1);
  Expected<int64_t> CountMetrics(const std::string& job_id);
  // The value of `name` at the job's highest step; unset when the job has none.
  Expected<std::optional<double>> LatestMetric(const std::string& job_id, const std::string& name);

  // Retention (docs/storage.md, "Retention"): for every job that finished (succeeded, failed or
  // cancelled) before `rule.finished_before`, keeps each curve's points at steps divisible by
  // `rule.keep_every` and its last point, and removes the others from `metrics`, first copying
  // them to the SQLite file `rule.archive` (its table `metrics`, created if missing) when set.
  // Results, ledgers, checkpoints, attempts and jobs are never touched. One transaction per job,
  // so a coordinator writing beside it waits at most one job's worth.
  Expected<RetentionOutcome> ApplyRetention(const RetentionRule& rule);

  Status AddCheckpoint(const CheckpointRecord& checkpoint);  // created_at from the clock
  Expected<std::vector<CheckpointRecord>> ListCheckpoints(const std::string& job_id);  // by step

  // Adds a batch of results in one transaction; a result reported again replaces the old value.
  Status AddResults(const std::vector<ResultRecord>& results);
  Expected<std::vector<ResultRecord>> ListResults(const std::string& job_id);

  Status AddLedgerEntry(const LedgerEntry& entry);
  // What an attempt reports when it ends: its results and its cost, in one transaction.
  Status AddResultsAndLedger(const std::vector<ResultRecord>& results,
                             const std::optional<LedgerEntry>& entry);
  Expected<std::vector<LedgerEntry>> ListLedger(const std::string& job_id);  // by attempt

  // Throughput, for planning (docs/planning.md) ---------------------------------------------
  // Every succeeded attempt that ran from scratch and reported its ledger, oldest first.
  Expected<std::vector<ThroughputSample>> ThroughputSamples();
  // Adds or replaces benchmark rows, all in one transaction.
  Status ImportThroughput(const std::vector<ThroughputImport>& rows);
  Expected<std::vector<ThroughputImport>> ListThroughputImports();

  // Queries for tables and plots over a sweep (storage/results_table.h) -------------------
  // Two queries, each a walk of the sweep's primary key (job id order) joined by key (no sort,
  // no scan of the jobs or results tables), the rows then put in the sweep's order;
  // kNotFound when the sweep does not exist.
  Expected<SweepTable> ReadSweepTable(const std::string& sweep_name);
  // One page of it, with the sweep's columns and where the page lies: each query is an index
  // walk of the page's rows (or of the sweep's index entries only: the columns, the counts),
  // so a page costs the same at any depth. kNotFound when the sweep does not exist.
  Expected<SweepTablePage> ReadSweepTablePage(const std::string& sweep_name,
                                              const SweepTablePageRequest& request);
  // The query plans (EXPLAIN QUERY PLAN) of ReadSweepTable's and ReadSweepTablePage's
  // statements, as ExplainJobList's.
  Expected<std::vector<std::string>> ExplainSweepTable();
  // The sweep's mark now; kNotFound when the sweep does not exist.
  Expected<SweepMark> ReadSweepMark(const std::string& sweep_name);
  // Whether, between two marks of one sweep, a job of the sweep succeeded or stopped being
  // succeeded, or a result or a ledger entry of one of its jobs was added or replaced: all
  // that its results table can show of finished work. Looks only at the rows written between
  // the marks, through indexes: no walk over the sweep's jobs.
  Expected<bool> SweepChangedSince(const SweepMark& before, const SweepMark& now);
  // The query plans of SweepChangedSince's statements, as ExplainJobList's.
  Expected<std::vector<std::string>> ExplainSweepChanges();

  // Runs `body` in one transaction: every write it makes commits together (one fsync), or none
  // does if it returns an error. A failed call inside it undoes only its own writes.
  Status Atomically(const std::function<Status()>& body);

  // Outermost transactions committed on this connection since it opened: the tests that check
  // that writes arriving together share one commit (one fsync) count them.
  int64_t commits() const { return commits_; }

 private:
  class Transaction;
  int open_transactions_ = 0;  // Transactions begun and not yet ended, outermost included
  int64_t commits_ = 0;
  Store(sqlite3* db, std::string path, OpenOptions options);

  // The cached prepared statement for `sql`, reset and with its bindings cleared.
  Expected<sqlite3_stmt*> Prepare(const char* sql);
  // `sql`'s EXPLAIN QUERY PLAN: the SQL, then the plan's lines indented two spaces per level.
  Expected<std::string> ExplainPlan(const std::string& sql);
  Status Exec(const char* sql);
  // A Status for the last error on the connection, saying what `what` was doing.
  Status Error(const std::string& what);
  // Bodies of AddResults and AddLedgerEntry, to run inside a caller's transaction.
  Status InsertResults(const std::vector<ResultRecord>& results);
  Status InsertLedgerEntry(const LedgerEntry& entry);
  // AddAttempt's and StartAttempt's insert, inside the caller's transaction.
  Expected<AttemptRecord> InsertAttempt(const std::string& job_id,
                                        const std::optional<std::string>& agent_id,
                                        const std::string& hosts,
                                        std::optional<int64_t> resumed_from_step,
                                        const std::string& report_token_sha256);
  // AddSweep's and ImportSweep's body: with `keep_states`, the jobs' own state and times.
  Expected<AddSweepOutcome> InsertSweep(const std::string& name, const std::string& definition,
                                        const std::vector<JobRecord>& jobs, bool keep_states);
  // Adds a new sweep's jobs to the counters (job_counts, sweep_counts, sweep_compute; migration
  // 10): `added_by_state` are the jobs the sweep added, by state. REQUIRES: in a transaction.
  Status CountSweepJobs(int64_t sweep_id, const std::map<JobState, int64_t>& added_by_state);
  Status CheckJobExists(const std::string& job_id);
  // The id of the sweep named `name`, unset when there is none.
  Expected<std::optional<int64_t>> SweepId(const std::string& name);
  // Up to `limit` rows of the job list with their positions, in the filter's order or reversed,
  // starting after `after` when given (ListJobPage's reads).
  Expected<std::vector<std::pair<JobRecord, JobPosition>>> ReadJobRows(const JobFilter& filter,
                                                                       int64_t sweep_id,
                                                                       bool reversed,
                                                                       const JobPosition* after,
                                                                       int64_t limit);
  // The sweep's jobs at positions first..last with their results (ReadSweepTable's reads).
  Expected<SweepTable> ReadSweepRows(int64_t sweep_id, int64_t first, int64_t last);
  Status CheckAttemptExists(const std::string& job_id, int attempt);
  double Now() const;

  sqlite3* db_;
  std::string path_;
  OpenOptions options_;
  std::unordered_map<std::string, sqlite3_stmt*> statements_;
};

}  // namespace vitscale::storage
