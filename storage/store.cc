#include "storage/store.h"

#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <type_traits>
#include <utility>
#include <variant>

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
    "ORDER BY m.step DESC, m.rowid DESC LIMIT 1), j.gpu_kind, j.one_host, "
    "(SELECT a.phase FROM attempts a WHERE a.job_id = j.id AND a.ended_at IS NULL "
    "ORDER BY a.number DESC LIMIT 1), "
    "(SELECT a.phase_index FROM attempts a WHERE a.job_id = j.id AND a.ended_at IS NULL "
    "ORDER BY a.number DESC LIMIT 1), "
    "(SELECT a.phase_count FROM attempts a WHERE a.job_id = j.id AND a.ended_at IS NULL "
    "ORDER BY a.number DESC LIMIT 1), "
    "(SELECT a.phase_detail FROM attempts a WHERE a.job_id = j.id AND a.ended_at IS NULL "
    "ORDER BY a.number DESC LIMIT 1)";
constexpr int kJobColumnCount = 24;  // what ReadJob reads; a query's own columns follow

// kJobColumns with the table called `name` instead of `j` (a RETURNING clause cannot use an
// alias).
std::string JobColumnsOf(const std::string& name) {
  std::string columns = kJobColumns;
  for (size_t at = 0; (at = columns.find("j.", at)) != std::string::npos;) {
    bool word_start = at == 0 || !(std::isalnum(static_cast<unsigned char>(columns[at - 1])) ||
                                   columns[at - 1] == '_');
    if (word_start) {
      columns.replace(at, 2, name + ".");
      at += name.size() + 1;
    } else {
      at += 2;
    }
  }
  return columns;
}

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
  job.gpu_kind = q.ColText(18);
  job.one_host = q.ColInt(19) != 0;
  // The phase of the job's open attempt (migration 8 keeps it on the attempt).
  if (!q.IsNull(20)) {
    PhaseRecord phase;
    ASSIGN_OR_RETURN(phase.phase, ParseJobPhase(q.ColText(20)));
    phase.index = q.ColInt(21);
    phase.count = q.ColInt(22);
    phase.detail = q.ColText(23);
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

// FROM and WHERE of the job list and its count, shared so that a page and its total agree. A
// sweep is named by its id (JobSweepId), so listing an unknown sweep never reaches this SQL. A
// sweep's page in its own order never touches the jobs table unless a filter needs it.
std::string JobFilterSql(const JobFilter& filter, bool with_rows = false) {
  bool needs_jobs = with_rows || !filter.sweep || !filter.states.empty() || filter.model || filter.subset_size ||
                    filter.sort != JobSort::kSubmitted;
  std::string sql;
  if (filter.sweep) {
    sql = " FROM sweep_jobs sj";
    if (needs_jobs) sql += " JOIN jobs j ON j.id = sj.job_id";
    sql += " WHERE sj.sweep_id = ?";
  } else {
    sql = " FROM jobs j WHERE 1";
  }
  if (filter.states.size() == 1) {
    sql += " AND j.state = ?";
  } else if (!filter.states.empty()) {
    sql += " AND j.state IN (?";
    for (size_t i = 1; i < filter.states.size(); ++i) sql += ", ?";
    sql += ")";
  }
  if (filter.model) sql += " AND j.model = ?";
  if (filter.subset_size) sql += " AND j.subset_size = ?";
  return sql;
}

void BindJobFilter(const JobFilter& filter, int64_t sweep_id, Query& q) {
  if (filter.sweep) q.Int(sweep_id);
  for (JobState state : filter.states) q.Text(JobStateName(state));
  if (filter.model) q.Text(*filter.model);
  if (filter.subset_size) q.Int(*filter.subset_size);
}

// The order's sort key column (nullptr for kSubmitted) and its tie-break column.
const char* SortKeyColumn(const JobFilter& filter) {
  switch (filter.sort) {
    case JobSort::kSubmitted:
      return nullptr;
    case JobSort::kPriority:
      return "j.priority";
    case JobSort::kModel:
      return "j.model";
    case JobSort::kSubset:
      return "j.subset_size";
    case JobSort::kState:
      return "j.state";
    case JobSort::kUpdated:
      return "j.updated_at";
  }
  return nullptr;
}
const char* TieColumn(const JobFilter& filter) {
  return filter.sweep && filter.sort == JobSort::kSubmitted ? "sj.position" : "j.submit_order";
}

// ORDER BY for the list read forwards (`reversed` = false) or backwards; the tie-break follows
// the key's direction, so one index scanned either way serves both.
std::string JobOrderSql(const JobFilter& filter, bool reversed = false) {
  const char* direction = filter.descending != reversed ? " DESC" : "";
  const char* key = SortKeyColumn(filter);
  if (!key) return fmt::format(" ORDER BY {}{}", TieColumn(filter), direction);
  return fmt::format(" ORDER BY {}{}, {}{}", key, direction, TieColumn(filter), direction);
}

// "Before `position` in the order read this way": the keyset condition, a range on the index.
std::string JobAfterSql(const JobFilter& filter, bool reversed) {
  const char* op = filter.descending != reversed ? "<" : ">";
  const char* key = SortKeyColumn(filter);
  if (!key) return fmt::format(" AND {} {} ?", TieColumn(filter), op);
  return fmt::format(" AND ({}, {}) {} (?, ?)", key, TieColumn(filter), op);
}

void BindPosition(const JobPosition& position, Query& q) {
  if (const auto* i = std::get_if<int64_t>(&position.key)) q.Int(*i);
  if (const auto* r = std::get_if<double>(&position.key)) q.Real(*r);
  if (const auto* t = std::get_if<std::string>(&position.key)) q.Text(*t);
  q.Int(position.order);
}

// The position of a row read with kJobColumns followed by the key and tie columns.
JobPosition ReadPosition(const JobFilter& filter, const Query& q, int column) {
  JobPosition position;
  switch (filter.sort) {
    case JobSort::kSubmitted:
      break;
    case JobSort::kPriority:
    case JobSort::kSubset:
      position.key = q.ColInt(column);
      break;
    case JobSort::kUpdated:
      position.key = q.ColReal(column);
      break;
    case JobSort::kModel:
    case JobSort::kState:
      position.key = q.ColText(column);
      break;
  }
  position.order = q.ColInt(column + 1);
  return position;
}

// ReadJobRows' query for one state at most (or a sweep): the job's columns, then its position.
std::string JobRowsSql(const JobFilter& filter, bool reversed, bool from_position) {
  const char* key = SortKeyColumn(filter);
  return fmt::format("SELECT {}, {}, {}{}{}{} LIMIT ?", kJobColumns, key ? key : "NULL",
                     TieColumn(filter), JobFilterSql(filter, /*with_rows=*/true),
                     from_position ? JobAfterSql(filter, reversed) : "",
                     JobOrderSql(filter, reversed));
}

// CountJobs' bounded count, for the filters the counters do not cover.
std::string BoundedCountSql(const JobFilter& filter) {
  return "SELECT count(*) FROM (SELECT 1" + JobFilterSql(filter) + " LIMIT ?)";
}

// Whether `a` comes before `b` in the filter's order.
bool PositionBefore(const JobFilter& filter, const JobPosition& a, const JobPosition& b) {
  bool less = a.key != b.key ? a.key < b.key : a.order < b.order;
  bool greater = a.key != b.key ? b.key < a.key : b.order < a.order;
  return filter.descending ? greater : less;
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
  // For a body whose only write is one statement, made after all its checks: a statement that
  // fails undoes itself, so inside an open transaction this takes no savepoint (a savepoint
  // copies every page the body changes into its journal; a job's state change touches a dozen
  // index pages). Alone, it is a transaction as Begin's.
  Status BeginForOneWrite() {
    joined_ = store_->open_transactions_ > 0;
    return joined_ ? Status::Ok() : Begin();
  }
  Status Commit() {
    if (joined_) return Status::Ok();  // the caller's transaction commits it
    RETURN_IF_ERROR(store_->Exec(nested_ ? "RELEASE nested" : "COMMIT"));
    --store_->open_transactions_;
    open_ = false;
    if (!nested_) ++store_->commits_;
    return Status::Ok();
  }

 private:
  Store* store_;
  bool open_ = false;
  bool nested_ = false;
  bool joined_ = false;  // BeginForOneWrite inside an open transaction: nothing of its own
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

namespace {

// The write that failed changed nothing (its transaction rolled back); the messages say so,
// because the callers (trainer, agent) send it again once the disk is fixed.
Status DiskFull(const std::string& message) {
  return ResourceExhausted(message +
                           " (the disk holding the database is full; free space there: nothing "
                           "of this write was stored, and it can be sent again)");
}

Status ReadOnlyFilesystem(const std::string& message) {
  return IOError(message +
                 " (the database or its filesystem has become read-only; make it writable again: "
                 "nothing of this write was stored, and it can be sent again)");
}

// Any other refusal of the disk. Which one it was is not always known: ext4 in its emergency
// read-only state (after an error) still shows the mount as rw, and SQLite may see the EIO of a
// later call rather than the EROFS of the write, so the last errno is shown as a hint.
Status FailedWrite(const std::string& message, int system_errno) {
  return IOError(fmt::format(
      "{} (the filesystem holding the database failed the operation{}{}: check that it is "
      "writable and healthy, or read-only after an error; nothing of this write was stored, and "
      "it can be sent again)",
      message, system_errno != 0 ? "; last error: " : "",
      system_errno != 0 ? std::strerror(system_errno) : ""));
}

// Whether the filesystem holding `path` is mounted read-only now. A write that failed there
// reports EIO as often as EROFS (ext4 after a journal abort), so the mount is asked too.
bool OnReadOnlyFilesystem(const std::string& path) {
  struct statvfs info;
  return ::statvfs(path.c_str(), &info) == 0 && (info.f_flag & ST_RDONLY) != 0;
}

}  // namespace

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
    case SQLITE_FULL:
      return DiskFull(message);
    case SQLITE_READONLY:
      if (options_.read_only) return FailedPrecondition(message + " (the store was opened read-only)");
      return ReadOnlyFilesystem(message);
    default:
      // A failed write() says why only in errno: the disk filled up, or the filesystem went
      // read-only under the open database (ext4 does after an error).
      if (sqlite3_system_errno(db_) == ENOSPC) return DiskFull(message);
      if (!options_.read_only &&
          (sqlite3_system_errno(db_) == EROFS || OnReadOnlyFilesystem(path_))) {
        return ReadOnlyFilesystem(message);
      }
      if ((code & 0xff) == SQLITE_IOERR) return FailedWrite(message, sqlite3_system_errno(db_));
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
  // Statement journals (what undoes one statement or savepoint inside a transaction) stay in
  // memory up to 16 MiB, where SQLite's default spills them to a temporary file past 64 KiB: a
  // job's state change touches a dozen index pages, and every one of them was a pwrite. They
  // never outlive their transaction, so a crash loses nothing the database needs. The setting
  // is the process's and must come before SQLite's first use; if it comes too late (another
  // part of the process opened SQLite first), only this saving is lost.
  //
  // SQLite's memory statistics are off too: with them on, every allocation SQLite makes (several
  // per statement) takes a process-wide mutex to count itself, and nothing here reads the counts
  // (sqlite3_memory_used, a soft heap limit).
  static const int process_config [[maybe_unused]] =
      sqlite3_config(SQLITE_CONFIG_STMTJRNL_SPILL, 16 << 20) |
      sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  // NOMUTEX: the connection takes no mutex of its own around each SQLite call (every bind,
  // step and column read locked and unlocked one). That is safe because a Store is used by one
  // thread at a time, as it must be anyway: its statement cache and transaction depth are plain
  // members (store.h). In the coordinator the io thread alone uses the main Store, and the
  // metric writer thread alone uses its own (coordinator/report_api.h); the fitter thread reads
  // no database. SQLite's process-wide state (the VFS, the shared file locks) keeps its mutexes.
  int flags = SQLITE_OPEN_NOMUTEX |
              (options.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
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
  RETURN_IF_ERROR(store->Exec(
      fmt::format("PRAGMA cache_size = -{}", 1024 * std::max(1, store->options_.cache_mib)).c_str()));
  int64_t mmap_bytes = (int64_t{1} << 20) * std::max(0, store->options_.mmap_mib);
  RETURN_IF_ERROR(store->Exec(fmt::format("PRAGMA mmap_size = {}", mmap_bytes).c_str()));
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
  RETURN_IF_ERROR(store->Exec(store->options_.sync_commits ? "PRAGMA synchronous = FULL"
                                                            : "PRAGMA synchronous = OFF"));
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
  return InsertSweep(name, definition, jobs, /*keep_states=*/false);
}

Expected<AddSweepOutcome> Store::ImportSweep(const std::string& name,
                                             const std::string& definition,
                                             const std::vector<JobRecord>& jobs) {
  for (size_t i = 0; i < jobs.size(); ++i) {
    JobState state = jobs[i].state;
    // These need an attempt (leased, running) or a scheduler decision (preempted) to be true.
    if (state != JobState::kPending && state != JobState::kSucceeded &&
        state != JobState::kFailed && state != JobState::kCancelled) {
      return InvalidArgument(fmt::format(
          "job {} ({}): an imported job is pending, succeeded, failed or cancelled, not {}", i,
          jobs[i].model, JobStateName(state)));
    }
    if (!(jobs[i].submitted_at > 0) || !(jobs[i].updated_at >= jobs[i].submitted_at)) {
      return InvalidArgument(fmt::format(
          "job {} ({}): an imported job needs submitted_at > 0 and updated_at >= submitted_at "
          "(got {} and {})",
          i, jobs[i].model, jobs[i].submitted_at, jobs[i].updated_at));
    }
  }
  return InsertSweep(name, definition, jobs, /*keep_states=*/true);
}

Expected<AddSweepOutcome> Store::InsertSweep(const std::string& name,
                                             const std::string& definition,
                                             const std::vector<JobRecord>& jobs, bool keep_states) {
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
                           "gpus_per_rank, retries_left, submit_order, submitted_at, updated_at, "
                           "gpu_kind, one_host) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                           "ON CONFLICT (id) DO NOTHING"));
  ASSIGN_OR_RETURN(sqlite3_stmt * link_job,
                   Prepare("INSERT INTO sweep_jobs (sweep_id, job_id, position) VALUES (?, ?, ?)"));
  std::map<JobState, int64_t> added_by_state;
  for (size_t position = 0; position < unique_jobs.size(); ++position) {
    const JobRecord& job = *unique_jobs[position];
    JobState state = keep_states ? job.state : JobState::kPending;
    {
      Query q(insert_job);
      q.Text(job.id).Text(job.model).Text(job.family).Text(job.dataset).Int(job.subset_size);
      q.Real(job.epochs).Text(job.config_json).Real(job.planned_train_flops);
      q.Text(JobStateName(state)).Int(job.priority);
      q.Int(job.ranks).Int(job.gpus_per_rank).Int(job.retries_left).Int(next_order);
      q.Real(keep_states ? job.submitted_at : now).Real(keep_states ? job.updated_at : now);
      q.Text(job.gpu_kind).Int(job.one_host ? 1 : 0);
      if (!q.Run()) return Error(fmt::format("cannot add job {} ({})", job.id, job.model));
    }
    if (sqlite3_changes(db_) == 1) {
      ++outcome.added;
      ++added_by_state[state];
      if (!keep_states) {
        JobRecord& stored = outcome.added_jobs.emplace_back(job);
        stored.state = JobState::kPending;
        stored.submit_order = next_order;
        stored.submitted_at = stored.updated_at = now;
        stored.attempts = 0;  // a new id has no attempts, metrics or phase yet
        stored.images_seen.reset();
        stored.phase.reset();
      }
      ++next_order;
    } else {
      ++outcome.already_known;
    }
    Query q(link_job);
    if (!q.Int(outcome.sweep_id).Text(job.id).Int(static_cast<int64_t>(position)).Run()) {
      return Error(fmt::format("cannot link job {} to sweep {}", job.id, name));
    }
  }
  RETURN_IF_ERROR(CountSweepJobs(outcome.sweep_id, added_by_state));
  RETURN_IF_ERROR(tx.Commit());
  return outcome;
}

Status Store::CountSweepJobs(int64_t sweep_id, const std::map<JobState, int64_t>& added_by_state) {
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("UPDATE job_counts SET jobs = jobs + ? WHERE state = ?"));
    for (const auto& [state, added] : added_by_state) {
      Query q(stmt);
      if (!q.Int(added).Text(JobStateName(state)).Run()) return Error("cannot count the new jobs");
    }
  }
  // The sweep is new, so its counters start at 0 (trigger sweep_counts_new_sweep); its jobs may
  // be older ones, in any state and with compute spent.
  std::vector<std::pair<std::string, int64_t>> by_state;
  double planned = 0;
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("SELECT j.state, count(*), sum(j.planned_train_flops) "
                             "FROM sweep_jobs sj JOIN jobs j ON j.id = sj.job_id "
                             "WHERE sj.sweep_id = ? GROUP BY j.state"));
    Query q(stmt);
    q.Int(sweep_id);
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) {
      by_state.emplace_back(q.ColText(0), q.ColInt(1));
      planned += q.ColReal(2);
    }
    if (rc != SQLITE_DONE) return Error("cannot count the jobs of the new sweep");
  }
  {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("UPDATE sweep_counts SET jobs = ? WHERE sweep_id = ? AND state = ?"));
    for (const auto& [state, jobs] : by_state) {
      Query q(stmt);
      if (!q.Int(jobs).Int(sweep_id).Text(state).Run()) {
        return Error("cannot count the jobs of the new sweep");
      }
    }
  }
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("UPDATE sweep_compute SET planned_train_flops = ?1, spent_train_flops = "
                           "(SELECT ifnull(sum(l.train_flops), 0) FROM sweep_jobs sj "
                           "JOIN compute_ledger l ON l.job_id = sj.job_id WHERE sj.sweep_id = ?2) "
                           "WHERE sweep_id = ?2"));
  Query q(stmt);
  if (!q.Real(planned).Int(sweep_id).Run()) return Error("cannot sum the compute of the new sweep");
  return Status::Ok();
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

Expected<std::vector<SweepSummary>> Store::SweepSummaries(std::optional<int64_t> sweep_id) {
  // From the counters migration 5 keeps: O(sweeps), however many jobs they hold.
  std::vector<SweepSummary> sweeps;
  constexpr const char* kSelect =
      "SELECT s.id, s.name, s.created_at, c.state, c.jobs, p.planned_train_flops, "
      "p.spent_train_flops FROM sweeps s JOIN sweep_compute p ON p.sweep_id = s.id "
      "JOIN sweep_counts c ON c.sweep_id = s.id ";
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare(sweep_id ? fmt::format("{}WHERE s.id = ?", kSelect).c_str()
                                    : fmt::format("{}ORDER BY s.id", kSelect).c_str()));
  Query q(stmt);
  if (sweep_id) q.Int(*sweep_id);
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    if (sweeps.empty() || sweeps.back().id != q.ColInt(0)) {
      sweeps.push_back({q.ColInt(0), q.ColText(1), q.ColReal(2), 0, {}, q.ColReal(5), q.ColReal(6)});
    }
    SweepSummary& sweep = sweeps.back();
    if (q.ColInt(4) == 0) continue;  // absent states read as 0
    sweep.jobs += q.ColInt(4);
    sweep.jobs_by_state[q.ColText(3)] = q.ColInt(4);
  }
  if (rc != SQLITE_DONE) return Error("cannot summarize sweeps");
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

Expected<std::string> Store::GetJobConfig(const std::string& id) {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare("SELECT config_json FROM jobs WHERE id = ?"));
  Query q(stmt);
  int rc = q.Text(id).Step();
  if (rc == SQLITE_ROW) return q.ColText(0);
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

Expected<std::optional<int64_t>> Store::SweepId(const std::string& name) {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare("SELECT id FROM sweeps WHERE name = ?"));
  Query q(stmt);
  int rc = q.Text(name).Step();
  if (rc == SQLITE_ROW) return std::optional<int64_t>(q.ColInt(0));
  if (rc != SQLITE_DONE) return Error("cannot look up sweep " + name);
  return std::optional<int64_t>();
}

Expected<std::vector<JobRecord>> Store::ListJobs(const JobFilter& filter) {
  int64_t sweep_id = 0;
  if (filter.sweep) {
    ASSIGN_OR_RETURN(SweepRecord sweep, GetSweep(*filter.sweep));
    sweep_id = sweep.id;
  }
  std::string sql = fmt::format("SELECT {}{}{} LIMIT ? OFFSET ?", kJobColumns,
                                JobFilterSql(filter, /*with_rows=*/true), JobOrderSql(filter));
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql.c_str()));  // a few dozen shapes at most
  Query q(stmt);
  BindJobFilter(filter, sweep_id, q);
  q.Int(filter.limit).Int(filter.offset);
  std::vector<JobRecord> jobs;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    ASSIGN_OR_RETURN(JobRecord job, ReadJob(q));
    jobs.push_back(std::move(job));
  }
  if (rc != SQLITE_DONE) return Error("cannot list jobs");
  return jobs;
}

Expected<std::vector<std::pair<JobRecord, JobPosition>>> Store::ReadJobRows(
    const JobFilter& filter, int64_t sweep_id, bool reversed, const JobPosition* after,
    int64_t limit) {
  std::vector<std::pair<JobRecord, JobPosition>> rows;
  if (!filter.sweep && filter.states.size() > 1) {
    // Each state's rows come in order from its own index; merging a page from each is
    // O(page x states), where one query over the IN list would sort every matching row.
    for (JobState state : filter.states) {
      JobFilter one = filter;
      one.states = {state};
      ASSIGN_OR_RETURN(auto part, ReadJobRows(one, sweep_id, reversed, after, limit));
      for (auto& row : part) rows.push_back(std::move(row));
    }
    std::sort(rows.begin(), rows.end(), [&](const auto& a, const auto& b) {
      return PositionBefore(filter, a.second, b.second) != reversed;
    });
    if (static_cast<int64_t>(rows.size()) > limit) rows.resize(static_cast<size_t>(limit));
    return rows;
  }
  std::string sql = JobRowsSql(filter, reversed, after != nullptr);
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql.c_str()));  // a few hundred shapes at most
  Query q(stmt);
  BindJobFilter(filter, sweep_id, q);
  if (after) BindPosition(*after, q);
  q.Int(limit);
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    ASSIGN_OR_RETURN(JobRecord job, ReadJob(q));
    rows.emplace_back(std::move(job), ReadPosition(filter, q, kJobColumnCount));
  }
  if (rc != SQLITE_DONE) return Error("cannot list jobs");
  return rows;
}

Expected<JobPage> Store::ListJobPage(const JobPageRequest& request) {
  const JobFilter& filter = request.filter;
  if (request.limit < 1) return InvalidArgument("a page holds at least one job");
  JobPage page;
  int64_t sweep_id = 0;
  if (filter.sweep) {
    ASSIGN_OR_RETURN(std::optional<int64_t> id, SweepId(*filter.sweep));
    if (!id) return page;  // an unknown sweep holds no jobs
    sweep_id = *id;
  }
  bool reversed = request.from == PageFrom::kLast || request.from == PageFrom::kBefore;
  bool from_position = request.from == PageFrom::kAfter || request.from == PageFrom::kBefore;
  // One row more than the page says whether more follow in the direction read.
  ASSIGN_OR_RETURN(auto rows, ReadJobRows(filter, sweep_id, reversed,
                                          from_position ? &request.position : nullptr,
                                          request.limit + 1));
  bool more = static_cast<int64_t>(rows.size()) > request.limit;
  if (more) rows.resize(static_cast<size_t>(request.limit));
  if (request.from == PageFrom::kBefore && !more) {
    // Less than a page precedes the position: the first page, full, is what to show.
    JobPageRequest first = request;
    first.from = PageFrom::kFirst;
    return ListJobPage(first);
  }
  if (reversed) std::reverse(rows.begin(), rows.end());
  bool rows_before = reversed ? more : request.from == PageFrom::kAfter;
  bool rows_after = reversed ? request.from == PageFrom::kBefore : more;
  if (!rows.empty()) {
    if (rows_before) page.before = rows.front().second;
    if (rows_after) page.after = rows.back().second;
  }
  page.jobs.reserve(rows.size());
  for (auto& row : rows) page.jobs.push_back(std::move(row.first));
  return page;
}

Expected<JobCount> Store::CountJobs(const JobFilter& filter, int64_t bound) {
  int64_t sweep_id = 0;
  if (filter.sweep) {
    ASSIGN_OR_RETURN(std::optional<int64_t> id, SweepId(*filter.sweep));
    if (!id) return JobCount{0, true};
    sweep_id = *id;
  }
  std::string states;
  for (size_t i = 0; i < filter.states.size(); ++i) states += i ? ", ?" : " AND state IN (?";
  if (!states.empty()) states += ")";
  if (!filter.model && !filter.subset_size) {
    // Sweep and state are what the maintained counters (migration 5) count.
    std::string sql = filter.sweep
                          ? "SELECT ifnull(sum(jobs), 0) FROM sweep_counts WHERE sweep_id = ?" + states
                          : "SELECT ifnull(sum(jobs), 0) FROM job_counts WHERE 1" + states;
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql.c_str()));
    Query q(stmt);
    if (filter.sweep) q.Int(sweep_id);
    for (JobState state : filter.states) q.Text(JobStateName(state));
    if (q.Step() != SQLITE_ROW) return Error("cannot count jobs");
    return JobCount{q.ColInt(0), true};
  }
  std::string sql = BoundedCountSql(filter);
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql.c_str()));
  Query q(stmt);
  BindJobFilter(filter, sweep_id, q);
  q.Int(bound + 1);
  if (q.Step() != SQLITE_ROW) return Error("cannot count jobs");
  int64_t counted = q.ColInt(0);
  return JobCount{std::min(counted, bound), counted <= bound};
}

Expected<std::vector<std::string>> Store::ExplainJobList(const JobFilter& filter) {
  std::vector<JobFilter> queries = {filter};
  if (!filter.sweep && filter.states.size() > 1) {  // ReadJobRows runs one query per state
    queries.clear();
    for (JobState state : filter.states) {
      queries.push_back(filter);
      queries.back().states = {state};
    }
  }
  std::vector<std::string> sqls;
  for (const JobFilter& one : queries) {
    for (bool reversed : {false, true}) {
      for (bool from_position : {false, true}) {
        sqls.push_back(JobRowsSql(one, reversed, from_position));
      }
    }
  }
  if (filter.model || filter.subset_size) sqls.push_back(BoundedCountSql(filter));
  std::vector<std::string> plans;
  for (const std::string& sql : sqls) {
    ASSIGN_OR_RETURN(std::string plan, ExplainPlan(sql));
    plans.push_back(std::move(plan));
  }
  return plans;
}

Expected<std::string> Store::ExplainPlan(const std::string& sql) {
  std::string explain = "EXPLAIN QUERY PLAN " + sql;
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, explain.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    return Error("cannot explain " + sql);
  }
  // Each line indented by its depth in the plan's tree (columns id, parent, detail).
  std::string plan = sql + "\n";
  std::map<int, int> depth_of;
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    int depth = depth_of[sqlite3_column_int(stmt, 0)] = depth_of[sqlite3_column_int(stmt, 1)] + 1;
    plan += fmt::format("{:{}}{}\n", "", 2 * depth,
                        reinterpret_cast<const char*>(sqlite3_column_text(stmt, 3)));
  }
  sqlite3_finalize(stmt);
  return plan;
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
  // Without an attempt to end, the UPDATE below is the only write.
  RETURN_IF_ERROR(end ? tx.Begin() : tx.BeginForOneWrite());
  double now = Now();
  if (end) {
    // A job that never started (cancelled while pending) has no attempt to end. Ended first, so
    // that the job's row read back below counts it as ended; if the job is not in `from`, the
    // transaction undoes it.
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("UPDATE attempts SET ended_at = ?, outcome = ?, exit_status = ? "
                             "WHERE job_id = ? AND ended_at IS NULL"));
    Query q(stmt);
    q.Real(now).Text(AttemptOutcomeName(end->outcome)).OptInt(end->exit_status).Text(job_id);
    if (!q.Run()) return Error("cannot end the attempt of job " + job_id);
  }
  // The state check, the write and the read of the new row in one statement: a job's state
  // changes three times per attempt, and a read before and after each cost as much as the write.
  static const std::string sql = fmt::format(
      "UPDATE jobs SET state = ?, retries_left = ?, updated_at = ? "
      "WHERE jobs.id = ? AND jobs.state = ? RETURNING {}",
      JobColumnsOf("jobs"));
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql.c_str()));
  Query q(stmt);
  q.Text(JobStateName(to)).Int(retries_left).Real(now).Text(job_id).Text(JobStateName(from));
  int rc = q.Step();
  if (rc == SQLITE_ROW) {
    ASSIGN_OR_RETURN(JobRecord after, ReadJob(q));
    if (q.Step() != SQLITE_DONE) return Error("cannot set the state of job " + job_id);
    RETURN_IF_ERROR(tx.Commit());
    return after;
  }
  if (rc != SQLITE_DONE) return Error("cannot set the state of job " + job_id);
  // Nothing moved: say why (no such job, or another state).
  ASSIGN_OR_RETURN(JobRecord job, GetJob(job_id));
  return FailedPrecondition(fmt::format("job {} is {}, not {}; it was not moved to {}", job_id,
                                        JobStateName(job.state), JobStateName(from),
                                        JobStateName(to)));
}

// Attempts and agents ------------------------------------------------------------------------

// Only the key: GetJob's columns read the job's attempts and metrics too, and every new attempt
// checks its job.
Status Store::CheckJobExists(const std::string& job_id) {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare("SELECT 1 FROM jobs WHERE id = ?"));
  Query q(stmt);
  int rc = q.Text(job_id).Step();
  if (rc == SQLITE_ROW) return Status::Ok();
  if (rc != SQLITE_DONE) return Error("cannot read job " + job_id);
  return NotFound(fmt::format("no job with id '{}'", job_id));
}

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
  ASSIGN_OR_RETURN(AttemptRecord attempt,
                   InsertAttempt(job_id, agent_id, hosts, resumed_from_step, ""));
  RETURN_IF_ERROR(tx.Commit());
  return attempt.number;
}

Expected<AttemptRecord> Store::StartAttempt(const std::string& job_id, const std::string& agent_id,
                                            const std::string& hosts,
                                            const std::string& report_token_sha256) {
  Transaction tx(this);
  RETURN_IF_ERROR(tx.BeginForOneWrite());  // InsertAttempt's INSERT, after its checks
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
  ASSIGN_OR_RETURN(AttemptRecord attempt,
                   InsertAttempt(job_id, agent_id, hosts, resumed_from, report_token_sha256));
  RETURN_IF_ERROR(tx.Commit());
  return attempt;
}

Expected<AttemptRecord> Store::InsertAttempt(const std::string& job_id,
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
  static const std::string sql = fmt::format(
      "INSERT INTO attempts (job_id, number, agent_id, hosts, started_at, resumed_from_step, "
      "report_token_sha256) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {}",
      kAttemptColumns);
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql.c_str()));
  Query q(stmt);
  q.Text(job_id).Int(number).OptText(agent_id).Text(hosts).Real(Now()).OptInt(resumed_from_step);
  int rc = q.Text(report_token_sha256).Step();
  if (rc == SQLITE_ROW) {
    ASSIGN_OR_RETURN(AttemptRecord attempt, ReadAttempt(q));
    if (q.Step() == SQLITE_DONE) return attempt;
  }
  Status failed = Error("cannot add an attempt to job " + job_id);
  // The foreign keys refused an unknown job or agent: looked up only now, to say which, since
  // every start would otherwise pay for two more lookups.
  if (sqlite3_extended_errcode(db_) == SQLITE_CONSTRAINT_FOREIGNKEY) {
    RETURN_IF_ERROR(CheckJobExists(job_id));
    if (agent_id) {
      ASSIGN_OR_RETURN(sqlite3_stmt * agent_stmt, Prepare("SELECT 1 FROM agents WHERE id = ?"));
      Query agent_q(agent_stmt);
      if (agent_q.Text(*agent_id).Step() == SQLITE_DONE) {
        return NotFound(
            fmt::format("agent '{}' is not registered; UpsertAgent it first", *agent_id));
      }
    }
  }
  return failed;
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

Expected<int> Store::CountAttempts(const std::string& job_id) {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare("SELECT count(*) FROM attempts WHERE job_id = ?"));
  Query q(stmt);
  if (q.Text(job_id).Step() != SQLITE_ROW) {
    return Error("cannot count the attempts of job " + job_id);
  }
  int count = static_cast<int>(q.ColInt(0));
  if (count == 0) RETURN_IF_ERROR(CheckJobExists(job_id));
  return count;
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
                           "last_heartbeat_at, gpu_kind) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT "
                           "(id) DO UPDATE SET host = excluded.host, slots = excluded.slots, "
                           "gpus = excluded.gpus, last_heartbeat_at = excluded.last_heartbeat_at, "
                           "gpu_kind = excluded.gpu_kind"));
  double now = Now();
  Query q(stmt);
  q.Text(agent.id).Text(agent.host).Int(agent.slots).Int(agent.gpus).Real(now).Real(now);
  q.Text(agent.gpu_kind);
  if (!q.Run()) return Error("cannot record agent " + agent.id);
  return Status::Ok();
}

Expected<std::vector<AgentRecord>> Store::ListAgents() {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("SELECT id, host, slots, gpus, last_heartbeat_at, gpu_kind FROM "
                           "agents ORDER BY id"));
  Query q(stmt);
  std::vector<AgentRecord> agents;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    agents.push_back({q.ColText(0), q.ColText(1), static_cast<int>(q.ColInt(2)),
                      static_cast<int>(q.ColInt(3)), q.ColReal(4), q.ColText(5)});
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

Expected<RetentionOutcome> Store::ApplyRetention(const RetentionRule& rule) {
  if (rule.keep_every < 1) return InvalidArgument("keep_every must be >= 1");
  if (open_transactions_ > 0) return FailedPrecondition("retention runs outside a transaction");
  RetentionOutcome outcome;
  std::vector<std::string> jobs;
  for (const char* state : {"succeeded", "failed", "cancelled"}) {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                     Prepare("SELECT id FROM jobs WHERE state = ? AND updated_at < ?"));
    Query q(stmt);
    q.Text(state).Real(rule.finished_before);
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) jobs.push_back(q.ColText(0));
    if (rc != SQLITE_DONE) return Error("cannot list the finished jobs");
  }
  outcome.jobs = static_cast<int64_t>(jobs.size());
  if (rule.archive) {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare("ATTACH DATABASE ? AS archive"));
    Query q(stmt);
    if (!q.Text(*rule.archive).Run()) return Error("cannot open the archive " + *rule.archive);
  }
  // Whatever happens below, the archive is detached again (its statements finalized first).
  struct Detach {
    Store* store;
    bool attached;
    ~Detach() {
      if (!attached) return;
      for (auto it = store->statements_.begin(); it != store->statements_.end();) {
        if (it->first.find("archive.") == std::string::npos) {
          ++it;
          continue;
        }
        sqlite3_finalize(it->second);
        it = store->statements_.erase(it);
      }
      sqlite3_exec(store->db_, "DETACH DATABASE archive", nullptr, nullptr, nullptr);
    }
  } detach{this, rule.archive.has_value()};
  if (rule.archive) {
    RETURN_IF_ERROR(Exec(
        "CREATE TABLE IF NOT EXISTS archive.metrics (job_id TEXT NOT NULL, attempt INTEGER NOT "
        "NULL, step INTEGER NOT NULL, name TEXT NOT NULL, value REAL, time REAL NOT NULL, "
        "UNIQUE (job_id, step, name, attempt)) STRICT"));
  }
  // A point goes unless its step is kept or it is its curve's last.
  // Each curve's last step is found once per job (the GROUP BY), not once per point.
  static constexpr const char* kRemoved =
      " FROM metrics m JOIN (SELECT name, attempt, max(step) AS last FROM metrics WHERE job_id = ?1 "
      "GROUP BY name, attempt) c ON c.name = m.name AND c.attempt = m.attempt "
      "WHERE m.job_id = ?1 AND m.step % ?2 != 0 AND m.step < c.last";
  static const std::string archive_sql =
      std::string("INSERT OR IGNORE INTO archive.metrics SELECT m.job_id, m.attempt, m.step, "
                  "m.name, m.value, m.time") + kRemoved;
  static const std::string delete_sql =
      std::string("DELETE FROM metrics WHERE rowid IN (SELECT m.rowid") + kRemoved + ")";
  for (const std::string& job : jobs) {
    Transaction tx(this);
    RETURN_IF_ERROR(tx.Begin());
    if (rule.archive) {
      ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(archive_sql.c_str()));
      Query q(stmt);
      if (!q.Text(job).Int(rule.keep_every).Run()) return Error("cannot archive the points of " + job);
    }
    // Metrics are append-only (a trigger refuses DELETE); retention is the one exception, so it
    // lifts the trigger inside its own transaction only.
    RETURN_IF_ERROR(Exec("DROP TRIGGER metrics_no_delete"));
    {
      ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(delete_sql.c_str()));
      Query q(stmt);
      if (!q.Text(job).Int(rule.keep_every).Run()) return Error("cannot thin the points of " + job);
      outcome.points_removed += sqlite3_changes(db_);
    }
    RETURN_IF_ERROR(Exec(
        "CREATE TRIGGER metrics_no_delete BEFORE DELETE ON metrics "
        "BEGIN SELECT RAISE(ABORT, 'metrics are append-only'); END"));
    RETURN_IF_ERROR(tx.Commit());
  }
  return outcome;
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
                   Prepare("INSERT INTO compute_ledger (job_id, attempt, train_flops, eval_flops, "
                           "images_seen, device_kind, device_seconds, wall_seconds) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, attempt) DO "
                           "UPDATE SET train_flops = excluded.train_flops, eval_flops = "
                           "excluded.eval_flops, images_seen = excluded.images_seen, "
                           "device_kind = excluded.device_kind, device_seconds = "
                           "excluded.device_seconds, wall_seconds = excluded.wall_seconds"));
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

// Throughput ------------------------------------------------------------------------------

Expected<std::vector<ThroughputSample>> Store::ThroughputSamples() {
  // A resumed attempt's ledger counts the images of the attempts before it, and a failed one
  // reports none: only whole runs say how long images take.
  ASSIGN_OR_RETURN(
      sqlite3_stmt * stmt,
      Prepare("SELECT l.job_id, j.model, l.device_kind, "
              "CAST(json_extract(j.config_json, '$.train.batch_size') AS INTEGER), "
              "j.ranks * max(j.gpus_per_rank, 1), l.images_seen, l.train_flops, "
              "a.ended_at - a.started_at FROM compute_ledger l "
              "JOIN jobs j ON j.id = l.job_id "
              "JOIN attempts a ON a.job_id = l.job_id AND a.number = l.attempt "
              "WHERE a.outcome = 'succeeded' AND a.resumed_from_step IS NULL "
              "AND a.ended_at > a.started_at AND l.images_seen > 0 ORDER BY a.started_at"));
  Query q(stmt);
  std::vector<ThroughputSample> samples;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    samples.push_back({q.ColText(0), q.ColText(1), q.ColText(2), q.ColInt(3),
                       static_cast<int>(q.ColInt(4)), q.ColInt(5), q.ColReal(6), q.ColReal(7)});
  }
  if (rc != SQLITE_DONE) return Error("cannot read the throughput samples");
  return samples;
}

Status Store::ImportThroughput(const std::vector<ThroughputImport>& rows) {
  for (size_t i = 0; i < rows.size(); ++i) {
    const ThroughputImport& r = rows[i];
    if (r.model.empty() || r.device_kind.empty() || r.precision.empty() || r.batch_size <= 0 ||
        !(r.images_per_second > 0) || !(r.flops_per_image >= 0) || !(r.overhead_seconds >= 0)) {
      return InvalidArgument(fmt::format(
          "throughput row {}: model, device kind and precision must be set, batch and images/s "
          "> 0, FLOPs per image and overhead >= 0",
          i));
    }
  }
  Transaction tx(this);
  RETURN_IF_ERROR(tx.Begin());
  ASSIGN_OR_RETURN(
      sqlite3_stmt * stmt,
      Prepare("INSERT OR REPLACE INTO throughput_imports (model, device_kind, precision, "
              "batch_size, images_per_second, flops_per_image, overhead_seconds, source, "
              "imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  for (const ThroughputImport& r : rows) {
    Query q(stmt);
    if (!q.Text(r.model)
             .Text(r.device_kind)
             .Text(r.precision)
             .Int(r.batch_size)
             .Real(r.images_per_second)
             .Real(r.flops_per_image)
             .Real(r.overhead_seconds)
             .Text(r.source)
             .Real(Now())
             .Run()) {
      return Error("cannot import the throughput of " + r.model);
    }
  }
  return tx.Commit();
}

Expected<std::vector<ThroughputImport>> Store::ListThroughputImports() {
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare("SELECT model, device_kind, precision, batch_size, images_per_second, "
                           "flops_per_image, overhead_seconds, source, imported_at "
                           "FROM throughput_imports ORDER BY model, device_kind, precision, "
                           "batch_size"));
  Query q(stmt);
  std::vector<ThroughputImport> rows;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    rows.push_back({q.ColText(0), q.ColText(1), q.ColText(2), q.ColInt(3), q.ColReal(4),
                    q.ColReal(5), q.ColReal(6), q.ColText(7), q.ColReal(8)});
  }
  if (rc != SQLITE_DONE) return Error("cannot read the imported throughput");
  return rows;
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

namespace {

// The sweep's jobs with their ledger's sums, and their transfer accuracies averaged over
// seeds, in two forms. The whole table walks the sweep's primary key, (sweep_id, job_id), so
// each join looks its rows up in job id order: at a million jobs the sweep's jobs lie all over
// the jobs table, and seeks in key order find the pages the last seek used (a third of the
// CPU of seeks in the sweep's order). A page reads its range of positions through the
// (sweep_id, position) index. Both group in the order they walk, so neither sorts; the rows
// are put in the sweep's order afterwards.
constexpr const char* kSweepTableJobsSql =
    "SELECT sj.position, j.id, j.model, j.family, j.dataset, j.subset_size, j.epochs, j.state, "
    "j.planned_train_flops, count(l.job_id), ifnull(sum(l.train_flops), 0), "
    "ifnull(sum(l.device_seconds), 0) FROM sweep_jobs sj JOIN jobs j ON j.id = sj.job_id "
    "LEFT JOIN compute_ledger l ON l.job_id = sj.job_id WHERE sj.sweep_id = ?1 "
    "GROUP BY sj.job_id ORDER BY sj.job_id";
constexpr const char* kSweepTableResultsSql =
    "SELECT sj.position, r.evaluation, r.dataset, r.shots, avg(r.value), count(*) "
    "FROM sweep_jobs sj JOIN results r ON r.job_id = sj.job_id "
    "WHERE sj.sweep_id = ?1 AND r.evaluation <> 'pretrain' AND r.metric = 'accuracy' "
    "GROUP BY sj.job_id, r.evaluation, r.dataset, ifnull(r.shots, 0) "
    "ORDER BY sj.job_id, r.evaluation, r.dataset, ifnull(r.shots, 0)";
constexpr const char* kSweepRangeJobsSql =
    "SELECT sj.position, j.id, j.model, j.family, j.dataset, j.subset_size, j.epochs, j.state, "
    "j.planned_train_flops, count(l.job_id), ifnull(sum(l.train_flops), 0), "
    "ifnull(sum(l.device_seconds), 0) FROM sweep_jobs sj JOIN jobs j ON j.id = sj.job_id "
    "LEFT JOIN compute_ledger l ON l.job_id = sj.job_id "
    "WHERE sj.sweep_id = ?1 AND sj.position BETWEEN ?2 AND ?3 "
    "GROUP BY sj.position ORDER BY sj.position";
// The grouping and the order follow results_by_job's columns, so it is a walk of that index
// per job (an ORDER BY of the position alone would sort).
constexpr const char* kSweepRangeResultsSql =
    "SELECT sj.position, r.evaluation, r.dataset, r.shots, avg(r.value), count(*) "
    "FROM sweep_jobs sj JOIN results r ON r.job_id = sj.job_id "
    "WHERE sj.sweep_id = ?1 AND sj.position BETWEEN ?2 AND ?3 "
    "AND r.evaluation <> 'pretrain' AND r.metric = 'accuracy' "
    "GROUP BY sj.position, r.evaluation, r.dataset, ifnull(r.shots, 0) "
    "ORDER BY sj.position, r.evaluation, r.dataset, ifnull(r.shots, 0)";

// A page's positions: the next `limit` after ?2 (or before ?2, descending), one more to learn
// whether another page follows. A walk of the sweep's index.
constexpr const char* kSweepPageAfterSql =
    "SELECT position FROM sweep_jobs WHERE sweep_id = ?1 AND position > ?2 "
    "ORDER BY position LIMIT ?3";
constexpr const char* kSweepPageBeforeSql =
    "SELECT position FROM sweep_jobs WHERE sweep_id = ?1 AND position < ?2 "
    "ORDER BY position DESC LIMIT ?3";
// The sweep's jobs before a position, and all of them: counts of its index entries.
constexpr const char* kSweepJobsBeforeSql =
    "SELECT count(*), (SELECT count(*) FROM sweep_jobs WHERE sweep_id = ?1) "
    "FROM sweep_jobs WHERE sweep_id = ?1 AND position < ?2";
// Every transfer column of the sweep, from results_by_job's entries alone (its ifnull(shots, 0)
// rather than shots, which the index does not hold; shots are positive, 0 is none).
constexpr const char* kSweepColumnsSql =
    "SELECT DISTINCT r.evaluation, r.dataset, ifnull(r.shots, 0) "
    "FROM sweep_jobs sj JOIN results r ON r.job_id = sj.job_id "
    "WHERE sj.sweep_id = ?1 AND r.evaluation <> 'pretrain' AND r.metric = 'accuracy'";

}  // namespace

Expected<SweepTable> Store::ReadSweepRows(int64_t sweep_id, int64_t first, int64_t last) {
  // All of them (from 0 to the largest position) are read in job id order.
  bool whole = first <= 0 && last == std::numeric_limits<int64_t>::max();
  std::optional<std::pair<int64_t, int64_t>> range;
  if (!whole) range = std::pair{first, last};
  SweepTable table;
  ASSIGN_OR_RETURN(sqlite3_stmt * jobs_stmt,
                   Prepare(range ? kSweepRangeJobsSql : kSweepTableJobsSql));
  Query jobs(jobs_stmt);
  jobs.Int(sweep_id);
  if (range) jobs.Int(range->first).Int(range->second);
  int rc;
  while ((rc = jobs.Step()) == SQLITE_ROW) {
    SweepTableJob job;
    job.position = jobs.ColInt(0);
    job.id = jobs.ColText(1);
    job.model = jobs.ColText(2);
    job.family = jobs.ColText(3);
    job.dataset = jobs.ColText(4);
    job.subset_size = jobs.ColInt(5);
    job.epochs = jobs.ColReal(6);
    ASSIGN_OR_RETURN(job.state, ParseJobState(jobs.ColText(7)));
    job.planned_train_flops = jobs.ColReal(8);
    job.ledger_entries = static_cast<int>(jobs.ColInt(9));
    job.train_flops = jobs.ColReal(10);
    job.device_seconds = jobs.ColReal(11);
    table.jobs.push_back(std::move(job));
  }
  if (rc != SQLITE_DONE) return Error("cannot read the jobs of a sweep's table");

  ASSIGN_OR_RETURN(sqlite3_stmt * results_stmt,
                   Prepare(range ? kSweepRangeResultsSql : kSweepTableResultsSql));
  Query results(results_stmt);
  results.Int(sweep_id);
  if (range) results.Int(range->first).Int(range->second);
  size_t row = 0;  // both queries walk the jobs in the same order: a merge, no lookup
  while ((rc = results.Step()) == SQLITE_ROW) {
    int64_t position = results.ColInt(0);
    while (row < table.jobs.size() && table.jobs[row].position != position) ++row;
    if (row == table.jobs.size()) break;
    SweepTableResult result;
    result.row = row;
    ASSIGN_OR_RETURN(result.evaluation, ParseEvaluation(results.ColText(1)));
    result.dataset = results.ColText(2);
    result.shots = ToOptInt(results.ColOptInt(3));
    result.mean = results.ColReal(4);
    result.runs = static_cast<int>(results.ColInt(5));
    table.results.push_back(std::move(result));
  }
  if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
    return Error("cannot read the results of a sweep's table");
  }
  if (range) return table;

  // Read in job id order: put the rows in the sweep's.
  std::vector<size_t> order(table.jobs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return table.jobs[a].position < table.jobs[b].position;
  });
  std::vector<size_t> new_row(order.size());
  std::vector<SweepTableJob> in_order;
  in_order.reserve(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    new_row[order[i]] = i;
    in_order.push_back(std::move(table.jobs[order[i]]));
  }
  table.jobs = std::move(in_order);
  for (SweepTableResult& result : table.results) result.row = new_row[result.row];
  std::stable_sort(table.results.begin(), table.results.end(),
                   [](const SweepTableResult& a, const SweepTableResult& b) { return a.row < b.row; });
  return table;
}

Expected<SweepTable> Store::ReadSweepTable(const std::string& sweep_name) {
  ASSIGN_OR_RETURN(SweepRecord sweep, GetSweep(sweep_name));
  return ReadSweepRows(sweep.id, 0, std::numeric_limits<int64_t>::max());
}

Expected<SweepTablePage> Store::ReadSweepTablePage(const std::string& sweep_name,
                                                   const SweepTablePageRequest& request) {
  ASSIGN_OR_RETURN(SweepRecord sweep, GetSweep(sweep_name));
  SweepTablePage page;
  page.sweep_id = sweep.id;
  int64_t limit = std::max<int64_t>(request.limit, 1);
  // Forward pages walk up from the position, backward ones down; -1 and max are the ends.
  bool backward = request.from == PageFrom::kLast || request.from == PageFrom::kBefore;
  int64_t from = request.position;
  if (request.from == PageFrom::kFirst) from = -1;
  if (request.from == PageFrom::kLast) from = std::numeric_limits<int64_t>::max();
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt,
                   Prepare(backward ? kSweepPageBeforeSql : kSweepPageAfterSql));
  Query positions_query(stmt);
  positions_query.Int(sweep.id).Int(from).Int(limit + 1);
  std::vector<int64_t> positions;
  int rc;
  while ((rc = positions_query.Step()) == SQLITE_ROW) positions.push_back(positions_query.ColInt(0));
  if (rc != SQLITE_DONE) return Error("cannot page the table of sweep " + sweep_name);
  bool more = positions.size() > static_cast<size_t>(limit);
  if (more) positions.pop_back();
  if (backward) std::reverse(positions.begin(), positions.end());
  // A page from a cursor has rows on the side it came from (the cursor's own row at least).
  bool came_from_row = request.from == PageFrom::kAfter || request.from == PageFrom::kBefore;
  page.more_before = backward ? more : came_from_row;
  page.more_after = backward ? came_from_row : more;

  int64_t first = positions.empty() ? from : positions.front();
  ASSIGN_OR_RETURN(sqlite3_stmt * count_stmt, Prepare(kSweepJobsBeforeSql));
  Query count(count_stmt);
  count.Int(sweep.id).Int(positions.empty() && backward ? 0 : first);
  if (count.Step() != SQLITE_ROW) return Error("cannot count the jobs of sweep " + sweep_name);
  page.jobs_before = count.ColInt(0);
  page.total = count.ColInt(1);
  if (positions.empty()) {  // past an end: nothing on this side
    page.more_before = page.jobs_before > 0 && !backward;
    page.more_after = backward && page.total > 0;
  } else {
    ASSIGN_OR_RETURN(page.table, ReadSweepRows(sweep.id, positions.front(), positions.back()));
  }

  ASSIGN_OR_RETURN(sqlite3_stmt * columns_stmt, Prepare(kSweepColumnsSql));
  Query columns(columns_stmt);
  columns.Int(sweep.id);
  while ((rc = columns.Step()) == SQLITE_ROW) {
    SweepTableColumn column;
    ASSIGN_OR_RETURN(column.evaluation, ParseEvaluation(columns.ColText(0)));
    column.dataset = columns.ColText(1);
    if (int64_t shots = columns.ColInt(2); shots > 0) column.shots = static_cast<int>(shots);
    page.columns.push_back(std::move(column));
  }
  if (rc != SQLITE_DONE) return Error("cannot read the columns of sweep " + sweep_name);
  return page;
}

namespace {

// Each a probe of an index's end: the sweep's counters and the database's newest rows.
constexpr const char* kSweepMarkSql =
    "SELECT (SELECT jobs FROM sweep_counts WHERE sweep_id = ?1 AND state = 'succeeded'), "
    "(SELECT spent_train_flops FROM sweep_compute WHERE sweep_id = ?1), "
    "(SELECT ifnull(max(updated_at), 0) FROM jobs WHERE state = 'succeeded'), "
    "(SELECT ifnull(max(rowid), 0) FROM results), "
    "(SELECT ifnull(max(rowid), 0) FROM compute_ledger)";

// What was written between two marks, then whether it is the sweep's: a range of an index over
// the newer rows, each looked up in sweep_jobs by its key. CROSS JOIN keeps that order (the
// other would walk the sweep's jobs).
constexpr const char* kSweepSucceededSinceSql =
    "SELECT 1 FROM jobs j CROSS JOIN sweep_jobs sj WHERE j.state = 'succeeded' AND "
    "j.updated_at > ?1 AND j.updated_at <= ?2 AND sj.sweep_id = ?3 AND sj.job_id = j.id LIMIT 1";
constexpr const char* kSweepResultsSinceSql =
    "SELECT 1 FROM results r CROSS JOIN sweep_jobs sj WHERE r.rowid > ?1 AND r.rowid <= ?2 AND "
    "sj.sweep_id = ?3 AND sj.job_id = r.job_id LIMIT 1";
constexpr const char* kSweepLedgerSinceSql =
    "SELECT 1 FROM compute_ledger l CROSS JOIN sweep_jobs sj WHERE l.rowid > ?1 AND "
    "l.rowid <= ?2 AND sj.sweep_id = ?3 AND sj.job_id = l.job_id LIMIT 1";

}  // namespace

bool SweepMark::operator==(const SweepMark& other) const {
  return sweep_id == other.sweep_id && succeeded == other.succeeded &&
         spent_train_flops == other.spent_train_flops && last_success == other.last_success &&
         last_result == other.last_result && last_ledger == other.last_ledger;
}

Expected<SweepMark> Store::ReadSweepMark(const std::string& sweep_name) {
  ASSIGN_OR_RETURN(SweepRecord sweep, GetSweep(sweep_name));
  ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(kSweepMarkSql));
  Query q(stmt);
  if (q.Int(sweep.id).Step() != SQLITE_ROW) {
    return Error("cannot read the mark of sweep " + sweep_name);
  }
  SweepMark mark;
  mark.sweep_id = sweep.id;
  mark.succeeded = q.ColInt(0);
  mark.spent_train_flops = q.ColOptReal(1).value_or(0);
  mark.last_success = q.ColReal(2);
  mark.last_result = q.ColInt(3);
  mark.last_ledger = q.ColInt(4);
  return mark;
}

Expected<bool> Store::SweepChangedSince(const SweepMark& before, const SweepMark& now) {
  if (before.sweep_id != now.sweep_id || before.succeeded != now.succeeded ||
      before.spent_train_flops != now.spent_train_flops) {
    return true;
  }
  auto any = [&](const char* sql, auto from, auto to) -> Expected<bool> {
    ASSIGN_OR_RETURN(sqlite3_stmt * stmt, Prepare(sql));
    Query q(stmt);
    if constexpr (std::is_floating_point_v<decltype(from)>) {
      q.Real(from).Real(to);
    } else {
      q.Int(from).Int(to);
    }
    int rc = q.Int(now.sweep_id).Step();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("cannot read what changed in a sweep");
    return rc == SQLITE_ROW;
  };
  if (now.last_success > before.last_success) {
    ASSIGN_OR_RETURN(bool succeeded,
                     any(kSweepSucceededSinceSql, before.last_success, now.last_success));
    if (succeeded) return true;
  }
  if (now.last_result != before.last_result) {
    ASSIGN_OR_RETURN(bool result, any(kSweepResultsSinceSql, before.last_result, now.last_result));
    if (result) return true;
  }
  if (now.last_ledger != before.last_ledger) {
    ASSIGN_OR_RETURN(bool ledger, any(kSweepLedgerSinceSql, before.last_ledger, now.last_ledger));
    if (ledger) return true;
  }
  return false;
}

Expected<std::vector<std::string>> Store::ExplainSweepChanges() {
  std::vector<std::string> plans;
  for (const char* sql : {kSweepMarkSql, kSweepSucceededSinceSql, kSweepResultsSinceSql,
                          kSweepLedgerSinceSql}) {
    ASSIGN_OR_RETURN(std::string plan, ExplainPlan(sql));
    plans.push_back(std::move(plan));
  }
  return plans;
}

Expected<std::vector<std::string>> Store::ExplainSweepTable() {
  std::vector<std::string> plans;
  for (const char* sql : {kSweepTableJobsSql, kSweepTableResultsSql, kSweepRangeJobsSql,
                          kSweepRangeResultsSql, kSweepPageAfterSql, kSweepPageBeforeSql,
                          kSweepJobsBeforeSql, kSweepColumnsSql}) {
    ASSIGN_OR_RETURN(std::string plan, ExplainPlan(sql));
    plans.push_back(std::move(plan));
  }
  return plans;
}

}  // namespace vitscale::storage
