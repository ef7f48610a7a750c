#include "storage/store.h"

#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <utility>

#include "common/names.h"
#include "common/text.h"
#include "storage/migrations.h"

namespace vitscale::storage {
namespace {

// One use of a cached prepared statement: binds parameters in order, steps, reads columns, and
// resets the statement when it goes out of scope so that no read transaction stays open.
class Query {
 public:
  explicit Query(sqlite3_stmt* stmt) : stmt_(stmt) {}
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;
  ~Query() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  Query& Text(std::string_view value) {
    Keep(sqlite3_bind_text(stmt_, ++index_, value.data(), static_cast<int>(value.size()),
                           SQLITE_TRANSIENT));
    return *this;
  }
  Query& Int(int64_t value) {
    Keep(sqlite3_bind_int64(stmt_, ++index_, value));
    return *this;
  }
  // NaN becomes NULL: SQLite has no NaN.
  Query& Real(double value) {
    Keep(std::isnan(value) ? sqlite3_bind_null(stmt_, ++index_)
                           : sqlite3_bind_double(stmt_, ++index_, value));
    return *this;
  }
  Query& Null() {
    Keep(sqlite3_bind_null(stmt_, ++index_));
    return *this;
  }
  Query& OptText(const std::optional<std::string>& value) { return value ? Text(*value) : Null(); }
  template <typename T>
  Query& OptInt(const std::optional<T>& value) {
    return value ? Int(*value) : Null();
  }

  // SQLITE_ROW, SQLITE_DONE, or the error of a bind or of the step.
  int Step() { return bind_error_ != SQLITE_OK ? bind_error_ : sqlite3_step(stmt_); }
  // Steps a statement that returns no rows.
  bool Run() { return Step() == SQLITE_DONE; }

  std::string ColText(int column) const {
    const unsigned char* text = sqlite3_column_text(stmt_, column);
    return text ? std::string(reinterpret_cast<const char*>(text),
                              static_cast<size_t>(sqlite3_column_bytes(stmt_, column)))
                : std::string();
  }
  int64_t ColInt(int column) const { return sqlite3_column_int64(stmt_, column); }
  double ColReal(int column) const {
    return IsNull(column) ? std::numeric_limits<double>::quiet_NaN()
                          : sqlite3_column_double(stmt_, column);
  }
  bool IsNull(int column) const { return sqlite3_column_type(stmt_, column) == SQLITE_NULL; }
  std::optional<int64_t> ColOptInt(int column) const {
    return IsNull(column) ? std::nullopt : std::optional<int64_t>(ColInt(column));
  }
  std::optional<double> ColOptReal(int column) const {
    return IsNull(column) ? std::nullopt : std::optional<double>(ColReal(column));
  }

 private:
  void Keep(int rc) {
    if (rc != SQLITE_OK && bind_error_ == SQLITE_OK) bind_error_ = rc;
  }

  sqlite3_stmt* stmt_;
  int index_ = 0;
  int bind_error_ = SQLITE_OK;
};

std::optional<int> ToOptInt(std::optional<int64_t> value) {
  return value ? std::optional<int>(static_cast<int>(*value)) : std::nullopt;
}

bool IsLowerHex(const std::string& text, size_t length) {
  if (text.size() != length) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

const char* const kFamilies[] = {"ViT", "ResNet", "hybrid"};

Status ValidateJob(const JobRecord& job, size_t index) {
  std::string where = fmt::format("job {} ({} on {})", index, job.model, job.dataset);
  if (!IsLowerHex(job.id, 64)) {
    return InvalidArgument(fmt::format(
        "{}: id '{}' must be 64 lower-case hex digits (the SHA-256 of its canonical config)", where,
        job.id));
  }
  if (job.model.empty()) return InvalidArgument(where + ": model is empty");
  bool known_family = false;
  for (const char* family : kFamilies) known_family |= job.family == family;
  if (!known_family) {
    return InvalidArgument(
        fmt::format("{}: family '{}' must be one of ViT, ResNet, hybrid", where, job.family));
  }
  if (job.dataset.empty()) return InvalidArgument(where + ": dataset is empty");
  if (job.subset_size <= 0) {
    return InvalidArgument(fmt::format("{}: subset_size {} must be > 0", where, job.subset_size));
  }
  if (!(job.epochs > 0)) {
    return InvalidArgument(fmt::format("{}: epochs {} must be > 0", where, job.epochs));
  }
  if (job.config_json.empty()) return InvalidArgument(where + ": config_json is empty");
  if (!(job.planned_train_flops >= 0)) {
    return InvalidArgument(
        fmt::format("{}: planned_train_flops {} must be >= 0", where, job.planned_train_flops));
  }
  if (job.ranks < 1)
    return InvalidArgument(fmt::format("{}: ranks {} must be >= 1", where, job.ranks));
  if (job.gpus_per_rank < 0 || job.retries_left < 0) {
    return InvalidArgument(where + ": gpus_per_rank and retries_left must be >= 0");
  }
  return Status::Ok();
}

// Columns of JobRecord in the order ReadJob expects, from `jobs j`.
constexpr const char* kJobColumns =
    "j.id, j.model, j.family, j.dataset, j.subset_size, j.epochs, j.config_json, "
    "j.planned_train_flops, j.state, j.priority, j.ranks, j.gpus_per_rank, j.retries_left, "
    "j.submit_order, j.submitted_at, j.updated_at, "
    "(SELECT count(*) FROM attempts a WHERE a.job_id = j.id), "
    "(SELECT m.value FROM metrics m WHERE m.job_id = j.id AND m.name = 'images_seen' "
    "ORDER BY m.step DESC, m.rowid DESC LIMIT 1), "
    "(SELECT a.phase FROM attempts a WHERE a.job_id = j.id AND a.ended_at IS NULL "
    "ORDER BY a.number DESC LIMIT 1), "
    "(SELECT a.phase_index FROM attempts a WHERE a.job_id = j.id AND a.ended_at IS NULL "
    "ORDER BY a.number DESC LIMIT 1), "
    "(SELECT a.phase_count FROM attempts a WHERE a.job_id = j.id AND a.ended_at IS NULL "
    "ORDER BY a.number DESC LIMIT 1), "
    "(SELECT a.phase_detail FROM attempts a WHERE a.job_id = j.id AND a.ended_at IS NULL "
    "ORDER BY a.number DESC LIMIT 1)";

Expected<JobRecord> ReadJob(const Query& q) {
  JobRecord job;
  job.id = q.ColText(0);
  job.model = q.ColText(1);
  job.family = q.ColText(2);
  job.dataset = q.ColText(3);
  job.subset_size = q.ColInt(4);
  job.epochs = q.ColReal(5);
  job.config_json = q.ColText(6);
  job.planned_train_flops = q.ColReal(7);
  ASSIGN_OR_RETURN(job.state, ParseJobState(q.ColText(8)));
  job.priority = static_cast<int>(q.ColInt(9));
  job.ranks = static_cast<int>(q.ColInt(10));
  job.gpus_per_rank = static_cast<int>(q.ColInt(11));
  job.retries_left = static_cast<int>(q.ColInt(12));
  job.submit_order = q.ColInt(13);
  job.submitted_at = q.ColReal(14);
  job.updated_at = q.ColReal(15);
  job.attempts = q.ColInt(16);
  job.images_seen = q.ColOptReal(17);
  // The phase of the job's open attempt (migration 4 keeps it on the attempt).
  if (!q.IsNull(18)) {
    PhaseRecord phase;
    ASSIGN_OR_RETURN(phase.phase, ParseJobPhase(q.ColText(18)));
    phase.index = q.ColInt(19);
    phase.count = q.ColInt(20);
    phase.detail = q.ColText(21);
    job.phase = std::move(phase);
  }
  return job;
}

constexpr const char* kAttemptColumns =
    "job_id, number, agent_id, hosts, started_at, ended_at, outcome, exit_status, "
    "resumed_from_step, report_token_sha256";

Expected<AttemptRecord> ReadAttempt(const Query& q) {
  AttemptRecord attempt;
  attempt.job_id = q.ColText(0);
  attempt.number = static_cast<int>(q.ColInt(1));
  if (!q.IsNull(2)) attempt.agent_id = q.ColText(2);
  attempt.hosts = q.ColText(3);
  attempt.started_at = q.ColReal(4);
  attempt.ended_at = q.ColOptReal(5);
  if (!q.IsNull(6)) {
    ASSIGN_OR_RETURN(attempt.outcome, ParseAttemptOutcome(q.ColText(6)));
  }
  attempt.exit_status = ToOptInt(q.ColOptInt(7));
  attempt.resumed_from_step = q.ColOptInt(8);
  attempt.report_token_sha256 = q.ColText(9);
  return attempt;
}

Status ValidateResult(const ResultRecord& r, size_t index) {
  std::string where = fmt::format("result {} (job {}, {} on {})", index, r.job_id,
                                  EvaluationName(r.evaluation), r.dataset);
  if (r.dataset.empty() || r.metric.empty()) {
    return InvalidArgument(where + ": needs a dataset and a metric");
  }
  if ((r.evaluation == Evaluation::kFewShot) != r.shots.has_value()) {
    return InvalidArgument(where + ": few_shot results need shots; others must leave it unset");
  }
  if (r.shots && *r.shots <= 0) return InvalidArgument(where + ": shots must be > 0");
  if (!std::isfinite(r.value)) return InvalidArgument(where + ": value must be a finite number");
  return Status::Ok();
}

Status ValidateLedgerEntry(const LedgerEntry& e) {
  bool counts_ok = e.train_flops >= 0 && e.eval_flops >= 0 && e.device_seconds >= 0 &&
                   e.wall_seconds >= 0 && e.images_seen >= 0;
  if (!counts_ok || e.device_kind.empty()) {
    return InvalidArgument(fmt::format(
        "ledger entry of job {} attempt {}: FLOPs, images and seconds must be >= 0 and the "
        "device kind set",
        e.job_id, e.attempt));
  }
  return Status::Ok();
}

// FROM and WHERE of ListJobs and CountJobs, shared so that a page and its total agree. The
// selected id is `page_id`. A sweep's page in its own order never touches the jobs table, which
// keeps deep pages of big sweeps cheap.
std::string JobFilterSql(const JobFilter& filter) {
  bool needs_jobs = !filter.sweep || !filter.states.empty() || filter.model || filter.subset_size ||
                    filter.sort != JobSort::kSubmitted;
  std::string sql;
  if (filter.sweep) {
    sql = " FROM sweep_jobs sj JOIN sweeps s ON s.id = sj.sweep_id";
    if (needs_jobs) sql += " JOIN jobs j ON j.id = sj.job_id";
    sql += " WHERE s.name = ?";
  } else {
    sql = " FROM jobs j WHERE 1";
  }
  if (!filter.states.empty()) {
    sql += " AND j.state IN (?";
    for (size_t i = 1; i < filter.states.size(); ++i) sql += ", ?";
    sql += ")";
  }
  if (filter.model) sql += " AND j.model = ?";
  if (filter.subset_size) sql += " AND j.subset_size = ?";
  return sql;
}

// The column JobFilterSql's rows carry the job id in.
const char* JobIdColumn(const JobFilter& filter) { return filter.sweep ? "sj.job_id" : "j.id"; }

void BindJobFilter(const JobFilter& filter, Query& q) {
  if (filter.sweep) q.Text(*filter.sweep);
  for (JobState state : filter.states) q.Text(JobStateName(state));
  if (filter.model) q.Text(*filter.model);
  if (filter.subset_size) q.Int(*filter.subset_size);
}

std::string JobOrderSql(const JobFilter& filter) {
  const char* direction = filter.descending ? " DESC" : "";
  std::string order = filter.sweep ? "sj.position" : "j.submit_order";
  std::string tie = fmt::format(", j.submit_order{}", direction);
  switch (filter.sort) {
    case JobSort::kSubmitted:
      return fmt::format(" ORDER BY {}{}", order, direction);
    case JobSort::kPriority:
      return fmt::format(" ORDER BY j.priority{}{}", direction, tie);
    case JobSort::kModel:
      return fmt::format(" ORDER BY j.model{}{}", direction, tie);
    case JobSort::kSubset:
      return fmt::format(" ORDER BY j.subset_size{}{}", direction, tie);
    case JobSort::kState:
      return fmt::format(" ORDER BY j.state{}{}", direction, tie);
    case JobSort::kUpdated:
      return fmt::format(" ORDER BY j.updated_at{}{}", direction, tie);
  }
  return "";
}

}  // namespace

// BEGIN IMMEDIATE takes the write lock up front: a deferred transaction that reads first and
// writes later can fail with SQLITE_BUSY half-way, which busy_timeout cannot cure.
// Inside an open transaction (Store::Atomically) a Transaction is a savepoint instead: it still
// undoes its own writes when it fails, and the outer transaction commits everything at once.
class Store::Transaction {
 public:
  explicit Transaction(Store* store) : store_(store) {}
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction() {
    if (!open_) return;
    --store_->open_transactions_;
    if (nested_) {
      sqlite3_exec(store_->db_, "ROLLBACK TO nested; RELEASE nested", nullptr, nullptr, nullptr);
    } else {
      sqlite3_exec(store_->db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }
  Status Begin() {
    nested_ = store_->open_transactions_ > 0;
    RETURN_IF_ERROR(store_->Exec(nested_ ? "SAVEPOINT nested" : "BEGIN IMMEDIATE"));
    ++store_->open_transactions_;
    open_ = true;
    return Status::Ok();
  }
  Status Commit() {
    RETURN_IF_ERROR(store_->Exec(nested_ ? "RELEASE nested" : "COMMIT"));
    --store_->open_transactions_;
    open_ = false;
    return Status::Ok();
  }

 private:
  Store* store_;
  bool open_ = false;
  bool nested_ = false;
};

Status Store::Atomically(const std::function<Status()>& body) {
  Transaction tx(this);
  RETURN_IF_ERROR(tx.Begin());
  RETURN_IF_ERROR(body());
  return tx.Commit();
}

Store::Store(sqlite3* db, std::string path, OpenOptions options)
    : db_(db), path_(std::move(path)), options_(std::move(options)) {}

Store::~Store() {
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  sqlite3_close(db_);
}

double Store::Now() const {
  return (options_.clock ? options_.clock : &SystemClock::Get())->WallSeconds();
}

Status Store::Error(const std::string& what) {
  int code = sqlite3_extended_errcode(db_);
  std::string message = fmt::format("{}: {}: {}", path_, what, sqlite3_errmsg(db_));
  switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return Unavailable(message + " (another process holds the database; retry)");
    case SQLITE_CONSTRAINT:
      if (code == SQLITE_CONSTRAINT_FOREIGNKEY) {
        return InvalidArgument(message +
                               " (it refers to a job, attempt, sweep or agent that "
                               "does not exist)");
      }
      return InvalidArgument(message);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Corruption(message);
    case SQLITE_READONLY:
      return FailedPrecondition(message + " (the store was opened read-only)");
    default:
      return IOError(message);
  }
}

Status Store::Exec(const char* sql) {
  if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return Error(sql);
  return Status::Ok();
}

Expected<sqlite3_stmt*> Store::Prepare(const char* sql) {
  auto it = statements_.find(sql);
  if (it != statements_.end()) return it->second;
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
    return Error(fmt::format("cannot prepare '{}'", sql));
  }
  statements_.emplace(sql, stmt);
  return stmt;
}

Expected<std::unique_ptr<Store>> Store::Open(const std::string& path, OpenOptions options) {
  struct stat info;
  bool exists = ::stat(path.c_str(), &info) == 0;
  if (options.read_only && !exists) {
    return NotFound(fmt::format(
        "database {} does not exist; pass the SQLite file the coordinator writes", path));
  }
  if (exists && S_ISDIR(info.st_mode)) {
    return InvalidArgument(fmt::format("{} is a directory; pass the database file in it", path));
  }
  int flags = options.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    std::string message = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return IOError(
        fmt::format("cannot open database {}: {}; check that its directory exists "
                    "and is writable",
                    path, message));
  }
  bool read_only = options.read_only;
  std::unique_ptr<Store> store(new Store(db, path, std::move(options)));
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, store->options_.busy_timeout_ms);

  // The first read of the file: a file that is not SQLite (or is damaged) fails here, before
  // anything is written to it. Either the prepare or the step may be the one to notice.
  auto count_objects = [&store]() -> Expected<int> {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt, store->Prepare("SELECT count(*) FROM sqlite_schema"));
    Query q(stmt);
    if (q.Step() != SQLITE_ROW) return store->Error("cannot read the database");
    return static_cast<int>(q.ColInt(0));
  };
  Expected<int> objects = count_objects();
  if (!objects.ok()) {
    if (objects.status().code() != StatusCode::kCorruption) return objects.status();
    return Corruption(
        fmt::format("{} is not a vitscale database, or it is damaged (SQLite: {}); check the path",
                    path, sqlite3_errmsg(db)));
  }
  int version = 0;
  ASSIGN_OR_RETURN(version, store->SchemaVersion());
  int known = LatestSchemaVersion();
  if (version > known) return FailedPrecondition(NewerSchemaMessage(path, version, known));
  if (version == 0 && *objects > 0) {
    return FailedPrecondition(fmt::format(
        "{} is an SQLite database but not a vitscale one (it has tables and no vitscale schema "
        "version); pass a new file or a vitscale database",
        path));
  }
  RETURN_IF_ERROR(store->Exec("PRAGMA foreign_keys = ON"));
  if (read_only) {
    if (version == 0) {
      return FailedPrecondition(
          fmt::format("{} is empty, not a vitscale database; check the path", path));
    }
    if (version < known) {
      return FailedPrecondition(fmt::format(
          "{} has schema version {}, older than this vitscale's {}; open it read-write once "
          "(start the coordinator on it) to upgrade it",
          path, version, known));
    }
    return store;
  }
  // WAL: readers never block the writer, and a commit is one append to the log. FULL syncs the
  // log at every commit, so a committed transaction survives power loss, not only a crash.
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt, store->Prepare("PRAGMA journal_mode = WAL"));
    Query q(stmt);
    if (q.Step() != SQLITE_ROW || q.ColText(0) != "wal") {
      return IOError(
          fmt::format("{}: cannot switch to WAL journaling ({}); put the database on "
                      "a local filesystem",
                      path, sqlite3_errmsg(db)));
    }
  }
  RETURN_IF_ERROR(store->Exec("PRAGMA synchronous = FULL"));
  RETURN_IF_ERROR(Migrate(db, path, Migrations()));
  return store;
}

Expected<int> Store::SchemaVersion() {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare("PRAGMA user_version"));
  Query q(stmt);
  if (q.Step() != SQLITE_ROW) return Error("cannot read the schema version");
  return static_cast<int>(q.ColInt(0));
}

// Sweeps and jobs ----------------------------------------------------------------------------

Expected<AddSweepOutcome> Store::AddSweep(const std::string& name, const std::string& definition,
                                          const std::vector<JobRecord>& jobs) {
  if (name.empty()) return InvalidArgument("a sweep needs a name");
  std::vector<const JobRecord*> unique_jobs;
  std::set<std::string> ids;
  for (size_t i = 0; i < jobs.size(); ++i) {
    RETURN_IF_ERROR(ValidateJob(jobs[i], i));
    // The same config twice in one expansion is one job.
    if (ids.insert(jobs[i].id).second) unique_jobs.push_back(&jobs[i]);
  }

  Transaction tx(this);
  RETURN_IF_ERROR(tx.Begin());
  AddSweepOutcome outcome;
  std::optional<int64_t> existing;
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare("SELECT id FROM sweeps WHERE name = ?"));
    Query q(stmt);
    int rc = q.Text(name).Step();
    if (rc == SQLITE_ROW)
      existing = q.ColInt(0);
    else if (rc != SQLITE_DONE)
      return Error("cannot look up sweep " + name);
  }
  if (existing) {
    std::set<std::string> linked;
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("SELECT job_id FROM sweep_jobs WHERE sweep_id = ?"));
    Query q(stmt);
    q.Int(*existing);
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) linked.insert(q.ColText(0));
    if (rc != SQLITE_DONE) return Error("cannot read the jobs of sweep " + name);
    if (linked != ids) {
      size_t new_ids = 0;
      for (const std::string& id : ids) new_ids += linked.count(id) == 0;
      return AlreadyExists(fmt::format(
          "sweep '{}' already exists with {} jobs, and this definition expands to {} jobs, {} of "
          "them not in it; submit the changed definition under a new sweep name",
          name, linked.size(), ids.size(), new_ids));
    }
    RETURN_IF_ERROR(tx.Commit());
    outcome.sweep_id = *existing;
    outcome.already_known = static_cast<int>(ids.size());
    return outcome;
  }

  double now = Now();
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("INSERT INTO sweeps (name, definition, created_at) VALUES (?, ?, ?)"));
    Query q(stmt);
    if (!q.Text(name).Text(definition).Real(now).Run()) return Error("cannot add sweep " + name);
    outcome.sweep_id = sqlite3_last_insert_rowid(db_);
  }
  int64_t next_order = 1;
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("SELECT ifnull(max(submit_order), 0) + 1 FROM jobs"));
    Query q(stmt);
    if (q.Step() != SQLITE_ROW) return Error("cannot read the submission order");
    next_order = q.ColInt(0);
  }
  ASSIGN_OR_RETURN(sqlite3_stmt * insert_job,
                   Prepare("INSERT INTO jobs (id, model, family, dataset, subset_size, epochs, "
                           "config_json, planned_train_flops, state, priority, ranks, "
                           "gpus_per_rank, retries_left, submit_order, submitted_at, updated_at) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?) "
                           "ON CONFLICT (id) DO NOTHING"));
  ASSIGN_OR_RETURN(sqlite3_stmt * link_job,
                   Prepare("INSERT INTO sweep_jobs (sweep_id, job_id, position) VALUES (?, ?, ?)"));
  for (size_t position = 0; position < unique_jobs.size(); ++position) {
    const JobRecord& job = *unique_jobs[position];
    {
      Query q(insert_job);
      q.Text(job.id).Text(job.model).Text(job.family).Text(job.dataset).Int(job.subset_size);
      q.Real(job.epochs).Text(job.config_json).Real(job.planned_train_flops).Int(job.priority);
      q.Int(job.ranks).Int(job.gpus_per_rank).Int(job.retries_left).Int(next_order);
      q.Real(now).Real(now);
      if (!q.Run()) return Error(fmt::format("cannot add job {} ({})", job.id, job.model));
    }
    if (sqlite3_changes(db_) == 1) {
      ++outcome.added;
      ++next_order;
    } else {
      ++outcome.already_known;
    }
    Query q(link_job);
    if (!q.Int(outcome.sweep_id).Text(job.id).Int(static_cast<int64_t>(position)).Run()) {
      return Error(fmt::format("cannot link job {} to sweep {}", job.id, name));
    }
  }
  RETURN_IF_ERROR(tx.Commit());
  return outcome;
}

Expected<SweepRecord> Store::GetSweep(const std::string& name) {
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("SELECT id, name, definition, created_at FROM sweeps WHERE name = ?"));
    Query q(stmt);
    int rc = q.Text(name).Step();
    if (rc == SQLITE_ROW) {
      return SweepRecord{q.ColInt(0), q.ColText(1), q.ColText(2), q.ColReal(3)};
    }
    if (rc != SQLITE_DONE) return Error("cannot look up sweep " + name);
  }
  // The error's help is bounded whatever the database holds or the name asks: the first
  // kMaxCandidates names are searched for a near one, and at most 20 are listed.
  std::vector<std::string> names;
  int64_t total = 0;
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("SELECT name, count(*) OVER () FROM sweeps ORDER BY id LIMIT ?"));
    Query q(stmt);
    q.Int(static_cast<int64_t>(kMaxCandidates));
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
      names.push_back(q.ColText(0));
      total = q.ColInt(1);
    }
    if (rc != SQLITE_DONE) return Error("cannot list sweeps");
  }
  std::string known = "the database has no sweeps yet";
  if (!names.empty()) {
    std::vector<std::string> shown(names.begin(), names.begin() + std::min<size_t>(20, names.size()));
    known = "known sweeps: " + fmt::format("{}", fmt::join(shown, ", "));
    if (total > static_cast<int64_t>(shown.size())) {
      known += fmt::format(" and {} more", total - static_cast<int64_t>(shown.size()));
    }
  }
  return NotFound(fmt::format("unknown sweep '{}'{} ({})", Printable(name, 130),
                              DidYouMean(name, names), known));
}

Expected<std::vector<SweepRecord>> Store::ListSweeps() {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("SELECT id, name, definition, created_at FROM sweeps ORDER BY id"));
  Query q(stmt);
  std::vector<SweepRecord> sweeps;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    sweeps.push_back({q.ColInt(0), q.ColText(1), q.ColText(2), q.ColReal(3)});
  }
  if (rc != SQLITE_DONE) return Error("cannot list sweeps");
  return sweeps;
}

Expected<std::vector<SweepSummary>> Store::SweepSummaries() {
  std::vector<SweepSummary> sweeps;
  std::map<int64_t, size_t> index;
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("SELECT s.id, s.name, s.created_at, j.state, count(j.id), "
                             "ifnull(sum(j.planned_train_flops), 0) FROM sweeps s "
                             "LEFT JOIN sweep_jobs sj ON sj.sweep_id = s.id "
                             "LEFT JOIN jobs j ON j.id = sj.job_id "
                             "GROUP BY s.id, j.state ORDER BY s.id"));
    Query q(stmt);
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
      auto [it, added] = index.emplace(q.ColInt(0), sweeps.size());
      if (added) sweeps.push_back({q.ColInt(0), q.ColText(1), q.ColReal(2), 0, {}, 0, 0});
      SweepSummary& sweep = sweeps[it->second];
      if (q.IsNull(3)) continue;  // a sweep without jobs
      sweep.jobs += q.ColInt(4);
      sweep.jobs_by_state[q.ColText(3)] = q.ColInt(4);
      sweep.planned_train_flops += q.ColReal(5);
    }
    if (rc != SQLITE_DONE) return Error("cannot summarize sweeps");
  }
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("SELECT sj.sweep_id, sum(l.train_flops) FROM sweep_jobs sj "
                           "JOIN compute_ledger l ON l.job_id = sj.job_id GROUP BY sj.sweep_id"));
  Query q(stmt);
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    auto it = index.find(q.ColInt(0));
    if (it != index.end()) sweeps[it->second].spent_train_flops = q.ColReal(1);
  }
  if (rc != SQLITE_DONE) return Error("cannot sum the compute of sweeps");
  return sweeps;
}

Expected<std::vector<std::string>> Store::JobSweeps(const std::string& job_id) {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("SELECT s.name FROM sweep_jobs sj JOIN sweeps s ON s.id = sj.sweep_id "
                           "WHERE sj.job_id = ? ORDER BY s.id"));
  Query q(stmt);
  q.Text(job_id);
  std::vector<std::string> names;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) names.push_back(q.ColText(0));
  if (rc != SQLITE_DONE) return Error("cannot list the sweeps of job " + job_id);
  return names;
}

Expected<JobRecord> Store::GetJob(const std::string& id) {
  static const std::string sql = fmt::format("SELECT {} FROM jobs j WHERE j.id = ?", kJobColumns);
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql.c_str()));
  Query q(stmt);
  int rc = q.Text(id).Step();
  if (rc == SQLITE_ROW) return ReadJob(q);
  if (rc != SQLITE_DONE) return Error("cannot read job " + id);
  return NotFound(fmt::format("no job with id '{}'", id));
}

Expected<JobRecord> Store::GetJobByPrefix(const std::string& prefix) {
  bool hex = !prefix.empty() && prefix.size() <= 64 &&
             prefix.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (!hex) {
    return InvalidArgument(
        fmt::format("job id '{}' must be lower-case hex digits (a prefix of the id)", prefix));
  }
  // The prefix is hex, so it holds no GLOB wildcard; GLOB on the key is a range scan.
  static const std::string sql =
      fmt::format("SELECT {} FROM jobs j WHERE j.id GLOB ? || '*' LIMIT 2", kJobColumns);
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql.c_str()));
  Query q(stmt);
  q.Text(prefix);
  std::vector<JobRecord> jobs;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    ASSIGN_OR_RETURN(JobRecord job, ReadJob(q));
    jobs.push_back(std::move(job));
  }
  if (rc != SQLITE_DONE) return Error("cannot look up job " + prefix);
  if (jobs.empty()) return NotFound(fmt::format("no job with id '{}'", prefix));
  if (jobs.size() > 1) {
    return InvalidArgument(
        fmt::format("job id prefix '{}' matches several jobs; give more digits", prefix));
  }
  return std::move(jobs.front());
}

Expected<std::vector<JobRecord>> Store::ListJobs(const JobFilter& filter) {
  if (filter.sweep) RETURN_IF_ERROR(GetSweep(*filter.sweep).status());
  // The page is chosen over ids alone, then its rows are read by key: sorting and skipping the
  // narrow rows is several times faster than carrying config_json through the sort.
  std::string sql = fmt::format("SELECT {}{}{} LIMIT ? OFFSET ?", JobIdColumn(filter),
                                JobFilterSql(filter), JobOrderSql(filter));
  std::vector<std::string> ids;
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql.c_str()));  // a few dozen shapes at most
    Query q(stmt);
    BindJobFilter(filter, q);
    q.Int(filter.limit).Int(filter.offset);
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) ids.push_back(q.ColText(0));
    if (rc != SQLITE_DONE) return Error("cannot list jobs");
  }
  std::vector<JobRecord> jobs;
  jobs.reserve(ids.size());
  for (const std::string& id : ids) {
    ASSIGN_OR_RETURN(JobRecord job, GetJob(id));
    jobs.push_back(std::move(job));
  }
  return jobs;
}

Expected<int64_t> Store::CountJobs(const JobFilter& filter) {
  if (filter.sweep) RETURN_IF_ERROR(GetSweep(*filter.sweep).status());
  std::string sql = "SELECT count(*)" + JobFilterSql(filter);
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql.c_str()));
  Query q(stmt);
  BindJobFilter(filter, q);
  if (q.Step() != SQLITE_ROW) return Error("cannot count jobs");
  return q.ColInt(0);
}

Status Store::SetJobPriority(const std::string& id, int priority) {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("UPDATE jobs SET priority = ?, updated_at = ? WHERE id = ?"));
  Query q(stmt);
  if (!q.Int(priority).Real(Now()).Text(id).Run()) return Error("cannot set the priority of " + id);
  if (sqlite3_changes(db_) == 0) return NotFound(fmt::format("no job with id '{}'", id));
  return Status::Ok();
}

Status Store::SetJobState(const std::string& id, JobState to,
                          std::optional<JobState> expected_from) {
  Transaction tx(this);
  RETURN_IF_ERROR(tx.Begin());
  ASSIGN_OR_RETURN(JobRecord job, GetJob(id));
  if (expected_from && job.state != *expected_from) {
    return FailedPrecondition(fmt::format("job {} is {}, not {}; it was not moved to {}", id,
                                          JobStateName(job.state), JobStateName(*expected_from),
                                          JobStateName(to)));
  }
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("UPDATE jobs SET state = ?, updated_at = ? WHERE id = ?"));
  {
    Query q(stmt);
    if (!q.Text(JobStateName(to)).Real(Now()).Text(id).Run()) {
      return Error("cannot set the state of job " + id);
    }
  }
  return tx.Commit();
}

Expected<JobRecord> Store::ApplyTransition(const std::string& job_id, JobState from, JobState to,
                                           int retries_left, std::optional<AttemptEnd> end) {
  if (retries_left < 0) return InvalidArgument("retries_left must be >= 0");
  Transaction tx(this);
  RETURN_IF_ERROR(tx.Begin());
  ASSIGN_OR_RETURN(JobRecord job, GetJob(job_id));
  if (job.state != from) {
    return FailedPrecondition(fmt::format("job {} is {}, not {}; it was not moved to {}", job_id,
                                          JobStateName(job.state), JobStateName(from),
                                          JobStateName(to)));
  }
  double now = Now();
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("UPDATE jobs SET state = ?, retries_left = ?, updated_at = ? "
                             "WHERE id = ?"));
    Query q(stmt);
    if (!q.Text(JobStateName(to)).Int(retries_left).Real(now).Text(job_id).Run()) {
      return Error("cannot set the state of job " + job_id);
    }
  }
  if (end) {
    // A job that never started (cancelled while pending) has no attempt to end.
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("UPDATE attempts SET ended_at = ?, outcome = ?, exit_status = ? "
                             "WHERE job_id = ? AND ended_at IS NULL"));
    Query q(stmt);
    q.Real(now).Text(AttemptOutcomeName(end->outcome)).OptInt(end->exit_status).Text(job_id);
    if (!q.Run()) return Error("cannot end the attempt of job " + job_id);
  }
  ASSIGN_OR_RETURN(JobRecord after, GetJob(job_id));
  RETURN_IF_ERROR(tx.Commit());
  return after;
}

// Attempts and agents ------------------------------------------------------------------------

Status Store::CheckJobExists(const std::string& job_id) { return GetJob(job_id).status(); }

Status Store::CheckAttemptExists(const std::string& job_id, int attempt) {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("SELECT 1 FROM attempts WHERE job_id = ? AND number = ?"));
  Query q(stmt);
  int rc = q.Text(job_id).Int(attempt).Step();
  if (rc == SQLITE_ROW) return Status::Ok();
  if (rc != SQLITE_DONE) return Error("cannot look up an attempt of job " + job_id);
  RETURN_IF_ERROR(CheckJobExists(job_id));
  return NotFound(
      fmt::format("job {} has no attempt {}; start it with AddAttempt first", job_id, attempt));
}

Expected<int> Store::AddAttempt(const std::string& job_id,
                                const std::optional<std::string>& agent_id,
                                const std::string& hosts,
                                std::optional<int64_t> resumed_from_step) {
  Transaction tx(this);
  RETURN_IF_ERROR(tx.Begin());
  ASSIGN_OR_RETURN(int number, InsertAttempt(job_id, agent_id, hosts, resumed_from_step, ""));
  RETURN_IF_ERROR(tx.Commit());
  return number;
}

Expected<AttemptRecord> Store::StartAttempt(const std::string& job_id, const std::string& agent_id,
                                            const std::string& hosts,
                                            const std::string& report_token_sha256) {
  Transaction tx(this);
  RETURN_IF_ERROR(tx.Begin());
  std::optional<int64_t> resumed_from;
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("SELECT max(step) FROM checkpoints WHERE job_id = ?"));
    Query q(stmt);
    if (q.Text(job_id).Step() != SQLITE_ROW) {
      return Error("cannot read the checkpoints of job " + job_id);
    }
    resumed_from = q.ColOptInt(0);
  }
  ASSIGN_OR_RETURN(int number,
                   InsertAttempt(job_id, agent_id, hosts, resumed_from, report_token_sha256));
  ASSIGN_OR_RETURN(AttemptRecord attempt, GetAttempt(job_id, number));
  RETURN_IF_ERROR(tx.Commit());
  return attempt;
}

Expected<int> Store::InsertAttempt(const std::string& job_id,
                                   const std::optional<std::string>& agent_id,
                                   const std::string& hosts,
                                   std::optional<int64_t> resumed_from_step,
                                   const std::string& report_token_sha256) {
  if (resumed_from_step && *resumed_from_step < 0) {
    return InvalidArgument(fmt::format("resumed_from_step {} must be >= 0", *resumed_from_step));
  }
  if (!report_token_sha256.empty() && !IsLowerHex(report_token_sha256, 64)) {
    return InvalidArgument("a report token's hash must be 64 lower-case hex digits");
  }
  RETURN_IF_ERROR(CheckJobExists(job_id));
  if (agent_id) {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare("SELECT 1 FROM agents WHERE id = ?"));
    Query q(stmt);
    int rc = q.Text(*agent_id).Step();
    if (rc == SQLITE_DONE) {
      return NotFound(fmt::format("agent '{}' is not registered; UpsertAgent it first", *agent_id));
    }
    if (rc != SQLITE_ROW) return Error("cannot look up agent " + *agent_id);
  }
  int number = 1;
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("SELECT number, ended_at IS NULL FROM attempts WHERE job_id = ? "
                             "ORDER BY number DESC LIMIT 1"));
    Query q(stmt);
    int rc = q.Text(job_id).Step();
    if (rc == SQLITE_ROW) {
      if (q.ColInt(1)) {
        return FailedPrecondition(fmt::format(
            "job {} attempt {} has not ended; end it (e.g. as lost) before starting another",
            job_id, q.ColInt(0)));
      }
      number = static_cast<int>(q.ColInt(0)) + 1;
    } else if (rc != SQLITE_DONE) {
      return Error("cannot read the attempts of job " + job_id);
    }
  }
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("INSERT INTO attempts (job_id, number, agent_id, hosts, started_at, "
                             "resumed_from_step, report_token_sha256) VALUES (?, ?, ?, ?, ?, ?, ?)"));
    Query q(stmt);
    q.Text(job_id).Int(number).OptText(agent_id).Text(hosts).Real(Now()).OptInt(resumed_from_step);
    if (!q.Text(report_token_sha256).Run()) return Error("cannot add an attempt to job " + job_id);
  }
  return number;
}

Status Store::EndAttempt(const std::string& job_id, int number, AttemptOutcome outcome,
                         std::optional<int> exit_status) {
  Transaction tx(this);
  RETURN_IF_ERROR(tx.Begin());
  RETURN_IF_ERROR(CheckAttemptExists(job_id, number));
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("UPDATE attempts SET ended_at = ?, outcome = ?, exit_status = ? "
                           "WHERE job_id = ? AND number = ? AND ended_at IS NULL"));
  {
    Query q(stmt);
    q.Real(Now()).Text(AttemptOutcomeName(outcome)).OptInt(exit_status).Text(job_id).Int(number);
    if (!q.Run()) return Error(fmt::format("cannot end attempt {} of job {}", number, job_id));
  }
  if (sqlite3_changes(db_) == 0) {
    return FailedPrecondition(
        fmt::format("attempt {} of job {} has already ended", number, job_id));
  }
  return tx.Commit();
}

Status Store::SetAttemptPhase(const std::string& job_id, int number, const PhaseRecord& phase) {
  ASSIGN_OR_RETURN(
      sqlite3_stmt * stmt,
      Prepare("UPDATE attempts SET phase = ?, phase_index = ?, phase_count = ?, "
              "phase_detail = ? WHERE job_id = ? AND number = ? AND ended_at IS NULL"));
  {
    Query q(stmt);
    q.Text(JobPhaseName(phase.phase)).Int(phase.index).Int(phase.count).Text(phase.detail);
    q.Text(job_id).Int(number);
    if (!q.Run()) {
      return Error(fmt::format("cannot record the phase of attempt {} of job {}", number, job_id));
    }
  }
  if (sqlite3_changes(db_) == 0) {
    RETURN_IF_ERROR(CheckAttemptExists(job_id, number));
    return FailedPrecondition(
        fmt::format("attempt {} of job {} has ended; it has no phase to report", number, job_id));
  }
  return Status::Ok();
}

Expected<std::vector<AttemptRecord>> Store::ListAttempts(const std::string& job_id) {
  static const std::string sql =
      fmt::format("SELECT {} FROM attempts WHERE job_id = ? ORDER BY number", kAttemptColumns);
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql.c_str()));
  Query q(stmt);
  q.Text(job_id);
  std::vector<AttemptRecord> attempts;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    ASSIGN_OR_RETURN(AttemptRecord attempt, ReadAttempt(q));
    attempts.push_back(std::move(attempt));
  }
  if (rc != SQLITE_DONE) return Error("cannot list the attempts of job " + job_id);
  return attempts;
}

Expected<AttemptRecord> Store::GetAttempt(const std::string& job_id, int number) {
  static const std::string sql = fmt::format(
      "SELECT {} FROM attempts WHERE job_id = ? AND number = ?", kAttemptColumns);
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql.c_str()));
  Query q(stmt);
  int rc = q.Text(job_id).Int(number).Step();
  if (rc == SQLITE_ROW) return ReadAttempt(q);
  if (rc != SQLITE_DONE) return Error("cannot read an attempt of job " + job_id);
  return NotFound(fmt::format("job {} has no attempt {}", job_id, number));
}

Expected<std::optional<AttemptRecord>> Store::OpenAttempt(const std::string& job_id) {
  static const std::string sql = fmt::format(
      "SELECT {} FROM attempts WHERE job_id = ? AND ended_at IS NULL ORDER BY number DESC LIMIT 1",
      kAttemptColumns);
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql.c_str()));
  Query q(stmt);
  int rc = q.Text(job_id).Step();
  if (rc == SQLITE_DONE) return std::optional<AttemptRecord>();
  if (rc != SQLITE_ROW) return Error("cannot read the open attempt of job " + job_id);
  ASSIGN_OR_RETURN(AttemptRecord attempt, ReadAttempt(q));
  return std::optional<AttemptRecord>(std::move(attempt));
}

Status Store::UpsertAgent(const AgentRecord& agent) {
  if (agent.id.empty() || agent.host.empty()) {
    return InvalidArgument("an agent needs an id and a host");
  }
  if (agent.slots < 0 || agent.gpus < 0) {
    return InvalidArgument(fmt::format("agent {}: slots and gpus must be >= 0", agent.id));
  }
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("INSERT INTO agents (id, host, slots, gpus, registered_at, "
                           "last_heartbeat_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO "
                           "UPDATE SET host = excluded.host, slots = excluded.slots, "
                           "gpus = excluded.gpus, last_heartbeat_at = excluded.last_heartbeat_at"));
  double now = Now();
  Query q(stmt);
  q.Text(agent.id).Text(agent.host).Int(agent.slots).Int(agent.gpus).Real(now).Real(now);
  if (!q.Run()) return Error("cannot record agent " + agent.id);
  return Status::Ok();
}

Expected<std::vector<AgentRecord>> Store::ListAgents() {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("SELECT id, host, slots, gpus, last_heartbeat_at FROM agents "
                           "ORDER BY id"));
  Query q(stmt);
  std::vector<AgentRecord> agents;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    agents.push_back({q.ColText(0), q.ColText(1), static_cast<int>(q.ColInt(2)),
                      static_cast<int>(q.ColInt(3)), q.ColReal(4)});
  }
  if (rc != SQLITE_DONE) return Error("cannot list agents");
  return agents;
}

// Metrics, checkpoints, results, compute ----------------------------------------------------

Status Store::AppendMetrics(const std::string& job_id, int attempt,
                            const std::vector<MetricPoint>& points) {
  for (size_t i = 0; i < points.size(); ++i) {
    if (points[i].step < 0 || points[i].name.empty()) {
      return InvalidArgument(
          fmt::format("metric point {} of job {}: needs a step >= 0 (got {}) and a name", i, job_id,
                      points[i].step));
    }
  }
  if (points.empty()) return Status::Ok();
  Transaction tx(this);
  RETURN_IF_ERROR(tx.Begin());
  RETURN_IF_ERROR(CheckAttemptExists(job_id, attempt));
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   // A point already stored came from a retried batch: the copy is dropped.
                   Prepare("INSERT INTO metrics (job_id, attempt, step, name, value, time) "
                           "VALUES (?, ?, ?, ?, ?, ?) "
                           "ON CONFLICT (job_id, step, name, attempt) DO NOTHING"));
  for (const MetricPoint& point : points) {
    Query q(stmt);
    if (!q.Text(job_id)
             .Int(attempt)
             .Int(point.step)
             .Text(point.name)
             .Real(point.value)
             .Real(point.time)
             .Run()) {
      return Error(fmt::format("cannot append metric {} of job {}", point.name, job_id));
    }
  }
  return tx.Commit();
}

Expected<std::vector<MetricPoint>> Store::ReadMetrics(const std::string& job_id,
                                                      int64_t after_step) {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("SELECT step, name, value, time FROM metrics WHERE job_id = ? AND "
                           "step > ? ORDER BY step, rowid"));
  Query q(stmt);
  q.Text(job_id).Int(after_step);
  std::vector<MetricPoint> points;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    points.push_back({q.ColInt(0), q.ColText(1), q.ColReal(2), q.ColReal(3)});
  }
  if (rc != SQLITE_DONE) return Error("cannot read the metrics of job " + job_id);
  return points;
}

Expected<int64_t> Store::CountMetrics(const std::string& job_id) {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare("SELECT count(*) FROM metrics WHERE job_id = ?"));
  Query q(stmt);
  if (q.Text(job_id).Step() != SQLITE_ROW) return Error("cannot count the metrics of " + job_id);
  return q.ColInt(0);
}

Expected<std::optional<double>> Store::LatestMetric(const std::string& job_id,
                                                    const std::string& name) {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("SELECT value FROM metrics WHERE job_id = ? AND name = ? "
                           "ORDER BY step DESC, rowid DESC LIMIT 1"));
  Query q(stmt);
  int rc = q.Text(job_id).Text(name).Step();
  if (rc == SQLITE_DONE) return std::optional<double>();
  if (rc != SQLITE_ROW) return Error(fmt::format("cannot read metric {} of job {}", name, job_id));
  return std::optional<double>(q.ColReal(0));
}

Status Store::AddCheckpoint(const CheckpointRecord& checkpoint) {
  if (checkpoint.step < 0 || checkpoint.path.empty() || !IsLowerHex(checkpoint.sha256, 64)) {
    return InvalidArgument(
        fmt::format("checkpoint of job {} at step {}: needs a step >= 0, a path and a sha256 of 64 "
                    "lower-case hex digits",
                    checkpoint.job_id, checkpoint.step));
  }
  Transaction tx(this);
  RETURN_IF_ERROR(tx.Begin());
  RETURN_IF_ERROR(CheckJobExists(checkpoint.job_id));
  // A resumed run may write the same step again; the newest file is the one to keep.
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("INSERT INTO checkpoints (job_id, step, path, sha256, created_at) "
                           "VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id, step) DO UPDATE SET "
                           "path = excluded.path, sha256 = excluded.sha256, "
                           "created_at = excluded.created_at"));
  {
    Query q(stmt);
    q.Text(checkpoint.job_id).Int(checkpoint.step).Text(checkpoint.path).Text(checkpoint.sha256);
    if (!q.Real(Now()).Run()) return Error("cannot add a checkpoint of job " + checkpoint.job_id);
  }
  return tx.Commit();
}

Expected<std::vector<CheckpointRecord>> Store::ListCheckpoints(const std::string& job_id) {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("SELECT job_id, step, path, sha256, created_at FROM checkpoints "
                           "WHERE job_id = ? ORDER BY step"));
  Query q(stmt);
  q.Text(job_id);
  std::vector<CheckpointRecord> checkpoints;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    checkpoints.push_back({q.ColText(0), q.ColInt(1), q.ColText(2), q.ColText(3), q.ColReal(4)});
  }
  if (rc != SQLITE_DONE) return Error("cannot list the checkpoints of job " + job_id);
  return checkpoints;
}

Status Store::InsertResults(const std::vector<ResultRecord>& results) {
  std::set<std::string> job_ids;
  for (const ResultRecord& r : results) job_ids.insert(r.job_id);
  for (const std::string& id : job_ids) RETURN_IF_ERROR(CheckJobExists(id));
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("INSERT OR REPLACE INTO results (job_id, evaluation, dataset, shots, "
                           "seed, metric, value) VALUES (?, ?, ?, ?, ?, ?, ?)"));
  for (const ResultRecord& r : results) {
    Query q(stmt);
    q.Text(r.job_id).Text(EvaluationName(r.evaluation)).Text(r.dataset).OptInt(r.shots);
    if (!q.OptInt(r.seed).Text(r.metric).Real(r.value).Run()) {
      return Error("cannot add a result of job " + r.job_id);
    }
  }
  return Status::Ok();
}

Status Store::AddResults(const std::vector<ResultRecord>& results) {
  return AddResultsAndLedger(results, std::nullopt);
}

Expected<std::vector<ResultRecord>> Store::ListResults(const std::string& job_id) {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("SELECT job_id, evaluation, dataset, shots, seed, metric, value FROM "
                           "results WHERE job_id = ? ORDER BY evaluation, dataset, shots, seed, "
                           "metric"));
  Query q(stmt);
  q.Text(job_id);
  std::vector<ResultRecord> results;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    ResultRecord r;
    r.job_id = q.ColText(0);
    ASSIGN_OR_RETURN(r.evaluation, ParseEvaluation(q.ColText(1)));
    r.dataset = q.ColText(2);
    r.shots = ToOptInt(q.ColOptInt(3));
    r.seed = ToOptInt(q.ColOptInt(4));
    r.metric = q.ColText(5);
    r.value = q.ColReal(6);
    results.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return Error("cannot list the results of job " + job_id);
  return results;
}

Status Store::InsertLedgerEntry(const LedgerEntry& e) {
  RETURN_IF_ERROR(CheckAttemptExists(e.job_id, e.attempt));
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("INSERT OR REPLACE INTO compute_ledger (job_id, attempt, train_flops, "
                           "eval_flops, images_seen, device_kind, device_seconds, wall_seconds) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
  Query q(stmt);
  q.Text(e.job_id).Int(e.attempt).Real(e.train_flops).Real(e.eval_flops).Int(e.images_seen);
  if (!q.Text(e.device_kind).Real(e.device_seconds).Real(e.wall_seconds).Run()) {
    return Error("cannot record the compute of job " + e.job_id);
  }
  return Status::Ok();
}

Status Store::AddLedgerEntry(const LedgerEntry& entry) { return AddResultsAndLedger({}, entry); }

Status Store::AddResultsAndLedger(const std::vector<ResultRecord>& results,
                                  const std::optional<LedgerEntry>& entry) {
  for (size_t i = 0; i < results.size(); ++i) RETURN_IF_ERROR(ValidateResult(results[i], i));
  if (entry) RETURN_IF_ERROR(ValidateLedgerEntry(*entry));
  if (results.empty() && !entry) return Status::Ok();
  Transaction tx(this);
  RETURN_IF_ERROR(tx.Begin());
  RETURN_IF_ERROR(InsertResults(results));
  if (entry) RETURN_IF_ERROR(InsertLedgerEntry(*entry));
  return tx.Commit();
}

Expected<std::vector<LedgerEntry>> Store::ListLedger(const std::string& job_id) {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("SELECT job_id, attempt, train_flops, eval_flops, images_seen, "
                           "device_kind, device_seconds, wall_seconds FROM compute_ledger "
                           "WHERE job_id = ? ORDER BY attempt"));
  Query q(stmt);
  q.Text(job_id);
  std::vector<LedgerEntry> entries;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    entries.push_back({q.ColText(0), static_cast<int>(q.ColInt(1)), q.ColReal(2), q.ColReal(3),
                       q.ColInt(4), q.ColText(5), q.ColReal(6), q.ColReal(7)});
  }
  if (rc != SQLITE_DONE) return Error("cannot read the ledger of job " + job_id);
  return entries;
}

// Agent credentials -------------------------------------------------------------------------

Status Store::PutAgentCredential(const std::string& host, const std::string& token_sha256) {
  if (host.empty() || !IsLowerHex(token_sha256, 64)) {
    return InvalidArgument("an agent credential needs a host and a 64-hex-digit token hash");
  }
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("INSERT INTO agent_credentials (host, token_sha256, issued_at) "
                           "VALUES (?, ?, ?) ON CONFLICT (host) DO UPDATE SET "
                           "token_sha256 = excluded.token_sha256, issued_at = excluded.issued_at"));
  Query q(stmt);
  if (!q.Text(host).Text(token_sha256).Real(Now()).Run()) {
    return Error("cannot record the credential of agent " + host);
  }
  return Status::Ok();
}

Status Store::DeleteAgentCredential(const std::string& host) {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare("DELETE FROM agent_credentials WHERE host = ?"));
  Query q(stmt);
  if (!q.Text(host).Run()) return Error("cannot revoke the credential of agent " + host);
  if (sqlite3_changes(db_) == 0) {
    return NotFound(fmt::format("agent '{}' has no credential to revoke", host));
  }
  return Status::Ok();
}

Expected<std::vector<AgentCredential>> Store::ListAgentCredentials() {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("SELECT host, token_sha256, issued_at FROM agent_credentials "
                           "ORDER BY host"));
  Query q(stmt);
  std::vector<AgentCredential> credentials;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    credentials.push_back({q.ColText(0), q.ColText(1), q.ColReal(2)});
  }
  if (rc != SQLITE_DONE) return Error("cannot list agent credentials");
  return credentials;
}

// Queries for tables and plots --------------------------------------------------------------

Expected<std::vector<JobCompute>> Store::SweepCompute(const std::string& sweep_name) {
  ASSIGN_OR_RETURN(SweepRecord sweep, GetSweep(sweep_name));
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("SELECT sj.job_id, count(l.job_id), ifnull(sum(l.train_flops), 0), "
                           "ifnull(sum(l.eval_flops), 0), ifnull(sum(l.device_seconds), 0), "
                           "ifnull(sum(l.wall_seconds), 0) FROM sweep_jobs sj "
                           "LEFT JOIN compute_ledger l ON l.job_id = sj.job_id "
                           "WHERE sj.sweep_id = ? GROUP BY sj.job_id ORDER BY min(sj.position)"));
  Query q(stmt);
  q.Int(sweep.id);
  std::vector<JobCompute> rows;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    rows.push_back({q.ColText(0), static_cast<int>(q.ColInt(1)), q.ColReal(2), q.ColReal(3),
                    q.ColReal(4), q.ColReal(5)});
  }
  if (rc != SQLITE_DONE) return Error("cannot sum the compute of sweep " + sweep_name);
  return rows;
}

Expected<std::vector<AveragedResult>> Store::SweepResults(const std::string& sweep_name) {
  ASSIGN_OR_RETURN(SweepRecord sweep, GetSweep(sweep_name));
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("SELECT r.job_id, r.evaluation, r.dataset, r.shots, r.metric, "
                           "avg(r.value), count(*) FROM results r "
                           "JOIN sweep_jobs sj ON sj.job_id = r.job_id WHERE sj.sweep_id = ? "
                           "GROUP BY r.job_id, r.evaluation, r.dataset, r.shots, r.metric "
                           "ORDER BY min(sj.position), r.evaluation, r.dataset, r.shots, "
                           "r.metric"));
  Query q(stmt);
  q.Int(sweep.id);
  std::vector<AveragedResult> rows;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    AveragedResult row;
    row.job_id = q.ColText(0);
    ASSIGN_OR_RETURN(row.evaluation, ParseEvaluation(q.ColText(1)));
    row.dataset = q.ColText(2);
    row.shots = ToOptInt(q.ColOptInt(3));
    row.metric = q.ColText(4);
    row.mean = q.ColReal(5);
    row.runs = static_cast<int>(q.ColInt(6));
    rows.push_back(std::move(row));
  }
  if (rc != SQLITE_DONE) return Error("cannot read the results of sweep " + sweep_name);
  return rows;
}

}  // namespace vitscale::storage
