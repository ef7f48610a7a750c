// vitscale-agent: the worker daemon, one per host. See docs/agent.md; `--help` lists the flags.
//
// SIGTERM or SIGINT: stop taking work, preempt the running jobs, report how they ended, exit 0.
#include <fmt/format.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "common/files.h"
#include "common/flags.h"
#include "worker/agent.h"
#include "worker/gpus.h"
#include "worker/launcher.h"

namespace {

using namespace vitscale;

constexpr int kExitUsage = 2;
constexpr int kExitError = 1;

const char kUsage[] =
    "usage: vitscale-agent --coordinator URL --token-file FILE [flags]\n"
    "The vitscale worker agent: offers this host's slots and runs the jobs it is given "
    "(docs/agent.md).\n\n";

const std::vector<FlagSpec> kFlags = {
    {"--coordinator", true, "URL", "the coordinator's base URL, http://host:port (required)"},
    {"--token-file", true, "FILE",
     "this host's agent credential (`vitscale agents issue HOST` prints one; required)"},
    {"--host", true, "NAME", "the agent's id and mpirun host name (default: the host name)"},
    {"--slots", true, "N", "ranks this host runs at once (default: CPU cores)"},
    {"--gpus", true, "auto|N",
     "GPUs offered, 0..N-1 (default auto: every GPU nvidia-smi lists, 0 without it)"},
    {"--gpu-kind", true, "NAME",
     "their model, the kind GPU jobs ask for (default: the name nvidia-smi gives)"},
    {"--work-dir", true, "DIR", "spec files and default logs (default ./vitscale-agent-HOST)"},
    {"--runs-dir", true, "DIR", "the coordinator's runs folder, where job logs and runs may go"},
    {"--train-command", true, "PATH", "what every rank runs (default vitscale-train beside this)"},
    {"--mpirun", true, "PATH", "Open MPI's launcher (default mpirun)"},
    {"--forward-env", true, "LIST",
     "variables every rank gets from this agent, names or PREFIX_* (default: numeric libraries' "
     "settings, PATH, locale; docs/agent.md)"},
    {"--bind-to", true, "WHAT", "mpirun --bind-to: none, core, socket, ... (default Open MPI's)"},
    {"--network", true, "CIDR", "the network mpirun's TCP traffic between hosts uses"},
    {"--rsh-agent", true, "CMD", "how mpirun reaches the gang's other hosts (default ssh)"},
};

// vitscale-train beside this executable when it is there (a build or an install), else PATH.
std::string DefaultTrainCommand() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    std::filesystem::path sibling = self.parent_path() / "vitscale-train";
    if (std::filesystem::exists(sibling, ec)) return sibling.string();
  }
  return "vitscale-train";
}

Expected<worker::AgentOptions> OptionsFrom(const ParsedArgs& args) {
  worker::AgentOptions options;
  options.coordinator_url = args.Get("--coordinator");
  if (options.coordinator_url.empty()) return InvalidArgument("--coordinator URL is required");
  std::string token_file = args.Get("--token-file");
  if (token_file.empty()) {
    return InvalidArgument(
        "--token-file is required: this host's agent credential, which `vitscale agents issue "
        "HOST` prints");
  }
  Expected<std::string> token = ReadTokenFile(token_file);
  if (!token.ok()) return InvalidArgument("--token-file: " + token.status().message());
  options.token = *token;
  options.host = args.Get("--host");
  if (options.host.empty()) {
    char name[HOST_NAME_MAX + 1] = {};
    if (::gethostname(name, sizeof(name)) != 0 || name[0] == '\0') {
      return InvalidArgument("cannot read this machine's host name; pass --host NAME");
    }
    options.host = name;
  }
  long long cores = std::max(1u, std::thread::hardware_concurrency());
  ASSIGN_OR_RETURN(long long slots, args.GetInt("--slots", 0, 4096, cores));
  options.slots = static_cast<int>(slots);
  std::string gpus_flag = args.Get("--gpus", "auto");
  // Given some GPUs of the host by CUDA_VISIBLE_DEVICES (a Slurm allocation, a container), the
  // agent offers those: GPU i is the list's entry i.
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  if (visible != nullptr && *visible == '\0' && gpus_flag == "auto") gpus_flag = "0";
  if (visible != nullptr && *visible != '\0') {
    std::string list = visible;
    for (size_t start = 0; start <= list.size();) {
      size_t comma = std::min(list.find(',', start), list.size());
      options.gpu_devices.push_back(list.substr(start, comma - start));
      start = comma + 1;
    }
    if (gpus_flag == "auto") gpus_flag = std::to_string(options.gpu_devices.size());
  }
  std::vector<worker::GpuInfo> detected;
  if (gpus_flag != "0") {
    if (Expected<std::vector<worker::GpuInfo>> found = worker::DetectGpus(); found.ok()) {
      detected = std::move(found).value();
    } else {
      // A broken driver leaves the host useful for CPU jobs; say why it offers no GPUs.
      std::fprintf(stderr, "vitscale-agent: %s\n", found.status().message().c_str());
    }
  }
  ASSIGN_OR_RETURN(worker::GpuOffer offer,
                   worker::ChooseGpuOffer(gpus_flag, args.Get("--gpu-kind"), detected));
  options.gpus = offer.count;
  options.gpu_kind = offer.kind;
  namespace fs = std::filesystem;
  options.work_dir = args.Get("--work-dir", "vitscale-agent-" + options.host);
  std::error_code ec;
  fs::create_directories(options.work_dir, ec);
  if (ec) return InvalidArgument("--work-dir " + options.work_dir + ": " + ec.message());
  fs::permissions(options.work_dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  if (ec) return InvalidArgument("--work-dir " + options.work_dir + ": " + ec.message());
  options.work_dir = fs::absolute(options.work_dir).lexically_normal().string();
  if (args.Has("--runs-dir")) {
    options.runs_dir = fs::absolute(args.Get("--runs-dir")).lexically_normal().string();
  }
  options.train_command = args.Get("--train-command", DefaultTrainCommand());
  options.mpirun = args.Get("--mpirun", "mpirun");
  ASSIGN_OR_RETURN(options.forward_env,
                   worker::ParseForwardEnv(args.Get("--forward-env", worker::kDefaultForwardEnv)));
  options.bind_to = args.Get("--bind-to");
  options.network = args.Get("--network");
  options.rsh_agent = args.Get("--rsh-agent");
  for (const auto& [flag, value] : {std::pair<const char*, const std::string&>{"--bind-to", options.bind_to},
                                    {"--network", options.network},
                                    {"--rsh-agent", options.rsh_agent}}) {
    // mpirun gets each as one argument: no shell ever sees them; still, nothing odd.
    for (char c : value) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && std::string(" ./_=:-").find(c) == std::string::npos) {
        return InvalidArgument(std::string(flag) + " '" + value +
                               "' may hold only letters, digits, spaces and . / _ = : -");
      }
    }
  }
  options.allow_run_as_root = ::geteuid() == 0;
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  CommandLine line = ParseCommandLine(argc, argv, "vitscale-agent", kUsage, kFlags);
  if (line.exit_code >= 0) return line.exit_code;
  // Specs (with their report tokens), logs and checkpoints: readable by the owner only.
  ::umask(077);
  Expected<worker::AgentOptions> options = OptionsFrom(line.args);
  if (!options.ok()) {
    std::fprintf(stderr, "vitscale-agent: %s\n", options.status().message().c_str());
    return kExitUsage;
  }
  // Block the stop signals in every thread; one thread waits for them and asks the agent to stop.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  worker::ProcessLauncher launcher;
  Expected<std::unique_ptr<worker::Agent>> agent = worker::Agent::Create(*options, launcher);
  if (!agent.ok()) {
    std::fprintf(stderr, "vitscale-agent: %s\n", agent.status().message().c_str());
    return kExitUsage;
  }
  worker::Agent* running = agent->get();
  std::thread waiter([&stop_signals, running] {
    int signal = 0;
    sigwait(&stop_signals, &signal);
    if (signal != 0) {
      std::fprintf(stderr, "vitscale-agent: %s: stopping\n", strsignal(signal));
      running->RequestStop();
    }
  });
  Status status = (*agent)->Run();
  // Run() returns only after a stop signal, so the waiter has already returned.
  waiter.join();
  if (!status.ok()) {
    std::fprintf(stderr, "vitscale-agent: %s\n", status.ToString().c_str());
    return kExitError;
  }
  return 0;
}
