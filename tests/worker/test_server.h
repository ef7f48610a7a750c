// A small HTTP/1.1 server for tests: Boost.Beast, one thread per connection, keep-alive, and a
// handler function per request. Stop() drops every connection at once, as a killed process would.
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace vitscale::testing {

struct TestRequest {
  std::string method;
  std::string target;
  std::string body;
  std::string authorization;
  std::string content_type;
};

struct TestReply {
  int status = 200;
  std::string body = "{}";
  std::string content_type = "application/json";
  bool close_after = false;  // close the connection after this reply without saying so
  // Close the connection without answering, as a server killed while handling the request.
  bool no_answer = false;
};

class TestServer {
 public:
  using Handler = std::function<TestReply(const TestRequest&)>;

  // Listens on 127.0.0.1:`port` (0 = any free port).
  explicit TestServer(Handler handler, uint16_t port = 0) : handler_(std::move(handler)) {
    namespace asio = boost::asio;
    asio::ip::tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port);
    acceptor_.open(endpoint.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(endpoint);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }
  ~TestServer() { Stop(); }

  uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int connections() const { return connections_.load(); }

  void Stop() {
    if (stopped_.exchange(true)) return;
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [id, socket] : sockets_) ::shutdown(socket->native_handle(), SHUT_RDWR);
    }
    accept_thread_.join();
    for (std::thread& thread : threads_) thread.join();
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  }

 private:
  using Socket = boost::asio::ip::tcp::socket;

  void AcceptLoop() {
    int next_id = 0;
    while (!stopped_) {
      auto socket = std::make_shared<Socket>(io_);
      boost::system::error_code error;
      acceptor_.accept(*socket, error);
      if (error || stopped_) break;
      ++connections_;
      int id = next_id++;
      {
        std::lock_guard<std::mutex> lock(mu_);
        sockets_[id] = socket;
      }
      threads_.emplace_back([this, socket, id] { Serve(*socket, id); });
    }
  }

  void Serve(Socket& socket, int id) {
    namespace http = boost::beast::http;
    boost::beast::flat_buffer buffer;
    while (!stopped_) {
      http::request<http::string_body> request;
      boost::system::error_code error;
      http::read(socket, buffer, request, error);
      if (error) break;
      TestRequest in{std::string(request.method_string()), std::string(request.target()),
                     request.body(), std::string(request[http::field::authorization]),
                     std::string(request[http::field::content_type])};
      TestReply out = handler_(in);
      if (stopped_ || out.no_answer) break;
      http::response<http::string_body> response{static_cast<http::status>(out.status), 11};
      response.set(http::field::content_type, out.content_type);
      response.keep_alive(request.keep_alive());
      response.body() = out.body;
      response.prepare_payload();
      http::write(socket, response, error);
      if (error || out.close_after || !request.keep_alive()) break;
    }
    boost::system::error_code ignored;
    socket.shutdown(Socket::shutdown_both, ignored);
    std::lock_guard<std::mutex> lock(mu_);
    sockets_.erase(id);
  }

  Handler handler_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_{io_};
  uint16_t port_ = 0;
  std::atomic<bool> stopped_{false};
  std::atomic<int> connections_{0};
  std::thread accept_thread_;
  std::vector<std::thread> threads_;  // touched by the accept thread, then by Stop() after it
  std::mutex mu_;
  std::map<int, std::shared_ptr<Socket>> sockets_;
};

}  // namespace vitscale::testing
