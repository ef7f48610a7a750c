// The checkpoint manifest reader (trainer/checkpoint_store.h) on arbitrary text: ParseManifest
// either accepts it, with every field checked, or refuses it with a message.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "trainer/checkpoint_store.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)vitscale::trainer::ParseManifest(text, "fuzz/MANIFEST.json");
  return 0;
}
