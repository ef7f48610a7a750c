#include "storage/records.h"

#include <fmt/format.h>

#include <array>
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

}  // namespace vitscale::storage
