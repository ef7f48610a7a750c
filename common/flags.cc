#include "common/flags.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "common/names.h"
#include "common/text.h"

namespace vitscale {

std::string ParsedArgs::Get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second.back();
}

std::vector<std::string> ParsedArgs::GetAll(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>() : it->second;
}

Expected<long long> ParsedArgs::GetInt(const std::string& name, long long low, long long high,
                                       long long fallback) const {
  if (!Has(name)) return fallback;
  return ParseInteger(Get(name), name, low, high);
}

Expected<ParsedArgs> ParseArgs(const Args& args, const std::vector<FlagSpec>& specs) {
  ParsedArgs parsed;
  bool flags_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    bool looks_numeric =
        arg.size() > 1 && arg[0] == '-' && std::isdigit(static_cast<unsigned char>(arg[1]));
    if (flags_done || arg.empty() || arg[0] != '-' || looks_numeric) {
      parsed.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    if (arg == "-h" || arg == "--help") {
      parsed.help = true;
      continue;
    }
    std::string name = arg.substr(0, arg.find('='));
    const FlagSpec* spec = nullptr;
    std::vector<std::string> names;
    for (const FlagSpec& candidate : specs) {
      names.push_back(candidate.name);
      if (candidate.name == name) spec = &candidate;
    }
    if (spec == nullptr) {
      return InvalidArgument("unknown option '" + Printable(arg) + "'" + DidYouMean(name, names));
    }
    if (!spec->takes_value) {
      if (name.size() < arg.size()) return InvalidArgument(name + " takes no value");
      parsed.values_[name].push_back("");
      continue;
    }
    std::string value;
    if (name.size() < arg.size()) {
      value = arg.substr(name.size() + 1);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    }
    if (value.empty()) return InvalidArgument(name + " needs a value");
    parsed.values_[name].push_back(value);
  }
  return parsed;
}

Expected<long long> ParseInteger(const std::string& text, const std::string& what, long long low,
                                 long long high) {
  char* end = nullptr;
  errno = 0;
  long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || value < low || value > high) {
    return InvalidArgument(fmt::format("{} must be a whole number within {}..{}, not '{}'", what,
                                       low, high, Printable(text)));
  }
  return value;
}

std::string FlagHelp(const std::vector<FlagSpec>& specs) {
  std::vector<std::string> heads;
  size_t width = 0;
  for (const FlagSpec& spec : specs) {
    std::string head = spec.name;
    if (spec.takes_value) head += " " + (spec.value_name.empty() ? "VALUE" : spec.value_name);
    width = std::max(width, head.size());
    heads.push_back(std::move(head));
  }
  std::string text;
  for (size_t i = 0; i < specs.size(); ++i) {
    text += fmt::format("  {:<{}}  {}\n", heads[i], width, specs[i].help);
  }
  return text;
}

CommandLine ParseCommandLine(int argc, char** argv, const std::string& program,
                             const std::string& usage, const std::vector<FlagSpec>& specs,
                             size_t max_positionals) {
  CommandLine line;
  std::string text = usage + FlagHelp(specs);
  Expected<ParsedArgs> parsed = ParseArgs(Args(argv + 1, argv + argc), specs);
  if (parsed.ok() && parsed->help) {
    std::fputs(text.c_str(), stdout);
    line.exit_code = 0;
    return line;
  }
  Status error = parsed.status();
  if (parsed.ok() && parsed->positional.size() > max_positionals) {
    error = InvalidArgument("unexpected argument '" +
                            Printable(parsed->positional[max_positionals]) + "'");
  }
  if (!error.ok()) {
    std::fprintf(stderr, "%s: %s\n\n%s", program.c_str(), error.message().c_str(), text.c_str());
    line.exit_code = 2;
    return line;
  }
  line.args = std::move(parsed).value();
  return line;
}

}  // namespace vitscale
