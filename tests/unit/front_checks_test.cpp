// The front's pure parts: request-head limits and smuggling shapes, the credentials of proxied
// routes (token → cookie, what is stripped), the byte pipe and the work pool.

#include <atomic>
#include <catch2/catch.hpp>
#include <latch>
#include <thread>

#include "agent/front/byte_pipe.h"
#include "agent/front/head_checks.h"
#include "agent/front/proxy_auth.h"
#include "agent/front/work_pool.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using namespace modbox::front;
using namespace modbox::testing;

TEST_CASE("front: heads are complete at the blank line, and empty lines before them are skipped", "[front]") {
  auto scan = scan_request_head("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\nrest");
  REQUIRE(scan.state == HeadScan::State::complete);
  CHECK(scan.skipped == 4);
  CHECK(scan.head_size == std::string_view("GET / HTTP/1.1\r\nHost: a\r\n\r\n").size());
  CHECK(scan_request_head("GET / HTTP/1.1\r\nHost: a\r\n").state == HeadScan::State::incomplete);
}

TEST_CASE("front: a request line over 8 KiB is 414, a head over 64 KiB is 431", "[front]") {
  std::string long_target = "GET /" + std::string(8 << 10, 'a') + " HTTP/1.1\r\n";
  auto line = scan_request_head(long_target);
  REQUIRE(line.state == HeadScan::State::refused);
  CHECK(line.refusal.status == 414);
  // Refused as soon as the line is too long, even before its end arrives.
  CHECK(scan_request_head(long_target.substr(0, (8 << 10) + 10)).refusal.status == 414);

  std::string fields = "GET / HTTP/1.1\r\n";
  while (fields.size() <= (64 << 10)) fields += "X-Filler: " + std::string(1000, 'x') + "\r\n";
  auto big = scan_request_head(fields);
  REQUIRE(big.state == HeadScan::State::refused);
  CHECK(big.refusal.status == 431);
  CHECK(scan_request_head(fields + "\r\n").refusal.status == 431);
  // Just under both limits is fine.
  std::string fine = "GET /" + std::string(8000, 'a') + " HTTP/1.1\r\nX: " + std::string(50000, 'y') + "\r\n\r\n";
  CHECK(scan_request_head(fine).state == HeadScan::State::complete);

  // A line of exactly the limit whose "\r" and "\n" arrive in different reads (found by fuzzing).
  std::string at_limit = "GET /" + std::string((8 << 10) - 14, 'a') + " HTTP/1.1";
  REQUIRE(at_limit.size() == (8 << 10));
  CHECK(scan_request_head(at_limit + "\r").state == HeadScan::State::incomplete);
  CHECK(scan_request_head(at_limit + "\r\nHost: a\r\n\r\n").state == HeadScan::State::complete);
  CHECK(scan_request_head(at_limit + "a\r").refusal.status == 414);
}

TEST_CASE("front: the shapes that let two parsers disagree are refused", "[front]") {
  struct Case {
    const char* head;
    int status;
  };
  const Case refused[] = {
      {"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 5\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nX-A: one\r\n two\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nX-A: one\r\n\ttwo\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nContent-Length : 5\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nX\rY: 1\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nAuthorization: Bearer a\r\nauthorization: Bearer a\r\n\r\n", 400},
  };
  for (const auto& [head, status] : refused) {
    INFO(head);
    auto refusal = check_request_head(head);
    REQUIRE(refusal.has_value());
    CHECK(refusal->status == status);
    CHECK_FALSE(refusal->reason.empty());
  }
  CHECK_FALSE(check_request_head("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"));
  CHECK_FALSE(check_request_head("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"));
  CHECK_FALSE(check_request_head("GET / HTTP/1.1\r\nHost: a\r\nCookie: a=b\r\n\r\n"));
  CHECK_FALSE(check_request_head("GET / HTTP/1.1\r\nAuthorization: Bearer a\r\n\r\n"));
}

namespace {

ProxyCredentials credentials() {
  return {.sandbox_id = "sb1", .host_port = 41000, .api_key = std::string("key-123"), .owner_token = "owner-456"};
}

ProxyAuthVerdict decide(std::string_view method, std::string_view target, std::optional<std::string> authorization,
                        std::optional<std::string> cookie, ProxyCredentials given = credentials()) {
  return authorize_proxy_request(given, {.method = method,
                                         .target = target,
                                         .authorization = authorization ? &*authorization : nullptr,
                                         .cookie = cookie ? &*cookie : nullptr});
}

}  // namespace

TEST_CASE("front: a proxied request needs the key, the owner token or the origin's cookie", "[front]") {
  using Kind = ProxyAuthVerdict::Kind;
  CHECK(decide("GET", "/", std::nullopt, std::nullopt).kind == Kind::unauthorized);
  CHECK(decide("GET", "/", "Bearer wrong", std::nullopt).kind == Kind::unauthorized);
  CHECK(decide("GET", "/", "Bearer key-12", std::nullopt).kind == Kind::unauthorized);
  CHECK(decide("GET", "/", "key-123", std::nullopt).kind == Kind::unauthorized);

  auto with_key = decide("GET", "/a?b=1", "Bearer key-123", std::nullopt);
  REQUIRE(with_key.kind == Kind::allow);
  CHECK(with_key.drop_authorization);
  CHECK(with_key.forwarded_target == "/a?b=1");
  CHECK_FALSE(with_key.forwarded_cookie);
  CHECK(decide("GET", "/", "Bearer owner-456", std::nullopt).kind == Kind::allow);

  // The app's own Authorization (Basic) travels on when the cookie authenticates.
  std::string cookie = auth_cookie_name(41000) + "=" + auth_cookie_value("sb1", "key-123");
  auto by_cookie = decide("GET", "/", "Basic dXNlcjpwdw==", "theme=dark; " + cookie + "; lang=en");
  REQUIRE(by_cookie.kind == Kind::allow);
  CHECK_FALSE(by_cookie.drop_authorization);
  CHECK(by_cookie.forwarded_cookie == "theme=dark; lang=en");
}

TEST_CASE("front: ?token= answers a redirect that sets an HttpOnly cookie and drops the token", "[front]") {
  using Kind = ProxyAuthVerdict::Kind;
  auto verdict = decide("GET", "/app/?a=1&token=key-123&b=%20x", std::nullopt, std::nullopt);
  REQUIRE(verdict.kind == Kind::redirect);
  CHECK(verdict.location == "/app/?a=1&b=%20x");
  CHECK(verdict.set_cookie.starts_with(auth_cookie_name(41000) + "=" + auth_cookie_value("sb1", "key-123")));
  CHECK(verdict.set_cookie.find("HttpOnly") != std::string::npos);
  CHECK(verdict.set_cookie.find("SameSite=Lax") != std::string::npos);
  CHECK(verdict.set_cookie.find("Path=/") != std::string::npos);
  // The cookie never holds the key itself.
  CHECK(verdict.set_cookie.find("key-123") == std::string::npos);
  CHECK(decide("GET", "/?token=key-123", std::nullopt, std::nullopt).location == "/");
  CHECK(decide("GET", "/?token=wrong", std::nullopt, std::nullopt).kind == Kind::unauthorized);
  // A POST keeps its body: the token authenticates it in place and is not forwarded.
  auto post = decide("POST", "/submit?token=key-123&x=1", std::nullopt, std::nullopt);
  REQUIRE(post.kind == Kind::allow);
  CHECK(post.forwarded_target == "/submit?x=1");
}

TEST_CASE("front: cookies of other origins and other sandboxes neither work nor travel", "[front]") {
  using Kind = ProxyAuthVerdict::Kind;
  // Another port's cookie (browsers send every port's cookies to each port of a host).
  std::string other_port = auth_cookie_name(41001) + "=" + auth_cookie_value("sb1", "key-123");
  auto verdict = decide("GET", "/", "Bearer key-123", other_port + "; a=b");
  REQUIRE(verdict.kind == Kind::allow);
  CHECK(verdict.forwarded_cookie == "a=b");
  CHECK(decide("GET", "/", std::nullopt, other_port).kind == Kind::unauthorized);
  // Another sandbox's cookie value on this port.
  std::string other_sandbox = auth_cookie_name(41000) + "=" + auth_cookie_value("sb2", "key-123");
  CHECK(decide("GET", "/", std::nullopt, other_sandbox).kind == Kind::unauthorized);
  CHECK(auth_cookie_value("sb1", "key-123") != auth_cookie_value("sb2", "key-123"));
}

TEST_CASE("front: a sandbox without SANDBOX_API_KEY is open to its owner only", "[front]") {
  using Kind = ProxyAuthVerdict::Kind;
  ProxyCredentials keyless = credentials();
  keyless.api_key.reset();
  CHECK(decide("GET", "/", "Bearer key-123", std::nullopt, keyless).kind == Kind::forbidden);
  CHECK(decide("GET", "/", std::nullopt, std::nullopt, keyless).kind == Kind::forbidden);
  CHECK(decide("GET", "/", "Bearer owner-456", std::nullopt, keyless).kind == Kind::allow);
}

TEST_CASE("front: a byte pipe hands bytes over in order, bounded, and ends or aborts", "[front]") {
  BytePipe pipe(8);
  std::atomic<int> rooms = 0;
  pipe.set_on_room([&] { ++rooms; });
  CHECK(pipe.push("abcd"));
  CHECK_FALSE(pipe.push("efgh"));  // full: the loop side stops until told
  CHECK(pipe.pop_wait(BytePipe::Clock::now()) == "abcd");
  CHECK(rooms == 1);
  pipe.finish();
  CHECK(pipe.pop_wait(BytePipe::Clock::now()) == "efgh");
  CHECK_FALSE(pipe.pop_wait(BytePipe::Clock::now()));
  CHECK(pipe.end() == BytePipe::End::finished);

  BytePipe blocked(4);
  REQUIRE(blocked.push_wait("1234", BytePipe::Clock::now()));
  std::thread aborter([&] { blocked.abort(); });
  // A writer blocked on a full pipe returns at the abort, long before its deadline.
  CHECK_FALSE(blocked.push_wait("5", BytePipe::Clock::now() + std::chrono::seconds(30)));
  aborter.join();
  std::atomic<int> data = 0;
  BytePipe waiting(4);
  waiting.set_on_data([&] { ++data; });
  CHECK_FALSE(waiting.try_pop());
  waiting.push_wait("x", BytePipe::Clock::now());
  CHECK(data == 1);
}

TEST_CASE("front: long calls never take the threads that short calls need", "[front]") {
  WorkPool pool(12, 8, std::chrono::milliseconds(200));
  std::latch release(1);
  std::atomic<int> started = 0;
  for (int i = 0; i < 8; ++i)
    REQUIRE(pool.submit(WorkPool::Kind::long_call, [&] {
      ++started;
      release.wait();
    }));
  REQUIRE(eventually([&] { return started == 8; }));
  // The ninth long call is refused (the caller answers 503); short calls still run at once.
  CHECK_FALSE(pool.submit(WorkPool::Kind::long_call, [] {}));
  std::atomic<int> short_done = 0;
  for (int i = 0; i < 20; ++i) REQUIRE(pool.submit(WorkPool::Kind::short_call, [&] { ++short_done; }));
  CHECK(eventually([&] { return short_done == 20; }, std::chrono::seconds(5)));
  CHECK(pool.threads() <= 12);
  release.count_down();
  // Threads end after idling: the pool follows the work in flight.
  CHECK(eventually([&] { return pool.threads() == 0; }, std::chrono::seconds(5)));
  CHECK(pool.long_in_flight() == 0);
}
