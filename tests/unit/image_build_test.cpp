// Images built from a Containerfile: the libpod build request (against the fake libpod service), the
// build service's registration and failure reports (against the fake Podman), the route's multipart
// reading and limits, and the tar writer the CLI uploads contexts with.

#include "agent/image_build.h"

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "agent/image_service.h"
#include "agent/router.h"
#include "agent/routes.h"
#include "common/output_events.h"
#include "common/tar_archive.h"
#include "tests/unit/fake_libpod_server.h"
#include "tests/unit/fakes.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using namespace modbox::testing;
using nlohmann::json;

namespace {

struct BuildHarness {
  TempDir dir;
  FakePodman podman;
  std::unique_ptr<ImageService> images = make_images();
  ImageBuildService builds{*images, podman};
  Router router;
  std::vector<std::string> shown;

  BuildHarness(std::uint64_t context_max = build_context_max_bytes) {
    std::filesystem::create_directories(dir / "spool");
    register_image_build_route(router, builds, dir / "spool", context_max);
  }

  std::unique_ptr<ImageService> make_images() {
    auto image_store = RecordStore::open(dir / "images");
    auto registries = RecordStore::open(dir / "registries");
    REQUIRE(image_store.has_value());
    REQUIRE(registries.has_value());
    auto made = std::make_unique<ImageService>(std::move(*image_store), std::move(*registries));
    REQUIRE(made->load().has_value());
    return made;
  }

  Result<SandboxImage> build(const std::string& name, std::optional<std::string> containerfile = "FROM base\n") {
    ImageBuildRequest request{.image = ImageCreateRequest{.name = name}, .containerfile = std::move(containerfile)};
    return builds.build(std::nullopt, request, [this](std::string_view line) {
      shown.emplace_back(line);
      return true;
    });
  }

  HttpResponse post(std::vector<std::pair<std::string, std::string>> parts, std::string query = "",
                    bool events = false) {
    auto body = std::make_shared<std::vector<std::pair<std::string, std::string>>>(std::move(parts));
    HttpRequest request;
    request.method = "POST";
    request.path = "/sandbox-images/build";
    if (!query.empty()) request.query = parse_query(query);
    if (events) request.headers["accept"] = "text/event-stream";
    request.read_multipart = [body](const MultipartPartHandler& on_part, const BodyChunkHandler& on_data) {
      for (const auto& [name, content] : *body) {
        if (!on_part(MultipartPart{name, name == "context" ? "context.tar" : "", ""})) return false;
        for (std::size_t at = 0; at < content.size(); at += 1000)
          if (!on_data(std::string_view(content).substr(at, 1000))) return false;
      }
      return true;
    };
    return router.dispatch(request);
  }

  std::size_t registered() const { return images->list(std::nullopt, false).size(); }
};

std::string streamed_body(HttpResponse& response) {
  std::string out;
  REQUIRE(response.stream);
  response.stream(0, 0, [&](std::string_view bytes) {
    out.append(bytes);
    return true;
  });
  return out;
}

}  // namespace

TEST_CASE("build_image posts the context as a tar to libpod's build and reads its stream", "[image_build][libpod]") {
  FakeLibpodServer server;
  TempDir dir;
  auto context = dir / "context.tar";
  std::ofstream(context) << "CONTEXT-BYTES";
  auto podman = make_libpod_client(server.socket_path());
  std::vector<std::string> lines;
  auto built = podman->build_image(BuildOptions{.context_prefix = "PREFIX-",
                                                .context_file = context,
                                                .containerfile = "sub/Containerfile",
                                                .reference = "localhost/modbox-build/app:1234"},
                                   [&](std::string_view line) {
                                     lines.emplace_back(line);
                                     return true;
                                   });
  REQUIRE(built.has_value());
  CHECK(*built == "3f9a0c1d2e3f4a5b6c7d8e9f");
  CHECK(lines == std::vector<std::string>{"STEP 1/2: FROM localhost/base", "STEP 2/2: RUN make", "compiled",
                                          "COMMIT localhost/modbox-build/app:1234", "3f9a0c1d2e3f4a5b6c7d8e9f"});
  auto request = server.last_request("POST", "/v4.0.0/libpod/build");
  REQUIRE(request);
  CHECK(request->content_type == "application/x-tar");
  CHECK(request->body == "PREFIX-CONTEXT-BYTES");
  CHECK(request->params["dockerfile"] == "sub/Containerfile");
  CHECK(request->params["t"] == "localhost/modbox-build/app:1234");
  CHECK(request->params["pullpolicy"] == "never");  // no registry is reachable: FROM must be local
  CHECK(request->params["layers"] == "false");      // a failed build leaves no layer behind
  CHECK(request->params["forcerm"] == "true");
}

TEST_CASE("build_image reports a failed step as bad_request with Podman's reason", "[image_build][libpod]") {
  FakeLibpodServer server;
  server.set_build_answer(
      {R"({"stream":"STEP 1/2: FROM localhost/base\n"})", R"({"stream":"STEP 2/2: RUN false\n"})",
       R"({"errorDetail":{"message":"x"},"error":"building at STEP \"RUN false\": exit status 1\n"})"});
  auto podman = make_libpod_client(server.socket_path());
  std::vector<std::string> lines;
  auto built = podman->build_image(BuildOptions{.context_prefix = tar_end(), .reference = "localhost/x:1"},
                                   [&](std::string_view line) {
                                     lines.emplace_back(line);
                                     return true;
                                   });
  REQUIRE_FALSE(built.has_value());
  CHECK(built.error().kind == ErrorKind::bad_request);
  CHECK(built.error().message == "building at STEP \"RUN false\": exit status 1");
  CHECK(lines.size() == 2);
}

TEST_CASE("a build is registered under localhost/modbox-build with the request's fields", "[image_build]") {
  BuildHarness harness;
  harness.podman.set_build({"STEP 1/1: FROM base", "COMMIT"}, std::nullopt);
  auto built = harness.build("My App!");
  REQUIRE(built.has_value());
  CHECK(built->name == "My App!");
  CHECK(built->image == "localhost/modbox-build/my-app");
  CHECK(is_uuid(built->tag));
  CHECK(!built->workspace_id);
  CHECK(harness.shown == std::vector<std::string>{"STEP 1/1: FROM base", "COMMIT"});
  auto builds = harness.podman.builds();
  REQUIRE(builds.size() == 1);
  CHECK(builds[0].reference == built->image + ":" + built->tag);
  // The Containerfile sent apart goes first in the tar, and the archive ends (no context).
  CHECK(builds[0].containerfile == build_containerfile_entry);
  CHECK(builds[0].context_prefix == tar_file_entry(build_containerfile_entry, "FROM base\n") + tar_end());
}

TEST_CASE("a failed build names the step and its output, registers nothing and removes its image", "[image_build]") {
  BuildHarness harness;
  std::size_t before = harness.registered();
  harness.podman.set_build({"STEP 1/2: FROM base", "STEP 2/2: RUN make", "cc: error: no input files", ""},
                           Error{ErrorKind::bad_request, "building at STEP \"RUN make\": exit status 1", {}});
  auto built = harness.build("broken");
  REQUIRE_FALSE(built.has_value());
  CHECK(built.error().kind == ErrorKind::bad_request);
  CHECK(built.error().message ==
        "the build failed at STEP 2/2: RUN make (building at STEP \"RUN make\": exit status 1); its last output:\n"
        "cc: error: no input files");
  CHECK(harness.registered() == before);
  CHECK(harness.podman.removed_images() == std::vector<std::string>{harness.podman.builds()[0].reference});
}

TEST_CASE("a taken name is 409 before anything is built; Podman down stays 503", "[image_build]") {
  BuildHarness harness;
  REQUIRE(harness.build("app").has_value());
  auto again = harness.build("app");
  REQUIRE_FALSE(again.has_value());
  CHECK(again.error().kind == ErrorKind::conflict);
  CHECK(harness.podman.builds().size() == 1);
  harness.podman.set_down(true);
  auto down = harness.build("other");
  REQUIRE_FALSE(down.has_value());
  CHECK(down.error().kind == ErrorKind::unavailable);
}

TEST_CASE("POST /sandbox-images/build reads the multipart parts and answers 201", "[image_build][routes]") {
  BuildHarness harness;
  std::string context = tar_file_entry("hello.txt", "hi\n") + tar_end();
  auto response = harness.post({{"image", R"({"name": "web", "memory_mb": 512})"}, {"context", context}},
                               "file=docker/Containerfile");
  INFO(response.body);
  REQUIRE(response.status == 201);
  json image = json::parse(response.body);
  CHECK(image["name"] == "web");
  CHECK(image["memory_mb"] == 512);
  auto builds = harness.podman.builds();
  REQUIRE(builds.size() == 1);
  CHECK(builds[0].containerfile == "docker/Containerfile");
  CHECK(builds[0].context_prefix.empty());
  // The spooled context is gone once the build is over.
  CHECK(std::filesystem::is_empty(harness.dir / "spool"));
}

TEST_CASE("POST /sandbox-images/build streams the output, then the image or the error", "[image_build][routes]") {
  BuildHarness harness;
  harness.podman.set_build({"STEP 1/1: FROM base"}, std::nullopt);
  auto response = harness.post({{"image", R"({"name": "streamed"})"}, {"containerfile", "FROM base\n"}}, "", true);
  REQUIRE(response.status == 200);
  CHECK(response.content_type == "text/event-stream");
  std::string events = streamed_body(response);
  CHECK(events.starts_with(event_text("output", build_output_event_data("STEP 1/1: FROM base"))));
  CHECK(events.find("event: image\ndata: {") != std::string::npos);

  harness.podman.set_build({"STEP 1/1: RUN false"}, Error{ErrorKind::bad_request, "exit status 1", {}});
  auto failed = harness.post({{"image", R"({"name": "failing"})"}, {"containerfile", "FROM base\n"}}, "", true);
  std::string failure = streamed_body(failed);
  EventReader reader;
  reader.feed(failure);
  std::optional<EventReader::Event> last;
  while (auto event = reader.next()) last = event;
  REQUIRE(last);
  CHECK(last->name == "error");
  Error error = build_error_from_event(last->data);
  CHECK(error.kind == ErrorKind::bad_request);
  CHECK(error.message == "the build failed at STEP 1/1: RUN false (exit status 1)");
}

TEST_CASE("POST /sandbox-images/build refuses bad input with 4xx and builds nothing", "[image_build][routes]") {
  BuildHarness harness(4096);
  auto status_of = [&](std::vector<std::pair<std::string, std::string>> parts, std::string query = "") {
    auto response = harness.post(std::move(parts), std::move(query));
    INFO(response.body);
    return std::pair{response.status, response.body};
  };
  CHECK(status_of({{"containerfile", "FROM base\n"}}).first == 422);  // no image part
  auto bad_name = status_of({{"image", R"({"name": ""})"}, {"containerfile", "FROM base\n"}});
  CHECK(bad_name.first == 422);
  CHECK(bad_name.second.find(R"(["body","name"])") != std::string::npos);
  auto repository = status_of({{"image", R"({"name": "a", "image": "x/y"})"}, {"containerfile", "FROM b\n"}});
  CHECK(repository.first == 422);
  CHECK(repository.second.find(R"(["body","image"])") != std::string::npos);
  CHECK(status_of({{"image", R"({"name": "a"})"}}).first == 422);  // neither context nor containerfile
  CHECK(status_of({{"image", R"({"name": "a"})"}, {"containerfile", "FROM b\n"}}, "file=../x").first == 422);
  auto too_large = status_of({{"image", R"({"name": "a"})"}, {"context", std::string(5000, 'x')}});
  CHECK(too_large.first == 413);
  CHECK(status_of({{"image", R"({"name": "a"})"}, {"containerfile", "FROM b\n"}, {"context", "\x1f\x8b rest"}}).first ==
        400);
  HttpRequest plain;
  plain.method = "POST";
  plain.path = "/sandbox-images/build";
  plain.body = "{}";
  CHECK(harness.router.dispatch(plain).status == 400);
  CHECK(harness.podman.builds().empty());
  CHECK(std::filesystem::is_empty(harness.dir / "spool"));
}

TEST_CASE("tar_directory archives files, directories and links that tar reads back", "[image_build][tar]") {
  TempDir dir;
  std::filesystem::create_directories(dir / "ctx/sub");
  std::ofstream(dir / "ctx/hello.txt") << "hello\n";
  std::string long_name(120, 'n');
  std::ofstream(dir / ("ctx/sub/" + long_name)) << "long\n";
  std::filesystem::create_symlink("hello.txt", dir / "ctx/link");
  auto archive = tar_directory(dir / "ctx", 1 << 20);
  REQUIRE(archive.has_value());
  CHECK(archive->size() % 512 == 0);
  std::ofstream(dir / "ctx.tar", std::ios::binary) << *archive;
  std::filesystem::create_directories(dir / "out");
  std::string command = "tar -xf '" + (dir / "ctx.tar").string() + "' -C '" + (dir / "out").string() + "'";
  REQUIRE(std::system(command.c_str()) == 0);
  CHECK(read_file(dir / "out/hello.txt").value_or("") == "hello\n");
  CHECK(read_file(dir / ("out/sub/" + long_name)).value_or("") == "long\n");
  CHECK(std::filesystem::read_symlink(dir / "out/link") == "hello.txt");

  auto too_large = tar_directory(dir / "ctx", 1000);
  REQUIRE_FALSE(too_large.has_value());
  CHECK(too_large.error().kind == ErrorKind::too_large);
}
