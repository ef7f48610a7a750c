// SHA-256, for job ids (a hash of the canonical config) and checkpoint checksums.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace vitscale {

// Lower-case hex digest of `data`.
std::string Sha256Hex(std::string_view data);

// Lower-case hex digest of a file's bytes, read in chunks.
Expected<std::string> Sha256File(const std::string& path);

}  // namespace vitscale
