// Schema migrations keyed by PRAGMA user_version. Migration N takes a database from version
// N-1 to N; a fresh database is version 0 and gets all of them in order. Migration 1 is
// storage/schema.sql. To change the schema, append one entry to the list in migrations.cc
// (never edit a released one): Store::Open then upgrades every older database on its next
// read-write open, and older builds refuse the upgraded file instead of misreading it.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

struct sqlite3;

namespace vitscale::storage {

struct Migration {
  int version;          // 1, 2, ...: the user_version after it ran
  const char* summary;  // what it changes, for the log and the docs
  const char* sql;      // one or more statements
};

// The migrations this build knows, in version order.
const std::vector<Migration>& Migrations();
// The version a database has after Migrations(): the newest this build can read.
int LatestSchemaVersion();

// Reads user_version and applies the missing `migrations` in turn, each in its own transaction
// with its user_version bump, so a crash leaves the database at one version or the next.
// A user_version above the newest known is kFailedPrecondition naming both versions;
// `path` only names the file in messages.
// REQUIRES: `migrations` numbered 1, 2, ... in order; `db` open read-write, no transaction open.
Status Migrate(sqlite3* db, const std::string& path, const std::vector<Migration>& migrations);

// The message for a database newer than this build; shared with read-only opens.
std::string NewerSchemaMessage(const std::string& path, int found, int known);

}  // namespace vitscale::storage
