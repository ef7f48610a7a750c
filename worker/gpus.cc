#include "worker/gpus.h"

#include <fmt/format.h>
#include <sys/wait.h>

#include <cstdio>

#include "common/text.h"
#include "protocol/agent.h"

namespace vitscale::worker {
namespace {

constexpr char kQuery[] = "--query-gpu=index,name,memory.total --format=csv,noheader,nounits";

std::string_view Trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) {
    text.remove_suffix(1);
  }
  return text;
}

}  // namespace

Expected<std::vector<GpuInfo>> ParseNvidiaSmiGpus(std::string_view text) {
  std::vector<GpuInfo> gpus;
  size_t start = 0;
  for (int line_number = 1; start < text.size(); ++line_number) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = Trim(text.substr(start, end - start));
    start = end + 1;
    if (line.empty()) continue;
    auto bad = [&](const std::string& why) {
      return InvalidArgument(fmt::format("nvidia-smi output line {}: {}: '{}'", line_number, why,
                                         Printable(line, 200)));
    };
    // INDEX, NAME, MEMORY; a name could hold a comma, so the first and last commas split.
    size_t first = line.find(',');
    size_t last = line.rfind(',');
    if (first == std::string_view::npos || first == last) {
      return bad("expected 'INDEX, NAME, MEMORY MiB'");
    }
    Expected<int64_t> index = protocol::ParseWholeNumber(Trim(line.substr(0, first)), "index", 0,
                                                         protocol::kMaxSlots - 1);
    Expected<int64_t> memory = protocol::ParseWholeNumber(Trim(line.substr(last + 1)), "memory",
                                                          0, int64_t{1} << 40);
    std::string name(Trim(line.substr(first + 1, last - first - 1)));
    if (!index.ok()) return bad("the index is not a GPU index");
    if (static_cast<size_t>(*index) != gpus.size()) {
      return bad(fmt::format("expected GPU {} next", gpus.size()));
    }
    if (!memory.ok()) return bad("the memory is not a number of MiB");
    if (!protocol::CheckGpuKind("name", name).ok()) return bad("the GPU has no usable name");
    gpus.push_back({static_cast<int>(*index), std::move(name), *memory});
  }
  return gpus;
}

Expected<std::vector<GpuInfo>> DetectGpus(const std::string& nvidia_smi) {
  std::string command = fmt::format("'{}' {} 2>&1", nvidia_smi, kQuery);
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return std::vector<GpuInfo>{};
  std::string output;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0 && output.size() < (1 << 20)) {
    output.append(buffer, n);
  }
  int status = ::pclose(pipe);
  // The shell's 127: no such command. A host without the NVIDIA driver has no GPUs to offer.
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127) return std::vector<GpuInfo>{};
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Unavailable(fmt::format("{} {} failed (status {}): {}", nvidia_smi, kQuery,
                                   WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                                   Printable(output, 400)));
  }
  return ParseNvidiaSmiGpus(output);
}

Expected<GpuOffer> ChooseGpuOffer(const std::string& gpus_flag, const std::string& kind_flag,
                                  const std::vector<GpuInfo>& detected) {
  int count = 0;
  if (gpus_flag == "auto") {
    count = static_cast<int>(detected.size());
  } else {
    Expected<int64_t> parsed =
        protocol::ParseWholeNumber(gpus_flag, "--gpus (auto or a count)", 0, protocol::kMaxSlots);
    if (!parsed.ok()) return parsed.status();
    count = static_cast<int>(*parsed);
    if (!detected.empty() && count > static_cast<int>(detected.size())) {
      return InvalidArgument(fmt::format(
          "--gpus {}: nvidia-smi lists {} GPUs on this host; offer at most that many", count,
          detected.size()));
    }
  }
  if (count == 0) return GpuOffer{};
  if (!kind_flag.empty()) {
    RETURN_IF_ERROR(protocol::CheckGpuKind("--gpu-kind", kind_flag));
    return GpuOffer{count, kind_flag};
  }
  if (detected.empty()) {
    return InvalidArgument(fmt::format(
        "--gpus {}: nvidia-smi finds no GPUs here, so their kind is unknown; name their model "
        "with --gpu-kind (as \"NVIDIA H200\")",
        count));
  }
  for (int i = 1; i < count; ++i) {
    if (detected[i].name != detected[0].name) {
      return InvalidArgument(fmt::format(
          "GPU 0 is a {} but GPU {} is a {}: one agent offers GPUs of one kind; pass --gpus N "
          "to offer GPUs 0..N-1 of GPU 0's kind",
          detected[0].name, i, detected[i].name));
    }
  }
  return GpuOffer{count, detected[0].name};
}

}  // namespace vitscale::worker
