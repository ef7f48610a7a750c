#include "coordinator/http_server.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <array>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

#include "common/text.h"

namespace vitscale::coordinator {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

HttpResponse JsonResponse(int status, const protocol::Json& body) {
  HttpResponse response;
  response.status = status;
  response.body = protocol::Dump(body);
  return response;
}

HttpResponse ErrorResponse(int status, const std::string& message) {
  return JsonResponse(status, protocol::Json{{"error", Printable(message, 8192)}});
}

HttpResponse StatusResponse(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk: return JsonResponse(200, protocol::Json::object());
    case StatusCode::kInvalidArgument: return ErrorResponse(400, status.message());
    case StatusCode::kUnauthenticated: return ErrorResponse(401, status.message());
    case StatusCode::kPermissionDenied: return ErrorResponse(403, status.message());
    case StatusCode::kNotFound: return ErrorResponse(404, status.message());
    case StatusCode::kAlreadyExists: return ErrorResponse(409, status.message());
    case StatusCode::kFailedPrecondition: return ErrorResponse(409, status.message());
    case StatusCode::kUnavailable: return ErrorResponse(503, status.message());
    default: return ErrorResponse(500, status.ToString());
  }
}

namespace {

std::vector<std::string> SplitPath(const std::string& path) {
  std::vector<std::string> segments;
  std::string current;
  for (char c : path) {
    if (c == '/') {
      if (!current.empty()) segments.push_back(std::move(current));
      current.clear();
    } else {
      current += c;
    }
  }
  if (!current.empty()) segments.push_back(std::move(current));
  return segments;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding; nullopt for a malformed escape.
std::optional<std::string> UrlDecode(std::string_view text, bool plus_is_space) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      int hi = HexValue(text[i + 1]), lo = HexValue(text[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

// Decoded text from a URL must be UTF-8 without control characters: it reaches error messages,
// names and the database.
bool PrintableText(const std::string& text) {
  return IsValidUtf8(text) && !HasControlCharacters(text);
}

// Splits the target into a decoded path and query. Segments are decoded one by one and may not
// decode to '/', "." or "..", or hold invalid UTF-8 or control characters (NUL included): an id
// in a route must stay one segment, and no path may climb out of where it points.
Status ParseTarget(std::string_view target, HttpRequest& request) {
  if (target.empty() || target.front() != '/') {
    return InvalidArgument("the request target must be a path starting with '/'");
  }
  size_t question = target.find('?');
  std::string_view raw_path = target.substr(0, question);
  std::string path;
  while (!raw_path.empty()) {
    size_t slash = raw_path.find('/');
    std::string_view raw_segment = raw_path.substr(0, slash);
    std::optional<std::string> segment = UrlDecode(raw_segment, false);
    if (!segment) return InvalidArgument("malformed URL escape in the path");
    if (!PrintableText(*segment)) {
      return InvalidArgument("path segment '" + Printable(raw_segment) +
                             "' is not printable UTF-8 text");
    }
    if (segment->find('/') != std::string::npos || *segment == "." || *segment == "..") {
      return InvalidArgument("path segment '" + Printable(raw_segment) +
                             "' is not allowed (no '.', '..', or encoded '/' or NUL)");
    }
    path += *segment;
    if (slash == std::string_view::npos) break;
    path += '/';
    raw_path.remove_prefix(slash + 1);
  }
  request.path = path;
  if (question == std::string_view::npos) return Status::Ok();
  std::string_view query = target.substr(question + 1);
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    std::optional<std::string> key = UrlDecode(pair.substr(0, eq), true);
    std::optional<std::string> value =
        UrlDecode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true);
    if (!key || !value) return InvalidArgument("malformed URL escape in the query");
    if (!PrintableText(*key) || !PrintableText(*value)) {
      return InvalidArgument("query parameter '" + Printable(*key) +
                             "' is not printable UTF-8 text");
    }
    if (!key->empty()) request.query[*key] = *value;
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return Status::Ok();
}

std::string ContentTypeFor(const std::filesystem::path& path) {
  static const std::map<std::string, std::string> kTypes = {
      {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},   {".json", "application/json"},
      {".svg", "image/svg+xml"},             {".png", "image/png"},
      {".ico", "image/x-icon"},              {".map", "application/json"},
  };
  auto it = kTypes.find(path.extension().string());
  return it == kTypes.end() ? "application/octet-stream" : it->second;
}

// Serves `path` from `root`; paths without an extension fall back to index.html so the
// dashboard's client-side routes load. Paths that resolve outside `root` are refused.
HttpResponse ServeStatic(const std::string& root, const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code error;
  fs::path base = fs::weakly_canonical(root, error);
  if (error) return ErrorResponse(404, "no dashboard files at " + root);
  fs::path wanted = fs::weakly_canonical(base / fs::path(path).relative_path(), error);
  if (error) return ErrorResponse(404, "not found: " + path);
  auto [base_end, wanted_it] = std::mismatch(base.begin(), base.end(), wanted.begin(), wanted.end());
  if (base_end != base.end()) return ErrorResponse(403, "path leaves the dashboard folder: " + path);
  if (fs::is_directory(wanted, error) || (!fs::exists(wanted, error) && !wanted.has_extension())) {
    wanted = base / "index.html";
  }
  std::ifstream in(wanted, std::ios::binary);
  if (!in) return ErrorResponse(404, "not found: " + path);
  std::ostringstream content;
  content << in.rdbuf();
  HttpResponse response;
  response.content_type = ContentTypeFor(wanted);
  response.body = content.str();
  return response;
}

// The token of "Authorization: Bearer <token>", or "" when there is none.
std::string BearerToken(std::string_view authorization) {
  constexpr std::string_view kPrefix = "Bearer ";
  if (authorization.substr(0, kPrefix.size()) != kPrefix) return "";
  return std::string(authorization.substr(kPrefix.size()));
}

HttpResponse Refusal(const Status& status) {
  HttpResponse response = StatusResponse(status);
  if (status.code() == StatusCode::kUnauthenticated) {
    response.headers["WWW-Authenticate"] = "Bearer";
  }
  return response;
}

}  // namespace

Handler Immediate(std::function<HttpResponse(const HttpRequest&)> handler) {
  return [handler = std::move(handler)](const HttpRequest& request, Respond respond) {
    respond(handler(request));
  };
}

void Router::Add(const std::string& method, const std::string& pattern, Scope scope,
                 size_t max_body, Handler handler) {
  routes_.push_back({method, SplitPath(pattern), scope, max_body, std::move(handler)});
}

Router::Match Router::Find(const std::string& method, const std::string& path) const {
  Match match;
  std::vector<std::string> segments = SplitPath(path);
  for (const Route& route : routes_) {
    if (route.segments.size() != segments.size()) continue;
    std::map<std::string, std::string> params;
    bool same = true;
    for (size_t i = 0; i < segments.size() && same; ++i) {
      const std::string& want = route.segments[i];
      if (want.size() > 2 && want.front() == '{' && want.back() == '}') {
        params[want.substr(1, want.size() - 2)] = segments[i];
      } else {
        same = want == segments[i];
      }
    }
    if (!same) continue;
    match.path_known = true;
    if (route.method != method) continue;
    match.handler = &route.handler;
    match.scope = route.scope;
    match.max_body = route.max_body;
    match.params = std::move(params);
    return match;
  }
  return match;
}

RequestGate::RequestGate(const Router& router, GateOptions options, Authorizer authorizer)
    : router_(router), options_(std::move(options)), authorizer_(std::move(authorizer)) {}

Expected<Caller> RequestGate::Authorize(Scope scope, std::string_view authorization,
                                        const HttpRequest& request) const {
  std::string token = BearerToken(authorization);
  if (!authorization.empty() && token.empty()) {
    return Unauthenticated("the Authorization header must be 'Bearer <token>'");
  }
  if (token.empty() && scope == Scope::kRead && options_.open_read_access) return Caller{};
  if (token.empty()) {
    std::string hint = request.query.count("access_token")
                           ? " (a token in the query string is accepted on the event stream only)"
                           : "";
    return Unauthenticated("missing credential: send 'Authorization: Bearer <token>'" + hint);
  }
  if (!authorizer_) return Unauthenticated("this server accepts no credentials");
  return authorizer_(scope, token, request);
}

std::variant<RequestGate::Admitted, HttpResponse> RequestGate::Admit(
    std::string_view method, std::string_view target, std::string_view authorization,
    std::string_view content_type) const {
  Admitted admitted;
  HttpRequest& request = admitted.request;
  request.method = std::string(method);
  Status parsed = ParseTarget(target, request);
  if (!parsed.ok()) return StatusResponse(parsed);
  request.content_type = std::string(content_type);
  bool is_api = request.path.rfind("/api/", 0) == 0;
  if (!is_api && request.method == "GET" && !options_.static_dir.empty()) {
    return ServeStatic(options_.static_dir, request.path);
  }
  Router::Match match = router_.Find(request.method, request.path);
  if (!match.handler) {
    if (match.path_known) {
      return ErrorResponse(405, Printable(request.method, 20) + " is not allowed on " +
                                    request.path);
    }
    return ErrorResponse(404, "no route " + Printable(request.method, 20) + " " + request.path);
  }
  request.params = std::move(match.params);
  Expected<Caller> caller = Authorize(match.scope, authorization, request);
  if (!caller.ok()) return Refusal(caller.status());
  request.caller = std::move(caller).value();
  admitted.handler = match.handler;
  admitted.body_limit = match.max_body;
  return admitted;
}

std::optional<HttpResponse> RequestGate::AdmitEventStream(
    std::string_view target, std::string_view authorization,
    std::map<std::string, std::string>* query) const {
  HttpRequest request;
  Status parsed = ParseTarget(target, request);
  if (!parsed.ok()) return StatusResponse(parsed);
  if (request.path != options_.events_path) {
    return ErrorResponse(404, "no WebSocket at " + request.path);
  }
  // Browsers cannot set headers on a WebSocket: here alone the token may come in the query.
  std::string header = std::string(authorization);
  if (header.empty() && request.query.count("access_token")) {
    header = "Bearer " + request.query["access_token"];
  }
  Expected<Caller> caller = Authorize(Scope::kRead, header, request);
  if (!caller.ok()) {
    return Refusal(caller.status().code() == StatusCode::kUnauthenticated
                       ? Unauthenticated("the event stream needs the admin token "
                                         "(Authorization header or ?access_token=)")
                       : caller.status());
  }
  *query = std::move(request.query);
  return std::nullopt;
}

void RequestGate::Dispatch(Admitted admitted, std::string body, Respond respond) {
  admitted.request.body = std::move(body);
  // A handler that throws has not answered; the 500 does, once.
  auto answered = std::make_shared<bool>(false);
  Respond once = [respond, answered](HttpResponse response) {
    if (*answered) return;
    *answered = true;
    respond(std::move(response));
  };
  try {
    (*admitted.handler)(admitted.request, once);
  } catch (const std::exception& e) {
    once(ErrorResponse(500, std::string("internal error: ") + e.what()));
  } catch (...) {
    once(ErrorResponse(500, "internal error"));
  }
}

void RequestGate::Handle(std::string_view method, std::string_view target,
                         std::string_view authorization, std::string body,
                         Respond respond) const {
  std::variant<Admitted, HttpResponse> admitted = Admit(method, target, authorization, "");
  if (auto* refusal = std::get_if<HttpResponse>(&admitted)) return respond(std::move(*refusal));
  Admitted& ok = std::get<Admitted>(admitted);
  if (body.size() > ok.body_limit) {
    return respond(ErrorResponse(
        413, "request body over the limit of " + std::to_string(ok.body_limit) + " bytes"));
  }
  Dispatch(std::move(ok), std::move(body), std::move(respond));
}

// One WebSocket client of the event stream. Messages queue here (shared, not copied) and go out
// one write at a time.
class HttpServer::EventStream : public std::enable_shared_from_this<EventStream> {
 public:
  EventStream(HttpServer& server, tcp::socket socket)
      : server_(server), socket_(std::move(socket)) {}

  void Start(http::request<http::string_body> request,
             std::vector<std::shared_ptr<const std::string>> catch_up) {
    for (auto& message : catch_up) Queue(std::move(message));
    socket_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    socket_.read_message_max(4096);  // clients send nothing we use
    socket_.async_accept(request, [self = shared_from_this()](beast::error_code error) {
      if (error) return;
      self->accepted_ = true;
      self->server_.streams_.insert(self);
      self->ReadLoop();
      self->WriteNext();
    });
  }

  void Send(std::shared_ptr<const std::string> message) {
    Queue(std::move(message));
    if (accepted_) WriteNext();
  }

  void Close() {
    server_.streams_.erase(shared_from_this());
    beast::error_code ignored;
    beast::get_lowest_layer(socket_).socket().close(ignored);
  }

 private:
  void Queue(std::shared_ptr<const std::string> message) {
    // A client that stops reading must not grow the coordinator's memory without bound.
    if (closed_) return;
    queued_bytes_ += message->size();
    pending_.push_back(std::move(message));
    if (queued_bytes_ > server_.options_.max_queued_event_bytes) {
      closed_ = true;
      pending_.clear();
      Close();
    }
  }

  void ReadLoop() {
    socket_.async_read(buffer_, [self = shared_from_this()](beast::error_code error, size_t) {
      if (error) return self->server_.streams_.erase(self), void();
      self->buffer_.consume(self->buffer_.size());
      self->ReadLoop();
    });
  }

  void WriteNext() {
    if (pending_.empty() || writing_ || closed_) return;
    writing_ = true;
    socket_.text(true);
    std::shared_ptr<const std::string> message = pending_.front();
    socket_.async_write(asio::buffer(*message),
                        [self = shared_from_this(), message](beast::error_code error, size_t) {
                          self->writing_ = false;
                          if (error) return self->server_.streams_.erase(self), void();
                          if (self->pending_.empty()) return;
                          self->queued_bytes_ -= self->pending_.front()->size();
                          self->pending_.pop_front();
                          self->WriteNext();
                        });
  }

  HttpServer& server_;
  websocket::stream<beast::tcp_stream> socket_;
  beast::flat_buffer buffer_;
  std::deque<std::shared_ptr<const std::string>> pending_;
  size_t queued_bytes_ = 0;
  bool accepted_ = false;
  bool writing_ = false;
  bool closed_ = false;
};

class HttpServer::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(HttpServer& server, tcp::socket socket) : server_(server), stream_(std::move(socket)) {
    ++server_.connections_;
  }
  ~Session() { --server_.connections_; }

  // Reads the next request's header; the body only once the gate has admitted it.
  void Read() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_.options_.max_header_bytes));
    // The route's limit applies once the header has been admitted (checked by hand against
    // Content-Length below): until then nothing of the body is read.
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    stream_.expires_after(server_.options_.header_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code error, size_t) {
                              self->OnHeader(error);
                            });
  }

 private:
  void OnHeader(beast::error_code error) {
    if (error == http::error::end_of_stream || error == beast::error::timeout ||
        error == asio::error::connection_reset || error == asio::error::operation_aborted) {
      return Shutdown();
    }
    if (error == http::error::header_limit) {
      return Write(ErrorResponse(431, "request header over the limit of " +
                                          std::to_string(server_.options_.max_header_bytes) +
                                          " bytes"),
                   false);
    }
    if (error) {
      return Write(ErrorResponse(400, "malformed HTTP request: " + error.message()), false);
    }
    const auto& header = parser_->get();
    std::string_view target(header.target().data(), header.target().size());
    std::string_view authorization;
    if (auto it = header.find(http::field::authorization); it != header.end()) {
      authorization = std::string_view(it->value().data(), it->value().size());
    }
    if (websocket::is_upgrade(header)) return Upgrade(target, authorization);

    std::string_view content_type;
    if (auto it = header.find(http::field::content_type); it != header.end()) {
      content_type = std::string_view(it->value().data(), it->value().size());
    }
    std::variant<RequestGate::Admitted, HttpResponse> admitted = server_.gate_.Admit(
        std::string_view(header.method_string().data(), header.method_string().size()), target,
        authorization, content_type);
    bool has_body = parser_->content_length().value_or(0) > 0 || parser_->chunked();
    if (auto* refusal = std::get_if<HttpResponse>(&admitted)) {
      // The body, if any, is never parsed; the connection closes after the answer.
      return Write(std::move(*refusal), header.keep_alive() && !has_body);
    }
    admitted_.emplace(std::move(std::get<RequestGate::Admitted>(admitted)));
    if (auto length = parser_->content_length(); length && *length > admitted_->body_limit) {
      return Write(BodyTooLarge(), false);
    }
    parser_->body_limit(admitted_->body_limit);
    stream_.expires_after(server_.options_.body_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code error, size_t) {
                       self->OnBody(error);
                     });
  }

  HttpResponse BodyTooLarge() const {
    return ErrorResponse(413, "request body over the limit of " +
                                  std::to_string(admitted_->body_limit) + " bytes for " +
                                  admitted_->request.method + " " + admitted_->request.path);
  }

  void OnBody(beast::error_code error) {
    if (error == http::error::body_limit) return Write(BodyTooLarge(), false);
    if (error == beast::error::timeout) {
      return Write(ErrorResponse(408, "the request body did not arrive in time"), false);
    }
    if (error) return Shutdown();
    bool keep_alive = parser_->get().keep_alive();
    std::string body = std::move(parser_->get().body());
    Respond respond = [self = shared_from_this(), keep_alive](HttpResponse response) {
      self->Write(std::move(response), keep_alive);
    };
    RequestGate::Dispatch(std::move(*admitted_), std::move(body), std::move(respond));
    admitted_.reset();
  }

  void Upgrade(std::string_view target, std::string_view authorization) {
    std::map<std::string, std::string> query;
    std::optional<HttpResponse> refusal =
        server_.gate_.AdmitEventStream(target, authorization, &query);
    if (refusal) return Write(std::move(*refusal), false);
    if (server_.streams_.size() >= server_.options_.max_event_streams) {
      return Write(ErrorResponse(503, "too many event-stream clients; try again later"), false);
    }
    std::vector<std::shared_ptr<const std::string>> catch_up;
    if (server_.catch_up_) catch_up = server_.catch_up_(query);
    auto stream = std::make_shared<EventStream>(server_, stream_.release_socket());
    stream->Start(parser_->release(), std::move(catch_up));
  }

  void Write(HttpResponse response, bool keep_alive) {
    auto message = std::make_shared<http::response<http::string_body>>();
    message->result(static_cast<http::status>(response.status));
    message->version(11);
    message->set(http::field::server, "vitscale-coordinator");
    message->set(http::field::content_type, response.content_type);
    for (const auto& [name, value] : response.headers) message->set(name, value);
    message->keep_alive(keep_alive);
    message->body() = std::move(response.body);
    message->prepare_payload();
    stream_.expires_after(server_.options_.write_timeout);
    http::async_write(stream_, *message,
                      [self = shared_from_this(), message](beast::error_code error, size_t) {
                        if (error) return self->Shutdown();
                        if (!message->keep_alive()) return self->Linger();
                        self->Read();
                      });
  }

  void Shutdown() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  // After an answer that closes the connection: stop sending, then read and drop what the
  // client still sends (an unread body) for a moment, so that closing does not reset the
  // connection before the client has read the answer. Bounded in time and bytes.
  void Linger() {
    Shutdown();
    stream_.expires_after(std::chrono::seconds(2));
    Drain();
  }
  void Drain() {
    stream_.async_read_some(asio::buffer(drain_),
                            [self = shared_from_this()](beast::error_code error, size_t n) {
                              self->drained_ += n;
                              if (error || self->drained_ > (1u << 20)) return;
                              self->Drain();
                            });
  }
  HttpServer& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<RequestGate::Admitted> admitted_;
  std::array<char, 4096> drain_;
  size_t drained_ = 0;
};

HttpServer::HttpServer(asio::io_context& io, const Router& router, HttpServerOptions options,
                       Authorizer authorizer)
    : io_(io),
      options_(std::move(options)),
      gate_(router, options_.gate, std::move(authorizer)),
      acceptor_(io) {}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Start() {
  beast::error_code error;
  auto address = asio::ip::make_address(options_.address, error);
  if (error) return InvalidArgument("bad listen address '" + options_.address + "'");
  tcp::endpoint endpoint(address, options_.port);
  acceptor_.open(endpoint.protocol(), error);
  if (!error) acceptor_.set_option(asio::socket_base::reuse_address(true), error);
  if (!error) acceptor_.bind(endpoint, error);
  if (!error) acceptor_.listen(asio::socket_base::max_listen_connections, error);
  if (error) {
    return IOError("cannot listen on " + options_.address + ":" + std::to_string(options_.port) +
                   ": " + error.message());
  }
  port_ = acceptor_.local_endpoint().port();
  Accept();
  return Status::Ok();
}

void HttpServer::Stop() {
  beast::error_code ignored;
  acceptor_.close(ignored);
  for (const auto& stream : std::set<std::shared_ptr<EventStream>>(streams_)) stream->Close();
}

void HttpServer::Accept() {
  acceptor_.async_accept([this](beast::error_code error, tcp::socket socket) {
    if (error == asio::error::operation_aborted) return;
    if (!error) {
      if (connections_ >= options_.max_connections) {
        // Over the cap: a short answer, written without waiting, and the connection closes.
        static const std::string kBusy = [] {
          std::string body = R"({"error":"too many open connections; try again in a while"})";
          return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                 "Connection: close\r\nContent-Length: " +
                 std::to_string(body.size()) + "\r\n\r\n" + body;
        }();
        beast::error_code ignored;
        socket.non_blocking(true, ignored);
        socket.write_some(asio::buffer(kBusy), ignored);
        socket.close(ignored);
      } else {
        std::make_shared<Session>(*this, std::move(socket))->Read();
      }
    } else if (error == asio::error::no_descriptors) {
      // Out of file descriptors: wait a moment rather than spin on accept.
      auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
      timer->async_wait([this, timer](beast::error_code) { Accept(); });
      return;
    }
    Accept();
  });
}

void HttpServer::Broadcast(std::shared_ptr<const std::string> message) {
  asio::post(io_, [this, message = std::move(message)] {
    for (const auto& stream : std::set<std::shared_ptr<EventStream>>(streams_)) stream->Send(message);
  });
}

}  // namespace vitscale::coordinator
