// The coordinator's HTTP + WebSocket front: a router from (method, path pattern) to handlers,
// a gate that admits or refuses a request from its header alone (target, route, credentials,
// body limit), Boost.Beast sessions that read the header first and the body only once the gate
// has admitted it, static files for the dashboard, and the WebSocket event stream.
//
// Nothing a client sends can stop the server: no exception leaves a handler or the io loop,
// every error body is built from printable text, bodies are limited per route, headers and
// bodies have deadlines, and connections and event streams are capped. Event messages are
// shared between clients, never copied per client.
//
// Threading: the io_context is run by ONE thread; sessions, handlers and the event streams all
// live on it, so they share state without locks. Handlers must not block for long (the store's
// calls are short SQLite transactions). Broadcast() may be called from any thread: it posts.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/status.h"
#include "protocol/json.h"

namespace vitscale::coordinator {

// Who may call a route (docs/security.md).
enum class Scope {
  kRead,    // the admin token, or nothing when the server opens reading (--open-read)
  kAdmin,   // the admin token
  kAgent,   // an agent's credential; the handler checks that it is the right host's
  kReport,  // the report token of the attempt the path names (/jobs/{id}/attempts/{n}/...)
};

// Who sent an admitted request.
struct Caller {
  enum class Kind { kAnonymous, kAdmin, kAgent, kReport };
  Kind kind = Kind::kAnonymous;
  std::string agent_host;  // kAgent: the host the credential was issued for
};

struct HttpRequest {
  std::string method;                         // "GET", "POST", ...
  std::string path;                           // decoded path without the query
  std::map<std::string, std::string> query;   // decoded query parameters
  std::map<std::string, std::string> params;  // values of {name} segments of the route
  std::string body;
  std::string content_type;
  Caller caller;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::map<std::string, std::string> headers;
};

// {"error": message} with the status; every 4xx/5xx the API sends has this shape. The message
// is made printable (protocol::Dump cannot fail on it).
HttpResponse ErrorResponse(int status, const std::string& message);
HttpResponse JsonResponse(int status, const protocol::Json& body);
// Maps a Status to the HTTP status it deserves (invalid argument 400, unauthenticated 401,
// permission denied 403, not found 404, already exists and failed precondition 409,
// unavailable 503, anything else 500).
HttpResponse StatusResponse(const Status& status);

// A handler answers by calling `respond` exactly once, now or later (a long poll keeps it and
// answers when work arrives); always on the io thread.
using Respond = std::function<void(HttpResponse)>;
using Handler = std::function<void(const HttpRequest&, Respond)>;
// Wraps a handler that answers at once.
Handler Immediate(std::function<HttpResponse(const HttpRequest&)> handler);

// Body limits: small for everything but sweep submission and metric batches.
inline constexpr size_t kSmallBody = 64 << 10;
inline constexpr size_t kLargeBody = 8 << 20;

class Router {
 public:
  // `pattern` is a path with literal segments and {name} segments, e.g. "/api/v1/jobs/{id}".
  void Add(const std::string& method, const std::string& pattern, Scope scope, size_t max_body,
           Handler handler);

  struct Match {
    const Handler* handler = nullptr;
    Scope scope = Scope::kRead;
    size_t max_body = kSmallBody;
    std::map<std::string, std::string> params;
    bool path_known = false;  // some route has this path (so a wrong method is 405, not 404)
  };
  Match Find(const std::string& method, const std::string& path) const;

 private:
  struct Route {
    std::string method;
    std::vector<std::string> segments;
    Scope scope;
    size_t max_body;
    Handler handler;
  };
  std::vector<Route> routes_;
};

// Decides from the header alone whether `token` may call a route of `scope` (with the route's
// params in `request`): the caller, or kUnauthenticated (401) / kPermissionDenied (403) /
// kInvalidArgument (400) saying why. Called before any body is read.
using Authorizer =
    std::function<Expected<Caller>(Scope scope, const std::string& token, const HttpRequest& request)>;

struct GateOptions {
  bool open_read_access = false;  // kRead routes without a token
  std::string static_dir;         // files served for non-/api/ GET paths; "" = none
  std::string events_path = "/api/v1/events";
};

// Everything between a request's bytes and its handler, without sockets: the server's sessions
// run it, and so do the in-process tests and the fuzz harness.
class RequestGate {
 public:
  // REQUIRES: `router` outlives the gate.
  RequestGate(const Router& router, GateOptions options, Authorizer authorizer);

  struct Admitted {
    HttpRequest request;  // everything but the body
    const Handler* handler = nullptr;
    size_t body_limit = 0;
  };
  // From the request line and headers: the admitted request, or the response that refuses it
  // (then no body is read). `authorization` is the Authorization header's value.
  std::variant<Admitted, HttpResponse> Admit(std::string_view method, std::string_view target,
                                             std::string_view authorization,
                                             std::string_view content_type) const;
  // May this WebSocket upgrade of `target` open the event stream? nullopt = yes; else the
  // refusal. `query` receives the decoded query (for ?since=).
  std::optional<HttpResponse> AdmitEventStream(std::string_view target,
                                               std::string_view authorization,
                                               std::map<std::string, std::string>* query) const;
  // Runs the handler with the body; an exception it throws becomes a 500, never a crash.
  static void Dispatch(Admitted admitted, std::string body, Respond respond);
  // Admit, then (within the body limit) Dispatch, for a whole request held in memory.
  void Handle(std::string_view method, std::string_view target, std::string_view authorization,
              std::string body, Respond respond) const;

 private:
  Expected<Caller> Authorize(Scope scope, std::string_view authorization,
                             const HttpRequest& request) const;

  const Router& router_;
  GateOptions options_;
  Authorizer authorizer_;
};

struct HttpServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 0;  // 0 = any free port; port() tells which
  GateOptions gate;
  size_t max_connections = 4096;   // beyond this a connection gets a 503 and is closed
  size_t max_event_streams = 256;  // WebSocket clients of the event stream
  std::chrono::seconds header_timeout{30};  // from the end of the last reply (idle included)
  std::chrono::seconds body_timeout{60};
  std::chrono::seconds write_timeout{60};
  size_t max_header_bytes = 16 << 10;
  // An event-stream client that falls this far behind is disconnected (it reconnects and
  // catches up with ?since=).
  size_t max_queued_event_bytes = 16 << 20;
};

class HttpServer {
 public:
  // REQUIRES: `router` outlives the server.
  HttpServer(boost::asio::io_context& io, const Router& router, HttpServerOptions options,
             Authorizer authorizer);
  ~HttpServer();

  // Binds and starts accepting; the io_context must be run by the caller.
  Status Start();
  uint16_t port() const { return port_; }
  void Stop();

  // Sends `message` (a JSON text) to every open event-stream WebSocket, sharing one copy.
  // Thread-safe.
  void Broadcast(std::shared_ptr<const std::string> message);

  // Called on the io thread when a WebSocket connects, with the query of its URL; the returned
  // messages are sent to it first (e.g. the events it missed since ?since=N).
  using CatchUp = std::function<std::vector<std::shared_ptr<const std::string>>(
      const std::map<std::string, std::string>&)>;
  void SetCatchUp(CatchUp catch_up) { catch_up_ = std::move(catch_up); }

  size_t open_connections() const { return connections_; }

  class Session;
  class EventStream;

 private:
  void Accept();

  boost::asio::io_context& io_;
  HttpServerOptions options_;
  RequestGate gate_;
  boost::asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  CatchUp catch_up_;
  size_t connections_ = 0;  // open sessions; touched on the io thread only
  std::set<std::shared_ptr<EventStream>> streams_;  // touched on the io thread only
  friend class Session;
  friend class EventStream;
};

}  // namespace vitscale::coordinator
