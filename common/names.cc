#include "common/names.h"

#include <algorithm>
#include <cctype>

namespace vitscale {

int EditDistance(std::string_view a, std::string_view b) {
  // Optimal string alignment: Levenshtein plus swaps of neighbouring characters as one edit,
  // so "ViT-B/61" is one edit from "ViT-B/16" and not two.
  auto same = [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
  };
  std::vector<int> before_previous(b.size() + 1), previous(b.size() + 1), row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) previous[j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    row[0] = static_cast<int>(i);
    for (size_t j = 1; j <= b.size(); ++j) {
      int substitution = previous[j - 1] + (same(a[i - 1], b[j - 1]) ? 0 : 1);
      row[j] = std::min({previous[j] + 1, row[j - 1] + 1, substitution});
      if (i > 1 && j > 1 && same(a[i - 1], b[j - 2]) && same(a[i - 2], b[j - 1])) {
        row[j] = std::min(row[j], before_previous[j - 2] + 1);
      }
    }
    before_previous.swap(previous);
    previous.swap(row);
  }
  return previous[b.size()];
}

std::string NearestName(std::string_view name, const std::vector<std::string>& candidates) {
  std::string best;
  int best_distance = 0;
  if (name.size() > kMaxSuggestedName) return best;
  size_t tried = 0;
  for (const std::string& candidate : candidates) {
    if (++tried > kMaxCandidates) break;
    // A candidate much longer than the name is no typo of it (and would cost the most).
    if (candidate.size() > 2 * kMaxSuggestedName) continue;
    int d = EditDistance(name, candidate);
    if (best.empty() || d < best_distance) {
      best = candidate;
      best_distance = d;
    }
  }
  // Beyond about a third of the name, a suggestion is noise rather than help.
  int limit = std::max<int>(2, static_cast<int>(name.size()) / 3);
  return best_distance <= limit ? best : "";
}

std::string DidYouMean(std::string_view name, const std::vector<std::string>& candidates) {
  std::string nearest = NearestName(name, candidates);
  return nearest.empty() ? "" : "; did you mean '" + nearest + "'?";
}

}  // namespace vitscale
