// LibpodClient against a fake libpod service on a unix socket: the requests it sends, how it
// reads Podman's answers, and what it reports when Podman is not there.

#include <sys/socket.h>
#include <sys/un.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "agent/podman.h"
#include "common/system.h"
#include "tests/unit/fake_libpod_server.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using namespace modbox::testing;
using nlohmann::json;

namespace {

ContainerSpec sandbox_spec() {
  return ContainerSpec{.name = "modbox-t-12345678",
                       .image = "localhost/modbox/sandbox-lite:latest",
                       .labels = {{"io.modbox.agent", "agent-1"}, {"io.modbox.sandbox", "sandbox-1"}},
                       .env = {{"SANDBOX_API_KEY", "k"}},
                       .timeout_seconds = 600};
}

}  // namespace

TEST_CASE("ping answers when the service is up", "[libpod]") {
  FakeLibpodServer server;
  auto podman = make_libpod_client(server.socket_path());
  CHECK(podman->ping().has_value());

  server.set_ping_status(500);
  auto ping = podman->ping();
  REQUIRE_FALSE(ping.has_value());
  CHECK(ping.error().message.find("service is shutting down") != std::string::npos);
}

TEST_CASE("every request says Host: localhost, as Podman requires", "[libpod]") {
  FakeLibpodServer server;
  server.add_image("busybox");
  auto podman = make_libpod_client(server.socket_path());
  REQUIRE(podman->ping().has_value());
  REQUIRE(podman->image_exists("busybox").has_value());
  REQUIRE(podman->create_container(sandbox_spec()).has_value());

  auto requests = server.requests();
  REQUIRE(requests.size() == 3);
  for (const auto& request : requests) {
    INFO(request.method << " " << request.path);
    CHECK(request.host_headers == std::vector<std::string>{"localhost"});
  }
}

TEST_CASE("image_exists reads 204 as yes and 404 as no", "[libpod][images]") {
  FakeLibpodServer server;
  server.add_image("localhost/modbox/sandbox-lite:latest");
  auto podman = make_libpod_client(server.socket_path());

  CHECK(podman->image_exists("localhost/modbox/sandbox-lite:latest") == true);
  CHECK(server.last_request("GET", "/v4.0.0/libpod/images/").value().path ==
        "/v4.0.0/libpod/images/localhost/modbox/sandbox-lite:latest/exists");
  CHECK(podman->image_exists("localhost/other:1") == false);
}

TEST_CASE("create_container sends the spec as libpod's JSON and returns the Id", "[libpod][containers]") {
  FakeLibpodServer server;
  auto podman = make_libpod_client(server.socket_path());
  ContainerSpec spec = sandbox_spec();
  spec.command = {"/modbox/helper", "--serve"};
  spec.mounts = {{.source = "/host/helper", .destination = "/modbox/helper", .read_only = true}};

  auto id = podman->create_container(spec);
  REQUIRE(id.has_value());
  CHECK(*id == "c0ffee1");

  auto request = server.last_request("POST", "/v4.0.0/libpod/containers/create");
  REQUIRE(request.has_value());
  CHECK(request->content_type == "application/json");
  json body = json::parse(request->body);
  CHECK(body["name"] == "modbox-t-12345678");
  CHECK(body["image"] == "localhost/modbox/sandbox-lite:latest");
  CHECK(body["labels"] == json{{"io.modbox.agent", "agent-1"}, {"io.modbox.sandbox", "sandbox-1"}});
  CHECK(body["env"] == json{{"SANDBOX_API_KEY", "k"}});
  CHECK(body["timeout"] == 600);
  CHECK(body["command"] == json{"/modbox/helper", "--serve"});
  REQUIRE(body["mounts"].size() == 1);
  CHECK(body["mounts"][0] == json{{"type", "bind"}, {"source", "/host/helper"}, {"destination", "/modbox/helper"},
                                  {"options", {"ro"}}});
}

TEST_CASE("create_container leaves out what the spec leaves out", "[libpod][containers]") {
  FakeLibpodServer server;
  auto podman = make_libpod_client(server.socket_path());
  REQUIRE(podman->create_container({.name = "plain", .image = "busybox"}).has_value());
  json body = json::parse(server.last_request("POST", "/v4.0.0/libpod/containers/create").value().body);
  CHECK_FALSE(body.contains("timeout"));
  CHECK_FALSE(body.contains("command"));
  CHECK_FALSE(body.contains("user"));
  CHECK_FALSE(body.contains("mounts"));
  CHECK_FALSE(body.contains("resource_limits"));
}

TEST_CASE("a Podman error body surfaces its message", "[libpod][containers]") {
  FakeLibpodServer server;
  auto podman = make_libpod_client(server.socket_path());
  SECTION("500") {
    server.fail_create(500, "image not known", "localhost/nothing: image not known");
    auto created = podman->create_container(sandbox_spec());
    REQUIRE_FALSE(created.has_value());
    CHECK(created.error().kind == ErrorKind::internal);
    CHECK(created.error().message.find("localhost/nothing: image not known") != std::string::npos);
  }
  SECTION("409 is a conflict") {
    server.fail_create(409, "name in use", "the container name \"modbox-t\" is already in use");
    auto created = podman->create_container(sandbox_spec());
    REQUIRE_FALSE(created.has_value());
    CHECK(created.error().kind == ErrorKind::conflict);
    CHECK(created.error().message.find("is already in use") != std::string::npos);
  }
}

TEST_CASE("start_container answers 204, and not_found for an unknown container", "[libpod][containers]") {
  FakeLibpodServer server;
  auto podman = make_libpod_client(server.socket_path());
  auto id = podman->create_container(sandbox_spec());
  REQUIRE(id.has_value());
  CHECK(podman->start_container(*id).has_value());
  CHECK(server.last_request("POST", "/v4.0.0/libpod/containers/" + *id + "/start").has_value());

  auto unknown = podman->start_container("nope");
  REQUIRE_FALSE(unknown.has_value());
  CHECK(unknown.error().kind == ErrorKind::not_found);
  CHECK(unknown.error().message.find("no container with name or ID \"nope\"") != std::string::npos);
}

TEST_CASE("remove_container forces at once, and an unknown container is not an error", "[libpod][containers]") {
  FakeLibpodServer server;
  server.add_container({.id = "victim", .name = "victim", .state = "running"});
  auto podman = make_libpod_client(server.socket_path());

  CHECK(podman->remove_container("victim").has_value());
  auto request = server.last_request("DELETE", "/v4.0.0/libpod/containers/victim");
  REQUIRE(request.has_value());
  CHECK(request->params.at("force") == "true");
  CHECK(request->params.at("timeout") == "0");
  CHECK(podman->remove_container("victim").has_value());  // now 404

  server.fail_remove(500);
  auto failed = podman->remove_container("other");
  REQUIRE_FALSE(failed.has_value());
  CHECK(failed.error().message.find("device busy") != std::string::npos);
}

TEST_CASE("list_containers asks for all containers with the label and reads the summaries", "[libpod][containers]") {
  FakeLibpodServer server;
  server.add_container({.id = "abc", .name = "modbox-a", .state = "running",
                        .labels = {{"io.modbox.agent", "agent-1"}, {"io.modbox.sandbox", "s-1"}}});
  server.add_container({.id = "def", .name = "modbox-b", .state = "exited", .labels = {{"io.modbox.agent", "agent-1"}}});
  auto podman = make_libpod_client(server.socket_path());

  auto containers = podman->list_containers("io.modbox.agent", "agent-1");
  REQUIRE(containers.has_value());
  auto request = server.last_request("GET", "/v4.0.0/libpod/containers/json");
  REQUIRE(request.has_value());
  CHECK(request->params.at("all") == "true");
  CHECK(json::parse(request->params.at("filters")) == json{{"label", {"io.modbox.agent=agent-1"}}});

  REQUIRE(containers->size() == 2);
  const ContainerSummary& first = (*containers)[0];
  CHECK(first.id == "abc");
  CHECK(first.name == "modbox-a");
  CHECK(first.state == "running");
  CHECK(first.labels.at("io.modbox.sandbox") == "s-1");
  CHECK((*containers)[1].state == "exited");
}

TEST_CASE("with no service on the socket, calls are unavailable at once", "[libpod]") {
  TempDir dir;
  SECTION("no socket file") {
    auto podman = make_libpod_client((dir / "absent.sock").string());
    auto started = std::chrono::steady_clock::now();
    auto ping = podman->ping();
    REQUIRE_FALSE(ping.has_value());
    CHECK(ping.error().kind == ErrorKind::unavailable);
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(2));
    CHECK(error_kind(podman->list_containers("a", "b")) == ErrorKind::unavailable);
  }
  SECTION("a socket file that nobody listens on") {
    std::string path = (dir / "stale.sock").string();
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd.valid());
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof address.sun_path);
    std::copy(path.begin(), path.end(), address.sun_path);
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    auto podman = make_libpod_client(path);
    auto started = std::chrono::steady_clock::now();
    CHECK(error_kind(podman->image_exists("busybox")) == ErrorKind::unavailable);
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(2));
  }
}

TEST_CASE("image_config reads the image's Entrypoint, Cmd and User", "[libpod][images]") {
  FakeLibpodServer server;
  server.set_image_config(
      "localhost/app:1",
      R"({"Entrypoint": ["/entry.sh", "-x"], "Cmd": ["serve"], "Env": ["A=1"], "User": "app:staff"})");
  server.set_image_config("localhost/bare:1", R"({"Entrypoint": null, "Env": ["A=1"], "User": ""})");
  server.set_image_config("localhost/odd:1", R"({"Cmd": "not a list"})");
  server.set_image_config("localhost/odd-user:1", R"({"User": 1000})");
  auto podman = make_libpod_client(server.socket_path());

  auto app = expect_value(podman->image_config("localhost/app:1"));
  CHECK(app.entrypoint == std::vector<std::string>{"/entry.sh", "-x"});
  CHECK(app.command == std::vector<std::string>{"serve"});
  CHECK(app.user == "app:staff");
  CHECK(server.last_request("GET", "/v4.0.0/libpod/images/").value().path == "/v4.0.0/libpod/images/localhost/app:1/json");
  auto bare = expect_value(podman->image_config("localhost/bare:1"));
  CHECK(bare.entrypoint.empty());
  CHECK(bare.command.empty());
  CHECK(bare.user.empty());
  CHECK(error_kind(podman->image_config("localhost/odd:1")) == ErrorKind::internal);
  CHECK(error_kind(podman->image_config("localhost/odd-user:1")) == ErrorKind::internal);
  CHECK(error_kind(podman->image_config("localhost/missing:1")) == ErrorKind::not_found);
}

TEST_CASE("create_container sends the entrypoint that replaces the image's", "[libpod][containers]") {
  FakeLibpodServer server;
  auto podman = make_libpod_client(server.socket_path());
  ContainerSpec spec = sandbox_spec();
  spec.entrypoint = {"/.modbox/helper", "--"};
  spec.command = {"/entry.sh", "serve"};
  REQUIRE(podman->create_container(spec).has_value());
  json body = json::parse(server.last_request("POST", "/v4.0.0/libpod/containers/create").value().body);
  CHECK(body["entrypoint"] == json{"/.modbox/helper", "--"});
  CHECK(body["command"] == json{"/entry.sh", "serve"});
}

TEST_CASE("create_container sends the user the container starts as", "[libpod][containers]") {
  FakeLibpodServer server;
  auto podman = make_libpod_client(server.socket_path());
  ContainerSpec spec = sandbox_spec();
  spec.user = "0:0";
  REQUIRE(podman->create_container(spec).has_value());
  json body = json::parse(server.last_request("POST", "/v4.0.0/libpod/containers/create").value().body);
  CHECK(body["user"] == "0:0");
}

TEST_CASE("commit_container sends each change as its own parameter and reads the Id after the progress",
          "[libpod][snapshot]") {
  FakeLibpodServer server;
  server.add_container({"c1", "modbox-t-1", "running", {}});
  auto podman = make_libpod_client(server.socket_path());
  CommitOptions options{.repository = "localhost/modbox-snapshot/app",
                        .tag = "t1",
                        .changes = {R"(ENTRYPOINT ["/entry.sh", "a, b"])", "CMD []", "ENV KEY="}};
  CHECK(expect_value(podman->commit_container("c1", options)) == "5eed0f");
  auto sent = server.last_request("POST", "/v4.0.0/libpod/commit").value();
  CHECK(sent.params.at("container") == "c1");
  CHECK(sent.params.at("repo") == "localhost/modbox-snapshot/app");
  CHECK(sent.params.at("tag") == "t1");
  CHECK(sent.params.at("pause") == "false");
  std::vector<std::string> changes;
  for (auto [it, end] = sent.all_params.equal_range("changes"); it != end; ++it) changes.push_back(it->second);
  CHECK(changes == options.changes);

  CHECK(error_kind(podman->commit_container("gone", options)) == ErrorKind::not_found);
  CHECK(podman->remove_image("localhost/modbox-snapshot/app:t1").has_value());
  CHECK(server.last_request("DELETE", "/v4.0.0/libpod/images/").value().path ==
        "/v4.0.0/libpod/images/localhost/modbox-snapshot/app:t1");
  CHECK(podman->remove_image("localhost/modbox-snapshot/app:t1").has_value());  // already gone: not an error
}

TEST_CASE("image_config reads the image's Env and WorkingDir", "[libpod][images][snapshot]") {
  FakeLibpodServer server;
  server.set_image_config("localhost/app:1", R"({"Env": ["PATH=/bin", "A=1=2"], "WorkingDir": "/srv"})");
  auto podman = make_libpod_client(server.socket_path());
  auto app = expect_value(podman->image_config("localhost/app:1"));
  CHECK(app.env == std::vector<std::string>{"PATH=/bin", "A=1=2"});
  CHECK(app.working_dir == "/srv");
}
