// The images and registries models: validation into FastAPI-shaped errors, the OCI reference rules,
// and the JSON views (every field of seeds/003's SandboxImageDetail; never a registry secret).

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/image_models.h"
#include "common/registry_models.h"

using namespace modbox;
using nlohmann::json;

namespace {

/// The locations of a validation error, joined: {"body.memory_mb", ...}.
std::vector<std::string> error_locations(const Error& error) {
  std::vector<std::string> locations;
  for (const auto& field : error.fields) {
    std::string where;
    for (const auto& part : field.loc) where += (where.empty() ? "" : ".") + part;
    locations.push_back(where);
  }
  return locations;
}

template <class T>
std::vector<std::string> rejected(const Result<T>& result) {
  REQUIRE_FALSE(result.has_value());
  REQUIRE(result.error().kind == ErrorKind::validation);
  return error_locations(result.error());
}

}  // namespace

TEST_CASE("an image create body takes the schema's defaults", "[images][models]") {
  auto request = parse_image_create_request(R"({"name": "Py", "image": "ghcr.io/org/py"})");
  REQUIRE(request.has_value());
  CHECK(request->name == "Py");
  CHECK(request->image == "ghcr.io/org/py");
  CHECK(request->tag == "latest");
  CHECK(request->enabled);
  CHECK_FALSE(request->is_default);
  CHECK(request->memory_mb == 1024);
  CHECK_FALSE(request->description.has_value());
  CHECK_FALSE(request->readiness_port.has_value());
  CHECK_FALSE(request->ttl_seconds.has_value());
  CHECK_FALSE(request->registry_id.has_value());

  auto nulls = parse_image_create_request(
      R"({"name": "Py", "image": "py", "description": null, "readiness_port": null, "ttl_seconds": null, "registry_id": null})");
  REQUIRE(nulls.has_value());
  CHECK_FALSE(nulls->ttl_seconds.has_value());
}

TEST_CASE("an invalid image create body is a 422 naming each field", "[images][models][validation]") {
  struct Case {
    std::string body;
    std::vector<std::string> locations;
  };
  const std::vector<Case> cases = {
      {R"({})", {"body.name", "body.image"}},
      {R"({"name": "x"})", {"body.image"}},
      {R"({"image": "x"})", {"body.name"}},
      {R"({"name": "", "image": "x"})", {"body.name"}},
      {R"({"name": 5, "image": "x"})", {"body.name"}},
      {R"({"name": "x", "image": "x", "memory_mb": 255})", {"body.memory_mb"}},
      {R"({"name": "x", "image": "x", "memory_mb": 8193})", {"body.memory_mb"}},
      {R"({"name": "x", "image": "x", "memory_mb": "1024"})", {"body.memory_mb"}},
      {R"({"name": "x", "image": "x", "memory_mb": null})", {"body.memory_mb"}},
      {R"({"name": "x", "image": "x", "ttl_seconds": 59})", {"body.ttl_seconds"}},
      {R"({"name": "x", "image": "x", "ttl_seconds": 86401})", {"body.ttl_seconds"}},
      {R"({"name": "x", "image": "x", "readiness_port": 0})", {"body.readiness_port"}},
      {R"({"name": "x", "image": "x", "readiness_port": 65536})", {"body.readiness_port"}},
      {R"({"name": "x", "image": "Upper/Case"})", {"body.image"}},
      {R"({"name": "x", "image": "ghcr.io/org/app:1.0"})", {"body.image"}},
      {R"({"name": "x", "image": "app@sha256:abc"})", {"body.image"}},
      {R"({"name": "x", "image": "https://ghcr.io/org/app"})", {"body.image"}},
      {R"({"name": "x", "image": "bad_host:99999/app"})", {"body.image"}},
      {R"({"name": "x", "image": "a//b"})", {"body.image"}},
      {R"({"name": "x", "image": "x", "tag": ""})", {"body.tag"}},
      {R"({"name": "x", "image": "x", "tag": "-dash"})", {"body.tag"}},
      {R"({"name": "x", "image": "x", "tag": "has space"})", {"body.tag"}},
      {R"({"name": "x", "image": "x", "tag": null})", {"body.tag"}},
      {R"({"name": "x", "image": "x", "enabled": "yes"})", {"body.enabled"}},
      {R"({"name": "x", "image": "x", "registry_id": "not-a-uuid"})", {"body.registry_id"}},
      {R"({"name": "x", "image": "x", "memory_mb": 100, "ttl_seconds": 1})", {"body.memory_mb", "body.ttl_seconds"}},
  };
  for (const auto& item : cases) {
    INFO("body: " << item.body);
    CHECK(rejected(parse_image_create_request(item.body)) == item.locations);
  }
  CHECK(rejected(parse_image_create_request("not json")) == std::vector<std::string>{"body"});
  CHECK(rejected(parse_image_create_request("[]")) == std::vector<std::string>{"body"});
}

TEST_CASE("image repositories and tags follow the OCI reference grammar", "[images][models]") {
  for (const char* valid : {"python", "library/python", "ghcr.io/org/app", "127.0.0.1:5000/team/app",
                            "localhost/modbox/sandbox-lite", "registry.example.com:443/a/b/c", "a/b-c__d/e--f.g_h",
                            "[::1]:5000/app"}) {
    INFO(valid);
    CHECK_FALSE(check_image_repository(valid, {"body", "image"}).has_value());
  }
  for (const char* invalid : {"", "UPPER", "app:tag", "ghcr.io/app:1", "-lead", "trail-", "a..b", "a/", "/a",
                              "host:port/app", "ex ample/app"}) {
    INFO(invalid);
    CHECK(check_image_repository(invalid, {"body", "image"}).has_value());
  }
  CHECK_FALSE(check_image_tag("v2.1.0", {"body", "tag"}).has_value());
  CHECK_FALSE(check_image_tag("_x", {"body", "tag"}).has_value());
  CHECK(check_image_tag(std::string(129, 'a'), {"body", "tag"}).has_value());
  CHECK(check_image_tag(".x", {"body", "tag"}).has_value());
}

TEST_CASE("an image reference is what Podman runs", "[images][models]") {
  SandboxImage image{.image = "ghcr.io/org/app", .tag = "main"};
  CHECK(image_reference(image) == "ghcr.io/org/app:main");
  image.image = "python";
  CHECK(image_reference(image) == "docker.io/library/python:main");
  image.image = "org/app";
  CHECK(image_reference(image) == "docker.io/org/app:main");
  image.image = "localhost/mine";
  CHECK(image_reference(image) == "localhost/mine:main");
  image = SandboxImage{.image = "modbox/code-exec", .builtin = true};
  CHECK(image_reference(image) == "localhost/modbox/code-exec:latest");

  CHECK(registry_host_of("127.0.0.1:5000/team/app") == "127.0.0.1:5000");
  CHECK(registry_host_of("ghcr.io/org/app") == "ghcr.io");
  CHECK(registry_host_of("org/app") == "docker.io");
  CHECK(registry_host_of("index.docker.io/org/app") == "docker.io");
  CHECK(registry_host_of("localhost/app") == "localhost");
}

TEST_CASE("an image update changes only the fields given; null clears a nullable one", "[images][models]") {
  auto update = parse_image_update_request(R"({"tag": "v2.1.0", "memory_mb": 2048, "enabled": true})");
  REQUIRE(update.has_value());
  CHECK(update->tag == "v2.1.0");
  CHECK(update->memory_mb == 2048);
  CHECK(update->enabled == true);
  CHECK_FALSE(update->ttl_seconds.has_value());
  CHECK_FALSE(update->name.has_value());

  auto clear = parse_image_update_request(R"({"ttl_seconds": null, "readiness_port": 8080, "registry_id": null})");
  REQUIRE(clear.has_value());
  REQUIRE(clear->ttl_seconds.has_value());
  CHECK_FALSE(clear->ttl_seconds->has_value());
  CHECK(clear->readiness_port == std::optional<std::optional<int>>(8080));
  REQUIRE(clear->registry_id.has_value());
  CHECK_FALSE(clear->registry_id->has_value());

  CHECK(parse_image_update_request("{}")->empty());
  CHECK(rejected(parse_image_update_request(R"({"memory_mb": 9000, "tag": null, "enabled": null})")) ==
        std::vector<std::string>{"body.tag", "body.enabled", "body.memory_mb"});

  auto round_trip = parse_image_update_request(image_update_request_to_json(*clear));
  REQUIRE(round_trip.has_value());
  CHECK(round_trip->ttl_seconds == clear->ttl_seconds);
  CHECK(round_trip->readiness_port == clear->readiness_port);
  CHECK(round_trip->registry_id == clear->registry_id);
}

TEST_CASE("enabled_only reads booleans as FastAPI does", "[images][models]") {
  CHECK(parse_enabled_only_query("true") == true);
  CHECK(parse_enabled_only_query("1") == true);
  CHECK(parse_enabled_only_query("False") == false);
  CHECK(parse_enabled_only_query("off") == false);
  auto bad = parse_enabled_only_query("maybe");
  REQUIRE_FALSE(bad.has_value());
  CHECK(error_locations(bad.error()) == std::vector<std::string>{"query.enabled_only"});
}

TEST_CASE("the image view has every field of SandboxImageDetail, with nulls", "[images][models][json]") {
  SandboxImage image{.id = "46e5ebb3-953e-4ab0-97d9-d5df69c87a82", .name = "n", .image = "i"};
  json view = json::parse(image_to_json(image));
  // seeds/003: required fields, and the nullable ones present as null rather than missing.
  for (const char* field : {"created_at", "description", "enabled", "id", "image", "is_default", "memory_mb", "name",
                            "tag", "updated_at", "readiness_port", "registry_id", "registry_name", "ttl_seconds",
                            "workspace_id"})
    CHECK(view.contains(field));
  CHECK(view["description"].is_null());
  CHECK(view["workspace_id"].is_null());
  CHECK(view["memory_mb"] == 1024);
  CHECK(view["tag"] == "latest");
  CHECK_FALSE(view.contains("builtin"));

  image.builtin = true;
  image.registry_name = "not stored";
  auto restored = image_record_from_json(image_record_to_json(image));
  REQUIRE(restored.has_value());
  CHECK(restored->builtin);
  CHECK_FALSE(restored->registry_name.has_value());
  CHECK(restored->id == image.id);
}

TEST_CASE("a registry create body needs a server and exactly one secret", "[registries][models][validation]") {
  auto request = parse_registry_create_request(
      R"({"name": "r", "server": "https://127.0.0.1:5000/", "username": "u", "password": "p"})");
  REQUIRE(request.has_value());
  CHECK(request->server == "127.0.0.1:5000");
  CHECK(request->password == "p");
  CHECK(parse_registry_create_request(R"({"name": "r", "server": "ghcr.io", "token": "t"})").has_value());

  CHECK(rejected(parse_registry_create_request(R"({"name": "r", "server": "ghcr.io"})")) ==
        std::vector<std::string>{"body.password"});
  CHECK(rejected(parse_registry_create_request(R"({"name": "r", "server": "ghcr.io", "password": "p"})")) ==
        std::vector<std::string>{"body.username"});
  CHECK(rejected(parse_registry_create_request(
            R"({"name": "r", "server": "ghcr.io", "username": "u", "password": "p", "token": "t"})")) ==
        std::vector<std::string>{"body.token"});
  CHECK(rejected(parse_registry_create_request(R"({"name": "r", "server": "not a host", "token": "t"})")) ==
        std::vector<std::string>{"body.server"});
  CHECK(rejected(parse_registry_create_request(R"({"server": "ghcr.io", "token": ""})")) ==
        std::vector<std::string>{"body.name", "body.token"});
  CHECK(rejected(parse_registry_create_request(R"({"name": "r", "server": "ghcr.io", "token": "a\nb"})")) ==
        std::vector<std::string>{"body.token"});
}

TEST_CASE("a registry's secret is in its record and in no API view", "[registries][models][json]") {
  Registry registry{.id = "6ad94770-100a-4342-b306-b852b2167ac8", .name = "r", .server = "ghcr.io",
                    .username = "u", .password = "hunter2-secret"};
  std::string view = registry_to_json(registry);
  CHECK(view.find("hunter2-secret") == std::string::npos);
  CHECK(json::parse(view)["auth_type"] == "password");
  CHECK(registries_to_json({registry}).find("hunter2-secret") == std::string::npos);

  auto restored = registry_record_from_json(registry_record_to_json(registry));
  REQUIRE(restored.has_value());
  CHECK(restored->password == "hunter2-secret");
  CHECK(restored->username == "u");

  CHECK(registry_skips_tls_verify(Registry{.server = "127.0.0.1:5000"}));
  CHECK(registry_skips_tls_verify(Registry{.server = "localhost:5000"}));
  CHECK_FALSE(registry_skips_tls_verify(Registry{.server = "ghcr.io"}));
  CHECK(registry_skips_tls_verify(Registry{.server = "ghcr.io", .insecure = true}));
}
