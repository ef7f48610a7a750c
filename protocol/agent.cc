#include "protocol/agent.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <utility>

namespace vitscale::protocol {
namespace {

constexpr UnknownFields kRequest = UnknownFields::kRefuse;
constexpr UnknownFields kReply = UnknownFields::kIgnore;

Json RunningJson(const std::vector<RunningEntry>& entries) {
  Json list = Json::array();
  for (const RunningEntry& entry : entries) list.push_back(entry.ToJson());
  return list;
}

Json GpusJson(const std::vector<HostGpus>& entries) {
  Json list = Json::array();
  for (const HostGpus& entry : entries) list.push_back(entry.ToJson());
  return list;
}

}  // namespace

Status CheckGpuKind(const std::string& path, const std::string& kind) {
  RETURN_IF_ERROR(CheckText(path, kind, kGpuKindRule));
  if (kind.empty()) return FieldError(path, "is empty; name the GPU model, as \"NVIDIA H200\"");
  if (kind == kCpuKind) {
    return FieldError(path, "'cpu' is the kind of CPU slots, not of a GPU; name the GPU model");
  }
  return Status::Ok();
}

Status CheckGpuIndices(const std::string& path, const std::vector<int>& indices) {
  for (size_t i = 0; i < indices.size(); ++i) {
    if (std::find(indices.begin(), indices.begin() + i, indices[i]) != indices.begin() + i) {
      return FieldError(path, fmt::format("names GPU {} twice", indices[i]));
    }
  }
  return Status::Ok();
}

std::string GpuIndicesString(const std::vector<int>& indices) {
  return fmt::format("{}", fmt::join(indices, ","));
}

Expected<RunningEntry> RunningEntry::FromJson(const Json& value, const std::string& path) {
  // Part of requests (agent -> coordinator) and of replies; strict either way.
  RunningEntry entry;
  ObjectReader r(value, path, kRequest);
  r.Text("job", &entry.job, kJobIdRule);
  r.Int("attempt", &entry.attempt, 1, kMaxAttempt);
  r.IntList("gpus", &entry.gpus, kMaxSlots, 0, kMaxSlots - 1, /*required=*/false);
  RETURN_IF_ERROR(r.Finish());
  RETURN_IF_ERROR(CheckGpuIndices(r.Join("gpus"), entry.gpus));
  return entry;
}

Json RunningEntry::ToJson() const {
  Json out = {{"job", job}, {"attempt", attempt}};
  if (!gpus.empty()) out["gpus"] = gpus;
  return out;
}

Expected<RegisterRequest> RegisterRequest::FromJson(const Json& value, const std::string& path) {
  RegisterRequest request;
  ObjectReader r(value, path, kRequest);
  r.Text("host", &request.host, kHostRule);
  r.Int("slots", &request.slots, 0, kMaxSlots);
  r.Int("gpus", &request.gpus, 0, kMaxSlots);
  std::optional<std::string> gpu_kind;
  r.OptionalText("gpu_kind", &gpu_kind, kGpuKindRule);
  r.List("running", &request.running, kMaxRunning, &RunningEntry::FromJson, /*required=*/false);
  r.OptionalText("runs_mark", &request.runs_mark, kTokenRule);
  RETURN_IF_ERROR(r.Finish());
  if (request.gpus > 0) {
    if (!gpu_kind) {
      return FieldError(r.Join("gpu_kind"),
                        "is required when 'gpus' > 0: the GPUs' model, as \"NVIDIA H200\"");
    }
    RETURN_IF_ERROR(CheckGpuKind(r.Join("gpu_kind"), *gpu_kind));
    request.gpu_kind = *gpu_kind;
  }
  return request;
}

Json RegisterRequest::ToJson() const {
  Json out = {{"host", host}, {"slots", slots}, {"gpus", gpus}};
  if (gpus > 0) out["gpu_kind"] = gpu_kind;
  out["running"] = RunningJson(running);
  if (runs_mark) out["runs_mark"] = *runs_mark;
  return out;
}

Expected<RegisterReply> RegisterReply::FromJson(const Json& value, const std::string& path) {
  RegisterReply reply;
  ObjectReader r(value, path, kReply);
  r.Text("agent", &reply.agent, kHostRule);
  r.Int("lease_seconds", &reply.lease_seconds, 1, 86400);
  r.List("not_held", &reply.not_held, kMaxRunning, &RunningEntry::FromJson, /*required=*/false);
  RETURN_IF_ERROR(r.Finish());
  return reply;
}

Json RegisterReply::ToJson() const {
  return Json{{"agent", agent}, {"lease_seconds", lease_seconds}, {"not_held", RunningJson(not_held)}};
}

Expected<PollRequest> PollRequest::FromJson(const Json& value, const std::string& path) {
  PollRequest request;
  ObjectReader r(value, path, kRequest);
  r.List("running", &request.running, kMaxRunning, &RunningEntry::FromJson, /*required=*/false);
  RETURN_IF_ERROR(r.Finish());
  return request;
}

Json PollRequest::ToJson() const { return Json{{"running", RunningJson(running)}}; }

std::string HostsString(const std::vector<HostRanks>& hosts) {
  std::string text;
  for (const HostRanks& h : hosts) {
    if (!text.empty()) text += ",";
    text += fmt::format("{}:{}", h.host, h.ranks);
  }
  return text;
}

Expected<std::vector<HostRanks>> ParseHosts(std::string_view text, const std::string& path) {
  RETURN_IF_ERROR(CheckText(path, text, TextRule{TextKind::kText, 65536}));
  std::vector<HostRanks> hosts;
  size_t start = 0;
  while (true) {
    size_t comma = text.find(',', start);
    std::string_view item = text.substr(start, comma == std::string_view::npos ? text.npos
                                                                               : comma - start);
    std::string where = fmt::format("{}[{}]", path, hosts.size());
    size_t colon = item.rfind(':');
    if (colon == std::string_view::npos) {
      return FieldError(where, "expected HOST:RANKS, as in \"host-a:2,host-b:2\"");
    }
    HostRanks entry;
    entry.host = std::string(item.substr(0, colon));
    RETURN_IF_ERROR(CheckText(where + ".host", entry.host, kHostRule));
    Expected<int64_t> ranks =
        ParseWholeNumber(item.substr(colon + 1), where + ".ranks", 1, kMaxRanks);
    if (!ranks.ok()) return InvalidArgument(ranks.status().message());
    entry.ranks = static_cast<int>(*ranks);
    hosts.push_back(std::move(entry));
    if (hosts.size() > static_cast<size_t>(kMaxRanks)) {
      return FieldError(path, "names more hosts than ranks can fill");
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return hosts;
}

Expected<HostGpus> HostGpus::FromJson(const Json& value, const std::string& path) {
  HostGpus entry;
  ObjectReader r(value, path, kReply);
  r.Text("host", &entry.host, kHostRule);
  r.IntList("gpus", &entry.gpus, kMaxSlots, 0, kMaxSlots - 1);
  RETURN_IF_ERROR(r.Finish());
  RETURN_IF_ERROR(CheckGpuIndices(r.Join("gpus"), entry.gpus));
  if (entry.gpus.empty()) return FieldError(r.Join("gpus"), "is empty");
  return entry;
}

Json HostGpus::ToJson() const { return Json{{"host", host}, {"gpus", gpus}}; }

Expected<LaunchEntry> LaunchEntry::FromJson(const Json& value, const std::string& path) {
  LaunchEntry entry;
  ObjectReader r(value, path, kReply);
  r.Text("job", &entry.job, kJobIdRule);
  r.Int("attempt", &entry.attempt, 1, kMaxAttempt);
  r.Bool("hold", &entry.hold, /*required=*/false);
  r.List("gpus", &entry.gpus, kMaxRanks, &HostGpus::FromJson, /*required=*/false);
  if (r.ok() && !entry.hold) {
    std::string hosts;
    r.Int("ranks", &entry.ranks, 1, kMaxRanks);
    r.Text("hosts", &hosts, TextRule{TextKind::kText, 65536});
    r.Int("grace_seconds", &entry.grace_seconds, 0, kMaxGraceSeconds);
    r.Text("log", &entry.log, kPathRule);
    r.RawObject("spec", &entry.spec);
    RETURN_IF_ERROR(r.Finish());
    ASSIGN_OR_RETURN(entry.hosts, ParseHosts(hosts, r.Join("hosts")));
    int total = 0;
    for (const HostRanks& h : entry.hosts) total += h.ranks;
    if (total != entry.ranks) {
      return FieldError(r.Join("hosts"), fmt::format("places {} ranks, but 'ranks' is {}", total,
                                                     entry.ranks));
    }
    if (!entry.gpus.empty()) {
      // Every host of the gang, in the same order: the leader starts each host's ranks with
      // that host's devices.
      bool same = entry.gpus.size() == entry.hosts.size();
      for (size_t i = 0; same && i < entry.hosts.size(); ++i) {
        same = entry.gpus[i].host == entry.hosts[i].host;
      }
      if (!same) {
        return FieldError(r.Join("gpus"), "must name the hosts of 'hosts', in the same order");
      }
    }
    return entry;
  }
  RETURN_IF_ERROR(r.Finish());
  if (entry.gpus.size() > 1) return FieldError(r.Join("gpus"), "a hold names its own host only");
  return entry;
}

Json LaunchEntry::ToJson() const {
  Json out = {{"job", job}, {"attempt", attempt}};
  if (!gpus.empty()) out["gpus"] = GpusJson(gpus);
  if (hold) {
    out["hold"] = true;
    return out;
  }
  out["ranks"] = ranks;
  out["hosts"] = HostsString(hosts);
  out["grace_seconds"] = grace_seconds;
  out["log"] = log;
  out["spec"] = spec;
  return out;
}

Expected<SignalEntry> SignalEntry::FromJson(const Json& value, const std::string& path) {
  SignalEntry entry;
  ObjectReader r(value, path, kReply);
  r.Text("job", &entry.job, kJobIdRule);
  r.Int("attempt", &entry.attempt, 1, kMaxAttempt);
  r.Enum("action", &entry.action, &ParseSignalAction);
  r.OptionalInt("grace_seconds", &entry.grace_seconds, 0, kMaxGraceSeconds);
  RETURN_IF_ERROR(r.Finish());
  return entry;
}

Json SignalEntry::ToJson() const {
  Json out = {{"job", job}, {"attempt", attempt}, {"action", SignalActionName(action)}};
  if (grace_seconds) out["grace_seconds"] = *grace_seconds;
  return out;
}

Expected<PollReply> PollReply::FromJson(const Json& value, const std::string& path) {
  PollReply reply;
  ObjectReader r(value, path, kReply);
  r.List("launch", &reply.launch, kMaxRunning, &LaunchEntry::FromJson, /*required=*/false);
  r.List("signal", &reply.signal, kMaxRunning, &SignalEntry::FromJson, /*required=*/false);
  r.Int("lease_seconds", &reply.lease_seconds, 1, 86400);
  RETURN_IF_ERROR(r.Finish());
  return reply;
}

Json PollReply::ToJson() const {
  Json launches = Json::array(), signals = Json::array();
  for (const LaunchEntry& entry : launch) launches.push_back(entry.ToJson());
  for (const SignalEntry& entry : signal) signals.push_back(entry.ToJson());
  // Moved in: an initializer list of named values would copy every launch's spec again.
  return Json{{"launch", std::move(launches)}, {"signal", std::move(signals)},
              {"lease_seconds", lease_seconds}};
}

Expected<NotHeldReply> NotHeldReply::FromJson(const Json& value, const std::string& path) {
  NotHeldReply reply;
  ObjectReader r(value, path, kReply);
  r.Text("error", &reply.error, TextRule{TextKind::kDocument, 65536});
  r.List("not_held", &reply.not_held, kMaxRunning, &RunningEntry::FromJson);
  RETURN_IF_ERROR(r.Finish());
  return reply;
}

Json NotHeldReply::ToJson() const {
  return Json{{"error", error}, {"not_held", RunningJson(not_held)}};
}

Expected<ExitEntry> ExitEntry::FromJson(const Json& value, const std::string& path) {
  ExitEntry entry;
  ObjectReader r(value, path, kRequest);
  r.Text("job", &entry.job, kJobIdRule);
  r.Int("attempt", &entry.attempt, 1, kMaxAttempt);
  r.Enum("outcome", &entry.outcome, &ParseExitOutcome);
  r.OptionalInt("exit_status", &entry.exit_status, 0, 1023);
  RETURN_IF_ERROR(r.Finish());
  return entry;
}

Json ExitEntry::ToJson() const {
  Json out = {{"job", job}, {"attempt", attempt}, {"outcome", ExitOutcomeName(outcome)}};
  if (exit_status) out["exit_status"] = *exit_status;
  return out;
}

Expected<ExitBatch> ExitBatch::FromJson(const Json& value, const std::string& path) {
  ExitBatch batch;
  ObjectReader r(value, path, kRequest);
  r.List("exits", &batch.exits, kMaxExits, &ExitEntry::FromJson);
  RETURN_IF_ERROR(r.Finish());
  if (batch.exits.empty()) return FieldError(r.Join("exits"), "is empty; send at least one exit");
  // One result per attempt: the same attempt twice would be recorded against itself.
  std::set<std::pair<std::string, int>> seen;
  for (size_t i = 0; i < batch.exits.size(); ++i) {
    const ExitEntry& e = batch.exits[i];
    if (!seen.insert({e.job, e.attempt}).second) {
      return FieldError(fmt::format("{}[{}]", r.Join("exits"), i),
                        fmt::format("attempt {} of job {} is listed twice", e.attempt, e.job));
    }
  }
  return batch;
}

Json ExitBatch::ToJson() const {
  Json list = Json::array();
  for (const ExitEntry& entry : exits) list.push_back(entry.ToJson());
  return Json{{"exits", list}};
}

Expected<ExitResultEntry> ExitResultEntry::FromJson(const Json& value, const std::string& path) {
  ExitResultEntry entry;
  ObjectReader r(value, path, kReply);
  r.Text("job", &entry.job, kJobIdRule);
  r.Int("attempt", &entry.attempt, 1, kMaxAttempt);
  r.Enum("result", &entry.result, &ParseExitResult);
  std::optional<std::string> message;
  r.OptionalText("message", &message, TextRule{TextKind::kDocument, 65536});
  RETURN_IF_ERROR(r.Finish());
  entry.message = message.value_or("");
  return entry;
}

Json ExitResultEntry::ToJson() const {
  Json out = {{"job", job}, {"attempt", attempt}, {"result", ExitResultName(result)}};
  if (!message.empty()) out["message"] = message;
  return out;
}

Expected<ExitBatchReply> ExitBatchReply::FromJson(const Json& value, const std::string& path) {
  ExitBatchReply reply;
  ObjectReader r(value, path, kReply);
  r.List("results", &reply.results, kMaxExits, &ExitResultEntry::FromJson);
  RETURN_IF_ERROR(r.Finish());
  return reply;
}

Json ExitBatchReply::ToJson() const {
  Json list = Json::array();
  for (const ExitResultEntry& entry : results) list.push_back(entry.ToJson());
  return Json{{"results", list}};
}

}  // namespace vitscale::protocol
