// vitscale export --db FILE --sweep NAME [--format csv|markdown|latex]
// Prints a sweep's Table 6 (storage/results_table.h). Opens the database read-only: exporting
// never creates, migrates or writes a database.
#include <cstdio>
#include <map>
#include <string>

#include "cli/commands.h"
#include "common/flags.h"
#include "storage/results_table.h"
#include "storage/store.h"

namespace vitscale::cli {
namespace {

constexpr const char* kExportUsage =
    "usage: vitscale export --db FILE --sweep NAME [--format csv|markdown|latex]\n"
    "  --db FILE      the coordinator's SQLite database\n"
    "  --sweep NAME   the sweep whose jobs make the rows\n"
    "  --format F     csv, markdown (the default) or latex (a booktabs tabular)\n";

int UsageError(const std::string& message) {
  std::fprintf(stderr, "vitscale export: %s\n\n%s", message.c_str(), kExportUsage);
  return kExitUsage;
}

int ExitCodeFor(const Status& status) {
  switch (status.code()) {
    case StatusCode::kNotFound:
      return kExitNotFound;
    case StatusCode::kCorruption:
      return kExitBadInput;  // --db names a file that is no database
    default:
      return kExitFailure;
  }
}

}  // namespace

int RunExport(const Args& args) {
  Expected<ParsedArgs> parsed =
      ParseArgs(args, {{"--db", true}, {"--sweep", true}, {"--format", true}});
  if (!parsed.ok()) return UsageError(parsed.status().message());
  if (parsed->help) {
    std::fputs(kExportUsage, stdout);
    return kExitOk;
  }
  if (!parsed->positional.empty()) {
    return UsageError("unexpected argument '" + parsed->positional.front() + "'");
  }
  std::string db = parsed->Get("--db"), sweep = parsed->Get("--sweep");
  if (db.empty()) return UsageError("--db FILE is required");
  if (sweep.empty()) return UsageError("--sweep NAME is required");
  storage::TableFormat format = storage::TableFormat::kMarkdown;
  if (parsed->Has("--format")) {
    Expected<storage::TableFormat> named = storage::ParseTableFormat(parsed->Get("--format"));
    if (!named.ok()) return UsageError(named.status().message());
    format = *named;
  }

  storage::OpenOptions options;
  options.read_only = true;
  auto store = storage::Store::Open(db, options);
  if (!store.ok()) {
    std::fprintf(stderr, "vitscale export: %s\n", store.status().message().c_str());
    return ExitCodeFor(store.status());
  }
  auto table = storage::BuildResultsTable(**store, sweep);
  if (!table.ok()) {
    std::fprintf(stderr, "vitscale export: %s\n", table.status().message().c_str());
    return ExitCodeFor(table.status());
  }
  std::string text = storage::FormatResultsTable(*table, format);
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  return kExitOk;
}

}  // namespace vitscale::cli
