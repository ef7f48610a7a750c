// Credentials: random tokens, their stored form, and comparing them without leaking timing.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/status.h"

namespace vitscale {

// `bytes` bytes from the kernel's random source as lower-case hex (2 x bytes characters).
Expected<std::string> RandomHexToken(size_t bytes = 32);

// Compares two strings in time that depends on their lengths only, never on where they differ.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

// What is stored of a token: its SHA-256 in hex. A database that leaks does not leak tokens.
std::string TokenHash(std::string_view token);

}  // namespace vitscale
