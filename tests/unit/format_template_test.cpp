// `--format TEMPLATE`: fields by the API's JSON names, nested with dots, a line per item.

#include "cli/format_template.h"

#include <catch2/catch.hpp>

using namespace modbox;

namespace {

std::string render(const std::string& text, const std::string& json) {
  auto parsed = FormatTemplate::parse(text);
  INFO(text << ": " << (parsed ? "" : parsed.error().message));
  REQUIRE(parsed.has_value());
  auto rendered = parsed->render(json);
  INFO(json << ": " << (rendered ? "" : rendered.error().message));
  REQUIRE(rendered.has_value());
  return *rendered;
}

std::string parse_error(const std::string& text) {
  auto parsed = FormatTemplate::parse(text);
  REQUIRE_FALSE(parsed.has_value());
  CHECK(parsed.error().kind == ErrorKind::bad_request);
  return parsed.error().message;
}

const std::string sandboxes = R"([
  {"name": "web", "status": "running", "ports": [8000, 5173], "port_urls": {"8000": "http://127.0.0.1:40001"},
   "readiness": {"phase": "ready", "attempts": 3}, "tags": {"team": "ml"}, "exit_code": null, "api_key_set": true},
  {"name": "job", "status": "destroyed", "ports": [], "port_urls": {}, "readiness": {"phase": "none"},
   "tags": {}, "exit_code": 3, "api_key_set": false}
])";

}  // namespace

TEST_CASE("a format template prints a line per item, fields by their JSON names", "[cli][format]") {
  CHECK(render("{{.name}} {{.status}}", sandboxes) == "web running\njob destroyed\n");
  CHECK(render("{{ .name }}", sandboxes) == "web\njob\n");
  CHECK(render("name={{.name}}", R"({"name": "one"})") == "name=one\n");  // one object: one line
  CHECK(render("{{.name}}", "[]").empty());

  SECTION("nested fields, array elements and values that are not strings") {
    CHECK(render("{{.readiness.phase}}/{{.readiness.attempts}}", sandboxes) == "ready/3\nnone/\n");
    CHECK(render("{{.port_urls.8000}}", sandboxes) == "http://127.0.0.1:40001\n\n");
    CHECK(render("{{.ports.1}}", sandboxes) == "5173\n\n");
    CHECK(render("{{.api_key_set}} {{.exit_code}}", sandboxes) == "true \nfalse 3\n");
    CHECK(render("{{.tags}}", sandboxes) == "{\"team\":\"ml\"}\n{}\n");
    CHECK(render("{{json .name}} {{json .exit_code}}", sandboxes) == "\"web\" null\n\"job\" 3\n");
    CHECK(render("{{.}}", R"([{"a":1}])") == "{\"a\":1}\n");
  }
  SECTION("a field the item lacks prints nothing") {
    CHECK(render("[{{.nothing}}] [{{.readiness.nothing.deeper}}]", sandboxes) == "[] []\n[] []\n");
  }
  SECTION("escapes in the text") {
    CHECK(render("{{.name}}\\t{{.status}}", sandboxes) == "web\trunning\njob\tdestroyed\n");
    CHECK(render("{{.name}}\\n", R"({"name":"x"})") == "x\n\n");
    CHECK(render("a\\\\t\\q", "{}") == "a\\t\\q\n");
  }
  SECTION("a field inside a string or a number is an error that names it") {
    auto parsed = FormatTemplate::parse("{{.name.first}}");
    REQUIRE(parsed.has_value());
    auto rendered = parsed->render(sandboxes);
    REQUIRE_FALSE(rendered.has_value());
    CHECK(rendered.error().kind == ErrorKind::bad_request);
    CHECK(rendered.error().message == "--format: {{.name.first}}: .name is a string, which has no field 'first'");
  }
}

TEST_CASE("a format template that does not parse says what is wrong", "[cli][format]") {
  CHECK(parse_error("{{.name} x").starts_with("'{{' at character 1 has no closing '}}'"));
  CHECK(parse_error("{{name}}").starts_with("'{{name}}' is not a field: fields are written {{.name}}"));
  CHECK(parse_error("{{.a..b}}").starts_with("'{{.a..b}}' is not a field"));
  CHECK(parse_error("{{json}}").starts_with("'{{json}}' is not a field"));
  CHECK(parse_error("{{ range .x }}").starts_with("'{{ range .x }}' is not a field"));
  CHECK(FormatTemplate::parse("no actions at all").has_value());
}
