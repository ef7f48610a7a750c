// vitscale export --db FILE --sweep NAME [--format csv|markdown|latex]
// Prints a sweep's Table 6 (storage/results_table.h). Opens the database read-only: exporting
// never creates, migrates or writes a database.
#include <cstdio>
#include <map>
#include <string>

#include "cli/commands.h"
#include "common/names.h"
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
  std::map<std::string, std::string> flags = {{"--db", ""}, {"--sweep", ""}, {"--format", ""}};
  std::vector<std::string> names = {"--db", "--sweep", "--format"};
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(kExportUsage, stdout);
      return kExitOk;
    }
    std::string name = arg.substr(0, arg.find('='));
    auto flag = flags.find(name);
    if (flag == flags.end()) {
      return UsageError("unknown argument '" + arg + "'" + DidYouMean(name, names));
    }
    if (name.size() < arg.size()) {
      flag->second = arg.substr(name.size() + 1);
    } else if (i + 1 < args.size()) {
      flag->second = args[++i];
    } else {
      return UsageError(name + " needs a value");
    }
    if (flag->second.empty()) return UsageError(name + " needs a value");
  }
  if (flags["--db"].empty()) return UsageError("--db FILE is required");
  if (flags["--sweep"].empty()) return UsageError("--sweep NAME is required");
  storage::TableFormat format = storage::TableFormat::kMarkdown;
  if (!flags["--format"].empty()) {
    Expected<storage::TableFormat> parsed = storage::ParseTableFormat(flags["--format"]);
    if (!parsed.ok()) return UsageError(parsed.status().message());
    format = *parsed;
  }

  storage::OpenOptions options;
  options.read_only = true;
  auto store = storage::Store::Open(flags["--db"], options);
  if (!store.ok()) {
    std::fprintf(stderr, "vitscale export: %s\n", store.status().message().c_str());
    return ExitCodeFor(store.status());
  }
  auto table = storage::BuildResultsTable(**store, flags["--sweep"]);
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
