// The files API behind a sandbox URL, against the real agent and real (rootless) Podman, driven
// with curl as users drive it: round trips, the 50 MiB limit with and without Content-Length,
// unsafe names, symlinks and FIFOs planted in the sandbox, auth on every route, the agent's
// memory during large transfers, and the CLI.

#include <catch2/catch.hpp>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include "common/system.h"
#include "tests/integration/harness.h"

using namespace modbox::test;

namespace {

std::string read_whole(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(file), {});
}

/// A running sandbox with a key; the files API through curl.
struct FilesSandbox {
  TestAgent& agent;
  std::string task = unique_name("files");
  std::string key = unique_name("key");
  std::string url;

  explicit FilesSandbox(TestAgent& test_agent, json extra = json::object()) : agent(test_agent) {
    extra["env_vars"]["SANDBOX_API_KEY"] = key;
    extra["ttl_seconds"] = 900;
    url = agent.provision_running(task, extra)["sandbox_url"];
  }
  ~FilesSandbox() { agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump()); }

  /// curl -F file=@PATH[;filename=NAME]: {HTTP status, body}; status 0 when curl got no answer
  /// (its error in the body). No test assertions here: callable from several threads.
  std::pair<int, std::string> upload(const std::filesystem::path& file, const std::string& filename = "",
                                     const std::vector<std::string>& extra_args = {},
                                     long* bytes_sent = nullptr) const {
    std::string field = "file=@" + file.string();
    if (!filename.empty()) field += ";filename=\"" + filename + "\"";
    std::vector<std::string> argv = {
        "curl", "-sS", "-o", "-", "-w", "\n%{size_upload}\n%{http_code}", "-H", "Authorization: Bearer " + key,
        "-F",   field};
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    argv.push_back(url + "/modbox/api/files/upload");
    auto result = run_command(argv);
    auto newline = result.out.rfind('\n');
    if (newline == std::string::npos || newline + 1 >= result.out.size() || newline == 0) return {0, result.err};
    auto sent_line = result.out.rfind('\n', newline - 1);
    if (sent_line == std::string::npos) return {0, result.err};
    if (bytes_sent != nullptr) *bytes_sent = std::atol(result.out.c_str() + sent_line + 1);
    return {std::atoi(result.out.c_str() + newline + 1), result.out.substr(0, sent_line)};
  }
  json uploaded(const std::filesystem::path& file, const std::string& filename = "") const {
    auto [status, body] = upload(file, filename);
    INFO(body);
    REQUIRE(status == 200);
    return json::parse(body);
  }
  HttpReply get(const std::string& path) const {
    return http_request(url, "GET", path, "", {{"Authorization", "Bearer " + key}});
  }
  HttpReply remove(const std::string& name) const {
    return http_request(url, "DELETE", "/modbox/api/files/" + modbox::percent_encode(name), "",
                        {{"Authorization", "Bearer " + key}});
  }
  json list(const std::string& search = "") const {
    auto reply = get("/modbox/api/files" + (search.empty() ? "" : "?search=" + modbox::percent_encode(search)));
    INFO(reply.body);
    REQUIRE(reply.status == 200);
    return reply.json_body();
  }
  std::string sh(const std::string& command) const {
    auto reply = http_request(url, "POST", "/modbox/api/exec", json{{"command", command}}.dump(),
                              {{"Authorization", "Bearer " + key}});
    INFO(reply.body);
    REQUIRE(reply.status == 200);
    return reply.json_body()["stdout"];
  }
};

}  // namespace

TEST_CASE("files: upload, list, search, download and delete through the sandbox URL", "[files]") {
  TestAgent agent;
  agent.start();
  FilesSandbox box(agent);
  LocalDir local;
  auto source = write_random_file(local.path / "data.bin", 3'000'000);

  auto stored = box.uploaded(source);
  std::string filename = stored["filename"];
  CHECK(std::regex_match(filename, std::regex(R"(\d{13}-data\.bin)")));
  CHECK(stored["originalName"] == "data.bin");
  CHECK(stored["size"] == 3'000'000);
  CHECK(stored["mimetype"] == "application/octet-stream");
  CHECK(std::regex_match(stored["uploadedAt"].get<std::string>(),
                         std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
  // Stored where the seed says, byte for byte.
  CHECK(box.sh("wc -c < /workspace/uploads/" + filename) == "3000000\n");
  auto local_sum = run_command({"sha256sum", source.string()}).out.substr(0, 64);
  CHECK(box.sh("sha256sum /workspace/uploads/" + filename).substr(0, 64) == local_sum);

  auto script = local.path / "script.py";
  std::ofstream(script) << "print('hi')\n";
  auto python = box.uploaded(script);
  CHECK(python["mimetype"] == "text/x-python");

  auto all = box.list();
  REQUIRE(all.size() == 2);
  CHECK(all[0]["filename"] == filename);
  CHECK(all[0]["originalName"] == "data.bin");
  CHECK(all[0]["size"] == 3'000'000);
  CHECK(all[1]["mimetype"] == "text/x-python");
  auto found = box.list("script");
  REQUIRE(found.size() == 1);
  CHECK(found[0]["filename"] == python["filename"]);
  CHECK(box.list("no-such-name").empty());

  auto download = box.get("/modbox/api/files/download/" + filename);
  REQUIRE(download.status == 200);
  CHECK(download.body == read_whole(source));
  CHECK(download.headers["Content-Type"] == "application/octet-stream");
  CHECK(download.headers["Content-Disposition"].find("filename=\"" + filename + "\"") != std::string::npos);

  // One range (a resumed download), then the whole file on the same connection: the range's
  // answer carries exactly its bytes, nothing that could pass for the next answer.
  auto first_part = local.path / "first-part";
  auto whole = local.path / "whole";
  std::string file_url = box.url + "/modbox/api/files/download/" + filename;
  std::string auth = "Authorization: Bearer " + box.key;
  auto ranged =
      run_command({"curl", "-sS", "-D", (local.path / "headers").string(), "-r", "0-9", "-H", auth, "-o",
                   first_part.string(), file_url, "--next", "-sS", "-H", auth, "-o", whole.string(), file_url});
  INFO(ranged.err);
  REQUIRE(ranged.exit_code == 0);
  CHECK(read_whole(first_part) == read_whole(source).substr(0, 10));
  CHECK(read_whole(whole) == read_whole(source));
  CHECK(read_whole(local.path / "headers").find("Content-Range: bytes 0-9/3000000") != std::string::npos);
  CHECK(run_command({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-r", "0-1,5-6", "-H", auth, file_url})
            .out == "416");

  // An empty file is a file too.
  auto empty = local.path / "empty.txt";
  std::ofstream(empty).close();
  auto stored_empty = box.uploaded(empty);
  CHECK(stored_empty["size"] == 0);
  auto empty_download = box.get("/modbox/api/files/download/" + stored_empty["filename"].get<std::string>());
  CHECK(empty_download.status == 200);
  CHECK(empty_download.body.empty());
  CHECK(box.remove(stored_empty["filename"]).status == 200);

  CHECK(box.remove(filename).status == 200);
  CHECK(box.remove(filename).status == 404);
  CHECK(box.get("/modbox/api/files/download/" + filename).status == 404);
  CHECK(box.list().size() == 1);
  // Wrong methods and unknown routes say so.
  CHECK(http_request(box.url, "GET", "/modbox/api/files/upload", "", {{"Authorization", "Bearer " + box.key}}).status ==
        405);
  CHECK(box.get("/modbox/api/nothing-here").status == 404);
}

TEST_CASE("files: names are reduced to a safe basename or refused, and downloads cannot inject headers", "[files]") {
  TestAgent agent;
  agent.start();
  FilesSandbox box(agent);
  LocalDir local;
  auto source = write_random_file(local.path / "payload", 100);

  for (const char* name : {"../../../etc/cron.d/evil", "/abs/path/evil"}) {
    auto stored = box.uploaded(source, name);
    INFO(name);
    CHECK(stored["originalName"] == "evil");
    CHECK(std::regex_match(stored["filename"].get<std::string>(), std::regex(R"(\d{13}-evil)")));
  }
  CHECK(box.sh("ls /workspace/uploads | grep -c -- '-evil$'") == "2\n");
  CHECK(box.sh("test -e /etc/cron.d/evil || test -e /abs || echo clean") == "clean\n");
  for (const char* name : {"..", "dir/..", "."}) {
    auto [status, body] = box.upload(source, name);
    INFO(name << ": " << body);
    CHECK(status == 400);
    CHECK(json::parse(body)["detail"].get<std::string>().find("name") != std::string::npos);
  }

  // A name the sandbox chose with a line break in it: downloadable, and still one header. curl
  // shows the raw header block (httplib's client would decode %XX in header values).
  box.sh("printf x > $'/workspace/uploads/evil\\r\\nX-Injected: 1'");
  auto raw = run_command({"curl", "-sS", "-D", "-", "-H", "Authorization: Bearer " + box.key,
                          box.url + "/modbox/api/files/download/" + modbox::percent_encode("evil\r\nX-Injected: 1")});
  INFO(raw.out << raw.err);
  REQUIRE(raw.exit_code == 0);
  CHECK(raw.out.starts_with("HTTP/1.1 200"));
  CHECK(raw.out.ends_with("\r\n\r\nx"));
  CHECK(raw.out.find("\nX-Injected") == std::string::npos);
  CHECK(raw.out.find("Content-Disposition: attachment; filename=\"evil__X-Injected: 1\"; "
                     "filename*=UTF-8''evil%0D%0AX-Injected%3A%201\r\n") != std::string::npos);
  // Names in a URL are one component.
  CHECK(box.get("/modbox/api/files/download/..").status == 400);
  CHECK(box.remove("..").status == 400);
}

TEST_CASE("files: 50 MiB is the limit with or without Content-Length; nothing partial is left, memory stays flat",
          "[files]") {
  TestAgent agent;
  agent.start();
  FilesSandbox box(agent);
  LocalDir local;
  constexpr std::size_t limit = 50u << 20;
  auto exact = write_random_file(local.path / "exact.bin", limit);
  auto over = write_random_file(local.path / "over.bin", limit + 1);
  long memory_before = peak_memory_kib(agent.pid());
  REQUIRE(memory_before > 0);

  auto stored = box.uploaded(exact);
  CHECK(stored["size"] == limit);
  auto download = box.get("/modbox/api/files/download/" + stored["filename"].get<std::string>());
  REQUIRE(download.status == 200);
  CHECK(download.body.size() == limit);
  CHECK(download.body == read_whole(exact));
  long memory_after = peak_memory_kib(agent.pid());
  INFO("agent peak RSS " << memory_before << " KiB before, " << memory_after << " KiB after 50 MiB up and down");
  // Streamed: the agent never holds the file (50 MiB = 51200 KiB).
  CHECK(memory_after - memory_before < 16 * 1024);

  // With Content-Length (curl asks with Expect: 100-continue, and hears 413 before sending),
  // without it (chunked), and without Expect.
  std::vector<std::vector<std::string>> variants = {{}, {"-H", "Transfer-Encoding: chunked"}, {"-H", "Expect:"}};
  for (const auto& variant : variants) {
    long sent = -1;
    auto [status, body] = box.upload(over, "", variant, &sent);
    INFO((variant.empty() ? "plain" : variant[1]) << ": " << body << " (" << sent << " bytes sent)");
    CHECK(status == 413);
    CHECK(json::parse(body)["detail"].get<std::string>().find("50 MiB") != std::string::npos);
  }
  {
    // A declared length over the limit plus the form's allowance (1 MiB) is refused from the headers:
    // with Expect: 100-continue (curl's, for large bodies) before any of the body is sent.
    auto far_over = write_random_file(local.path / "far-over.bin", limit + (2u << 20));
    long sent = -1;
    auto [status, body] = box.upload(far_over, "", {}, &sent);
    INFO(body << " (" << sent << " bytes sent)");
    CHECK(status == 413);
    CHECK(sent == 0);
    std::filesystem::remove(far_over);
  }
  // A malformed multipart body (a delimiter followed by neither a line break nor "--"), sent
  // chunked so that no length bounds it: refused at once, without buffering it.
  auto malformed = local.path / "malformed";
  {
    std::ofstream out(malformed, std::ios::binary);
    out << "--XyZ" << std::string(60u << 20, 'z');
  }
  auto refused =
      run_command({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer " + box.key,
                   "-H", "Content-Type: multipart/form-data; boundary=XyZ", "-H", "Transfer-Encoding: chunked",
                   "--data-binary", "@" + malformed.string(), box.url + "/modbox/api/files/upload"});
  INFO(refused.err);
  CHECK(refused.out == "400");
  long memory_malformed = peak_memory_kib(agent.pid());
  INFO("agent peak RSS after the malformed body: " << memory_malformed << " KiB");
  CHECK(memory_malformed - memory_before < 16 * 1024);

  // Only the one complete upload is there: no partial file, no leftover temporary.
  CHECK(box.list().size() == 1);
  CHECK(box.sh("ls -A /workspace/uploads | wc -l") == "1\n");
}

TEST_CASE("files: a disk that fills during an upload answers 507; nothing partial is kept, earlier files intact",
          "[files]") {
  TestAgent agent;
  agent.start();
  FilesSandbox box(agent);
  LocalDir local;
  auto earlier = write_random_file(local.path / "earlier.bin", 64 << 10, 11);
  auto large = write_random_file(local.path / "large.bin", 8u << 20, 12);
  std::string kept = box.uploaded(earlier)["filename"];

  // The uploads directory moved onto the sandbox's /dev/shm, a small tmpfs (64 MiB by Podman's default),
  // then that tmpfs filled up to its last 2 MiB: the 8 MiB upload runs out of space part way.
  box.sh(
      "mkdir -p /dev/shm/up && cp -a /workspace/uploads/. /dev/shm/up/ && rm -rf /workspace/uploads && "
      "ln -s /dev/shm/up /workspace/uploads");
  std::string free_kib = box.sh("df -Pk /dev/shm | awk 'NR==2 {print $4}'");
  INFO("free on the sandbox's /dev/shm: " << free_kib << " KiB");
  long fill_mib = std::atol(free_kib.c_str()) / 1024 - 2;
  REQUIRE(fill_mib > 0);
  box.sh("dd if=/dev/zero of=/dev/shm/fill bs=1M count=" + std::to_string(fill_mib) + " 2>/dev/null; true");
  REQUIRE(std::atol(box.sh("df -Pk /dev/shm | awk 'NR==2 {print $4}'").c_str()) < 4096);

  for (const std::vector<std::string>& variant : {std::vector<std::string>{}, {"-H", "Transfer-Encoding: chunked"}}) {
    auto [status, body] = box.upload(large, "", variant);
    INFO((variant.empty() ? "with Content-Length" : "chunked") << ": " << body);
    CHECK(status == 507);
    if (status == 507) CHECK(json::parse(body)["detail"].get<std::string>().find("disk is full") != std::string::npos);
  }
  // Nothing partial: the earlier file alone, whole, and no temporary left beside it.
  auto listed = box.list();
  REQUIRE(listed.size() == 1);
  CHECK(listed[0]["filename"] == kept);
  CHECK(box.sh("ls -A /dev/shm/up") == kept + "\n");
  CHECK(box.get("/modbox/api/files/download/" + kept).body == read_whole(earlier));

  // Space freed, the same upload is stored.
  box.sh("rm -f /dev/shm/fill");
  auto stored = box.uploaded(large);
  CHECK(stored["size"] == 8u << 20);
}

TEST_CASE("files: symlinks and FIFOs planted in the sandbox never lead outside it", "[files]") {
  TestAgent agent;
  agent.start();
  FilesSandbox box(agent);
  LocalDir local;
  auto source = write_random_file(local.path / "note.txt", 64);

  // Links inside the uploads directory are not followed; a FIFO is refused without hanging.
  box.sh(
      "mkdir -p /workspace/uploads && ln -s /etc/passwd /workspace/uploads/passwd && "
      "mkfifo /workspace/uploads/fifo && mkdir /workspace/uploads/dir");
  auto started = std::chrono::steady_clock::now();
  for (const char* name : {"passwd", "fifo", "dir"}) {
    auto reply = box.get(std::string("/modbox/api/files/download/") + name);
    INFO(name << ": " << reply.body);
    CHECK(reply.status == 400);
  }
  CHECK(std::chrono::steady_clock::now() - started < 10s);
  CHECK(box.list().empty());
  CHECK(box.remove("passwd").status == 200);
  CHECK(box.sh("test -L /workspace/uploads/passwd || head -c 5 /etc/passwd") == "root:");

  // The uploads directory itself replaced by a link to /: the helper resolves it inside the
  // sandbox, so the file lands in the sandbox's own root, never on the host.
  box.sh("rm -rf /workspace/uploads && ln -sfn / /workspace/uploads");
  auto stored = box.uploaded(source);
  std::string filename = stored["filename"];
  CHECK(box.sh("test -f /" + filename + " && echo inside") == "inside\n");
  CHECK_FALSE(std::filesystem::exists("/" + filename));
  auto listed = box.list(filename);
  REQUIRE(listed.size() == 1);
  CHECK(box.get("/modbox/api/files/download/" + filename).body == read_whole(source));
  CHECK(box.remove(filename).status == 200);
  CHECK(box.sh("test -e /" + filename + " || echo gone") == "gone\n");
}

TEST_CASE("files: concurrent uploads of one name each get their own file", "[files]") {
  TestAgent agent;
  agent.start();
  FilesSandbox box(agent);
  LocalDir local;
  constexpr int clients = 12;
  std::vector<std::filesystem::path> sources;
  for (int i = 0; i < clients; ++i)
    sources.push_back(
        write_random_file(local.path / ("same-" + std::to_string(i)), 1'000'000, static_cast<unsigned>(i)));
  std::vector<std::pair<int, std::string>> answers(clients);
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i)
    threads.emplace_back([&, i] {
      answers[static_cast<std::size_t>(i)] = box.upload(sources[static_cast<std::size_t>(i)], "same.bin");
    });
  for (auto& thread : threads) thread.join();
  std::set<std::string> names;
  for (int i = 0; i < clients; ++i) {
    const auto& [status, body] = answers[static_cast<std::size_t>(i)];
    INFO(body);
    REQUIRE(status == 200);
    std::string name = json::parse(body)["filename"];
    names.insert(name);
    // Each stored file holds exactly what its own client sent.
    CHECK(box.get("/modbox/api/files/download/" + name).body == read_whole(sources[static_cast<std::size_t>(i)]));
  }
  CHECK(names.size() == clients);
  CHECK(box.list("same.bin").size() == clients);
}

TEST_CASE("files: every /modbox/api route needs the sandbox's key", "[files]") {
  TestAgent agent;
  agent.start();
  FilesSandbox box(agent);
  FilesSandbox other(agent);
  std::vector<std::pair<std::string, std::string>> routes = {{"GET", "/modbox/api/files"},
                                                             {"GET", "/modbox/api/files/download/x"},
                                                             {"DELETE", "/modbox/api/files/x"},
                                                             {"POST", "/modbox/api/files/upload"},
                                                             {"POST", "/modbox/api/exec"}};
  std::vector<std::optional<std::string>> wrong = {
      std::nullopt,          "Bearer", "Bearer ", "Bearer " + box.key.substr(0, 5), "Bearer " + box.key + "x",
      "Bearer " + other.key, box.key};
  for (const auto& [method, path] : routes) {
    for (const auto& authorization : wrong) {
      std::map<std::string, std::string> headers;
      if (authorization) headers["Authorization"] = *authorization;
      auto reply = http_request(box.url, method, path, "{}", headers);
      INFO(method << " " << path << " with " << authorization.value_or("(none)"));
      CHECK(reply.status == 401);
      CHECK(reply.headers["WWW-Authenticate"] == "Bearer");
    }
  }
  // A client that waits for 100 Continue (curl does for large bodies) hears 401 before sending.
  LocalDir local;
  auto big = write_random_file(local.path / "big.bin", 3'000'000);
  auto refused_upload =
      run_command({"curl", "-sS", "-w", "\n%{http_code} %{size_upload}", "-H", "Authorization: Bearer wrong", "-F",
                   "file=@" + big.string(), box.url + "/modbox/api/files/upload"});
  INFO(refused_upload.out << refused_upload.err);
  auto status_line = refused_upload.out.substr(refused_upload.out.rfind('\n') + 1);
  CHECK(status_line.starts_with("401 "));
  CHECK(std::stol(status_line.substr(4)) < 1'000'000);
  // One answer and the connection closed: the body the client may send late is never parsed.
  CHECK(json::parse(refused_upload.out.substr(0, refused_upload.out.rfind('\n')), nullptr, false).is_object());
  // Compressed bodies are refused from their headers (a small gzip body can inflate without bound).
  auto compressed = run_command({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Encoding: gzip",
                                 "-H", "Authorization: Bearer " + box.key, "--data-binary", "@" + big.string(),
                                 box.url + "/modbox/api/exec"});
  CHECK(compressed.out == "415");
  // Text that is not UTF-8 in a path is handled safely, never a 500. Paths outside /modbox/api/ are
  // relayed to the sandbox's web port and need the key as well.
  CHECK(http_request(box.url, "GET", "/%FF%FE", "", {}).status == 401);
  CHECK(http_request(box.url, "GET", "/modbox/api/%FF%FE", "", {{"Authorization", "Bearer " + box.key}}).status == 404);

  // The agent's own token (what the CLI uses) is the owner's: it is accepted.
  auto token = modbox::read_file(agent.paths().token_file());
  REQUIRE(token.has_value());
  std::string owner = token->substr(0, token->find('\n'));
  CHECK(http_request(box.url, "GET", "/modbox/api/files", "", {{"Authorization", "Bearer " + owner}}).status == 200);

  // Without SANDBOX_API_KEY the sandbox's API is refused to everyone else, and says why.
  std::string keyless = unique_name("nokey");
  auto sandbox = agent.provision_running(keyless, {{"ttl_seconds", 300}});
  auto refused = http_request(sandbox["sandbox_url"], "GET", "/modbox/api/files", "", {{"Authorization", "Bearer x"}});
  CHECK(refused.status == 403);
  CHECK(refused.json_body()["detail"].get<std::string>().find("SANDBOX_API_KEY") != std::string::npos);
  agent.api("POST", "/sandboxes/destroy", json{{"task_id", keyless}}.dump());
}

TEST_CASE("files: modbox upload, files, download and files rm", "[files]") {
  TestAgent agent;
  agent.start();
  FilesSandbox box(agent);
  LocalDir local;
  auto first = write_random_file(local.path / "first.bin", 2'000'000, 1);
  auto second = local.path / "notes.md";
  std::ofstream(second) << "# notes\n";

  auto uploaded = agent.cli({"upload", box.task, first.string(), second.string(), "-q"});
  INFO(uploaded.err);
  REQUIRE(uploaded.exit_code == 0);
  std::istringstream names(uploaded.out);
  std::string first_name, second_name;
  names >> first_name >> second_name;
  CHECK(first_name.ends_with("-first.bin"));
  CHECK(second_name.ends_with("-notes.md"));

  auto listed = agent.cli({"files", box.task, "--search", "notes", "--json"});
  REQUIRE(listed.exit_code == 0);
  auto files = json::parse(listed.out);
  REQUIRE(files.size() == 1);
  CHECK(files[0]["mimetype"] == "text/markdown");
  CHECK(agent.cli({"files", box.task}).out.find(first_name) != std::string::npos);

  auto out = local.path / "back.bin";
  auto downloaded = agent.cli({"download", box.task, first_name, "-o", out.string()});
  INFO(downloaded.err);
  REQUIRE(downloaded.exit_code == 0);
  CHECK(read_whole(out) == read_whole(first));
  // An existing file is not replaced without --force; a missing name fails and leaves nothing.
  CHECK(agent.cli({"download", box.task, first_name, "-o", out.string()}).exit_code != 0);
  CHECK(agent.cli({"download", box.task, first_name, "-o", out.string(), "--force"}).exit_code == 0);
  auto missing = agent.cli({"download", box.task, "no-such-file", "-o", (local.path / "missing").string()});
  CHECK(missing.exit_code != 0);
  CHECK(missing.err.find("no file") != std::string::npos);
  CHECK(std::distance(std::filesystem::directory_iterator(local.path), {}) == 3);

  CHECK(agent.cli({"files", "rm", box.task, first_name, second_name}).exit_code == 0);
  CHECK(agent.cli({"files", box.task, "-q"}).out.empty());
  auto gone = agent.cli({"files", "rm", box.task, first_name});
  CHECK(gone.exit_code != 0);
}

TEST_CASE("files: in an image with a non-root USER, uploads belong to that user", "[files]") {
  TestAgent agent;
  agent.start();
  std::string tag = "localhost/modbox-test/files-user:" + unique_name("t");
  ImageGuard guard{agent, tag};
  build_image(agent, tag,
              "FROM localhost/modbox/sandbox-lite:latest\nRUN useradd -m -u 1234 sandbox && chown sandbox /workspace\n"
              "USER sandbox\n");
  FilesSandbox box(agent, {{"image", tag}});
  LocalDir local;
  auto stored = box.uploaded(write_random_file(local.path / "mine.txt", 10));
  std::string path = "/workspace/uploads/" + stored["filename"].get<std::string>();
  CHECK(box.sh("stat -c '%u %U' " + path + " /workspace/uploads") == "1234 sandbox\n1234 sandbox\n");
  // The sandbox's own code can change and remove what was uploaded.
  CHECK(box.sh("echo more >> " + path + " && rm " + path + " && echo done") == "done\n");
  // Where the user may not write, the upload is refused with the reason, not stored as root.
  box.sh("rm -rf /workspace/uploads && mkdir /workspace/uploads && chmod 555 /workspace/uploads");
  auto [status, body] = box.upload(local.path / "mine.txt");
  INFO(body);
  CHECK(status == 409);
  CHECK(body.find("Permission denied") != std::string::npos);
}

namespace {

/// POSTs `body_file` as a multipart body with boundary XyZ to the upload route: curl's status, or 0.
int post_multipart(const FilesSandbox& box, const std::filesystem::path& body_file, bool chunked = false) {
  std::vector<std::string> argv = {"curl", "-sS",
                                   "-o",   "/dev/null",
                                   "-w",   "%{http_code}",
                                   "-H",   "Authorization: Bearer " + box.key,
                                   "-H",   "Content-Type: multipart/form-data; boundary=XyZ"};
  if (chunked) argv.insert(argv.end(), {"-H", "Transfer-Encoding: chunked"});
  argv.insert(argv.end(), {"--data-binary", "@" + body_file.string(), box.url + "/modbox/api/files/upload"});
  return std::atoi(run_command(argv).out.c_str());
}

}  // namespace

TEST_CASE("files: ten thousand parts and part headers of many megabytes are contained, memory bounded", "[files]") {
  TestAgent agent;
  agent.start();
  FilesSandbox box(agent);
  LocalDir local;
  long memory_before = peak_memory_kib(agent.pid());
  REQUIRE(memory_before > 0);

  // 10,000 fields the route ignores, then the file: stored, the fields cost nothing.
  auto many = local.path / "many-parts";
  {
    std::ofstream out(many, std::ios::binary);
    for (int i = 0; i < 10'000; ++i)
      out << "--XyZ\r\nContent-Disposition: form-data; name=\"field" << i << "\"\r\n\r\nvalue " << i << "\r\n";
    out << "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"last.txt\"\r\n\r\nthe "
           "file\r\n--XyZ--\r\n";
  }
  CHECK(post_multipart(box, many) == 200);
  auto listed = box.list("last.txt");
  REQUIRE(listed.size() == 1);
  CHECK(box.get("/modbox/api/files/download/" + listed[0]["filename"].get<std::string>()).body == "the file");

  // 10,000 file parts: the second is refused, and nothing of the request is kept.
  auto many_files = local.path / "many-files";
  {
    std::ofstream out(many_files, std::ios::binary);
    for (int i = 0; i < 10'000; ++i)
      out << "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f" << i << ".txt\"\r\n\r\nx\r\n";
    out << "--XyZ--\r\n";
  }
  int many_files_status = post_multipart(box, many_files);
  CHECK(many_files_status >= 400);
  CHECK(many_files_status < 500);

  // A part whose headers run for 8 MiB, declared and chunked: refused, nothing stored.
  auto huge_headers = local.path / "huge-headers";
  {
    std::ofstream out(huge_headers, std::ios::binary);
    out << "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"h.txt\"\r\n";
    for (int i = 0; i < 2048; ++i) out << "X-Filler-" << i << ": " << std::string(4096, 'h') << "\r\n";
    out << "\r\ncontent\r\n--XyZ--\r\n";
  }
  for (bool chunked : {false, true}) {
    int status = post_multipart(box, huge_headers, chunked);
    INFO((chunked ? "chunked" : "with Content-Length") << ": " << status);
    CHECK(status >= 400);
    CHECK(status < 500);
  }
  CHECK(box.list().size() == 1);
  CHECK(box.sh("ls -A /workspace/uploads | wc -l") == "1\n");
  long memory_after = peak_memory_kib(agent.pid());
  INFO("agent peak RSS " << memory_before << " KiB before, " << memory_after << " KiB after");
  CHECK(memory_after - memory_before < 16 * 1024);
}

TEST_CASE(
    "files: the uploads directory swapped for a link a thousand times during transfers: every answer defined, "
    "nothing outside the sandbox",
    "[files]") {
  TestAgent agent;
  agent.start();
  FilesSandbox box(agent);
  LocalDir local;
  auto source = write_random_file(local.path / "swap.bin", 4096);
  // In the sandbox: /workspace/uploads flips between a directory and a link to / (rename over it,
  // atomic), 1,000 times, then says it is done.
  box.sh(
      "mkdir -p /workspace/real && nohup sh -c 'i=0; while [ $i -lt 1000 ]; do "
      "ln -sfn / /workspace/link && mv -T /workspace/link /workspace/uploads; "
      "rm -rf /workspace/uploads; mkdir -p /workspace/uploads; i=$((i+1)); done; touch /tmp/swaps-done' "
      ">/dev/null 2>&1 &");
  int transfers = 0;
  std::vector<std::string> stored;
  auto deadline = std::chrono::steady_clock::now() + 180s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto [status, body] = box.upload(source, "swap-" + std::to_string(transfers) + ".bin");
    INFO("upload " << transfers << ": " << status << " " << body);
    REQUIRE(status != 0);
    CHECK(status < 500);
    if (status == 200) stored.push_back(json::parse(body)["filename"]);
    auto listing = box.get("/modbox/api/files");
    CHECK(listing.status < 500);
    ++transfers;
    if (box.sh("test -e /tmp/swaps-done && echo done || true") == "done\n") break;
  }
  INFO(transfers << " transfers, " << stored.size() << " stored");
  CHECK(box.sh("test -e /tmp/swaps-done && echo done || true") == "done\n");
  CHECK(transfers >= 10);
  // Whatever the race made of each upload, it landed inside the sandbox or nowhere: never on the host.
  for (const auto& name : stored) CHECK_FALSE(std::filesystem::exists("/" + name));
  // And the routes still work once the swapping stops.
  box.sh("rm -rf /workspace/uploads; mkdir -p /workspace/uploads");
  auto after = box.uploaded(source, "after.bin");
  CHECK(box.get("/modbox/api/files/download/" + after["filename"].get<std::string>()).body == read_whole(source));
}
