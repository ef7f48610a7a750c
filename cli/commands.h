// The `vitscale` subcommands. Each takes the arguments after its name and returns the process
// exit status (see ExitCode); errors go to stderr with what to fix.
#pragma once

#include <string>
#include <vector>

namespace vitscale::cli {

// Exit statuses scripts can rely on.
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,     // the operation ran and failed (I/O, database, unavailable peer)
  kExitUsage = 2,       // bad command line
  kExitBadInput = 3,    // the input file or value is invalid (the message says file:line:col)
  kExitNotFound = 4,    // a named sweep, job or file does not exist
};

using Args = std::vector<std::string>;

int RunModels(const Args& args);  // vitscale models [--json]
int RunSweep(const Args& args);   // vitscale sweep check|cost FILE [--json]
int RunExport(const Args& args);  // vitscale export --db FILE --sweep NAME --format csv|markdown|latex

}  // namespace vitscale::cli
