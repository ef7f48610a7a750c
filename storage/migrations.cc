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
      {4, "the phase a running attempt reports (pretraining, few-shot i/n, ...)", R"SQL(
-- The trainer reports what it is doing (docs/api.md, "Reports"); the job views show the phase of
-- the job's open attempt. NULL until the attempt reports one.
ALTER TABLE attempts ADD COLUMN phase TEXT
  CHECK (phase IN ('pretraining', 'few-shot', 'fine-tune', 'inspection'));
ALTER TABLE attempts ADD COLUMN phase_index INTEGER CHECK (phase_index >= 0);
ALTER TABLE attempts ADD COLUMN phase_count INTEGER CHECK (phase_count >= 0);
ALTER TABLE attempts ADD COLUMN phase_detail TEXT;
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
