// The front over real sockets: keep-alive, limits and deadlines, bounded threads whatever the
// number of ports and idle connections, and relaying to a sandbox port (through a fake site whose
// relays are socket pairs served by a thread of the test).

#include "agent/front/front.h"
#include "agent/front/proxy_auth.h"

#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <functional>
#include <mutex>
#include <thread>

#include "common/system.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using namespace modbox::testing;

namespace {

std::size_t thread_count() {
  std::size_t count = 0;
  if (DIR* tasks = ::opendir("/proc/self/task")) {
    while (dirent* entry = ::readdir(tasks))
      if (entry->d_name[0] != '.') ++count;
    ::closedir(tasks);
  }
  return count;
}

/// A raw TCP client on 127.0.0.1.
class Client {
 public:
  explicit Client(int port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  }
  bool connected() const { return connected_; }
  void send(std::string_view bytes) {
    REQUIRE(::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
  }
  /// Reads until `done(received)` holds, the peer closes, or `timeout` passes.
  std::string read_until(const std::function<bool(const std::string&)>& done,
                         std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done(received_)) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd entry{fd_.get(), POLLIN, 0};
      if (::poll(&entry, 1, static_cast<int>(left.count())) <= 0) break;
      char buffer[65536];
      ssize_t got = ::read(fd_.get(), buffer, sizeof buffer);
      if (got <= 0) {
        closed_ = true;
        break;
      }
      received_.append(buffer, static_cast<std::size_t>(got));
    }
    return received_;
  }
  /// One whole answer with a Content-Length body, taken out of what was received. The deadline allows
  /// for a large answer under ThreadSanitizer on a loaded machine.
  std::string answer() {
    read_until(
        [](const std::string& text) {
          auto end = text.find("\r\n\r\n");
          if (end == std::string::npos) return false;
          auto length_at = text.find("Content-Length: ");
          std::size_t length = length_at < end ? std::stoul(text.substr(length_at + 16)) : 0;
          return text.size() >= end + 4 + length;
        },
        std::chrono::seconds(30));
    auto end = received_.find("\r\n\r\n");
    if (end == std::string::npos) return std::exchange(received_, {});
    auto length_at = received_.find("Content-Length: ");
    std::size_t length = length_at < end ? std::stoul(received_.substr(length_at + 16)) : 0;
    std::string one = received_.substr(0, std::min(received_.size(), end + 4 + length));
    received_.erase(0, one.size());
    return one;
  }
  bool closed_within(std::chrono::milliseconds timeout) {
    read_until([](const std::string&) { return false; }, timeout);
    return closed_;
  }

 private:
  UniqueFd fd_;
  bool connected_ = false;
  bool closed_ = false;
  std::string received_;
};

HttpResponse echo_handler(HttpRequest& request) {
  return json_response(200, "{\"path\":\"" + request.path + "\",\"body\":" + std::to_string(request.body.size()) + "}");
}

/// Reads from `fd` until `marker` has come (or the peer closes); returns what came.
std::string read_to(int fd, std::string_view marker) {
  std::string text;
  char buffer[4096];
  while (text.find(marker) == std::string::npos) {
    pollfd entry{fd, POLLIN, 0};
    if (::poll(&entry, 1, 5000) <= 0) break;
    ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got <= 0) break;
    text.append(buffer, static_cast<std::size_t>(got));
  }
  return text;
}

void write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (sent <= 0) return;
    bytes.remove_prefix(static_cast<std::size_t>(sent));
  }
}

/// A site whose relays are socket pairs, the far end served by `server` on a thread of its own.
class FakeSite final : public SandboxSite {
 public:
  using Server = std::function<void(int fd)>;
  explicit FakeSite(Server server) : server_(std::move(server)) {}
  ~FakeSite() override {
    for (auto& thread : threads_) thread.join();
  }
  HttpResponse serve_api(const std::string&, HttpRequest& request) override { return echo_handler(request); }
  HttpResponse serve_web(const std::string&, HttpRequest& request) override {
    HttpResponse response = echo_handler(request);
    response.headers["X-Served-By"] = "agent";
    return response;
  }
  std::optional<HttpResponse> precheck_api(const std::string&, const HttpRequest&) override { return std::nullopt; }
  Result<ProxyTarget> proxy_target(const std::string& sandbox_id, int sandbox_port) override {
    if (sandbox_id == "gone") return fail(ErrorKind::not_found, "this sandbox no longer exists");
    return ProxyTarget{.helper_socket = "/nonexistent",
                       .port = sandbox_port ? sandbox_port : 8080,
                       .api_key = "key",
                       .activity = activity};
  }
  Result<UniqueFd> open_relay(const ProxyTarget& target) override {
    ++relays;
    if (refuse) return fail(ErrorKind::bad_request, "nothing is listening on port " + std::to_string(target.port));
    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return fail(ErrorKind::internal, "socketpair");
    std::lock_guard lock(mutex_);
    threads_.emplace_back([this, far = pair[1]] {
      server_(far);
      ::close(far);
    });
    return UniqueFd(pair[0]);
  }
  Result<SessionConnection> open_session(const ProxyTarget&, const helper::SessionOpen&) override {
    return fail(ErrorKind::conflict, "no sessions here (tests/unit/terminal_bridge_test.cpp has them)");
  }
  std::atomic<int> relays = 0;
  std::atomic<bool> refuse = false;
  std::shared_ptr<SandboxActivity> activity =
      std::make_shared<SandboxActivity>([] { return std::chrono::system_clock::now(); });

 private:
  Server server_;
  std::mutex mutex_;
  std::vector<std::thread> threads_;
};

constexpr const char* authorized = "Authorization: Bearer key\r\n";

}  // namespace

TEST_CASE("front: keep-alive serves several requests on one connection", "[front]") {
  Front front;
  int port = expect_value(front.listen({.host = "127.0.0.1", .port = 0}, echo_handler));
  Client client(port);
  REQUIRE(client.connected());
  client.send("GET /one HTTP/1.1\r\nHost: x\r\n\r\nPOST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
  std::string first = client.answer();
  CHECK(first.starts_with("HTTP/1.1 200"));
  CHECK(first.find("\"path\":\"/one\"") != std::string::npos);
  std::string second = client.answer();
  CHECK(second.find("\"path\":\"/two\",\"body\":3") != std::string::npos);
  client.send("GET /three HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
  CHECK(client.answer().find("\"path\":\"/three\",\"body\":3") != std::string::npos);
}

TEST_CASE("front: heads over the limits and smuggling shapes are refused over a socket", "[front]") {
  Front front;
  int port = expect_value(front.listen({.host = "127.0.0.1", .port = 0}, echo_handler));
  auto status_of = [&](const std::string& request) {
    Client client(port);
    client.send(request);
    std::string answer =
        client.read_until([](const std::string& text) { return text.find("\r\n\r\n") != std::string::npos; });
    bool closed = client.closed_within(std::chrono::seconds(5));
    INFO(answer);
    CHECK(closed);  // a refused head ends the connection
    return answer.substr(0, 12);
  };
  CHECK(status_of("GET /" + std::string(9000, 'a') + " HTTP/1.1\r\n\r\n") == "HTTP/1.1 414");
  std::string fields;
  while (fields.size() < (70 << 10)) fields += "X-F: " + std::string(1000, 'x') + "\r\n";
  CHECK(status_of("GET / HTTP/1.1\r\n" + fields + "\r\n") == "HTTP/1.1 431");
  CHECK(status_of("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n") == "HTTP/1.1 400");
  CHECK(status_of("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc") == "HTTP/1.1 400");
  CHECK(status_of("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n") == "HTTP/1.1 400");
  CHECK(status_of("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n") == "HTTP/1.1 400");
}

TEST_CASE("front: a head that does not arrive in time, and an idle connection, are closed", "[front]") {
  FrontOptions options;
  options.head_timeout = std::chrono::milliseconds(300);
  options.idle_timeout = std::chrono::milliseconds(600);
  Front front(options);
  int port = expect_value(front.listen({.host = "127.0.0.1", .port = 0}, echo_handler));
  Client slow(port);
  slow.send("GET / HTTP/1.1\r\nHost:");
  auto started = std::chrono::steady_clock::now();
  CHECK(slow.closed_within(std::chrono::seconds(5)));
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(3));

  Client idle(port);
  idle.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(idle.answer().starts_with("HTTP/1.1 200"));
  started = std::chrono::steady_clock::now();
  CHECK(idle.closed_within(std::chrono::seconds(5)));
  // Idle keep-alive gets the longer idle timeout, not the head timeout.
  CHECK(std::chrono::steady_clock::now() - started >= std::chrono::milliseconds(500));
}

TEST_CASE("front: threads stay bounded whatever the number of sandbox ports and idle connections", "[front]") {
  // Enough descriptors for both ends of every connection.
  rlimit files{};
  ::getrlimit(RLIMIT_NOFILE, &files);
  files.rlim_cur = std::min<rlim_t>(files.rlim_max, 8192);
  ::setrlimit(RLIMIT_NOFILE, &files);
  std::size_t connections = files.rlim_cur >= 4096 ? 1000 : 300;

  FakeSite site([](int) {});
  Front front({}, &site);
  std::vector<int> ports;
  for (int i = 0; i < 50; ++i) ports.push_back(expect_value(front.open_sandbox_port("sb" + std::to_string(i), 0, 0)));
  // One request first, so that the pool has started its first thread.
  {
    Client warm(ports[0]);
    warm.send("GET /modbox/api/x HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(warm.answer().starts_with("HTTP/1.1 200"));
  }
  std::size_t before = thread_count();
  std::vector<std::unique_ptr<Client>> idle;
  for (std::size_t i = 0; i < connections; ++i) {
    idle.push_back(std::make_unique<Client>(ports[i % ports.size()]));
    REQUIRE(idle.back()->connected());
    if (i % 2 == 0) idle.back()->send("GET / HTTP/1.1\r\n");  // half of them mid-head
  }
  REQUIRE(eventually([&] { return front.stats().connections >= connections; }));
  std::size_t during = thread_count();
  INFO(connections << " connections on " << ports.size() << " ports: " << before << " threads before, " << during
                   << " during");
  CHECK(during <= before + 1);
  // And a request still gets its answer at once.
  Client client(ports[7]);
  client.send("GET /modbox/api/exec HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(client.answer().starts_with("HTTP/1.1 200"));
}

TEST_CASE("front: a proxied request reaches the sandbox without the credential, with forwarding headers", "[front]") {
  std::mutex mutex;
  std::vector<std::string> seen;
  FakeSite site([&](int fd) {
    std::string head = read_to(fd, "\r\n\r\n");
    {
      std::lock_guard lock(mutex);
      seen.push_back(head);
    }
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-App: yes\r\n\r\nhello");
  });
  Front front({.owner_token = "owner"}, &site);
  int port = expect_value(front.open_sandbox_port("sb", 0, 0));
  Client client(port);
  client.send(std::string("GET /page?x=1 HTTP/1.1\r\nHost: 127.0.0.1:") + std::to_string(port) + "\r\n" + authorized +
              "Cookie: a=b; modbox_auth_1=zzz\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n");
  std::string answer = client.answer();
  CHECK(answer.starts_with("HTTP/1.1 200"));
  CHECK(answer.find("X-App: yes") != std::string::npos);
  CHECK(answer.ends_with("hello"));
  // Keep-alive towards the client: a second request on the same connection.
  client.send("GET /again HTTP/1.1\r\nHost: h\r\n" + std::string(authorized) + "\r\n");
  CHECK(client.answer().ends_with("hello"));
  std::lock_guard lock(mutex);
  REQUIRE(seen.size() == 2);
  const std::string& head = seen[0];
  INFO(head);
  CHECK(head.starts_with("GET /page?x=1 HTTP/1.1\r\n"));
  CHECK(head.find("Host: 127.0.0.1:" + std::to_string(port)) != std::string::npos);
  CHECK(head.find("X-Forwarded-Host: 127.0.0.1:" + std::to_string(port)) != std::string::npos);
  CHECK(head.find("X-Forwarded-For: 127.0.0.1\r\n") != std::string::npos);
  CHECK(head.find("6.6.6.6") == std::string::npos);
  CHECK(head.find("X-Forwarded-Proto: http") != std::string::npos);
  CHECK(head.find("Authorization") == std::string::npos);
  CHECK(head.find("key") == std::string::npos);
  CHECK(head.find("Cookie: a=b\r\n") != std::string::npos);
  CHECK(head.find("modbox_auth") == std::string::npos);
}

TEST_CASE("front: without a credential nothing reaches the sandbox; a refused relay is a 502", "[front]") {
  FakeSite site([](int fd) { read_to(fd, "\r\n\r\n"); });
  Front front({}, &site);
  int port = expect_value(front.open_sandbox_port("sb", 0, 0));
  Client client(port);
  client.send("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
  std::string refused = client.answer();
  CHECK(refused.starts_with("HTTP/1.1 401"));
  CHECK(refused.find("WWW-Authenticate: Bearer") != std::string::npos);
  CHECK(site.relays == 0);

  site.refuse = true;
  Client other(port);
  other.send("GET / HTTP/1.1\r\nHost: h\r\n" + std::string(authorized) + "\r\n");
  std::string bad_gateway = other.answer();
  CHECK(bad_gateway.starts_with("HTTP/1.1 502"));
  CHECK(bad_gateway.find("port 8080") != std::string::npos);

  int gone = expect_value(front.open_sandbox_port("gone", 0, 0));
  Client late(gone);
  late.send("GET / HTTP/1.1\r\nHost: h\r\n" + std::string(authorized) + "\r\n");
  CHECK(late.answer().starts_with("HTTP/1.1 404"));
}

TEST_CASE("front: the agent's own web routes are let in as proxied requests and never relayed", "[front]") {
  FakeSite site([](int fd) {
    read_to(fd, "\r\n\r\n");
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nproxied");
  });
  Front front({}, &site);
  int port = expect_value(front.open_sandbox_port("sb", 0, 0));

  Client anonymous(port);
  anonymous.send("GET /terminal/ HTTP/1.1\r\nHost: h\r\n\r\n");
  CHECK(anonymous.answer().starts_with("HTTP/1.1 401"));

  Client bearer(port);
  bearer.send("POST /mcp/terminal/ HTTP/1.1\r\nHost: h\r\n" + std::string(authorized) +
              "Content-Length: 2\r\n\r\n{}");
  std::string served = bearer.answer();
  CHECK(served.starts_with("HTTP/1.1 200"));
  CHECK(served.find("X-Served-By: agent") != std::string::npos);
  CHECK(served.find("\"path\":\"/mcp/terminal/\",\"body\":2") != std::string::npos);

  Client browser(port);
  browser.send("GET /terminal/?token=key HTTP/1.1\r\nHost: h\r\n\r\n");
  std::string redirect = browser.answer();
  CHECK(redirect.starts_with("HTTP/1.1 302"));
  CHECK(redirect.find("Location: /terminal/\r\n") != std::string::npos);
  std::string cookie = "Cookie: " + front::auth_cookie_name(port) + "=" + front::auth_cookie_value("sb", "key") + "\r\n";
  browser.send("GET /terminal HTTP/1.1\r\nHost: h\r\n" + cookie + "\r\n");
  CHECK(browser.answer().find("X-Served-By: agent") != std::string::npos);
  CHECK(site.relays == 0);

  // A path that only starts like one of them is the sandbox's own.
  Client other(port);
  other.send("GET /terminals HTTP/1.1\r\nHost: h\r\n" + std::string(authorized) + "\r\n");
  CHECK(other.answer().find("proxied") != std::string::npos);
  CHECK(site.relays == 1);
  CHECK(is_agent_web_route("/mcp/terminal"));
  CHECK_FALSE(is_agent_web_route("/mcp/terminalx"));
  CHECK_FALSE(is_agent_web_route("/mcp/cdp/"));
}

TEST_CASE("front: a streamed answer reaches the client piece by piece, as the sandbox writes it", "[front]") {
  std::atomic<bool> first_seen = false;
  FakeSite site([&](int fd) {
    read_to(fd, "\r\n\r\n");
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: one\n\n");
    // The second event only once the client has the first: nothing may wait for the end.
    eventually([&] { return first_seen.load(); });
    write_all(fd, "data: two\n\n");
  });
  Front front({}, &site);
  int port = expect_value(front.open_sandbox_port("sb", 0, 0));
  Client client(port);
  client.send("GET /sse HTTP/1.1\r\nHost: h\r\n" + std::string(authorized) + "\r\n");
  std::string got =
      client.read_until([](const std::string& text) { return text.find("data: one") != std::string::npos; });
  CHECK(got.find("Transfer-Encoding: chunked") != std::string::npos);
  REQUIRE(got.find("data: one") != std::string::npos);
  first_seen = true;
  got = client.read_until([](const std::string& text) { return text.find("0\r\n\r\n") != std::string::npos; });
  CHECK(got.find("data: two") != std::string::npos);
  CHECK(got.ends_with("0\r\n\r\n"));
}

TEST_CASE("front: an upgrade is relayed both ways, and closing the sandbox ends it within 1 s", "[front]") {
  FakeSite site([](int fd) {
    read_to(fd, "\r\n\r\n");
    write_all(fd, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nhi");
    // Echo until the relay closes.
    char buffer[4096];
    for (ssize_t got; (got = ::read(fd, buffer, sizeof buffer)) > 0;) write_all(fd, std::string_view(buffer, got));
  });
  Front front({}, &site);
  int port = expect_value(front.open_sandbox_port("sb", 0, 0));
  Client client(port);
  client.send("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" + std::string(authorized) +
              "\r\nearly");
  std::string got = client.read_until([](const std::string& text) { return text.find("early") != std::string::npos; });
  CHECK(got.starts_with("HTTP/1.1 101"));
  CHECK(got.find("hi") != std::string::npos);
  client.send("ping-pong");
  got = client.read_until([](const std::string& text) { return text.find("ping-pong") != std::string::npos; });
  CHECK(got.find("ping-pong") != std::string::npos);

  auto closing = std::chrono::steady_clock::now();
  front.close_sandbox("sb");
  CHECK(client.closed_within(std::chrono::seconds(2)));
  CHECK(std::chrono::steady_clock::now() - closing < std::chrono::seconds(1));
  // The port is closed too.
  CHECK(eventually([&] { return !Client(port).connected(); }, std::chrono::seconds(1)));
}

TEST_CASE("front: a large answer of known length arrives byte for byte", "[front]") {
  constexpr std::size_t size = 5 << 20;
  std::string body(size, '\0');
  for (std::size_t i = 0; i < size; ++i) body[i] = static_cast<char>('a' + (i * 7919) % 26);
  FakeSite site([&](int fd) {
    read_to(fd, "\r\n\r\n");
    // Part of the body comes in the same write as the head.
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(size) + "\r\n\r\n" + body.substr(0, 1000));
    write_all(fd, std::string_view(body).substr(1000));
  });
  Front front({}, &site);
  int port = expect_value(front.open_sandbox_port("sb", 0, 0));
  Client client(port);
  client.send("GET /big HTTP/1.1\r\nHost: h\r\n" + std::string(authorized) + "\r\n");
  std::string answer = client.answer();
  auto end = answer.find("\r\n\r\n");
  REQUIRE(end != std::string::npos);
  CHECK(answer.size() - end - 4 == size);
  CHECK((answer.substr(end + 4) == body));  // not printed: 5 MiB
  // The connection is still good for the next request.
  client.send("GET /big HTTP/1.1\r\nHost: h\r\n" + std::string(authorized) + "\r\n");
  CHECK(client.answer().size() == answer.size());
}

TEST_CASE("front: a streamed answer whose bytes come after its head is delivered whole", "[front]") {
  // The handler's worker hands the bytes over and ends; nothing else holds the connection while its
  // loop waits for them.
  std::atomic<int> served = 0;
  Front front;
  int port = expect_value(front.listen({.host = "127.0.0.1", .port = 0}, [&](HttpRequest&) {
    HttpResponse response;
    response.content_type = "text/plain";
    response.stream_length = 1;
    response.stream = [&](std::uint64_t, std::uint64_t, const BodyWriter& write) {
      // Late, so that the loop has written the head and found the pipe empty first.
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      ++served;
      return write("x");
    };
    return response;
  }));
  for (int round = 0; round < 20; ++round) {
    Client client(port);
    client.send("GET /one HTTP/1.1\r\nHost: x\r\n\r\n");
    std::string answer = client.answer();
    INFO("round " << round << ": " << answer);
    REQUIRE(answer.ends_with("\r\n\r\nx"));
  }
  CHECK(served == 20);
}

TEST_CASE("front: a connection counts as the sandbox's activity once let in, until it closes", "[front][idle]") {
  FakeSite site([](int fd) {
    read_to(fd, "\r\n\r\n");
    write_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  });
  Front front({}, &site);
  int port = expect_value(front.open_sandbox_port("sb", 0, 0));
  {
    Client stranger(port);
    stranger.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(stranger.answer().starts_with("HTTP/1.1 401"));
    CHECK(site.activity->under_way() == 0);
    CHECK_FALSE(site.activity->last().has_value());  // refused requests are nobody's activity
  }
  {
    Client client(port);
    client.send("GET / HTTP/1.1\r\nHost: h\r\n" + std::string(authorized) + "\r\n");
    CHECK(client.answer().ends_with("ok"));
    // Kept alive after its answer, the connection still counts.
    CHECK(site.activity->under_way() == 1);
    client.send("GET / HTTP/1.1\r\nHost: h\r\n" + std::string(authorized) + "\r\n");
    CHECK(client.answer().ends_with("ok"));
    CHECK(site.activity->under_way() == 1);  // one hold per connection, not per request
  }
  CHECK(eventually([&] { return site.activity->under_way() == 0; }));
  CHECK(site.activity->last().has_value());
  {
    Client api(port);  // the sandbox's API (its site lets every call in)
    api.send("GET /modbox/api/files HTTP/1.1\r\nHost: h\r\n\r\n");
    CHECK(api.answer().starts_with("HTTP/1.1 200"));
    CHECK(site.activity->under_way() == 1);
  }
  CHECK(eventually([&] { return site.activity->under_way() == 0; }));
}

TEST_CASE("front: an answer of unknown length goes out chunked as it is written, then the connection closes",
          "[front][entrypoint]") {
  std::atomic<bool> first_seen = false;
  Front front;
  int port = expect_value(front.listen({.host = "127.0.0.1", .port = 0}, [&](HttpRequest&) {
    HttpResponse response;
    response.content_type = "text/plain";
    response.stream_chunked = true;
    response.stream = [&](std::uint64_t, std::uint64_t, const BodyWriter& write) {
      if (!write("one\n")) return false;
      // The second piece only once the client has the first: it went out before the answer ended.
      if (!eventually([&] { return first_seen.load(); })) return false;
      return write("") && write("two lines\n");
    };
    return response;
  }));
  Client client(port);
  client.send("GET /logs HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string first =
      client.read_until([](const std::string& text) { return text.find("one\n") != std::string::npos; });
  CHECK(first.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
  CHECK(first.find("Content-Length") == std::string::npos);
  CHECK(first.find("Connection: close\r\n") != std::string::npos);
  first_seen = true;
  std::string all = client.read_until([](const std::string& text) { return text.ends_with("0\r\n\r\n"); });
  CHECK(all.substr(all.find("\r\n\r\n") + 4) == "4\r\none\n\r\na\r\ntwo lines\n\r\n0\r\n\r\n");
  CHECK(client.closed_within(std::chrono::seconds(5)));
}

TEST_CASE("front: a client that hangs up on a quiet chunked answer ends its handler", "[front][entrypoint]") {
  std::atomic<bool> ended = false;
  Front front;
  int port = expect_value(front.listen({.host = "127.0.0.1", .port = 0}, [&](HttpRequest&) {
    HttpResponse response;
    response.stream_chunked = true;
    response.stream = [&](std::uint64_t, std::uint64_t, const BodyWriter& write) {
      bool open = write("hello\n");
      // A followed log with nothing new: only asks whether the client is still there.
      auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (open && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        open = write("");
      }
      ended = true;
      return open;
    };
    return response;
  }));
  {
    Client client(port);
    client.send("GET /logs HTTP/1.1\r\nHost: x\r\n\r\n");
    client.read_until([](const std::string& text) { return text.find("hello\n") != std::string::npos; });
  }
  CHECK(eventually([&] { return ended.load(); }, std::chrono::seconds(3)));
}
