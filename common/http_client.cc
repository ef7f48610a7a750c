#include "common/http_client.h"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <nlohmann/json.hpp>
#include <optional>

namespace vitscale {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr uint64_t kMaxReplyBytes = 64ull << 20;

struct ParsedUrl {
  std::string host;
  std::string port;
  std::string prefix;  // "" or "/something" without a trailing '/'
};

Expected<ParsedUrl> ParseUrl(const std::string& url) {
  const std::string scheme = "http://";
  if (url.rfind("https://", 0) == 0) {
    return InvalidArgument("coordinator URL '" + url + "': https is not supported; use http://");
  }
  if (url.rfind(scheme, 0) != 0) {
    return InvalidArgument("URL '" + url +
                           "' must start with http:// (e.g. http://127.0.0.1:8470)");
  }
  std::string rest = url.substr(scheme.size());
  ParsedUrl parsed;
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) parsed.prefix = rest.substr(slash);
  while (!parsed.prefix.empty() && parsed.prefix.back() == '/') parsed.prefix.pop_back();
  size_t colon = authority.rfind(':');
  if (colon == std::string::npos) {
    parsed.host = authority;
    parsed.port = "80";
  } else {
    parsed.host = authority.substr(0, colon);
    parsed.port = authority.substr(colon + 1);
  }
  bool port_ok = !parsed.port.empty() && parsed.port.size() <= 5 &&
                 std::all_of(parsed.port.begin(), parsed.port.end(),
                             [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
  if (parsed.host.empty() || !port_ok) {
    return InvalidArgument("URL '" + url +
                           "' needs a host and a numeric port, e.g. http://127.0.0.1:8470");
  }
  return parsed;
}

}  // namespace

struct HttpClient::Impl {
  HttpClientOptions options;
  ParsedUrl url;
  std::string base_url;
  asio::io_context io;
  std::optional<beast::tcp_stream> stream;  // the kept-alive connection, when there is one
  beast::flat_buffer buffer;
  std::atomic<bool> aborted{false};
  // Results of the asynchronous steps; written by their handlers during io.run().
  beast::error_code error;
  bool done = false;

  // Runs the queued operations until they finish; false when Abort() stopped them.
  bool RunIo() {
    io.restart();
    if (aborted.load()) return false;
    io.run();
    return done && !aborted.load();
  }

  Status Connect() {
    stream.emplace(io);
    buffer.clear();
    tcp::resolver resolver(io);
    tcp::resolver::results_type endpoints;
    done = false;
    resolver.async_resolve(url.host, url.port,
                           [this, &endpoints](beast::error_code ec, tcp::resolver::results_type r) {
                             error = ec;
                             endpoints = std::move(r);
                             done = true;
                           });
    if (!RunIo()) return Drop("aborted");
    if (error) return Drop("cannot resolve host '" + url.host + "': " + error.message());
    done = false;
    stream->expires_after(options.connect_timeout);
    stream->async_connect(endpoints, [this](beast::error_code ec, const tcp::endpoint&) {
      error = ec;
      done = true;
    });
    if (!RunIo()) return Drop("aborted");
    if (error) {
      std::string why = error == beast::error::timeout
                            ? fmt::format("no answer within {} ms", options.connect_timeout.count())
                            : error.message();
      return Drop("cannot connect to " + base_url + ": " + why);
    }
    return Status::Ok();
  }

  // Closes the connection and returns kUnavailable with `message`.
  Status Drop(const std::string& message) {
    if (stream) {
      beast::error_code ignored;
      stream->socket().close(ignored);
      stream.reset();
    }
    io.restart();
    io.poll();  // lets cancelled handlers finish while their captures are alive
    return Unavailable(message);
  }

  // One exchange over the open connection; `replied_any` tells whether any byte of a reply came.
  Expected<HttpReply> Exchange(const http::request<http::string_body>& request, bool& replied_any) {
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxReplyBytes);
    done = false;
    replied_any = false;
    stream->expires_after(options.read_timeout);
    http::async_write(*stream, request, [this, &parser](beast::error_code ec, size_t) {
      if (ec) {
        error = ec;
        done = true;
        return;
      }
      http::async_read(*stream, buffer, parser, [this](beast::error_code read_ec, size_t) {
        error = read_ec;
        done = true;
      });
    });
    if (!RunIo()) return Drop("aborted");
    replied_any = parser.got_some();
    if (error) {
      std::string why = error == beast::error::timeout
                            ? fmt::format("no reply within {} ms", options.read_timeout.count())
                            : error.message();
      return Drop(fmt::format("{} {}{}: {}", std::string(request.method_string()), base_url,
                              std::string(request.target()).substr(url.prefix.size()), why));
    }
    http::response<http::string_body> response = parser.release();
    HttpReply reply;
    reply.status = static_cast<int>(response.result_int());
    reply.content_type = std::string(response[http::field::content_type]);
    reply.body = std::move(response.body());
    if (!response.keep_alive()) {
      beast::error_code ignored;
      stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
      stream->socket().close(ignored);
      stream.reset();
    }
    return reply;
  }
};

HttpClient::HttpClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpClient::~HttpClient() = default;

Expected<std::unique_ptr<HttpClient>> HttpClient::Create(HttpClientOptions options) {
  ASSIGN_OR_RETURN(ParsedUrl url, ParseUrl(options.base_url));
  auto impl = std::make_unique<Impl>();
  impl->base_url = options.base_url;
  while (!impl->base_url.empty() && impl->base_url.back() == '/') impl->base_url.pop_back();
  impl->options = std::move(options);
  impl->url = std::move(url);
  return std::unique_ptr<HttpClient>(new HttpClient(std::move(impl)));
}

const std::string& HttpClient::base_url() const { return impl_->base_url; }

void HttpClient::Abort() {
  impl_->aborted.store(true);
  impl_->io.stop();
}

Expected<HttpReply> HttpClient::Get(const std::string& path) {
  return Request("GET", path, "", "");
}

Expected<HttpReply> HttpClient::PostJson(const std::string& path, const std::string& json_body) {
  return Request("POST", path, json_body, "application/json");
}

Expected<HttpReply> HttpClient::Request(const std::string& method, const std::string& path,
                                        const std::string& body, const std::string& content_type) {
  Impl& impl = *impl_;
  if (path.empty() || path[0] != '/') {
    return InvalidArgument("request path '" + path + "' must start with '/'");
  }
  http::verb verb = http::string_to_verb(method);
  if (verb == http::verb::unknown) return InvalidArgument("unknown HTTP method '" + method + "'");
  if (impl.aborted.load()) return Unavailable("request to " + impl.base_url + " aborted");

  http::request<http::string_body> request{verb, impl.url.prefix + path, 11};
  request.set(http::field::host, impl.url.host + ":" + impl.url.port);
  request.set(http::field::user_agent, "vitscale");
  request.keep_alive(true);
  if (!impl.options.bearer_token.empty()) {
    request.set(http::field::authorization, "Bearer " + impl.options.bearer_token);
  }
  if (!content_type.empty()) request.set(http::field::content_type, content_type);
  request.body() = body;
  request.prepare_payload();

  try {
    // A kept-alive connection may have been closed by the server while idle; a request on it
    // that gets no byte of reply is sent once more on a fresh connection.
    for (int round = 0; round < 2; ++round) {
      bool reused = impl.stream.has_value();
      if (!reused) RETURN_IF_ERROR(impl.Connect());
      bool replied_any = false;
      Expected<HttpReply> reply = impl.Exchange(request, replied_any);
      if (reply.ok() || !reused || replied_any || impl.aborted.load()) return reply;
    }
  } catch (const std::exception& e) {
    return impl.Drop("request to " + impl.base_url + " failed: " + e.what());
  }
  return Unavailable("request to " + impl.base_url + " failed twice");
}

std::string HttpErrorMessage(const HttpReply& reply) {
  nlohmann::json parsed = nlohmann::json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_object()) {
    auto it = parsed.find("error");
    if (it != parsed.end() && it->is_string()) return it->get<std::string>();
  }
  std::string text = reply.body.substr(0, 300);
  if (text.empty()) text = fmt::format("HTTP {} with an empty body", reply.status);
  return text;
}

}  // namespace vitscale
