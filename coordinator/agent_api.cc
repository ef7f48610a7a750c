#include "coordinator/agent_api.h"

#include <algorithm>
#include <cstdio>

#include "coordinator/views.h"
#include "protocol/agent.h"

namespace vitscale::coordinator {

using protocol::Json;

namespace {

// Protocol limit on an agent's body: its running list (4096 entries at most) fits easily.
constexpr size_t kAgentBody = 1 << 20;

bool Holds(const std::optional<JobView>& view, const std::string& agent_id) {
  return view && std::any_of(view->holders.begin(), view->holders.end(), [&](const Holder& h) {
           return h.placement.agent_id == agent_id;
         });
}

}  // namespace

AgentApi::AgentApi(Core& core) : core_(core) {}

void AgentApi::AdoptGpus(const std::string& agent_id,
                         const std::vector<protocol::RunningEntry>& running) {
  // Which GPUs the held jobs use, as the agent knows it: the scheduler's placements restored
  // after a restart (or a resync) learn their indices here. A list that does not fit what the
  // job holds is logged, and the agent's GPUs stay unoffered until that job ends.
  for (const protocol::RunningEntry& entry : running) {
    if (entry.gpus.empty()) continue;
    std::optional<JobView> job = core_.scheduler().GetJob(entry.job);
    if (!Holds(job, agent_id)) continue;
    bool known = std::any_of(job->holders.begin(), job->holders.end(), [&](const Holder& h) {
      return h.placement.agent_id == agent_id && h.placement.gpu_indices == entry.gpus;
    });
    if (known) continue;
    Status adopted = core_.scheduler().AdoptGpus(agent_id, entry.job, entry.gpus);
    if (!adopted.ok()) std::fprintf(stderr, "coordinator: %s\n", adopted.ToString().c_str());
  }
}

void AgentApi::AddRoutes(Router& router) {
  router.Add("POST", "/api/v1/agents/register", Scope::kAgent, kAgentBody,
             Immediate([this](const HttpRequest& request) { return Register(request); }));
  router.Add("POST", "/api/v1/agents/{agent}/poll", Scope::kAgent, kAgentBody,
             [this](const HttpRequest& request, Respond respond) {
               Poll(request, std::move(respond));
             });
}

HttpResponse AgentApi::Register(const HttpRequest& request) {
  Expected<protocol::RegisterRequest> body = protocol::Decode<protocol::RegisterRequest>(request.body);
  if (!body.ok()) return StatusResponse(body.status());
  if (body->host != request.caller.agent_host) {
    return ErrorResponse(403, "the credential of agent '" + request.caller.agent_host +
                                  "' cannot register host '" + body->host + "'");
  }
  const std::string& mark = core_.options().runs_mark;
  bool shares = !mark.empty() && body->runs_mark == mark;
  AgentSpec spec{body->host, body->host, body->slots, body->gpus, body->gpu_kind, shares};
  if (!shares) {
    std::fprintf(stderr,
                 "vitscale-coordinator: agent %s does not see this coordinator's runs folder "
                 "(%s/%s is %s there): no job will span it and other hosts\n",
                 spec.id.c_str(), core_.options().runs_dir.c_str(), protocol::kRunsMarkFile,
                 body->runs_mark ? "different" : "missing");
  }
  // The store first: a registration it refuses leaves the scheduler as it was.
  Status stored = core_.store().UpsertAgent(
      {spec.id, spec.host, spec.slots, spec.gpus, 0, spec.gpu_kind});
  if (!stored.ok()) return StatusResponse(stored);
  Status registered = core_.scheduler().RegisterAgent(spec);
  if (!registered.ok()) return StatusResponse(registered);
  stored_at_[spec.id] = core_.clock().Now();  // the next poll need not store it again
  core_.NoteAgent(spec.id);
  // What the agent still runs from before: the jobs it holds keep their leases; any other is no
  // longer its own (the lease ran out and the job moved on), so it must stop it.
  std::vector<std::string> held;
  protocol::RegisterReply reply;
  reply.agent = spec.id;
  reply.lease_seconds = core_.lease_seconds();
  for (const protocol::RunningEntry& entry : body->running) {
    if (Holds(core_.scheduler().GetJob(entry.job), spec.id)) {
      held.push_back(entry.job);
    } else {
      reply.not_held.push_back(entry);
    }
  }
  Status beat = core_.scheduler().Heartbeat(spec.id, held);
  if (!beat.ok()) return StatusResponse(beat);
  AdoptGpus(spec.id, body->running);
  if (auto view = core_.scheduler().GetAgent(spec.id)) {
    core_.events().Append("agent", "",
                          AgentInfoOf(*view, core_.scheduler(), core_.clock()).ToJson());
  }
  core_.Tick();
  return JsonResponse(200, reply.ToJson());
}

void AgentApi::Poll(const HttpRequest& request, Respond respond) {
  // The gate has checked that the credential is this agent's.
  const std::string& agent_id = request.params.at("agent");
  Expected<protocol::PollRequest> body = protocol::Decode<protocol::PollRequest>(request.body);
  if (!body.ok()) return respond(StatusResponse(body.status()));
  std::optional<AgentSpec> spec = core_.scheduler().GetAgentSpec(agent_id);
  if (!spec) {
    return respond(ErrorResponse(404, "agent '" + agent_id + "' is not registered: register first"));
  }
  // A heartbeat for a lease the agent does not hold changes nothing and says which ones.
  std::vector<std::string> job_ids;
  protocol::NotHeldReply refused;
  for (const protocol::RunningEntry& entry : body->running) {
    if (!Holds(core_.scheduler().GetJob(entry.job), agent_id)) refused.not_held.push_back(entry);
    job_ids.push_back(entry.job);
  }
  if (!refused.not_held.empty()) {
    refused.error = "agent '" + agent_id +
                    "' does not hold the leases of the listed jobs; stop them and poll again "
                    "without them";
    return respond(JsonResponse(409, refused.ToJson()));
  }
  Status beat = core_.scheduler().Heartbeat(agent_id, job_ids);
  if (!beat.ok()) return respond(StatusResponse(beat));
  AdoptGpus(agent_id, body->running);
  std::vector<Action> started;  // written a second later (Core::RecordStarts)
  for (const std::string& id : job_ids) {
    std::optional<JobView> view = core_.scheduler().GetJob(id);
    if (view && view->state == JobState::kLeased &&
        view->holders.front().placement.agent_id == agent_id) {
      if (auto actions = core_.scheduler().ReportStarted(agent_id, id); actions.ok()) {
        started.insert(started.end(), actions->begin(), actions->end());
      }
    }
  }
  Status recorded = core_.RecordStarts(started);
  if (!recorded.ok()) return respond(StatusResponse(recorded));
  // The live heartbeat is the scheduler's; the database keeps a record of it for people and
  // restarts, refreshed at most every few seconds so that polls do not each cost a commit.
  TimePoint& stored_at = stored_at_[agent_id];
  if (core_.clock().Now() - stored_at >= std::chrono::seconds(5)) {
    Status stored =
        core_.store().UpsertAgent({agent_id, spec->host, spec->slots, spec->gpus, 0, spec->gpu_kind});
    if (!stored.ok()) return respond(StatusResponse(stored));
    stored_at = core_.clock().Now();
  }
  core_.mailbox().Park(agent_id, std::move(respond));
}

}  // namespace vitscale::coordinator
