#include "common/http_client.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "tests/worker/test_server.h"

namespace vitscale {
namespace {

using std::chrono::milliseconds;
using testing::TestReply;
using testing::TestRequest;
using testing::TestServer;
using Clock = std::chrono::steady_clock;

std::unique_ptr<HttpClient> MakeClient(const std::string& url, const std::string& token = "",
                                       milliseconds read_timeout = milliseconds(5000)) {
  Expected<std::unique_ptr<HttpClient>> client =
      HttpClient::Create({url, token, milliseconds(2000), read_timeout});
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return std::move(client).value();
}

TEST(HttpClientTest, GetSendsTheTokenAndReadsTheReply) {
  TestRequest seen;
  TestServer server([&](const TestRequest& request) {
    seen = request;
    return TestReply{200, R"({"ok": true})"};
  });
  auto client = MakeClient(server.url(), "secret-token");
  Expected<HttpReply> reply = client->Get("/api/v1/health?x=1");
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(reply->body, R"({"ok": true})");
  EXPECT_EQ(reply->content_type, "application/json");
  EXPECT_EQ(seen.method, "GET");
  EXPECT_EQ(seen.target, "/api/v1/health?x=1");
  EXPECT_EQ(seen.authorization, "Bearer secret-token");
}

TEST(HttpClientTest, PostJsonSendsTheBodyWithItsTypeAndNoTokenWhenNoneIsSet) {
  TestRequest seen;
  TestServer server([&](const TestRequest& request) {
    seen = request;
    return TestReply{201, "{}"};
  });
  auto client = MakeClient(server.url());
  Expected<HttpReply> reply = client->PostJson("/jobs", R"({"a": 1})");
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->status, 201);
  EXPECT_EQ(seen.method, "POST");
  EXPECT_EQ(seen.body, R"({"a": 1})");
  EXPECT_EQ(seen.content_type, "application/json");
  EXPECT_EQ(seen.authorization, "");
}

TEST(HttpClientTest, AnErrorStatusIsAReplyWithItsMessage) {
  TestServer server([](const TestRequest&) {
    return TestReply{409, R"({"error": "agent does not hold job x"})"};
  });
  auto client = MakeClient(server.url());
  Expected<HttpReply> reply = client->PostJson("/poll", "{}");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->status, 409);
  EXPECT_EQ(HttpErrorMessage(*reply), "agent does not hold job x");
  EXPECT_EQ(HttpErrorMessage(HttpReply{502, "Bad Gateway", "text/plain"}), "Bad Gateway");
  EXPECT_EQ(HttpErrorMessage(HttpReply{500, "", ""}), "HTTP 500 with an empty body");
}

TEST(HttpClientTest, ThePrefixOfTheBaseUrlComesBeforeEveryPath) {
  std::string target;
  TestServer server([&](const TestRequest& request) {
    target = request.target;
    return TestReply{};
  });
  auto client = MakeClient(server.url() + "/api/v1/");
  ASSERT_TRUE(client->Get("/agents").ok());
  EXPECT_EQ(target, "/api/v1/agents");
  EXPECT_EQ(client->base_url(), server.url() + "/api/v1");
}

TEST(HttpClientTest, KeepsOneConnectionForManyRequests) {
  TestServer server([](const TestRequest&) { return TestReply{}; });
  auto client = MakeClient(server.url());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(client->Get("/x").ok());
  EXPECT_EQ(server.connections(), 1);
}

TEST(HttpClientTest, ResendsOnceWhenTheServerClosedAnIdleConnection) {
  int requests = 0;
  TestServer server([&](const TestRequest&) {
    ++requests;
    TestReply reply;
    reply.close_after = true;  // as a server that times out idle keep-alive connections
    return reply;
  });
  auto client = MakeClient(server.url());
  ASSERT_TRUE(client->Get("/x").ok());
  std::this_thread::sleep_for(milliseconds(50));
  Expected<HttpReply> second = client->Get("/x");
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(requests, 2);
  EXPECT_EQ(server.connections(), 2);
}

TEST(HttpClientTest, ARefusedConnectionIsUnavailable) {
  std::string url;
  {
    TestServer server([](const TestRequest&) { return TestReply{}; });
    url = server.url();
  }
  auto client = MakeClient(url);
  Expected<HttpReply> reply = client->Get("/x");
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(reply.status().message().find("cannot connect to " + url), std::string::npos)
      << reply.status().message();
}

TEST(HttpClientTest, ASlowReplyTimesOut) {
  TestServer server([](const TestRequest&) {
    std::this_thread::sleep_for(milliseconds(1500));
    return TestReply{};
  });
  auto client = MakeClient(server.url(), "", milliseconds(200));
  auto start = Clock::now();
  Expected<HttpReply> reply = client->Get("/slow");
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(reply.status().message().find("no reply within 200 ms"), std::string::npos)
      << reply.status().message();
  EXPECT_LT(Clock::now() - start, milliseconds(1000));
  server.Stop();
}

TEST(HttpClientTest, AbortEndsTheRequestInFlightAndEveryLaterOne) {
  TestServer server([](const TestRequest&) {
    std::this_thread::sleep_for(milliseconds(1500));
    return TestReply{};
  });
  auto client = MakeClient(server.url());
  std::thread aborter([&] {
    std::this_thread::sleep_for(milliseconds(100));
    client->Abort();
  });
  auto start = Clock::now();
  Expected<HttpReply> reply = client->Get("/long-poll");
  aborter.join();
  ASSERT_FALSE(reply.ok());
  EXPECT_EQ(reply.status().code(), StatusCode::kUnavailable);
  EXPECT_LT(Clock::now() - start, milliseconds(1000));
  EXPECT_EQ(client->Get("/x").status().code(), StatusCode::kUnavailable);
  server.Stop();
}

TEST(HttpClientTest, ABadUrlIsRejectedWithAnExample) {
  for (const char* url : {"https://127.0.0.1:1", "127.0.0.1:8470", "http://:80", "http://h:port"}) {
    Expected<std::unique_ptr<HttpClient>> client = HttpClient::Create({url, "", {}, {}});
    ASSERT_FALSE(client.ok()) << url;
    EXPECT_EQ(client.status().code(), StatusCode::kInvalidArgument) << url;
  }
  auto client = MakeClient("http://127.0.0.1:1");
  EXPECT_EQ(client->Get("no-slash").status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace vitscale
