#include "common/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace vitscale {
namespace {

Status ErrnoStatus(const std::string& what, const std::string& path) {
  int saved = errno;
  return IOError(what + " " + path + ": " + std::strerror(saved));
}

}  // namespace

Status SyncParentDirectory(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return ErrnoStatus("cannot open directory", dir);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return ErrnoStatus("cannot fsync directory", dir);
  return Status::Ok();
}

Status WriteFileAtomically(const std::string& path, std::string_view content, int mode,
                           Durability durability) {
  std::string temp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0) return ErrnoStatus("cannot create", temp);
  size_t written = 0;
  while (written < content.size()) {
    ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      Status status = ErrnoStatus("cannot write", temp);
      ::close(fd);
      ::unlink(temp.c_str());
      return status;
    }
    written += static_cast<size_t>(n);
  }
  if (durability == Durability::kMachineCrash && ::fsync(fd) != 0) {
    Status status = ErrnoStatus("cannot fsync", temp);
    ::close(fd);
    ::unlink(temp.c_str());
    return status;
  }
  ::close(fd);
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    Status status = ErrnoStatus("cannot rename into", path);
    ::unlink(temp.c_str());
    return status;
  }
  return durability == Durability::kMachineCrash ? SyncParentDirectory(path) : Status::Ok();
}

Expected<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return NotFound("no such file: " + path);
    return ErrnoStatus("cannot open", path);
  }
  // A directory opens and reads as empty on Linux; say what it is instead.
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) {
    return InvalidArgument(path + " is a directory, not a file");
  }
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) return IOError("read error in " + path);
  return content.str();
}

Expected<std::string> ReadTokenFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  const char* space = " \t\r\n";
  size_t begin = text.find_first_not_of(space);
  if (begin == std::string::npos) return InvalidArgument("token file " + path + " is empty");
  return text.substr(begin, text.find_last_not_of(space) - begin + 1);
}

}  // namespace vitscale
