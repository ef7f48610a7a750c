#include "common/secrets.h"

#include <sys/random.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "common/sha256.h"

namespace vitscale {

Expected<std::string> RandomHexToken(size_t bytes) {
  std::string raw(bytes, '\0');
  size_t filled = 0;
  while (filled < raw.size()) {
    ssize_t n = ::getrandom(raw.data() + filled, raw.size() - filled, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return IOError(std::string("cannot read random bytes for a token: ") + std::strerror(errno));
    }
    filled += static_cast<size_t>(n);
  }
  std::string hex;
  hex.reserve(2 * bytes);
  for (char c : raw) hex += fmt::format("{:02x}", static_cast<unsigned char>(c));
  return hex;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  volatile unsigned char difference = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference = difference | (static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(b[i]));
  }
  return difference == 0;
}

std::string TokenHash(std::string_view token) { return Sha256Hex(token); }

}  // namespace vitscale
