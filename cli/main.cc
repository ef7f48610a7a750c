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
    {"models", vitscale::cli::RunModels, "list every registered model with params and GMACs"},
    {"sweep", vitscale::cli::RunSweep, "check FILE | cost FILE: validate, expand and cost a sweep"},
    {"export", vitscale::cli::RunExport, "--db FILE --sweep NAME --format csv|markdown|latex"},
};

void PrintUsage(FILE* out) {
  std::fprintf(out, "usage: vitscale COMMAND [ARGS]\n\ncommands:\n");
  for (const Command& c : kCommands) std::fprintf(out, "  %-8s %s\n", c.name, c.summary);
  std::fprintf(out, "\n`--json` gives machine-readable output where a command prints data.\n");
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
