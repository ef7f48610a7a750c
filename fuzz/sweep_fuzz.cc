// The sweep YAML loader (sweep/sweep.h) on arbitrary text: ParseSweep, then ExpandSweep of what
// parses. Either may refuse the input with a message; neither may crash, hang or leak.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sweep/sweep.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  vitscale::Expected<vitscale::sweep::Sweep> sweep = vitscale::sweep::ParseSweep(text, "fuzz.yaml");
  if (sweep.ok()) (void)vitscale::sweep::ExpandSweep(*sweep);
  return 0;
}
