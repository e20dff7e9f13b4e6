// The sandbox URL's routes over fake helpers: auth before anything, the upload's multipart
// handling (limits, duplicate parts, missing file, drained overflow) and the name, header and
// type helpers.

#include "agent/sandbox_api.h"

#include <catch2/catch.hpp>

#include "agent/file_names.h"
#include "tests/unit/service_harness.h"

using namespace modbox;
using namespace modbox::testing;

namespace {

/// A multipart body handed to the route in pieces, as the HTTP server streams it.
struct FakeMultipart {
  struct Part {
    MultipartPart header;
    std::string content;
  };
  std::vector<Part> parts;
  std::size_t piece = 1 << 20;
  bool cut_off = false;  // the client stopped sending: the reader reports failure
  std::uint64_t delivered = 0;

  MultipartReader reader() {
    return [this](const MultipartPartHandler& on_part, const BodyChunkHandler& on_data) {
      for (const auto& part : parts) {
        if (!on_part(part.header)) return false;
        for (std::size_t at = 0; at < part.content.size(); at += piece) {
          auto bytes = std::string_view(part.content).substr(at, piece);
          delivered += bytes.size();
          if (!on_data(bytes)) return false;
        }
      }
      return !cut_off;
    };
  }
};

struct ApiHarness {
  ServiceHarness harness;
  SandboxApi api{*harness.service, "owner-token"};
  Sandbox sandbox = harness.provision_running("files", std::nullopt, std::nullopt, {{"SANDBOX_API_KEY", "k1"}});

  std::filesystem::path socket() { return harness.service->helper_access(sandbox)->socket; }
  HttpResponse call(HttpRequest request, const std::string& key = "k1") {
    if (!key.empty()) request.headers["authorization"] = "Bearer " + key;
    return api.serve(sandbox.id, request);
  }
  HttpResponse upload(FakeMultipart& body, const std::string& key = "k1") {
    HttpRequest request{.method = "POST", .path = "/modbox/api/files/upload"};
    request.read_multipart = body.reader();
    return call(request, key);
  }
};

}  // namespace

TEST_CASE("sandbox API: an upload is stored and answered with the seed's fields", "[sandbox-api]") {
  ApiHarness api;
  FakeMultipart body{{{{"note", "", ""}, "ignored field"}, {{"file", "dir/../report.csv", "text/csv"}, "a,b\n1,2\n"}}};
  auto response = api.upload(body);
  INFO(response.body);
  REQUIRE(response.status == 200);
  auto stored = uploaded_file_from_json(response.body);
  REQUIRE(stored.has_value());
  CHECK(stored->filename == "1000-report.csv");
  CHECK(stored->original_name == "report.csv");
  CHECK(stored->size == 8);
  CHECK(stored->mimetype == "text/csv");
  CHECK_FALSE(response.close_connection);
  CHECK(api.harness.helpers.file(api.socket(), "1000-report.csv") == "a,b\n1,2\n");
}

TEST_CASE("sandbox API: auth comes first, with the sandbox's key or the owner's token", "[sandbox-api]") {
  ApiHarness api;
  FakeMultipart body{{{{"file", "x.txt", ""}, "x"}}};
  auto refused = api.upload(body, "wrong");
  CHECK(refused.status == 401);
  CHECK(body.delivered == 0);       // the body was never read...
  CHECK(refused.close_connection);  // ...so the connection cannot carry another request
  CHECK(api.call({.method = "GET", .path = "/modbox/api/files"}, "owner-token").status == 200);
  CHECK(api.call({.method = "GET", .path = "/modbox/api/files"}, "").status == 401);
  CHECK(api.call({.method = "GET", .path = "/elsewhere"}).status == 404);
}

TEST_CASE("sandbox API: credentials are checked from the headers alone, before a body is sent", "[sandbox-api]") {
  ApiHarness api;
  HttpRequest request{.method = "POST", .path = "/modbox/api/files/upload"};
  request.headers["authorization"] = "Bearer wrong";
  auto refused = api.api.precheck(api.sandbox.id, request);
  REQUIRE(refused.has_value());
  CHECK(refused->status == 401);
  request.headers["authorization"] = "Bearer k1";
  CHECK_FALSE(api.api.precheck(api.sandbox.id, request).has_value());
  request.headers["authorization"] = "Bearer owner-token";
  CHECK_FALSE(api.api.precheck(api.sandbox.id, request).has_value());
  // Paths outside the API are not the precheck's business.
  CHECK_FALSE(api.api.precheck(api.sandbox.id, HttpRequest{.method = "POST", .path = "/upload"}).has_value());
}

TEST_CASE("sandbox API: uploads over 50 MiB are refused and abandoned, the overflow drained", "[sandbox-api]") {
  ApiHarness api;
  FakeMultipart body{{{{"file", "big.bin", ""}, std::string(limits::upload_max_bytes + 1, 'x')}}};
  auto response = api.upload(body);
  CHECK(response.status == 413);
  CHECK(response.body.find("50 MiB") != std::string::npos);
  // Read to the end so the client can read the answer; nothing stored.
  CHECK(body.delivered == limits::upload_max_bytes + 1);
  CHECK_FALSE(response.close_connection);
  CHECK(api.harness.helpers.list(api.socket(), {})->empty());
}

TEST_CASE("sandbox API: a body far over the limit is not drained forever", "[sandbox-api]") {
  ApiHarness api;
  FakeMultipart body{{{{"file", "huge.bin", ""}, std::string(limits::upload_request_max_bytes + (20 << 20), 'x')}}};
  auto response = api.upload(body);
  CHECK(response.status == 413);
  CHECK(body.delivered < limits::upload_request_max_bytes + (20 << 20));
  CHECK(response.close_connection);
}

TEST_CASE("sandbox API: malformed uploads get a 400 that says what to send", "[sandbox-api]") {
  ApiHarness api;
  SECTION("no file field") {
    FakeMultipart body{{{{"other", "x.txt", ""}, "x"}}};
    auto response = api.upload(body);
    CHECK(response.status == 400);
    CHECK(response.body.find("field named 'file'") != std::string::npos);
  }
  SECTION("two files") {
    FakeMultipart body{{{{"file", "a.txt", ""}, "a"}, {{"file", "b.txt", ""}, "b"}}};
    CHECK(api.upload(body).status == 400);
  }
  SECTION("a name that reduces to nothing") {
    FakeMultipart body{{{{"file", "a/..", ""}, "a"}}};
    CHECK(api.upload(body).status == 400);
  }
  SECTION("a body cut off") {
    FakeMultipart body{{{{"file", "a.txt", ""}, "a"}}, 1 << 20, true};
    auto response = api.upload(body);
    CHECK(response.status == 400);
    CHECK(response.close_connection);
  }
  SECTION("not multipart at all") {
    HttpRequest request{.method = "POST", .path = "/modbox/api/files/upload", .body = "{}"};
    CHECK(api.call(request).status == 400);
  }
  CHECK(api.harness.helpers.list(api.socket(), {})->empty());
}

TEST_CASE("sandbox API: download, list and delete over the helper", "[sandbox-api]") {
  ApiHarness api;
  FakeMultipart body{{{{"file", "page.html", "application/octet-stream"}, "<p>hi</p>"}}};
  REQUIRE(api.upload(body).status == 200);
  auto download = api.call({.method = "GET", .path = "/modbox/api/files/download/1000-page.html"});
  REQUIRE(download.status == 200);
  CHECK(download.content_type == "text/html");
  CHECK(download.headers["X-Content-Type-Options"] == "nosniff");
  REQUIRE(download.stream);
  CHECK(download.stream_length == 9);
  std::string streamed;
  CHECK(download.stream(0, 9, [&](std::string_view bytes) {
    streamed += bytes;
    return true;
  }));
  CHECK(streamed == "<p>hi</p>");
  // One range is served as a 206 and streamed cut to it; anything else is 416.
  HttpRequest ranged{.method = "GET", .path = "/modbox/api/files/download/1000-page.html"};
  ranged.headers["range"] = "bytes=3-5";
  auto partial = api.call(ranged);
  CHECK(partial.status == 206);
  std::string part;
  CHECK(partial.stream(3, 3, [&](std::string_view bytes) {
    part += bytes;
    return true;
  }));
  CHECK(part == "hi<");
  for (const char* range : {"bytes=0-1,3-4", "bytes=9-", "bytes=2-100", "bytes=5-2", "bytes=-0", "lines=1-2", "bytes=x-1"}) {
    ranged.headers["range"] = range;
    auto refused = api.call(ranged);
    INFO(range);
    CHECK(refused.status == 416);
    CHECK(refused.headers["Content-Range"] == "bytes */9");
  }
  ranged.headers["range"] = "bytes=-4";
  CHECK(api.call(ranged).status == 206);
  auto listed = uploaded_files_from_json(api.call({.method = "GET", .path = "/modbox/api/files"}).body);
  REQUIRE(listed.has_value());
  REQUIRE(listed->size() == 1);
  CHECK(listed->at(0).original_name == "page.html");
  CHECK(api.call({.method = "DELETE", .path = "/modbox/api/files/1000-page.html"}).status == 200);
  CHECK(api.call({.method = "DELETE", .path = "/modbox/api/files/1000-page.html"}).status == 404);
  CHECK(api.call({.method = "PUT", .path = "/modbox/api/files/1000-page.html"}).status == 405);
}

TEST_CASE("upload names become safe basenames", "[sandbox-api]") {
  CHECK(safe_upload_name("script.py").value() == "script.py");
  CHECK(safe_upload_name("../../etc/passwd").value() == "passwd");
  CHECK(safe_upload_name("C:\\Users\\me\\data.csv").value() == "data.csv");
  CHECK(safe_upload_name(std::string("a\0b\r\nc.txt", 10)).value() == "abc.txt");
  CHECK(safe_upload_name("name with spaces & ünïcode.txt").value() == "name with spaces & ünïcode.txt");
  for (std::string_view bad : {"", ".", "..", "dir/", "a/..", "\r\n"}) {
    INFO(bad);
    CHECK_FALSE(safe_upload_name(bad).has_value());
  }
  CHECK_FALSE(safe_upload_name(std::string(300, 'a')).has_value());
}

TEST_CASE("Content-Disposition carries any name without breaking out", "[sandbox-api]") {
  CHECK(attachment_disposition("a.txt") == "attachment; filename=\"a.txt\"; filename*=UTF-8''a.txt");
  auto tricky = attachment_disposition("x\"; y=\\\r\nSet-Cookie: z ü");
  CHECK(tricky.find('\r') == std::string::npos);
  CHECK(tricky.find('\n') == std::string::npos);
  CHECK(tricky.find("filename=\"x_; y=___Set-Cookie: z __\"") != std::string::npos);
  CHECK(tricky.find("filename*=UTF-8''x%22%3B%20y%3D%5C%0D%0ASet-Cookie%3A%20z%20%C3%BC") != std::string::npos);
}

TEST_CASE("MIME types and original names come from the stored name", "[sandbox-api]") {
  CHECK(mime_type_for("1-a.PY") == "text/x-python");
  CHECK(mime_type_for("archive.tar.gz") == "application/gzip");
  CHECK(mime_type_for("noextension") == "application/octet-stream");
  CHECK(mime_type_for("trailingdot.") == "application/octet-stream");
  CHECK(original_name_of("1748000000000-script.py") == "script.py");
  CHECK(original_name_of("1748000000000-with-dash.txt") == "with-dash.txt");
  CHECK(original_name_of("plain.txt") == "plain.txt");
  CHECK(original_name_of("abc-def") == "abc-def");
}
