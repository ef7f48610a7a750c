// The .npy parser and the .npz reader (models/npy.h) on arbitrary bytes: ParseNpy on them as
// they are, and ReadNpz on them as a file (a memfd, so that no disk is touched).
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "models/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const int fd = memfd_create("npz_fuzz", 0);
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  (void)vitscale::models::ParseNpy(bytes, "fuzz.npy");
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != static_cast<ssize_t>(size)) {
    __builtin_trap();  // the harness itself is broken
  }
  (void)vitscale::models::ReadNpz(path);
  return 0;
}
