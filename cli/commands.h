// The `vitscale` subcommands. Each takes the arguments after its name and returns the process
// exit status (see ExitCode; docs/cli.md); errors go to stderr with what to fix.
#pragma once

#include <string>
#include <vector>

#include "common/flags.h"

namespace vitscale::cli {

// Exit statuses scripts can rely on.
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,      // the operation ran and failed (I/O, database, refused token, a watched
                         // job that did not succeed)
  kExitUsage = 2,        // bad command line
  kExitBadInput = 3,     // the input file or value is invalid (the message says file:line:col)
  kExitNotFound = 4,     // a named sweep, job or file does not exist
  kExitUnavailable = 5,  // the coordinator cannot be reached; trying again later may work
};

using Args = vitscale::Args;  // common/flags.h

int RunModels(const Args& args);  // vitscale models [--json] | models import FILE --model NAME
int RunSweep(const Args& args);   // vitscale sweep check|cost|simulate FILE [--json]
// vitscale sweep simulate FILE --hosts SPEC [...]: the sweep on a cluster, simulated offline.
int RunSweepSimulate(const Args& args);
// vitscale throughput [--db FILE] [--json] | throughput import FILE [--db FILE]
int RunThroughput(const Args& args);
// vitscale export --db FILE --sweep NAME [--format csv|markdown|latex]: from a database file.
int RunExport(const Args& args);
// vitscale retain --db FILE --older-than-days N [--keep-every K] [--archive FILE]: thins old
// finished jobs' metric curves (docs/storage.md, "Retention").
int RunRetain(const Args& args);
// vitscale data pack SRC DEST [...] | data check DEST [--decode] [--json]: packed datasets.
int RunData(const Args& args);

// Commands that talk to a coordinator (cli/api_client.h says how it is found).
int RunSubmit(const Args& args);    // vitscale submit FILE [--json]
int RunList(const Args& args);      // vitscale list [filters] [--sort K] [--limit N|--all] [--json]
int RunShow(const Args& args);      // vitscale show JOB [--json]
int RunWatch(const Args& args);     // vitscale watch [--sweep NAME | JOB] [--json]
int RunLogs(const Args& args);      // vitscale logs JOB [--attempt N] [--follow]
int RunCancel(const Args& args);    // vitscale cancel JOB [--json]
int RunPreempt(const Args& args);   // vitscale preempt JOB [--json]
int RunPriority(const Args& args);  // vitscale priority JOB N [--json]
// vitscale inspect JOB | --spec FILE: a finished job's inspection views, by vitscale-train.
int RunInspect(const Args& args);
// vitscale agents [--json] | agents issue HOST | agents revoke HOST
int RunAgents(const Args& args);
// vitscale export --sweep NAME [--format F] [--json]: from the coordinator; with --db FILE it
// hands over to RunExport.
int RunExportAny(const Args& args);

}  // namespace vitscale::cli
