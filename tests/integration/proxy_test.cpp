// The sandbox URL's proxy to web apps in the sandbox, against the real agent and real (rootless) Podman:
// every path but /modbox/api/* goes to a port inside the sandbox (8080, or the image's readiness_port),
// and each port asked for at provision gets a URL of its own. webapp.py runs in the sandbox; curl, Node
// WebSocket clients and Chromium reach it as users do. Checked: HTTP/1.1 keep-alive, bodies streamed both
// ways (chunked too), SSE without delay, WebSocket relays, forwarded headers, the credentials (Bearer key,
// owner token, ?token= once then its cookie) and that none of them reaches the app, 401/403/502, destroy
// closing everything within a second, and port URLs that survive an agent restart.

#include <catch2/catch.hpp>

#include "tests/integration/harness.h"
#include "tests/integration/web_sandbox.h"

using namespace modbox::test;
using Clock = std::chrono::system_clock;

namespace {

constexpr int app_port = 8080;

long long epoch_ms(Clock::time_point when) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count();
}

/// Waits until `url` reaches webapp.py; REQUIREs that it does (an agent without the proxy answers 404).
void require_proxied(const WebSandbox& box, const std::string& url) {
  int status = box.wait_until_proxied(url);
  INFO(url << " answered " << status << " to GET /echo with the key: it does not reach webapp.py in the sandbox");
  REQUIRE(status == 200);
}

/// A Location header relative to `base` (the front may answer an absolute URL or a path).
std::string relative_location(const std::string& location, const std::string& base) {
  return location.starts_with(base) ? location.substr(base.size()) : location;
}

/// The cookie a ?token= answer sets: the one that is HttpOnly and SameSite=Lax (REQUIRE'd).
SetCookie front_cookie(const CurlReply& reply) {
  for (const auto& header : reply.header_values("Set-Cookie"))
    if (auto cookie = parse_set_cookie(header); cookie && cookie->has("HttpOnly") && cookie->has("SameSite=Lax"))
      return *cookie;
  INFO("Set-Cookie headers of the ?token= answer:\n" << reply.head);
  FAIL("no HttpOnly, SameSite=Lax cookie was set");
  return {};
}

/// Checks what a URL with ?token= answers: any 3xx, to the same URL without the token, with the cookie.
SetCookie follow_token(const std::string& base, const std::string& path_with_token,
                       const std::string& expected_location) {
  auto reply = curl(base + path_with_token);
  INFO(base << path_with_token << " answered " << reply.status << "\n" << reply.head << reply.body);
  CHECK(reply.status >= 300);
  CHECK(reply.status < 400);
  CHECK(relative_location(reply.header("Location"), base) == expected_location);
  return front_cookie(reply);
}

/// The requests logged by the app on `port` after the first `skip` lines.
std::vector<std::string> logged_since(const WebSandbox& box, int port, std::size_t skip) {
  auto log = box.server_log(port);
  REQUIRE(log.size() >= skip);
  return {log.begin() + static_cast<std::ptrdiff_t>(skip), log.end()};
}

/// The JSON object webapp.py answered (for /echo: what it saw of the request); an object with empty
/// headers when the answer was not one, so that lookups fail as CHECKs, not exceptions.
json app_json(const CurlReply& reply) {
  json answer = reply.json_body();
  if (!answer.is_object()) answer = json::object();
  if (!answer.contains("headers")) answer["headers"] = json::object();
  return answer;
}

/// The front's {"detail": "..."} of an error answer, else the whole body.
std::string detail_of(const CurlReply& reply) {
  json answer = reply.json_body();
  return answer.is_object() && answer["detail"].is_string() ? answer["detail"].get<std::string>() : reply.body;
}

/// The "event" of a ws-hold.mjs line, or "".
std::string event_of(const std::string& line) {
  json event = json::parse(line, nullptr, false);
  return event.is_object() && event["event"].is_string() ? event["event"].get<std::string>() : "";
}

/// What the app saw of a request, as one string: for checking that a secret is not in it.
std::string seen_by_app(const CurlReply& reply) {
  return app_json(reply).dump();
}

/// The Cookie headers the app received (a JSON array, possibly empty).
std::string cookies_seen(const CurlReply& reply) {
  return app_json(reply)["headers"].value("cookie", json::array()).dump();
}

/// The number at `pointer` (e.g. "/redirect/status") in a client's result; -1 when there is none.
long long number_at(const json& result, const std::string& pointer) {
  json::json_pointer where(pointer);
  if (!result.contains(where) || !result.at(where).is_number()) return -1;
  return result.at(where).get<long long>();
}

/// Stops an agent that the CLI started, whatever happens in the test.
struct CliAgentStopper {
  const TestAgent& agent;
  ~CliAgentStopper() { agent.cli({"agent", "stop"}); }
};

/// Deletes an image registered by a test, after the sandboxes using it (declare it before them).
struct RegisteredImage {
  const TestAgent& agent;
  std::string id;
  ~RegisteredImage() { agent.api("DELETE", "/sandbox-images/" + id); }
};

/// Reads the lines of a ws-hold.mjs until its "close" event or `deadline`: when it arrived, if it did.
std::optional<Clock::time_point> close_arrival(BackgroundProcess& hold, Clock::time_point deadline) {
  while (Clock::now() < deadline) {
    auto line = hold.next_line(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
    if (!line) return std::nullopt;
    if (event_of(line->text) == "close") return line->arrived;
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("proxy: keep-alive, chunked answers, and bodies streamed both ways through the sandbox URL", "[proxy]") {
  TestAgent agent;
  agent.start();
  WebSandbox box(agent);
  box.start_server(app_port);
  require_proxied(box, box.url());

  // Two requests on one connection: curl says it re-used the connection, and both were answered.
  auto both = run_command({"curl", "-sS", "-v", "--noproxy", "*", "-H", box.bearer(), box.url() + "/echo?request=1",
                           box.url() + "/echo?request=2"});
  INFO(both.err);
  CHECK(both.exit_code == 0);
  CHECK(both.err.find("Re-using existing connection") != std::string::npos);
  CHECK(both.out.find("\"query\": \"request=1\"") != std::string::npos);
  CHECK(both.out.find("\"query\": \"request=2\"") != std::string::npos);

  // A chunked answer, sent in parts with pauses, comes through whole and still chunked.
  auto chunked = curl(box.url() + "/chunked?parts=5&delay_ms=20", {"-H", box.bearer()});
  CHECK(chunked.status == 200);
  CHECK(chunked.body == "part 0\npart 1\npart 2\npart 3\npart 4\n");
  CHECK(chunked.header("Transfer-Encoding") == "chunked");

  // 20 MB up (chunked, then with Content-Length and Expect: 100-continue) and 20 MB down, byte for byte,
  // while the agent's memory stays flat: streamed, never held.
  LocalDir local;
  constexpr std::size_t size = 20'000'000;
  auto source = write_random_file(local.path / "upload.bin", size);
  std::string source_sha256 = sha256_of_file(source);
  long memory_before = peak_memory_kib(agent.pid());
  for (const auto& framing : std::vector<std::vector<std::string>>{{"-H", "Transfer-Encoding: chunked"}, {}}) {
    std::vector<std::string> args = {"-H", box.bearer(), "--data-binary", "@" + source.string()};
    args.insert(args.end(), framing.begin(), framing.end());
    auto uploaded = curl(box.url() + "/upload", args);
    INFO((framing.empty() ? "with Content-Length" : "chunked") << ": " << uploaded.body << uploaded.trace);
    CHECK(uploaded.status == 200);
    CHECK(app_json(uploaded)["length"] == size);
    CHECK(app_json(uploaded)["sha256"] == source_sha256);
  }
  auto downloaded_path = local.path / "download.bin";
  auto downloaded = curl(box.url() + "/bytes?n=" + std::to_string(size), {"-H", box.bearer()}, downloaded_path);
  CHECK(downloaded.status == 200);
  CHECK(std::filesystem::file_size(downloaded_path) == size);
  auto expected = curl(box.url() + "/bytes/sha256?n=" + std::to_string(size), {"-H", box.bearer()});
  CHECK(sha256_of_file(downloaded_path) == app_json(expected).value("sha256", "?"));
  long memory_after = peak_memory_kib(agent.pid());
  INFO("agent peak RSS " << memory_before << " KiB before, " << memory_after << " KiB after 40 MB up and 20 MB down");
  CHECK(memory_after - memory_before < 16 * 1024);
}

TEST_CASE("proxy: server-sent events reach the client as the sandbox writes them", "[proxy]") {
  TestAgent agent;
  agent.start();
  WebSandbox box(agent);
  box.start_server(app_port);
  require_proxied(box, box.url());

  constexpr int count = 6;
  constexpr int interval_ms = 300;
  BackgroundProcess stream(
      {"curl", "-sS", "--no-buffer", "--noproxy", "*", "-H", box.bearer(),
       box.url() + "/sse?count=" + std::to_string(count) + "&interval_ms=" + std::to_string(interval_ms)});
  struct Arrival {
    long long sent_ms;
    long long arrived_ms;
  };
  std::vector<Arrival> arrivals;
  while (auto line = stream.next_line(10s)) {
    if (!line->text.starts_with("data: ")) continue;
    json event = json::parse(line->text.substr(6), nullptr, false);
    REQUIRE(event.is_object());
    arrivals.push_back({event["sent_ms"].get<long long>(), epoch_ms(line->arrived)});
  }
  INFO(stream.errors());
  REQUIRE(arrivals.size() == count);
  for (std::size_t index = 0; index < arrivals.size(); ++index) {
    long long lag = arrivals[index].arrived_ms - arrivals[index].sent_ms;
    INFO("event " << index << " arrived " << lag << " ms after the app sent it");
    CHECK(lag < 150);
  }
  // Spread out as they were sent, not all at the end.
  CHECK(arrivals.back().arrived_ms - arrivals.front().arrived_ms >= (count - 1) * interval_ms - 100);
}

TEST_CASE("proxy: the app sees the request as sent, with the client's Host and X-Forwarded-*", "[proxy]") {
  TestAgent agent;
  agent.start();
  WebSandbox box(agent);
  box.start_server(app_port);
  require_proxied(box, box.url());
  std::string host = box.url().substr(std::string("http://").size());

  auto reply = curl(box.url() + "/echo?a=1&b=x%20y",
                    {"-X", "PUT", "-H", box.bearer(), "-H", "X-Custom: kept", "--data-binary", "some body"});
  REQUIRE(reply.status == 200);
  json seen = app_json(reply);
  CHECK(seen["method"] == "PUT");
  CHECK(seen["path"] == "/echo");
  CHECK(seen["query"] == "a=1&b=x%20y");
  CHECK(seen["body_length"] == 9);
  CHECK(seen["headers"]["host"] == json::array({host}));
  CHECK(seen["headers"]["x-forwarded-for"] == json::array({"127.0.0.1"}));
  CHECK(seen["headers"]["x-forwarded-proto"] == json::array({"http"}));
  CHECK(seen["headers"]["x-forwarded-host"] == json::array({host}));
  CHECK(seen["headers"]["x-custom"] == json::array({"kept"}));
  CHECK_FALSE(seen["headers"].contains("authorization"));

  // Host as the client wrote it, whichever loopback name it used.
  std::string named = "localhost:" + host.substr(host.find(':') + 1);
  auto renamed = curl(box.url() + "/echo", {"-H", box.bearer(), "-H", "Host: " + named});
  REQUIRE(renamed.status == 200);
  CHECK(app_json(renamed)["headers"]["host"] == json::array({named}));
  CHECK(app_json(renamed)["headers"]["x-forwarded-host"] == json::array({named}));
}

TEST_CASE("proxy: the key, the owner token, or ?token= once and then its cookie; none of them reaches the app",
          "[proxy]") {
  TestAgent agent;
  agent.start();
  WebSandbox box(agent);
  box.start_server(app_port);
  require_proxied(box, box.url());

  auto with_key = curl(box.url() + "/echo", {"-H", box.bearer()});
  CHECK(with_key.status == 200);
  CHECK_FALSE(app_json(with_key)["headers"].contains("authorization"));
  CHECK(seen_by_app(with_key).find(box.key()) == std::string::npos);

  std::string owner = owner_token(agent);
  auto with_owner = curl(box.url() + "/echo", {"-H", "Authorization: Bearer " + owner});
  CHECK(with_owner.status == 200);
  CHECK_FALSE(app_json(with_owner)["headers"].contains("authorization"));
  CHECK(seen_by_app(with_owner).find(owner) == std::string::npos);

  // ?token= once: a redirect to the same URL without it (other parameters kept) that sets the cookie...
  follow_token(box.url(), "/echo?token=" + box.key(), "/echo");
  follow_token(box.url(), "/echo?a=1&token=" + box.key(), "/echo?a=1");
  SetCookie cookie = follow_token(box.url(), "/echo?a=1&token=" + box.key() + "&b=2", "/echo?a=1&b=2");
  // ...which then authenticates alone, and is taken out of the Cookie header; the client's other cookies stay.
  auto with_cookie =
      curl(box.url() + "/echo?a=1&b=2", {"-H", "Cookie: other=kept; " + cookie.pair() + "; second=also"});
  INFO(with_cookie.body);
  CHECK(with_cookie.status == 200);
  CHECK(app_json(with_cookie)["query"] == "a=1&b=2");
  CHECK(cookies_seen(with_cookie).find("other=kept") != std::string::npos);
  CHECK(cookies_seen(with_cookie).find("second=also") != std::string::npos);
  CHECK(cookies_seen(with_cookie).find(cookie.name + "=") == std::string::npos);
  CHECK(seen_by_app(with_cookie).find(box.key()) == std::string::npos);
  CHECK_FALSE(app_json(with_cookie)["headers"].contains("authorization"));

  // A wrong ?token= sets nothing.
  auto wrong = curl(box.url() + "/echo?token=wrong");
  CHECK(wrong.status == 401);
  CHECK(wrong.header_values("Set-Cookie").empty());

  // As a user follows a shared link: one curl with a cookie jar, then the jar alone.
  LocalDir local;
  std::string jar = (local.path / "jar").string();
  auto followed = curl(box.url() + "/?token=" + box.key(), {"-L", "-c", jar, "-b", jar});
  CHECK(followed.status == 200);
  CHECK(followed.body.find("modbox proxy test page") != std::string::npos);
  CHECK(curl(box.url() + "/app.js", {"-b", jar}).status == 200);

  // Neither the token parameter nor the key ever reached the app.
  for (const auto& line : box.server_log(app_port)) {
    INFO(line);
    CHECK(line.find("token=") == std::string::npos);
    CHECK(line.find(box.key()) == std::string::npos);
  }
}

TEST_CASE("proxy: two sandboxes' cookies live side by side, and neither reaches the other's app", "[proxy]") {
  // Cookies ignore ports: a browser (and curl's jar) sends every 127.0.0.1 cookie to every sandbox URL. So
  // one sandbox's cookie must neither replace another's nor be forwarded into the other sandbox, whose
  // code would learn a credential of the first.
  TestAgent agent;
  agent.start();
  WebSandbox first(agent);
  WebSandbox second(agent);
  first.start_server(app_port);
  second.start_server(app_port);
  require_proxied(first, first.url());
  require_proxied(second, second.url());

  LocalDir local;
  std::string jar = (local.path / "jar").string();
  auto first_token = curl(first.url() + "/echo?token=" + first.key(), {"-c", jar, "-b", jar});
  auto second_token = curl(second.url() + "/echo?token=" + second.key(), {"-c", jar, "-b", jar});
  SetCookie first_cookie = front_cookie(first_token);
  SetCookie second_cookie = front_cookie(second_token);

  for (const WebSandbox* box : {&first, &second}) {
    auto reply = curl(box->url() + "/echo", {"-b", jar});
    INFO(box->url() << ": " << reply.body);
    CHECK(reply.status == 200);
    std::string seen = seen_by_app(reply);
    CHECK(seen.find(first.key()) == std::string::npos);
    CHECK(seen.find(second.key()) == std::string::npos);
    CHECK(cookies_seen(reply).find(first_cookie.name + "=") == std::string::npos);
    CHECK(cookies_seen(reply).find(second_cookie.name + "=") == std::string::npos);
  }
}

TEST_CASE("proxy: without a valid credential 401, and not one byte reaches the app", "[proxy]") {
  TestAgent agent;
  agent.start();
  WebSandbox box(agent);
  box.start_server(app_port);
  require_proxied(box, box.url());
  LocalDir local;
  auto body = write_random_file(local.path / "body.bin", 2'000'000);
  // The cookie's name, to send it with a value that is not the front's.
  SetCookie cookie = front_cookie(curl(box.url() + "/echo?token=" + box.key()));
  std::size_t logged_before = box.server_log(app_port).size();

  struct Attempt {
    std::string what;
    std::string path;
    std::vector<std::string> args;
  };
  std::vector<Attempt> attempts = {
      {"no credential", "/echo", {}},
      {"Bearer alone", "/echo", {"-H", "Authorization: Bearer"}},
      {"a wrong key", "/echo", {"-H", "Authorization: Bearer wrong"}},
      {"a prefix of the key", "/echo", {"-H", "Authorization: Bearer " + box.key().substr(0, 5)}},
      {"the key and one character more", "/echo", {"-H", "Authorization: Bearer " + box.key() + "x"}},
      {"the key without Bearer", "/echo", {"-H", "Authorization: " + box.key()}},
      {"the key as Basic", "/echo", {"-H", "Authorization: Basic " + box.key()}},
      {"the cookie with a wrong value", "/echo", {"-H", "Cookie: " + cookie.name + "=wrong"}},
      {"a wrong ?token=", "/echo?token=wrong", {}},
      {"the root page", "/", {}},
      {"an upload", "/upload", {"--data-binary", "@" + body.string()}},
      {"a chunked upload", "/upload", {"-H", "Transfer-Encoding: chunked", "--data-binary", "@" + body.string()}},
  };
  for (const auto& attempt : attempts) {
    auto reply = curl(box.url() + attempt.path, attempt.args);
    INFO(attempt.what << ": " << reply.status << " " << reply.body << reply.trace);
    CHECK(reply.status == 401);
  }
  for (const auto& header : std::vector<std::vector<std::string>>{{}, {"--header", "Authorization: Bearer wrong"}}) {
    std::vector<std::string> args = {box.url() + "/ws"};
    args.insert(args.end(), header.begin(), header.end());
    auto upgrade = run_client("ws-echo.mjs", args);
    INFO(upgrade.out << upgrade.err);
    CHECK(upgrade.exit_code == 1);
    CHECK(number_at(upgrade.result, "/status") == 401);
  }

  // A request with the key goes through after them all, and it is the only one the app logged since.
  CHECK(curl(box.url() + "/echo?marker=after-refusals", {"-H", box.bearer()}).status == 200);
  CHECK(logged_since(box, app_port, logged_before) == std::vector<std::string>{"GET /echo?marker=after-refusals"});
}

TEST_CASE("proxy: a sandbox provisioned without SANDBOX_API_KEY answers 403 on proxied routes", "[proxy]") {
  TestAgent agent;
  agent.start();
  WebSandbox keyless(agent, json::object(), false);
  keyless.start_server(app_port);
  for (const auto& [path, args] : std::vector<std::pair<std::string, std::vector<std::string>>>{
           {"/echo", {}}, {"/echo", {"-H", "Authorization: Bearer x"}}, {"/echo?token=x", {}}, {"/", {}}}) {
    auto reply = curl(keyless.url() + path, args);
    INFO(path << " " << (args.empty() ? "" : args[1]) << ": " << reply.body);
    CHECK(reply.status == 403);
    CHECK(detail_of(reply).find("SANDBOX_API_KEY") != std::string::npos);
    CHECK(reply.header_values("Set-Cookie").empty());
  }
  auto upgrade = run_client("ws-echo.mjs", {keyless.url() + "/ws"});
  CHECK(number_at(upgrade.result, "/status") == 403);
  // Only the start-up check from inside the sandbox reached the app.
  CHECK(keyless.server_log(app_port) == std::vector<std::string>{"GET /echo?from=sandbox"});
}

TEST_CASE("proxy: nothing listening on the port answers 502 naming the port", "[proxy]") {
  TestAgent agent;
  agent.start();
  WebSandbox box(agent);
  auto reply = curl(box.url() + "/anything", {"-H", box.bearer()});
  INFO(reply.body);
  CHECK(reply.status == 502);
  CHECK(detail_of(reply).find("8080") != std::string::npos);
  auto upgrade = run_client("ws-echo.mjs", {box.url() + "/ws", "--header", "Authorization: Bearer " + box.key()});
  CHECK(number_at(upgrade.result, "/status") == 502);
  // Once an app listens, the same URL reaches it.
  box.start_server(app_port);
  require_proxied(box, box.url());
}

TEST_CASE("proxy: the sandbox URL goes to the image's readiness_port, where the image's own app listens", "[proxy]") {
  TestAgent agent;
  agent.start();
  // The app starts with the container (its CMD), as a web image's does: nothing to start by hand, and the
  // sandbox is running before the app listens, so the first requests may meet a 502.
  std::string repository = "localhost/modbox-test/webapp";
  std::string tag = unique_name("t");
  ImageGuard built{agent, repository + ":" + tag};
  build_image(
      agent, built.tag,
      "FROM localhost/modbox/sandbox-lite:latest\n"
      "COPY webapp.py /opt/webapp/webapp.py\n"
      "CMD [\"python3\", \"/opt/webapp/webapp.py\", \"--port\", \"9000\", \"--log\", \"/tmp/webapp-9000.log\"]\n",
      {{"webapp.py", test_servers_dir() / "webapp.py"}});
  auto registered = agent.api(
      "POST", "/sandbox-images",
      json{{"name", unique_name("webapp")}, {"image", repository}, {"tag", tag}, {"readiness_port", 9000}}.dump());
  INFO(registered.body);
  REQUIRE(registered.status == 201);
  RegisteredImage image{agent, registered.json_body().value("id", "")};
  WebSandbox box(agent, {{"image_id", image.id}});

  box.wait_for_server(9000);
  require_proxied(box, box.url());
  CHECK(app_json(curl(box.url() + "/echo", {"-H", box.bearer()}))["server_port"] == 9000);
  auto log = box.server_log(9000);
  REQUIRE(!log.empty());
  CHECK(log.back() == "GET /echo");
}

TEST_CASE("proxy: WebSocket upgrades are relayed both ways", "[proxy]") {
  TestAgent agent;
  agent.start();
  WebSandbox box(agent);
  box.start_server(app_port);
  require_proxied(box, box.url());

  auto echoed = run_client("ws-echo.mjs", {box.url() + "/ws", "--header", box.bearer(), "--messages", "20"});
  INFO(echoed.out << echoed.err);
  CHECK(echoed.exit_code == 0);
  CHECK(number_at(echoed.result, "/status") == 101);
  CHECK(number_at(echoed.result, "/text_echoed") == 20);
  CHECK(echoed.result["fragmented_echoed"] == true);
  CHECK(echoed.result["binary_echoed"] == json::array({100, 1000, 70000}));
  CHECK(echoed.result["pong"] == true);
  CHECK(number_at(echoed.result, "/close_code") == 1000);

  // The owner token and the ?token= cookie authenticate upgrades too.
  auto with_owner =
      run_client("ws-echo.mjs", {box.url() + "/ws", "--header", "Authorization: Bearer " + owner_token(agent)});
  INFO(with_owner.out << with_owner.err);
  CHECK(with_owner.exit_code == 0);
  SetCookie cookie = front_cookie(curl(box.url() + "/?token=" + box.key()));
  auto with_cookie = run_client("ws-echo.mjs", {box.url() + "/ws", "--header", "Cookie: " + cookie.pair()});
  INFO(with_cookie.out << with_cookie.err);
  CHECK(with_cookie.exit_code == 0);
}

TEST_CASE("proxy: a browser follows ?token= once, then loads the page, its sub-resources and its WebSocket",
          "[proxy]") {
  INFO("Chromium comes from Debian's chromium package, which images/prepare-host --install --tests installs");
  REQUIRE(std::filesystem::exists("/usr/bin/chromium"));
  TestAgent agent;
  agent.start();
  WebSandbox box(agent);
  box.start_server(app_port);
  require_proxied(box, box.url());

  auto page = run_client("browser-page.mjs", {box.url() + "/", "--token", box.key(), "--timeout-ms", "30000"});
  INFO(page.out << page.err);
  CHECK(page.exit_code == 0);
  REQUIRE(page.result.is_object());
  CHECK(page.result["failures"] == json::array());
  CHECK(page.result["status_text"] == "ok");
  CHECK(number_at(page.result, "/redirect/status") / 100 == 3);
  CHECK(number_at(page.result, "/resources/~1app.js/status") == 200);
  CHECK(number_at(page.result, "/resources/~1style.css/status") == 200);
  for (const auto& line : box.server_log(app_port)) {
    INFO(line);
    CHECK(line.find("token=") == std::string::npos);
  }
}

TEST_CASE("proxy: a port asked for at provision gets a URL of its own, with the same credentials", "[proxy]") {
  TestAgent agent;
  agent.start();
  WebSandbox box(agent, {{"ports", {8000}}});
  std::string port_url = box.port_url(8000);
  INFO(box.sandbox().dump());
  REQUIRE(port_url.starts_with("http://127.0.0.1:"));
  CHECK(port_url != box.url());
  CHECK(agent.api("GET", "/sandboxes/detail/" + box.task()).json_body()["port_urls"] == box.sandbox()["port_urls"]);

  auto nothing = curl(port_url + "/echo", {"-H", box.bearer()});
  INFO(nothing.body);
  CHECK(nothing.status == 502);
  CHECK(detail_of(nothing).find("8000") != std::string::npos);

  box.start_server(8000);
  box.start_server(app_port);
  require_proxied(box, port_url);
  CHECK(app_json(curl(port_url + "/echo", {"-H", box.bearer()}))["server_port"] == 8000);
  CHECK(app_json(curl(box.url() + "/echo", {"-H", box.bearer()}))["server_port"] == app_port);
  auto echoed = run_client("ws-echo.mjs", {port_url + "/ws", "--header", box.bearer()});
  INFO(echoed.out << echoed.err);
  CHECK(echoed.exit_code == 0);

  // Without a credential: 401, and nothing reaches the app on 8000.
  std::size_t logged_before = box.server_log(8000).size();
  CHECK(curl(port_url + "/echo").status == 401);
  CHECK(curl(port_url + "/echo", {"-H", "Authorization: Bearer wrong"}).status == 401);
  CHECK(number_at(run_client("ws-echo.mjs", {port_url + "/ws"}).result, "/status") == 401);
  CHECK(curl(port_url + "/echo?marker=after-refusals", {"-H", box.bearer()}).status == 200);
  CHECK(logged_since(box, 8000, logged_before) == std::vector<std::string>{"GET /echo?marker=after-refusals"});

  // ?token= on the port URL: its own redirect and cookie, which authenticates there and is not forwarded.
  SetCookie cookie = follow_token(port_url, "/echo?x=1&token=" + box.key(), "/echo?x=1");
  auto with_cookie = curl(port_url + "/echo?x=1", {"-H", "Cookie: " + cookie.pair()});
  CHECK(with_cookie.status == 200);
  CHECK(cookies_seen(with_cookie).find(cookie.name + "=") == std::string::npos);
  CHECK(seen_by_app(with_cookie).find(box.key()) == std::string::npos);
  // The sandbox URL's cookie, which browsers also send to this port, is not forwarded to it either.
  SetCookie url_cookie = front_cookie(curl(box.url() + "/?token=" + box.key()));
  auto crossed = curl(port_url + "/echo", {"-H", box.bearer(), "-H", "Cookie: " + url_cookie.pair() + "; other=kept"});
  CHECK(crossed.status == 200);
  CHECK(cookies_seen(crossed).find("other=kept") != std::string::npos);
  CHECK(cookies_seen(crossed).find(url_cookie.name + "=") == std::string::npos);
  CHECK(seen_by_app(crossed).find(box.key()) == std::string::npos);
}

TEST_CASE("proxy: destroying a sandbox closes its URLs and every relayed connection within a second", "[proxy]") {
  TestAgent agent;
  agent.start();
  WebSandbox box(agent, {{"ports", {8000}}});
  std::string port_url = box.port_url(8000);
  REQUIRE(!port_url.empty());
  box.start_server(app_port);
  box.start_server(8000);
  require_proxied(box, box.url());
  require_proxied(box, port_url);

  REQUIRE(std::filesystem::exists(test_clients_dir() / "node_modules" / "ws"));
  BackgroundProcess on_url(client_command("ws-hold.mjs", {box.url() + "/ws", "--header", box.bearer()}));
  BackgroundProcess on_port(client_command("ws-hold.mjs", {port_url + "/ws", "--header", box.bearer()}));
  BackgroundProcess stream({"curl", "-sS", "--no-buffer", "--noproxy", "*", "-H", box.bearer(),
                            box.url() + "/sse?count=100000&interval_ms=100"});
  for (BackgroundProcess* hold : {&on_url, &on_port}) {
    auto opened = hold->next_line(20s);
    INFO(hold->errors());
    REQUIRE(opened.has_value());
    REQUIRE(event_of(opened->text) == "open");
  }
  REQUIRE(stream.next_line(10s).has_value());

  auto destroyed = agent.api("POST", "/sandboxes/destroy", json{{"task_id", box.task()}}.dump());
  auto answered = Clock::now();
  REQUIRE(destroyed.status == 200);
  auto deadline = answered + 1s;
  for (BackgroundProcess* hold : {&on_url, &on_port}) {
    auto closed = close_arrival(*hold, deadline + 200ms);
    INFO(hold->errors());
    REQUIRE(closed.has_value());
    INFO("the WebSocket saw its close " << epoch_ms(*closed) - epoch_ms(answered) << " ms after the destroy answer");
    CHECK(*closed <= deadline);
  }
  while (Clock::now() < deadline &&
         stream.next_line(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now())))
    ;
  CHECK(stream.output_ended());
  // New connections are refused (curl: "could not connect").
  CHECK(curl(box.url() + "/echo", {"-H", box.bearer()}).exit_code == 7);
  CHECK(curl(port_url + "/echo", {"-H", box.bearer()}).exit_code == 7);
}

TEST_CASE("proxy: port URLs are kept across an agent restart", "[proxy]") {
  TestAgent agent;  // started and stopped through the CLI, as a user does
  auto started = agent.cli({"agent", "start"});
  INFO(started.err);
  REQUIRE(started.exit_code == 0);
  CliAgentStopper stopper{agent};
  WebSandbox box(agent, {{"ports", {8000}}});
  std::string port_url = box.port_url(8000);
  INFO(box.sandbox().dump());
  REQUIRE(!port_url.empty());
  box.start_server(8000);
  box.start_server(app_port);
  require_proxied(box, port_url);

  REQUIRE(agent.cli({"agent", "stop"}).exit_code == 0);
  REQUIRE(agent.cli({"agent", "status"}).exit_code == 3);
  // Any command starts it again; the sandbox keeps its URLs, and they reach the apps that kept running.
  auto got = agent.cli({"get", box.task(), "--json"});
  INFO(got.err);
  REQUIRE(got.exit_code == 0);
  json again = json::parse(got.out, nullptr, false);
  CHECK(again["sandbox_url"] == box.url());
  CHECK(again["port_urls"] == box.sandbox()["port_urls"]);
  require_proxied(box, port_url);
  CHECK(app_json(curl(port_url + "/echo", {"-H", box.bearer()}))["server_port"] == 8000);
  CHECK(app_json(curl(box.url() + "/echo", {"-H", box.bearer()}))["server_port"] == app_port);
  auto echoed = run_client("ws-echo.mjs", {port_url + "/ws", "--header", box.bearer()});
  INFO(echoed.out << echoed.err);
  CHECK(echoed.exit_code == 0);
}
