#include "coordinator/http_server.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <deque>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

namespace vitscale::coordinator {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

HttpResponse JsonResponse(int status, const std::string& json_body) {
  HttpResponse response;
  response.status = status;
  response.body = json_body;
  return response;
}

HttpResponse ErrorResponse(int status, const std::string& message) {
  return JsonResponse(status, nlohmann::json{{"error", message}}.dump());
}

HttpResponse StatusResponse(const Status& status) {
  switch (status.code()) {
    case StatusCode::kOk: return JsonResponse(200, "{}");
    case StatusCode::kInvalidArgument: return ErrorResponse(400, status.message());
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

// Splits the target into a decoded path and query. Segments are decoded one by one and may not
// decode to '/', NUL, "." or "..": an id in a route must stay one segment, and no path may
// climb out of where it points. `error` says what is wrong.
bool ParseTarget(std::string_view target, HttpRequest& request, std::string& error) {
  size_t question = target.find('?');
  std::string_view raw_path = target.substr(0, question);
  std::string path;
  while (!raw_path.empty()) {
    size_t slash = raw_path.find('/');
    std::string_view raw_segment = raw_path.substr(0, slash);
    auto segment = UrlDecode(raw_segment, false);
    if (!segment) {
      error = "malformed URL escape in the path";
      return false;
    }
    if (segment->find_first_of(std::string("/\0", 2)) != std::string::npos || *segment == "." ||
        *segment == "..") {
      error = "path segment '" + std::string(raw_segment) +
              "' is not allowed (no '.', '..', or encoded '/' or NUL)";
      return false;
    }
    path += *segment;
    if (slash == std::string_view::npos) break;
    path += '/';
    raw_path.remove_prefix(slash + 1);
  }
  request.path = path;
  if (question == std::string_view::npos) return true;
  std::string_view query = target.substr(question + 1);
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    auto key = UrlDecode(pair.substr(0, eq), true);
    auto value = UrlDecode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true);
    if (!key || !value) {
      error = "malformed URL escape in the query";
      return false;
    }
    if (!key->empty()) request.query[*key] = *value;
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return true;
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
  if (fs::is_directory(wanted) || (!fs::exists(wanted) && !wanted.has_extension())) {
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

std::string BearerToken(const http::request<http::string_body>& request) {
  auto it = request.find(http::field::authorization);
  if (it == request.end()) return "";
  std::string_view value(it->value().data(), it->value().size());
  constexpr std::string_view kPrefix = "Bearer ";
  if (value.substr(0, kPrefix.size()) != kPrefix) return "";
  return std::string(value.substr(kPrefix.size()));
}

}  // namespace

Handler Immediate(std::function<HttpResponse(const HttpRequest&)> handler) {
  return [handler = std::move(handler)](const HttpRequest& request, Respond respond) {
    respond(handler(request));
  };
}

void Router::Add(const std::string& method, const std::string& pattern, Access access,
                 Handler handler) {
  routes_.push_back({method, SplitPath(pattern), access, std::move(handler)});
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
    match.access = route.access;
    match.params = std::move(params);
    return match;
  }
  return match;
}

// One WebSocket client of the event stream. Messages queue here and go out one write at a time.
class HttpServer::EventStream : public std::enable_shared_from_this<EventStream> {
 public:
  EventStream(HttpServer& server, tcp::socket socket)
      : server_(server), socket_(std::move(socket)) {}

  void Start(http::request<http::string_body> request, std::vector<std::string> catch_up) {
    pending_.assign(catch_up.begin(), catch_up.end());
    socket_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    socket_.async_accept(request, [self = shared_from_this()](beast::error_code error) {
      if (error) return;
      self->accepted_ = true;
      self->server_.streams_.insert(self);
      self->ReadLoop();
      self->WriteNext();
    });
  }

  void Send(const std::string& message) {
    // A client that stops reading must not grow the coordinator's memory without bound.
    constexpr size_t kMaxQueued = 10000;
    if (pending_.size() >= kMaxQueued) return Close();
    pending_.push_back(message);
    if (accepted_) WriteNext();
  }

  void Close() {
    server_.streams_.erase(shared_from_this());
    beast::error_code ignored;
    beast::get_lowest_layer(socket_).socket().close(ignored);
  }

 private:
  void ReadLoop() {
    // Clients send nothing we use; reading keeps pings answered and notices a close.
    socket_.async_read(buffer_, [self = shared_from_this()](beast::error_code error, size_t) {
      if (error) return self->server_.streams_.erase(self), void();
      self->buffer_.consume(self->buffer_.size());
      self->ReadLoop();
    });
  }

  void WriteNext() {
    if (pending_.empty() || writing_) return;
    writing_ = true;
    socket_.text(true);
    socket_.async_write(asio::buffer(pending_.front()),
                        [self = shared_from_this()](beast::error_code error, size_t) {
                          self->writing_ = false;
                          if (error) return self->server_.streams_.erase(self), void();
                          self->pending_.pop_front();
                          self->WriteNext();
                        });
  }

  HttpServer& server_;
  websocket::stream<beast::tcp_stream> socket_;
  beast::flat_buffer buffer_;
  std::deque<std::string> pending_;
  bool accepted_ = false;
  bool writing_ = false;
};

class HttpServer::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(HttpServer& server, tcp::socket socket) : server_(server), stream_(std::move(socket)) {}

  void Read() {
    parser_.emplace();
    parser_->body_limit(server_.options_.max_body_bytes);
    stream_.expires_after(std::chrono::seconds(60));
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code error, size_t) {
                       self->OnRead(error);
                     });
  }

 private:
  void OnRead(beast::error_code error) {
    if (error == http::error::end_of_stream || error == beast::error::timeout) return Shutdown();
    if (error == http::error::body_limit) {
      return Write(ErrorResponse(413, "request body over the limit of " +
                                          std::to_string(server_.options_.max_body_bytes) +
                                          " bytes"),
                   false);
    }
    if (error) return Write(ErrorResponse(400, "malformed HTTP request: " + error.message()), false);
    http::request<http::string_body> request = parser_->release();

    HttpRequest parsed;
    parsed.method = std::string(request.method_string());
    std::string target_error;
    if (!ParseTarget(std::string_view(request.target().data(), request.target().size()), parsed,
                     target_error)) {
      return Write(ErrorResponse(400, target_error), request.keep_alive());
    }
    const HttpServerOptions& options = server_.options_;
    std::string token = BearerToken(request);
    if (token.empty() && parsed.query.count("access_token")) token = parsed.query["access_token"];
    bool authorised = !options.token.empty() && token == options.token;

    if (websocket::is_upgrade(request)) {
      if (parsed.path != options.events_path) {
        return Write(ErrorResponse(404, "no WebSocket at " + parsed.path), false);
      }
      if (!authorised && !options.open_read_access) {
        return Write(ErrorResponse(401, "the event stream needs the bearer token (?access_token=)"),
                     false);
      }
      std::vector<std::string> catch_up;
      if (server_.catch_up_) catch_up = server_.catch_up_(parsed.query);
      auto stream = std::make_shared<EventStream>(server_, stream_.release_socket());
      return stream->Start(std::move(request), std::move(catch_up));
    }

    parsed.body = std::move(request.body());
    if (auto it = request.find(http::field::content_type); it != request.end()) {
      parsed.content_type = std::string(it->value());
    }
    Handle(parsed, authorised, request.keep_alive());
  }

  void Handle(HttpRequest& request, bool authorised, bool keep_alive) {
    const HttpServerOptions& options = server_.options_;
    bool is_api = request.path.rfind("/api/", 0) == 0;
    if (!is_api && request.method == "GET" && !options.static_dir.empty()) {
      return Write(ServeStatic(options.static_dir, request.path), keep_alive);
    }
    Router::Match match = server_.router_.Find(request.method, request.path);
    if (!match.handler) {
      if (match.path_known) {
        return Write(ErrorResponse(405, request.method + " is not allowed on " + request.path),
                     keep_alive);
      }
      return Write(ErrorResponse(404, "no route " + request.method + " " + request.path),
                   keep_alive);
    }
    bool open = match.access == Access::kRead && options.open_read_access;
    if (!authorised && !open) {
      return Write(ErrorResponse(401, "missing or wrong bearer token (Authorization: Bearer "
                                      "<token>; the coordinator's token file has it)"),
                   keep_alive);
    }
    request.params = std::move(match.params);
    Respond respond = [self = shared_from_this(), keep_alive](HttpResponse response) {
      self->Write(std::move(response), keep_alive);
    };
    try {
      (*match.handler)(request, respond);
    } catch (const std::exception& e) {
      respond(ErrorResponse(500, std::string("internal error: ") + e.what()));
    }
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
    http::async_write(stream_, *message,
                      [self = shared_from_this(), message](beast::error_code error, size_t) {
                        if (error || !message->keep_alive()) return self->Shutdown();
                        self->Read();
                      });
  }

  void Shutdown() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  HttpServer& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
};

HttpServer::HttpServer(asio::io_context& io, const Router& router, HttpServerOptions options)
    : io_(io), router_(router), options_(std::move(options)), acceptor_(io) {}

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
    if (!error) std::make_shared<Session>(*this, std::move(socket))->Read();
    Accept();
  });
}

void HttpServer::Broadcast(std::string message) {
  asio::post(io_, [this, message = std::move(message)] {
    for (const auto& stream : std::set<std::shared_ptr<EventStream>>(streams_)) stream->Send(message);
  });
}

}  // namespace vitscale::coordinator
