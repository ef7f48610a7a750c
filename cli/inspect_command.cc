// `vitscale inspect`: the Sec. 4.5 views of a finished ViT or hybrid job (trainer/inspection.h),
// drawn by `vitscale-train --inspect` from the model in the job's run directory. The CLI itself
// has no LibTorch: it finds the run directory (from the coordinator's record of the job's
// checkpoints, or a spec file given), writes a spec and runs the trainer.
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/api_client.h"
#include "cli/commands.h"
#include "common/flags.h"
#include "common/files.h"
#include "models/registry.h"
#include "sweep/job_config.h"

namespace vitscale::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kInspectUsage =
    "usage: vitscale inspect JOB [--train-command PATH] [--json]\n"
    "       vitscale inspect --spec SPEC.json [--train-command PATH] [--json]\n"
    "Draws the inspection views of a finished ViT or hybrid job: principal components of the\n"
    "patch-embedding filters, position-embedding similarity, mean attention distance per head\n"
    "and layer, attention rollout. The files (JSON arrays, PNG, SVG) go to <run dir>/inspection/,\n"
    "named from the job. JOB is found through the coordinator (its run directory from its\n"
    "checkpoints); --spec names a job spec instead (docs/train-spec.md). vitscale-train does the\n"
    "work: the one beside vitscale, or --train-command.\n";

// vitscale-train beside this executable, else the name alone (found on PATH).
std::string DefaultTrainCommand() {
  std::error_code error;
  const fs::path self = fs::read_symlink("/proc/self/exe", error);
  if (!error) {
    const fs::path beside = self.parent_path() / "vitscale-train";
    if (fs::exists(beside, error)) return beside.string();
  }
  return "vitscale-train";
}

// Runs `command --spec spec --inspect`, its output passed through; returns its exit status.
int RunTrainer(const std::string& command, const std::string& spec) {
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    // The trainer's own stdout lines would mix with --json output: stderr gets them.
    dup2(STDERR_FILENO, STDOUT_FILENO);
    execlp(command.c_str(), command.c_str(), "--spec", spec.c_str(), "--inspect", nullptr);
    std::fprintf(stderr, "vitscale inspect: cannot run %s: %s\n", command.c_str(),
                 std::strerror(errno));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The files of the job's views, in name order.
std::vector<std::string> ViewFiles(const fs::path& run_dir, const std::string& job_id) {
  std::vector<std::string> files;
  std::error_code error;
  const std::string prefix = job_id.substr(0, 12) + "-";
  for (const auto& entry : fs::directory_iterator(run_dir / "inspection", error)) {
    if (entry.path().filename().string().rfind(prefix, 0) == 0) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

int RunInspect(const Args& raw) {
  Expected<ParsedArgs> parsed = ParseArgs(
      raw, WithConnectionFlags({{"--spec", true}, {"--train-command", true}, {"--json", false}}));
  if (!parsed.ok()) return UsageError("inspect", parsed.status().message(), kInspectUsage);
  if (parsed->help) {
    std::fputs(kInspectUsage, stdout);
    return kExitOk;
  }
  const bool from_spec = parsed->Has("--spec");
  if (parsed->positional.size() != (from_spec ? 0u : 1u)) {
    return UsageError("inspect", from_spec ? "give JOB or --spec, not both" : "JOB is required",
                      kInspectUsage);
  }

  json spec;
  std::string spec_path;
  if (from_spec) {
    spec_path = parsed->Get("--spec");
    Expected<std::string> text = ReadFile(spec_path);
    if (!text.ok()) return Fail("inspect", text.status());
    spec = json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (!spec.is_object() || !spec.contains("job") || !spec.contains("run")) {
      return Fail("inspect", InvalidArgument(spec_path + " is not a job spec (an object with "
                                                         "\"job\" and \"run\")"));
    }
  } else {
    Expected<std::unique_ptr<ApiClient>> api = ApiClient::Open(*parsed);
    if (!api.ok()) return Fail("inspect", api.status());
    Expected<json> job = (*api)->GetJson("/api/v1/jobs/" + UrlEncode(parsed->positional[0]));
    if (!job.ok()) return Fail("inspect", job.status());
    const json& checkpoints = job->value("checkpoints", json::array());
    if (checkpoints.empty()) {
      return Fail("inspect", NotFound("job " + job->value("id", parsed->positional[0]) +
                                      " has no checkpoint yet: inspect it once it has trained"));
    }
    // <run dir>/checkpoints/step-N: the coordinator records where the trainer wrote them.
    const fs::path run_dir =
        fs::path(checkpoints.back().value("path", "")).parent_path().parent_path();
    spec = {{"job", job->at("config")}, {"run", {{"dir", run_dir.string()}}}};
  }
  const std::string model = spec["job"].value("model", "");
  Expected<models::ModelConfig> config = models::LookupModel(model);
  if (!config.ok())
    return Fail("inspect", InvalidArgument("the job's model: " + config.status().message()));
  if (config->family == models::Family::kResNet) {
    return Fail("inspect", InvalidArgument(model + " is a ResNet: the inspection views read a "
                                                   "transformer's embeddings and attention"));
  }
  const fs::path run_dir = spec["run"].value("dir", "");
  if (!from_spec) {
    spec_path = (fs::temp_directory_path() /
                 fmt::format("vitscale-inspect-{}.json", static_cast<long>(getpid())))
                    .string();
    if (Status written = WriteFileAtomically(spec_path, spec.dump(2)); !written.ok()) {
      return Fail("inspect", written);
    }
  }
  const int status = RunTrainer(parsed->Get("--train-command", DefaultTrainCommand()), spec_path);
  if (!from_spec) fs::remove(spec_path);
  if (status != 0) {
    std::fprintf(stderr, "vitscale inspect: vitscale-train --inspect exited with %d\n", status);
    return status == 78 ? kExitBadInput : kExitFailure;
  }
  // The trainer names the files from the job id, the hash of the job config.
  Expected<sweep::JobConfig> job = sweep::JobConfigFromJson(spec["job"]);
  if (!job.ok()) return Fail("inspect", job.status());
  const std::string job_id = sweep::JobId(*job);
  const std::vector<std::string> files = ViewFiles(run_dir, job_id);
  if (parsed->Has("--json")) {
    std::printf("%s\n",
                json{{"job", job_id}, {"dir", (run_dir / "inspection").string()}, {"files", files}}
                    .dump(2)
                    .c_str());
  } else {
    for (const std::string& file : files) std::printf("%s\n", file.c_str());
  }
  return kExitOk;
}

}  // namespace vitscale::cli
