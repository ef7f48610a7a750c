#include "coordinator/inspection_api.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/clock.h"
#include "common/text.h"

namespace vitscale::coordinator {

using protocol::Json;

namespace {

std::string ContentType(std::string_view name) {
  if (name.size() >= 5 && name.substr(name.size() - 5) == ".json") return "application/json";
  if (name.size() >= 4 && name.substr(name.size() - 4) == ".png") return "image/png";
  return "image/svg+xml";
}

struct OpenedFile {
  int fd = -1;
  struct stat info {};
};

// Opens <run dir>/inspection/<id12>-<name>, a regular file, following no link at the folder or
// the file (the path is built from the job id, hex from the database, and a name from the fixed
// set only); errno tells why not.
bool OpenInspectionFile(const Core& core, const std::string& job_id, std::string_view name,
                        OpenedFile* out) {
  std::string dir = core.RunDir(job_id) + "/inspection";
  int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dir_fd < 0) return false;
  std::string file = fmt::format("{}-{}", job_id.substr(0, 12), name);
  int fd = ::openat(dir_fd, file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  int saved = errno;
  ::close(dir_fd);
  errno = saved;
  if (fd < 0) return false;
  if (::fstat(fd, &out->info) != 0 || !S_ISREG(out->info.st_mode)) {
    ::close(fd);
    errno = EINVAL;
    return false;
  }
  out->fd = fd;
  return true;
}

}  // namespace

InspectionApi::InspectionApi(Core& core) : core_(core) {}

void InspectionApi::AddRoutes(Router& router) {
  auto bind = [this](HttpResponse (InspectionApi::*method)(const HttpRequest&)) {
    return Immediate(
        [this, method](const HttpRequest& request) { return (this->*method)(request); });
  };
  router.Add("GET", "/api/v1/jobs/{id}/inspection", Scope::kRead, kSmallBody,
             bind(&InspectionApi::ListFiles));
  router.Add("GET", "/api/v1/jobs/{id}/inspection/{file}", Scope::kRead, kSmallBody,
             bind(&InspectionApi::GetFile));
}

HttpResponse InspectionApi::ListFiles(const HttpRequest& request) {
  Expected<storage::JobRecord> job = core_.FindJob(request.params.at("id"));
  if (!job.ok()) return StatusResponse(job.status());
  Json files = Json::array();
  for (std::string_view name : kInspectionFiles) {
    OpenedFile file;
    if (!OpenInspectionFile(core_, job->id, name, &file)) continue;
    ::close(file.fd);
    files.push_back({{"name", std::string(name)},
                     {"view", std::string(name.substr(0, name.rfind('.')))},
                     {"bytes", static_cast<int64_t>(file.info.st_size)},
                     {"modified_at", IsoTime(static_cast<double>(file.info.st_mtime))}});
  }
  return JsonResponse(200, Json{{"job", job->id}, {"files", files}});
}

HttpResponse InspectionApi::GetFile(const HttpRequest& request) {
  Expected<storage::JobRecord> job = core_.FindJob(request.params.at("id"));
  if (!job.ok()) return StatusResponse(job.status());
  const std::string& asked = request.params.at("file");
  std::string_view name;
  std::string known;
  for (std::string_view candidate : kInspectionFiles) {
    if (asked == candidate) name = candidate;
    known += fmt::format("{}{}", known.empty() ? "" : ", ", candidate);
  }
  if (name.empty()) {
    return ErrorResponse(404, fmt::format("'{}' is not an inspection file; they are: {}",
                                          Printable(asked, 80), known));
  }
  OpenedFile file;
  if (!OpenInspectionFile(core_, job->id, name, &file)) {
    if (errno == ENOENT || errno == ENOTDIR) {
      return ErrorResponse(404, fmt::format("job {} has no {} (run `vitscale inspect {}`, or "
                                            "its inspection has not reached it yet)",
                                            job->id, name, job->id.substr(0, 12)));
    }
    return ErrorResponse(404, fmt::format("the {} of job {} cannot be served: it is not a "
                                          "regular file ({})",
                                          name, job->id, std::strerror(errno)));
  }
  if (file.info.st_size > kMaxInspectionFileBytes) {
    ::close(file.fd);
    return ErrorResponse(
        413, fmt::format("the {} of job {} holds {} bytes; at most {} are served", name, job->id,
                         file.info.st_size, kMaxInspectionFileBytes));
  }
  std::string body(static_cast<size_t>(file.info.st_size), '\0');
  size_t done = 0;
  while (done < body.size()) {
    ssize_t n = ::read(file.fd, body.data() + done, body.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(file.fd);
  body.resize(done);  // a file the trainer is replacing is renamed over, never truncated
  HttpResponse response;
  response.content_type = ContentType(name);
  response.body = std::move(body);
  return response;
}

}  // namespace vitscale::coordinator
