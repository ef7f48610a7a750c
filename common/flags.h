// The one command-line parser of every vitscale program (the CLI's commands, the coordinator,
// the agent, the trainer, the load generator): `--name value`, `--name=value`, switches,
// repeatable flags and positionals. A word that starts with '-' and a digit is a positional (so
// `vitscale priority JOB -5` works); `--` ends the flags; `-h` and `--help` ask for the usage.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace vitscale {

using Args = std::vector<std::string>;

struct FlagSpec {
  FlagSpec(std::string name, bool takes_value, std::string value_name = "", std::string help = "")
      : name(std::move(name)),
        takes_value(takes_value),
        value_name(std::move(value_name)),
        help(std::move(help)) {}
  std::string name;        // "--sweep"
  bool takes_value;        // false: a switch such as --json
  std::string value_name;  // "NAME" in the usage text
  std::string help;        // one line for the usage text
};

class ParsedArgs {
 public:
  bool help = false;  // -h or --help was given
  std::vector<std::string> positional;

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  // The last value given for `name`, or `fallback`.
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  // Every value given for a repeatable flag, in order.
  std::vector<std::string> GetAll(const std::string& name) const;
  // The flag's value as a whole number within [low, high], or `fallback` when it is absent.
  Expected<long long> GetInt(const std::string& name, long long low, long long high,
                             long long fallback) const;

 private:
  friend Expected<ParsedArgs> ParseArgs(const Args&, const std::vector<FlagSpec>&);
  std::map<std::string, std::vector<std::string>> values_;  // a switch maps to {""}
};

// kInvalidArgument naming the unknown flag (with the nearest valid one) or the missing value.
Expected<ParsedArgs> ParseArgs(const Args& args, const std::vector<FlagSpec>& specs);

// Parses a whole decimal integer within [low, high]; kInvalidArgument naming `what` otherwise.
Expected<long long> ParseInteger(const std::string& text, const std::string& what, long long low,
                                 long long high);

// One line per flag: "  --name VALUE   help".
std::string FlagHelp(const std::vector<FlagSpec>& specs);

// A program's whole command line. With --help, `usage` and the flags' help go to stdout and
// exit_code is 0; a bad command line (unknown flag, missing value, more than `max_positionals`
// positionals) prints the error and the usage to stderr and sets exit_code 2. Otherwise
// exit_code is -1 and `args` holds the parse.
struct CommandLine {
  ParsedArgs args;
  int exit_code = -1;
};
CommandLine ParseCommandLine(int argc, char** argv, const std::string& program,
                             const std::string& usage, const std::vector<FlagSpec>& specs,
                             size_t max_positionals = 0);

}  // namespace vitscale
