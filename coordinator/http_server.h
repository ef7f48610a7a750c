// The coordinator's HTTP + WebSocket front: Boost.Beast sessions on one Asio io_context, a
// router from (method, path pattern) to handlers, bearer-token checks, a body size limit, static
// files for the dashboard, and a WebSocket event stream.
//
// Threading: the io_context is run by ONE thread; sessions, handlers and the event streams all
// live on it, so they share state without locks. Handlers must not block for long (the store's
// calls are short SQLite transactions). Broadcast() may be called from any thread: it posts.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"

namespace vitscale::coordinator {

struct HttpRequest {
  std::string method;                         // "GET", "POST", ...
  std::string path;                           // decoded path without the query
  std::map<std::string, std::string> query;   // decoded query parameters
  std::map<std::string, std::string> params;  // values of {name} segments of the route
  std::string body;
  std::string content_type;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::map<std::string, std::string> headers;
};

// {"error": message} with the status; every 4xx/5xx the API sends has this shape.
HttpResponse ErrorResponse(int status, const std::string& message);
HttpResponse JsonResponse(int status, const std::string& json_body);
// Maps a Status to the HTTP status it deserves (invalid argument → 400, not found → 404, ...).
HttpResponse StatusResponse(const Status& status);

enum class Access {
  kRead,    // open without a token only when the server allows read-only access
  kMutate,  // always needs the bearer token
};

// A handler answers by calling `respond` exactly once, now or later (a long poll keeps it and
// answers when work arrives); always on the io thread.
using Respond = std::function<void(HttpResponse)>;
using Handler = std::function<void(const HttpRequest&, Respond)>;
// Wraps a handler that answers at once.
Handler Immediate(std::function<HttpResponse(const HttpRequest&)> handler);

class Router {
 public:
  // `pattern` is a path with literal segments and {name} segments, e.g. "/api/v1/jobs/{id}".
  void Add(const std::string& method, const std::string& pattern, Access access, Handler handler);

  struct Match {
    const Handler* handler = nullptr;
    Access access = Access::kRead;
    std::map<std::string, std::string> params;
    bool path_known = false;  // some route has this path (so a wrong method is 405, not 404)
  };
  Match Find(const std::string& method, const std::string& path) const;

 private:
  struct Route {
    std::string method;
    std::vector<std::string> segments;
    Access access;
    Handler handler;
  };
  std::vector<Route> routes_;
};

struct HttpServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 0;                      // 0 = any free port; port() tells which
  std::string token;                      // bearer token for kMutate routes (and kRead unless open)
  bool open_read_access = false;          // kRead routes without a token
  size_t max_body_bytes = 8 << 20;
  std::string static_dir;                 // files served for non-/api/ GET paths; "" = none
  std::string events_path = "/api/v1/events";
};

class HttpServer {
 public:
  // REQUIRES: `router` outlives the server.
  HttpServer(boost::asio::io_context& io, const Router& router, HttpServerOptions options);
  ~HttpServer();

  // Binds and starts accepting; the io_context must be run by the caller.
  Status Start();
  uint16_t port() const { return port_; }
  void Stop();

  // Sends `message` (a JSON text) to every open event-stream WebSocket. Thread-safe.
  void Broadcast(std::string message);

  // Called on the io thread when a WebSocket connects, with the query of its URL; the returned
  // messages are sent to it first (e.g. the events it missed since ?since=N).
  using CatchUp = std::function<std::vector<std::string>(const std::map<std::string, std::string>&)>;
  void SetCatchUp(CatchUp catch_up) { catch_up_ = std::move(catch_up); }

  class Session;
  class EventStream;

 private:
  void Accept();

  boost::asio::io_context& io_;
  const Router& router_;
  HttpServerOptions options_;
  boost::asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  CatchUp catch_up_;
  std::set<std::shared_ptr<EventStream>> streams_;  // touched on the io thread only
  friend class Session;
  friend class EventStream;
};

}  // namespace vitscale::coordinator
