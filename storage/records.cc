#include "storage/records.h"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <utility>

#include "common/text.h"

namespace vitscale::storage {
namespace {

template <typename Enum, size_t N>
Expected<Enum> ParseName(std::string_view name,
                         const std::array<std::pair<Enum, const char*>, N>& names,
                         const char* what) {
  std::string valid;
  for (const auto& [value, spelling] : names) {
    if (name == spelling) return value;
    valid += valid.empty() ? "" : ", ";
    valid += spelling;
  }
  return InvalidArgument(fmt::format("unknown {} '{}'; use one of: {}", what, Printable(name), valid));
}

constexpr std::array<std::pair<JobSort, const char*>, 6> kJobSorts = {{
    {JobSort::kSubmitted, "submitted"},
    {JobSort::kPriority, "priority"},
    {JobSort::kModel, "model"},
    {JobSort::kSubset, "subset"},
    {JobSort::kState, "state"},
    {JobSort::kUpdated, "updated"},
}};

}  // namespace

Expected<JobSort> ParseJobSort(std::string_view name) {
  return ParseName(name, kJobSorts, "job sort");
}

namespace {

constexpr size_t kMaxCursorKeyBytes = 256;

// What kind of key a position in this order carries: '-' none, 'i' integer, 'r' real, 't' text.
char KeyKind(const JobFilter& filter) {
  switch (filter.sort) {
    case JobSort::kSubmitted:
      return '-';
    case JobSort::kPriority:
    case JobSort::kSubset:
      return 'i';
    case JobSort::kUpdated:
      return 'r';
    case JobSort::kModel:
    case JobSort::kState:
      return 't';
  }
  return '-';
}

// FNV-1a over everything that decides which rows a list holds and in which order.
std::string Fingerprint(const JobFilter& filter) {
  std::string text = filter.sweep ? "s" + *filter.sweep : "-";
  for (JobState state : filter.states) text += fmt::format("\x1f{}", JobStateName(state));
  text += fmt::format("\x1e{}\x1e{}\x1e{}\x1e{}", filter.model ? "m" + *filter.model : "-",
                      filter.subset_size ? std::to_string(*filter.subset_size) : "-",
                      static_cast<int>(filter.sort), filter.descending ? 'd' : 'a');
  uint64_t hash = 1469598103934665603ull;
  for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ull;
  return fmt::format("{:016x}", hash);
}

std::string ToHex(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) out += fmt::format("{:02x}", c);
  return out;
}

std::optional<std::string> FromHex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    unsigned value = 0;
    auto [end, error] = std::from_chars(hex.data() + i, hex.data() + i + 2, value, 16);
    if (error != std::errc() || end != hex.data() + i + 2) return std::nullopt;
    out += static_cast<char>(value);
  }
  return out;
}

std::optional<int64_t> WholeNumber(std::string_view text) {
  int64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

}  // namespace

// A study cursor: the hex of "study1.<sweep id>.<position>", the row's place in the sweep's
// order.
std::string EncodeStudyCursor(int64_t sweep_id, int64_t position) {
  return ToHex(fmt::format("study1.{}.{}", sweep_id, position));
}

std::optional<std::pair<int64_t, int64_t>> DecodeStudyCursor(std::string_view cursor) {
  constexpr std::string_view kPrefix = "study1.";
  if (cursor.empty() || cursor.size() > 128) return std::nullopt;
  std::optional<std::string> text = FromHex(cursor);
  if (!text || text->compare(0, kPrefix.size(), kPrefix) != 0) return std::nullopt;
  std::string_view rest = std::string_view(*text).substr(kPrefix.size());
  size_t dot = rest.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  std::optional<int64_t> sweep_id = WholeNumber(rest.substr(0, dot));
  std::optional<int64_t> position = WholeNumber(rest.substr(dot + 1));
  // Only the text EncodeStudyCursor writes: no sign, no leading zeros.
  if (!sweep_id || !position || *sweep_id < 0 || *position < 0 ||
      *text != fmt::format("study1.{}.{}", *sweep_id, *position)) {
    return std::nullopt;
  }
  return std::pair{*sweep_id, *position};
}

// The cursor is the hex of "1.<fingerprint>.<order>.<kind><key>": opaque to clients, and cheap
// to check whole.
std::string EncodeJobCursor(const JobFilter& filter, const JobPosition& position) {
  std::string key;
  if (const auto* i = std::get_if<int64_t>(&position.key)) key = std::to_string(*i);
  if (const auto* r = std::get_if<double>(&position.key)) key = fmt::format("{}", *r);
  if (const auto* t = std::get_if<std::string>(&position.key)) key = *t;
  return ToHex(fmt::format("1.{}.{}.{}{}", Fingerprint(filter), position.order, KeyKind(filter),
                           key));
}

Expected<JobPosition> DecodeJobCursor(const JobFilter& filter, std::string_view cursor) {
  auto refuse = [](const char* why) {
    return InvalidArgument(fmt::format(
        "the cursor {}; use the next/prev cursor of a page listed with the same filters and "
        "order, or start again from the first page",
        why));
  };
  if (cursor.size() > 2 * (kMaxCursorKeyBytes + 64)) return refuse("is too long");
  std::optional<std::string> text = FromHex(cursor);
  if (!text) return refuse("is not one this job list gave out");
  std::string_view rest = *text;
  auto field = [&rest]() -> std::optional<std::string_view> {
    size_t dot = rest.find('.');
    if (dot == std::string_view::npos) return std::nullopt;
    std::string_view part = rest.substr(0, dot);
    rest.remove_prefix(dot + 1);
    return part;
  };
  std::optional<std::string_view> version = field(), fingerprint = field(), order = field();
  if (!version || *version != "1" || !fingerprint || !order || rest.empty()) {
    return refuse("is not one this job list gave out");
  }
  if (*fingerprint != Fingerprint(filter)) {
    return refuse("was made for other filters or another order");
  }
  JobPosition position;
  std::optional<int64_t> tie = WholeNumber(*order);
  if (!tie) return refuse("is not one this job list gave out");
  position.order = *tie;
  char kind = rest.front();
  std::string_view key = rest.substr(1);
  if (kind != KeyKind(filter)) return refuse("was made for another order");
  switch (kind) {
    case '-':
      if (!key.empty()) return refuse("is not one this job list gave out");
      break;
    case 'i': {
      std::optional<int64_t> value = WholeNumber(key);
      if (!value) return refuse("is not one this job list gave out");
      position.key = *value;
      break;
    }
    case 'r': {
      std::string copy(key);
      char* end = nullptr;
      double value = std::strtod(copy.c_str(), &end);
      if (copy.empty() || end != copy.c_str() + copy.size() || !std::isfinite(value)) {
        return refuse("is not one this job list gave out");
      }
      position.key = value;
      break;
    }
    default:  // 't'
      if (key.size() > kMaxCursorKeyBytes) return refuse("is too long");
      position.key = std::string(key);
  }
  return position;
}

}  // namespace vitscale::storage
