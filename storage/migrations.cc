#include "storage/migrations.h"

#include <fmt/format.h>
#include <sqlite3.h>

#include "storage/schema_sql.h"  // generated from schema.sql by storage/CMakeLists.txt

namespace vitscale::storage {
namespace {

Status SqliteError(sqlite3* db, const std::string& path, const std::string& what) {
  return IOError(fmt::format("{}: {}: {}", path, what, sqlite3_errmsg(db)));
}

Expected<int> ReadUserVersion(sqlite3* db, const std::string& path) {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, nullptr) != SQLITE_OK) {
    return SqliteError(db, path, "cannot read the schema version");
  }
  int rc = sqlite3_step(stmt);
  int version = rc == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : -1;
  sqlite3_finalize(stmt);
  if (rc != SQLITE_ROW) return SqliteError(db, path, "cannot read the schema version");
  return version;
}

}  // namespace

const std::vector<Migration>& Migrations() {
  // Append new migrations at the end; never edit or reorder released ones.
  static const std::vector<Migration> kMigrations = {
      {1, "the initial schema (storage/schema.sql)", kSchemaSql},
      {2, "one row per metric point: a retried batch is not stored twice", R"SQL(
-- A trainer that lost the answer to a metric batch (the coordinator restarted between storing
-- it and answering) sends it again; (job, attempt, step, name) names a point, so the copy goes.
DROP TRIGGER metrics_no_delete;
DELETE FROM metrics WHERE rowid NOT IN
  (SELECT min(rowid) FROM metrics GROUP BY job_id, attempt, step, name);
CREATE TRIGGER metrics_no_delete BEFORE DELETE ON metrics
BEGIN
  SELECT RAISE(ABORT, 'metrics are append-only');
END;
-- Its (job_id, step) prefix serves the curve queries the old index served.
DROP INDEX metrics_by_job_step;
CREATE UNIQUE INDEX metrics_by_job_step_name ON metrics (job_id, step, name, attempt);
)SQL"},
      {3, "scoped credentials: agent credentials and per-attempt report tokens, as hashes", R"SQL(
-- docs/security.md: each agent host has its own credential, and each attempt its own report
-- token, which dies when the attempt ends. Only SHA-256 hashes are kept, never the tokens.
CREATE TABLE agent_credentials (
  host TEXT PRIMARY KEY CHECK (length(host) > 0),
  token_sha256 TEXT NOT NULL UNIQUE
    CHECK (length(token_sha256) = 64 AND token_sha256 NOT GLOB '*[^0-9a-f]*'),
  issued_at REAL NOT NULL
) STRICT;
-- '' for attempts started before tokens existed: no token matches it.
ALTER TABLE attempts ADD COLUMN report_token_sha256 TEXT NOT NULL DEFAULT ''
  CHECK (report_token_sha256 = '' OR (length(report_token_sha256) = 64 AND
                                      report_token_sha256 NOT GLOB '*[^0-9a-f]*'));
)SQL"},
      {4, "throughput imported from benchmark runs, for planning", R"SQL(
-- docs/planning.md: what finished jobs measured is read from the ledger itself; this table holds
-- what a benchmark run measured (`vitscale throughput import`). One row per (model, device
-- kind, precision, batch); importing the same key again replaces it.
CREATE TABLE throughput_imports (
  model TEXT NOT NULL CHECK (length(model) > 0),
  device_kind TEXT NOT NULL CHECK (length(device_kind) > 0),
  precision TEXT NOT NULL CHECK (length(precision) > 0),
  batch_size INTEGER NOT NULL CHECK (batch_size > 0),
  images_per_second REAL NOT NULL CHECK (images_per_second > 0),  -- per device
  flops_per_image REAL NOT NULL CHECK (flops_per_image >= 0),     -- training, 6 x MACs
  overhead_seconds REAL NOT NULL CHECK (overhead_seconds >= 0),   -- per job: start-up, evals
  source TEXT NOT NULL,
  imported_at REAL NOT NULL,
  PRIMARY KEY (model, device_kind, precision, batch_size)
) STRICT, WITHOUT ROWID;
)SQL"},
      {5, "the job list at a million jobs: keyset indexes for every filter and sort, counters", R"SQL(
-- docs/storage.md, "Paging": a page continues from the (sort key, submit_order) of the row it
-- starts after, so each filter x sort of the job table needs an index whose columns are the
-- filter's, then the sort key, then submit_order (the tie-break of every order). Scanned
-- backwards the same index serves the descending order. Existing ones: jobs_by_model
-- (model, submit_order) and the unique submit_order.
CREATE INDEX jobs_list_priority ON jobs (priority, submit_order);
CREATE INDEX jobs_list_subset ON jobs (subset_size, submit_order);
CREATE INDEX jobs_list_updated ON jobs (updated_at, submit_order);
CREATE INDEX jobs_list_state ON jobs (state, submit_order);
CREATE INDEX jobs_list_state_priority ON jobs (state, priority, submit_order);
CREATE INDEX jobs_list_state_model ON jobs (state, model, submit_order);
CREATE INDEX jobs_list_state_subset ON jobs (state, subset_size, submit_order);
CREATE INDEX jobs_list_state_updated ON jobs (state, updated_at, submit_order);
CREATE INDEX jobs_list_model_priority ON jobs (model, priority, submit_order);
CREATE INDEX jobs_list_model_subset ON jobs (model, subset_size, submit_order);
CREATE INDEX jobs_list_model_state ON jobs (model, state, submit_order);
CREATE INDEX jobs_list_model_updated ON jobs (model, updated_at, submit_order);
CREATE INDEX jobs_list_subset_priority ON jobs (subset_size, priority, submit_order);
CREATE INDEX jobs_list_subset_model ON jobs (subset_size, model, submit_order);
CREATE INDEX jobs_list_subset_state ON jobs (subset_size, state, submit_order);
CREATE INDEX jobs_list_subset_updated ON jobs (subset_size, updated_at, submit_order);

-- Counts the job list and the sweep list show, kept by triggers instead of recounted per
-- request: jobs per state, and per sweep its jobs per state and its planned and spent FLOPs.
CREATE TABLE job_counts (
  state TEXT PRIMARY KEY,
  jobs INTEGER NOT NULL CHECK (jobs >= 0)
) STRICT, WITHOUT ROWID;
INSERT INTO job_counts (state, jobs) VALUES ('pending', 0), ('leased', 0), ('running', 0),
  ('succeeded', 0), ('failed', 0), ('cancelled', 0), ('preempted', 0);
UPDATE job_counts SET jobs = (SELECT count(*) FROM jobs j WHERE j.state = job_counts.state);

CREATE TABLE sweep_counts (
  sweep_id INTEGER NOT NULL REFERENCES sweeps (id),
  state TEXT NOT NULL,
  jobs INTEGER NOT NULL CHECK (jobs >= 0),
  PRIMARY KEY (sweep_id, state)
) STRICT, WITHOUT ROWID;
INSERT INTO sweep_counts (sweep_id, state, jobs)
  SELECT s.id, c.state, (SELECT count(*) FROM sweep_jobs sj JOIN jobs j ON j.id = sj.job_id
                         WHERE sj.sweep_id = s.id AND j.state = c.state)
  FROM sweeps s, job_counts c;

CREATE TABLE sweep_compute (
  sweep_id INTEGER PRIMARY KEY REFERENCES sweeps (id),
  planned_train_flops REAL NOT NULL,
  spent_train_flops REAL NOT NULL
) STRICT;
INSERT INTO sweep_compute (sweep_id, planned_train_flops, spent_train_flops)
  SELECT s.id,
         (SELECT ifnull(sum(j.planned_train_flops), 0) FROM sweep_jobs sj
          JOIN jobs j ON j.id = sj.job_id WHERE sj.sweep_id = s.id),
         (SELECT ifnull(sum(l.train_flops), 0) FROM sweep_jobs sj
          JOIN compute_ledger l ON l.job_id = sj.job_id WHERE sj.sweep_id = s.id)
  FROM sweeps s;

CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs
BEGIN
  UPDATE job_counts SET jobs = jobs + 1 WHERE state = NEW.state;
END;
CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs
BEGIN
  UPDATE job_counts SET jobs = jobs - 1 WHERE state = OLD.state;
END;
CREATE TRIGGER job_counts_state AFTER UPDATE OF state ON jobs WHEN OLD.state != NEW.state
BEGIN
  UPDATE job_counts SET jobs = jobs - 1 WHERE state = OLD.state;
  UPDATE job_counts SET jobs = jobs + 1 WHERE state = NEW.state;
  UPDATE sweep_counts SET jobs = jobs - 1 WHERE state = OLD.state
    AND sweep_id IN (SELECT sweep_id FROM sweep_jobs WHERE job_id = NEW.id);
  UPDATE sweep_counts SET jobs = jobs + 1 WHERE state = NEW.state
    AND sweep_id IN (SELECT sweep_id FROM sweep_jobs WHERE job_id = NEW.id);
END;
CREATE TRIGGER sweep_counts_new_sweep AFTER INSERT ON sweeps
BEGIN
  INSERT INTO sweep_counts (sweep_id, state, jobs) SELECT NEW.id, state, 0 FROM job_counts;
  INSERT INTO sweep_compute (sweep_id, planned_train_flops, spent_train_flops)
    VALUES (NEW.id, 0, 0);
END;
CREATE TRIGGER sweep_counts_link AFTER INSERT ON sweep_jobs
BEGIN
  UPDATE sweep_counts SET jobs = jobs + 1 WHERE sweep_id = NEW.sweep_id
    AND state = (SELECT state FROM jobs WHERE id = NEW.job_id);
  UPDATE sweep_compute SET
    planned_train_flops = planned_train_flops +
      (SELECT planned_train_flops FROM jobs WHERE id = NEW.job_id),
    spent_train_flops = spent_train_flops +
      (SELECT ifnull(sum(train_flops), 0) FROM compute_ledger WHERE job_id = NEW.job_id)
    WHERE sweep_id = NEW.sweep_id;
END;
-- The store writes ledger entries with an upsert, so a replaced entry is an UPDATE.
CREATE TRIGGER sweep_compute_ledger_insert AFTER INSERT ON compute_ledger
BEGIN
  UPDATE sweep_compute SET spent_train_flops = spent_train_flops + NEW.train_flops
    WHERE sweep_id IN (SELECT sweep_id FROM sweep_jobs WHERE job_id = NEW.job_id);
END;
CREATE TRIGGER sweep_compute_ledger_update AFTER UPDATE OF train_flops ON compute_ledger
BEGIN
  UPDATE sweep_compute SET spent_train_flops = spent_train_flops - OLD.train_flops + NEW.train_flops
    WHERE sweep_id IN (SELECT sweep_id FROM sweep_jobs WHERE job_id = NEW.job_id);
END;
)SQL"},
      {6, "accelerator kinds: the GPU model a job needs and the one an agent offers", R"SQL(
-- '' = any GPU model for a job (CPU ranks need none); '' for an agent without GPUs.
ALTER TABLE jobs ADD COLUMN gpu_kind TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN gpu_kind TEXT NOT NULL DEFAULT '';
)SQL"},
      {7, "placement: a job may be kept on one host", R"SQL(
-- 1: every rank on one host (a sweep's `resources: {hosts: one}`); 0: the ranks may span hosts.
ALTER TABLE jobs ADD COLUMN one_host INTEGER NOT NULL DEFAULT 0 CHECK (one_host IN (0, 1))
)SQL"},
      {8, "the phase a running attempt reports (pretraining, few-shot i/n, ...)", R"SQL(
-- The trainer reports what it is doing (docs/api.md, "Reports"); the job views show the phase of
-- the job's open attempt. NULL until the attempt reports one.
ALTER TABLE attempts ADD COLUMN phase TEXT
  CHECK (phase IN ('pretraining', 'few-shot', 'fine-tune', 'inspection'));
ALTER TABLE attempts ADD COLUMN phase_index INTEGER CHECK (phase_index >= 0);
ALTER TABLE attempts ADD COLUMN phase_count INTEGER CHECK (phase_count >= 0);
ALTER TABLE attempts ADD COLUMN phase_detail TEXT;
)SQL"},
      {9, "one index fewer for every job state change", R"SQL(
-- No query reads jobs by (state, priority DESC, submit_order): the scheduler keeps its queue in
-- memory and reads the unfinished jobs by state in submission order (jobs_list_state), and the
-- job list's state filter sorted by priority reads jobs_list_state_priority, which holds the
-- same columns. Every state change rewrote an entry of it.
DROP INDEX IF EXISTS jobs_by_state_priority;
)SQL"},
      {10, "a submission updates the counters once, not once per job", R"SQL(
-- Store::InsertSweep, the only writer of new jobs and sweep links, adds a submission's jobs to
-- job_counts, sweep_counts and sweep_compute with one statement per state. The triggers it
-- replaces ran three lookups and two updates for every job of a sweep.
DROP TRIGGER IF EXISTS job_counts_insert;
DROP TRIGGER IF EXISTS sweep_counts_link;
)SQL"},
  };
  return kMigrations;
}

int LatestSchemaVersion() { return Migrations().back().version; }

std::string NewerSchemaMessage(const std::string& path, int found, int known) {
  return fmt::format(
      "{} has schema version {}, but this vitscale knows versions up to {}: it was written by a "
      "newer vitscale; upgrade vitscale to open it (the file was left unchanged)",
      path, found, known);
}

Status Migrate(sqlite3* db, const std::string& path, const std::vector<Migration>& migrations) {
  int known = migrations.empty() ? 0 : migrations.back().version;
  ASSIGN_OR_RETURN(int version, ReadUserVersion(db, path));
  if (version > known) return FailedPrecondition(NewerSchemaMessage(path, version, known));
  for (const Migration& migration : migrations) {
    if (version >= migration.version) continue;
    // IMMEDIATE takes the write lock before user_version is read again, so two processes
    // opening a fresh file at once cannot both apply the same migration.
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
      return SqliteError(db, path, "cannot start a migration");
    }
    auto rollback = [&](Status status) {
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      return status;
    };
    Expected<int> current = ReadUserVersion(db, path);
    if (!current.ok()) return rollback(current.status());
    version = *current;
    if (version >= migration.version) {  // another process got here first
      sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
      continue;
    }
    if (version != migration.version - 1) {
      return rollback(Internal(fmt::format("{}: schema version {} has no migration to {}", path,
                                           version, migration.version)));
    }
    char* message = nullptr;
    if (sqlite3_exec(db, migration.sql, nullptr, nullptr, &message) != SQLITE_OK) {
      std::string detail = message ? message : sqlite3_errmsg(db);
      sqlite3_free(message);
      return rollback(Internal(fmt::format("{}: migration {} ({}) failed: {}", path,
                                           migration.version, migration.summary, detail)));
    }
    std::string bump = fmt::format("PRAGMA user_version = {}", migration.version);
    if (sqlite3_exec(db, bump.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK ||
        sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
      return rollback(
          SqliteError(db, path, fmt::format("cannot commit migration {}", migration.version)));
    }
    version = migration.version;
  }
  return Status::Ok();
}

}  // namespace vitscale::storage
