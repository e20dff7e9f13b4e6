// HttpListener, the agent's server adapter: a request over the unix socket reaches the handler as
// a plain HttpRequest, and a listener can be stopped at any moment after it started.

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>

#include "agent/http.h"
#include "common/system.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using namespace modbox::testing;

namespace {

/// Sends one raw HTTP/1.1 request over a unix socket and returns the whole answer.
std::string raw_unix_request(const std::string& socket_path, const std::string& request) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd.valid());
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  REQUIRE(socket_path.size() < sizeof address.sun_path);
  std::copy(socket_path.begin(), socket_path.end(), address.sun_path);
  REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  REQUIRE(::write(fd.get(), request.data(), request.size()) == static_cast<ssize_t>(request.size()));
  timeval timeout{10, 0};  // a hung server fails the test instead of blocking it
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string answer;
  char buffer[4096];
  for (ssize_t got; (got = ::read(fd.get(), buffer, sizeof buffer)) > 0;) answer.append(buffer, static_cast<std::size_t>(got));
  return answer;
}

HttpResponse echo(HttpRequest& request) {
  std::string seen = request.method + " " + request.path +
                     " q=" + (request.query_value("q") ? *request.query_value("q") : std::string()) +
                     " custom=" + (request.header("x-custom") ? *request.header("x-custom") : "-") +
                     " tcp=" + (request.over_tcp ? "yes" : "no") + " body=" + request.body;
  HttpResponse response = json_response(201, seen);
  response.headers["X-Answer"] = "42";
  return response;
}

}  // namespace

TEST_CASE("a request on the unix socket reaches the handler as a plain request", "[http]") {
  TempDir dir;
  std::string socket_path = (dir / "agent.sock").string();
  auto listener = HttpListener::start({.unix_path = socket_path}, echo, 2);
  REQUIRE(listener.has_value());

  std::string answer = raw_unix_request(
      socket_path,
      "POST /things?q=1 HTTP/1.1\r\nHost: localhost\r\nX-Custom: yes\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody");
  CHECK(answer.starts_with("HTTP/1.1 201"));
  CHECK(answer.find("X-Answer: 42\r\n") != std::string::npos);
  CHECK(answer.find("Content-Type: application/json") != std::string::npos);
  CHECK(answer.ends_with("POST /things q=1 custom=yes tcp=no body=body"));
  (*listener)->stop();
}

TEST_CASE("the unix socket is private to the user", "[http]") {
  TempDir dir;
  std::string socket_path = (dir / "agent.sock").string();
  auto listener = HttpListener::start({.unix_path = socket_path}, echo, 1);
  REQUIRE(listener.has_value());
  auto permissions = std::filesystem::status(socket_path).permissions();
  CHECK((permissions & std::filesystem::perms::all) ==
        (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
}

TEST_CASE("a TCP listener on port 0 reports the port it got", "[http]") {
  auto listener = HttpListener::start({.host = "127.0.0.1", .port = 0}, echo, 1);
  REQUIRE(listener.has_value());
  CHECK((*listener)->port() > 0);
}

TEST_CASE("a listener stopped right after it started does stop", "[http]") {
  // The gateway closes a sandbox's port as soon as provisioning fails, which can be right after
  // it opened it; a stop that is lost there would hang the agent.
  TempDir dir;
  constexpr int rounds = 50;
  std::atomic<int> stopped = 0;
  std::atomic<bool> start_failed = false;
  std::thread worker([&stopped, &start_failed, socket_path = (dir / "quick.sock").string()] {
    for (int round = 0; round < rounds; ++round) {
      auto listener = HttpListener::start({.unix_path = socket_path}, echo, 1);
      if (!listener) {
        start_failed = true;
        return;
      }
      (*listener)->stop();
      ++stopped;
    }
  });
  bool finished = eventually([&] { return stopped == rounds || start_failed; }, std::chrono::seconds(20));
  if (!finished) {
    worker.detach();  // it is stuck in stop(); nothing else can be done from here
    FAIL("HttpListener::stop() hung after " << stopped << " rounds");
  }
  worker.join();
  CHECK_FALSE(start_failed);
}
