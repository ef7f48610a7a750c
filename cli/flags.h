// Command-line parsing shared by the `vitscale` commands: `--name value`, `--name=value`,
// switches, repeatable flags and positionals. A word that starts with '-' and a digit is a
// positional (so `vitscale priority JOB -5` works); `--` ends the flags.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/status.h"

namespace vitscale::cli {

struct FlagSpec {
  std::string name;  // "--sweep"
  bool takes_value;  // false: a switch such as --json
};

// The flags every command that talks to the coordinator accepts (see docs/cli.md).
extern const std::vector<FlagSpec> kConnectionFlags;

class ParsedArgs {
 public:
  bool help = false;  // -h or --help was given
  std::vector<std::string> positional;

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  // The last value given for `name`, or `fallback`.
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  // Every value given for a repeatable flag, in order.
  std::vector<std::string> GetAll(const std::string& name) const;

 private:
  friend Expected<ParsedArgs> ParseArgs(const Args&, const std::vector<FlagSpec>&);
  std::map<std::string, std::vector<std::string>> values_;  // a switch maps to {""}
};

// kInvalidArgument naming the unknown flag (with the nearest valid one) or the missing value.
Expected<ParsedArgs> ParseArgs(const Args& args, const std::vector<FlagSpec>& specs);

// Both lists concatenated, for commands that add their own flags to kConnectionFlags.
std::vector<FlagSpec> WithConnectionFlags(std::vector<FlagSpec> own);

// Parses a whole decimal integer within [low, high]; kInvalidArgument naming `what` otherwise.
Expected<long long> ParseInteger(const std::string& text, const std::string& what, long long low,
                                 long long high);

}  // namespace vitscale::cli
