#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "cli/commands.h"

namespace {

struct Command {
  const char* name;
  int (*run)(const vitscale::cli::Args&);
  const char* summary;
};

const Command kCommands[] = {
    {"models", vitscale::cli::RunModels,
     "list every registered model with params and GMACs; import FILE --model NAME: check a file"},
    {"sweep", vitscale::cli::RunSweep,
     "check FILE | cost FILE | simulate FILE --hosts SPEC: validate, cost, plan a sweep"},
    {"throughput", vitscale::cli::RunThroughput,
     "[import FILE]: measured images/s per model and accelerator, for planning"},
    {"data", vitscale::cli::RunData, "pack SRC DEST | check DEST: packed (sharded) datasets"},
    {"submit", vitscale::cli::RunSubmit, "FILE: submit a sweep to the coordinator"},
    {"list", vitscale::cli::RunList, "jobs, filtered by sweep, state, model, subset"},
    {"show", vitscale::cli::RunShow, "JOB: config, attempts, checkpoints, results, ledger"},
    {"watch", vitscale::cli::RunWatch, "[--sweep NAME | JOB]: live progress until finished"},
    {"logs", vitscale::cli::RunLogs, "JOB [--attempt N] [--follow]: an attempt's log"},
    {"cancel", vitscale::cli::RunCancel, "JOB: cancel a job (kills it if running)"},
    {"preempt", vitscale::cli::RunPreempt, "JOB: checkpoint, requeue and resume later"},
    {"priority", vitscale::cli::RunPriority, "JOB N: set a job's priority"},
    {"inspect", vitscale::cli::RunInspect, "JOB: draw a finished ViT's attention and embeddings"},
    {"agents", vitscale::cli::RunAgents,
     "[issue HOST | revoke HOST]: list agents; issue or revoke a host's credential"},
    {"export", vitscale::cli::RunExportAny,
     "--sweep NAME [--db FILE] --format csv|markdown|latex: Table 6"},
    {"retain", vitscale::cli::RunRetain,
     "--db FILE --older-than-days N: thin old finished jobs' metric curves"},
};

void PrintUsage(FILE* out) {
  std::fprintf(out, "usage: vitscale COMMAND [ARGS]\n\ncommands:\n");
  for (const Command& c : kCommands) std::fprintf(out, "  %-8s %s\n", c.name, c.summary);
  std::fprintf(out,
               "\n`--json` gives machine-readable output where a command prints data.\n"
               "The coordinator is --coordinator URL, $VITSCALE_COORDINATOR or "
               "http://127.0.0.1:8470;\nits token --token-file FILE, $VITSCALE_TOKEN_FILE or "
               "$VITSCALE_TOKEN. See docs/cli.md.\n"
               "`vitscale COMMAND --help` tells more.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    PrintUsage(stderr);
    return vitscale::cli::kExitUsage;
  }
  std::string name = argv[1];
  if (name == "-h" || name == "--help" || name == "help") {
    PrintUsage(stdout);
    return vitscale::cli::kExitOk;
  }
  vitscale::cli::Args args(argv + 2, argv + argc);
  for (const Command& c : kCommands) {
    if (name != c.name) continue;
    try {
      return c.run(args);
    } catch (const std::exception& e) {
      // Commands report their own errors; reaching here is a bug, but still no crash.
      std::fprintf(stderr, "vitscale %s: internal error: %s\n", c.name, e.what());
      return vitscale::cli::kExitFailure;
    }
  }
  std::fprintf(stderr, "vitscale: unknown command '%s'\n\n", name.c_str());
  PrintUsage(stderr);
  return vitscale::cli::kExitUsage;
}
