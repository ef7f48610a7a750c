// Text that came from outside (a request, a file, a peer) made safe to check and to show.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace vitscale {

// Well-formed UTF-8: no stray continuation bytes, no overlong forms, no surrogates, nothing
// above U+10FFFF.
bool IsValidUtf8(std::string_view text);

// True when `text` holds a C0 control character or DEL (tab and newline included).
bool HasControlCharacters(std::string_view text);

// `text` as something an error message may quote: invalid UTF-8 becomes U+FFFD, control
// characters become \xNN, and anything past `max_bytes` is cut and marked with "...".
// The result is always valid UTF-8, so serialising it can never fail.
std::string Printable(std::string_view text, size_t max_bytes = 120);

}  // namespace vitscale
