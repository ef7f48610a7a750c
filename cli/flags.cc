#include "cli/flags.h"

#include <fmt/format.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>

#include "common/names.h"

namespace vitscale::cli {

const std::vector<FlagSpec> kConnectionFlags = {{"--coordinator", true}, {"--token-file", true}};

std::string ParsedArgs::Get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second.back();
}

std::vector<std::string> ParsedArgs::GetAll(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>() : it->second;
}

std::vector<FlagSpec> WithConnectionFlags(std::vector<FlagSpec> own) {
  own.insert(own.end(), kConnectionFlags.begin(), kConnectionFlags.end());
  return own;
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
      return InvalidArgument("unknown option '" + arg + "'" + DidYouMean(name, names));
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
    return InvalidArgument(
        fmt::format("{} must be a whole number within {}..{}, not '{}'", what, low, high, text));
  }
  return value;
}

}  // namespace vitscale::cli
