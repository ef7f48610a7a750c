// HttpClient: a small synchronous HTTP/1.1 client (Boost.Beast) for the agent, the CLI and the
// trainer's sink. It talks to one base URL (`http://host:port[/prefix]`), keeps the connection
// alive between requests, sends the bearer token when it has one, and bounds every request by
// a connect timeout and a read timeout.
//
// It never throws: a peer that cannot be reached, refuses, resets or times out is kUnavailable
// (the caller may retry later); a bad URL is kInvalidArgument. Any HTTP status, 4xx and 5xx
// included, is a successful exchange: the caller reads HttpReply::status.
//
// Threads: one HttpClient serves one thread at a time. Abort() is the exception: any thread may
// call it to make the request in flight (and every later one) return kUnavailable at once, which
// is how a daemon stops a long poll when it shuts down.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "common/status.h"

namespace vitscale {

struct HttpReply {
  int status = 0;
  std::string body;
  std::string content_type;
};

struct HttpClientOptions {
  // http://host:port, optionally with a path prefix that every request path is appended to.
  std::string base_url;
  std::string bearer_token;  // sent as "Authorization: Bearer ..." when not empty
  std::chrono::milliseconds connect_timeout{3000};
  // Per request, from sending to the whole reply. A long poll needs more than the server holds it.
  std::chrono::milliseconds read_timeout{30000};
};

class HttpClient {
 public:
  // kInvalidArgument when the URL is not http://host[:port][/prefix] (https is not supported).
  static Expected<std::unique_ptr<HttpClient>> Create(HttpClientOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  Expected<HttpReply> Get(const std::string& path);
  Expected<HttpReply> PostJson(const std::string& path, const std::string& json_body);
  // `method` is GET, POST, PUT or DELETE; `path` starts with '/' and may carry a query.
  Expected<HttpReply> Request(const std::string& method, const std::string& path,
                              const std::string& body, const std::string& content_type);

  // Thread-safe; see the header comment. There is no way back: make a new client instead.
  void Abort();

  // "http://host:port/prefix" as given, without a trailing '/', for messages.
  const std::string& base_url() const;

 private:
  struct Impl;
  explicit HttpClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The reply's {"error": "..."} message when it has one, else its body cut to 300 characters:
// for turning a 4xx/5xx into a message that says what to fix.
std::string HttpErrorMessage(const HttpReply& reply);

}  // namespace vitscale
