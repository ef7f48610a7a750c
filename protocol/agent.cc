#include "protocol/agent.h"

#include <fmt/format.h>

namespace vitscale::protocol {
namespace {

constexpr UnknownFields kRequest = UnknownFields::kRefuse;
constexpr UnknownFields kReply = UnknownFields::kIgnore;

Json RunningJson(const std::vector<RunningEntry>& entries) {
  Json list = Json::array();
  for (const RunningEntry& entry : entries) list.push_back(entry.ToJson());
  return list;
}

}  // namespace

Expected<RunningEntry> RunningEntry::FromJson(const Json& value, const std::string& path) {
  // Part of requests (agent -> coordinator) and of replies; strict either way.
  RunningEntry entry;
  ObjectReader r(value, path, kRequest);
  r.Text("job", &entry.job, kJobIdRule);
  r.Int("attempt", &entry.attempt, 1, kMaxAttempt);
  RETURN_IF_ERROR(r.Finish());
  return entry;
}

Json RunningEntry::ToJson() const { return Json{{"job", job}, {"attempt", attempt}}; }

Expected<RegisterRequest> RegisterRequest::FromJson(const Json& value, const std::string& path) {
  RegisterRequest request;
  ObjectReader r(value, path, kRequest);
  r.Text("host", &request.host, kHostRule);
  r.Int("slots", &request.slots, 0, kMaxSlots);
  r.Int("gpus", &request.gpus, 0, kMaxSlots);
  r.List("running", &request.running, kMaxRunning, &RunningEntry::FromJson, /*required=*/false);
  RETURN_IF_ERROR(r.Finish());
  return request;
}

Json RegisterRequest::ToJson() const {
  return Json{{"host", host}, {"slots", slots}, {"gpus", gpus}, {"running", RunningJson(running)}};
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

Expected<LaunchEntry> LaunchEntry::FromJson(const Json& value, const std::string& path) {
  LaunchEntry entry;
  ObjectReader r(value, path, kReply);
  r.Text("job", &entry.job, kJobIdRule);
  r.Int("attempt", &entry.attempt, 1, kMaxAttempt);
  r.Bool("hold", &entry.hold, /*required=*/false);
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
    return entry;
  }
  RETURN_IF_ERROR(r.Finish());
  return entry;
}

Json LaunchEntry::ToJson() const {
  Json out = {{"job", job}, {"attempt", attempt}};
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
  r.OptionalInt("attempt", &entry.attempt, 1, kMaxAttempt);
  r.Enum("action", &entry.action, &ParseSignalAction);
  r.OptionalInt("grace_seconds", &entry.grace_seconds, 0, kMaxGraceSeconds);
  RETURN_IF_ERROR(r.Finish());
  return entry;
}

Json SignalEntry::ToJson() const {
  Json out = {{"job", job}, {"action", SignalActionName(action)}};
  if (attempt) out["attempt"] = *attempt;
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
  return Json{{"launch", launches}, {"signal", signals}, {"lease_seconds", lease_seconds}};
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

Expected<ExitReport> ExitReport::FromJson(const Json& value, const std::string& path) {
  ExitReport report;
  ObjectReader r(value, path, kRequest);
  r.Text("agent", &report.agent, kHostRule);
  r.Enum("outcome", &report.outcome, &ParseExitOutcome);
  r.OptionalInt("exit_status", &report.exit_status, 0, 1023);
  RETURN_IF_ERROR(r.Finish());
  return report;
}

Json ExitReport::ToJson() const {
  Json out = {{"agent", agent}, {"outcome", ExitOutcomeName(outcome)}};
  if (exit_status) out["exit_status"] = *exit_status;
  return out;
}

}  // namespace vitscale::protocol
