// Spelling help for errors: "unknown model 'ViT-B/61'; did you mean 'ViT-B/16'?"
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace vitscale {

// Levenshtein distance, case-insensitive.
int EditDistance(std::string_view a, std::string_view b);

// The candidate closest to `name`, or "" when none is within a plausible typo distance. The work
// is bounded whatever the sizes, since `name` may come from a request: a name longer than
// kMaxSuggestedName gets no suggestion, and only the first kMaxCandidates candidates are tried.
inline constexpr size_t kMaxSuggestedName = 64;
inline constexpr size_t kMaxCandidates = 1000;
std::string NearestName(std::string_view name, const std::vector<std::string>& candidates);

// "; did you mean 'X'?" or "" — to append to an error message.
std::string DidYouMean(std::string_view name, const std::vector<std::string>& candidates);

}  // namespace vitscale
