// Router: "METHOD /path/{param}" tables, 404 for unknown paths and 405 for wrong methods.

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "agent/router.h"

using namespace modbox;
using nlohmann::json;

namespace {

HttpRequest request(std::string method, std::string path) {
  HttpRequest request;
  request.method = std::move(method);
  request.path = std::move(path);
  return request;
}

/// A handler that answers with the name it was registered under and the path params it got.
HttpHandler answer(std::string name) {
  return [name](HttpRequest& request) {
    json params = request.path_params;
    return json_response(200, json{{"route", name}, {"params", params}}.dump());
  };
}

Router sandbox_router() {
  Router router;
  router.add("GET", "/sandboxes", answer("list"));
  router.add("POST", "/sandboxes/provision", answer("provision"));
  router.add("GET", "/sandboxes/{id}", answer("detail"));
  router.add("DELETE", "/sandboxes/{id}", answer("delete"));
  router.add("GET", "/workspaces/{workspace}/sandboxes/{id}", answer("scoped"));
  return router;
}

json dispatch(const Router& router, std::string method, std::string path, int expected_status) {
  HttpRequest incoming = request(std::move(method), std::move(path));
  HttpResponse response = router.dispatch(incoming);
  INFO("body: " << response.body);
  REQUIRE(response.status == expected_status);
  CHECK(response.content_type == "application/json");
  return json::parse(response.body);
}

}  // namespace

TEST_CASE("a literal path reaches its handler", "[router]") {
  Router router = sandbox_router();
  CHECK(dispatch(router, "GET", "/sandboxes", 200)["route"] == "list");
  CHECK(dispatch(router, "POST", "/sandboxes/provision", 200)["route"] == "provision");
}

TEST_CASE("placeholders fill the path params", "[router]") {
  Router router = sandbox_router();
  json detail = dispatch(router, "GET", "/sandboxes/abc-123", 200);
  CHECK(detail["route"] == "detail");
  CHECK(detail["params"] == json{{"id", "abc-123"}});
  json scoped = dispatch(router, "GET", "/workspaces/team-a/sandboxes/s1", 200);
  CHECK(scoped["params"] == json{{"workspace", "team-a"}, {"id", "s1"}});
}

TEST_CASE("a literal route registered first wins over a placeholder", "[router]") {
  Router router = sandbox_router();
  CHECK(dispatch(router, "POST", "/sandboxes/provision", 200)["route"] == "provision");
  CHECK(dispatch(router, "GET", "/sandboxes/provision", 200)["route"] == "detail");
}

TEST_CASE("the same path with another method reaches the other handler", "[router]") {
  Router router = sandbox_router();
  CHECK(dispatch(router, "DELETE", "/sandboxes/abc", 200)["route"] == "delete");
}

TEST_CASE("an unknown path is 404 with a detail sentence", "[router]") {
  Router router = sandbox_router();
  for (const char* path : {"/", "/nothing", "/sandboxes/a/b", "/workspaces/x/sandboxes"}) {
    INFO("path " << path);
    json body = dispatch(router, "GET", path, 404);
    CHECK(body["detail"].is_string());
  }
}

TEST_CASE("a known path with the wrong method is 405", "[router]") {
  Router router = sandbox_router();
  json body = dispatch(router, "PUT", "/sandboxes/abc", 405);
  CHECK(body["detail"].get<std::string>().find("PUT") != std::string::npos);
  dispatch(router, "DELETE", "/sandboxes", 405);
  dispatch(router, "GET", "/sandboxes/provision/", 200);  // a trailing slash is the same path
}

TEST_CASE("an empty router answers 404 to everything", "[router]") {
  Router router;
  dispatch(router, "GET", "/", 404);
}
