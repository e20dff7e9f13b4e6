// Images built from a Containerfile against real Podman: `modbox images create --file` builds FROM
// the local sandbox-lite with a RUN step and a COPY from the context, shows its progress on stderr
// (timestamped lines off a terminal), registers the image, and a sandbox provisioned from it has the
// files; a failing RUN step is an error naming the step and its output, registering nothing and
// leaving no image; the HTTP route answers the same without the CLI.

#include <catch2/catch.hpp>
#include <cctype>
#include <fstream>
#include <regex>

#include "tests/integration/harness.h"

using namespace modbox::test;

namespace {

/// A build context directory, removed whatever happens.
struct ContextDir {
  std::filesystem::path path = std::filesystem::temp_directory_path() / unique_name("build-context");
  explicit ContextDir(const std::map<std::string, std::string>& files) {
    std::filesystem::create_directories(path);
    for (const auto& [name, content] : files) std::ofstream(path / name) << content;
  }
  ~ContextDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

std::size_t images_named(const TestAgent& agent, const std::string& name) {
  auto listed = agent.api("GET", "/sandbox-images");
  REQUIRE(listed.status == 200);
  std::size_t count = 0;
  for (const auto& image : listed.json_body())
    if (image["name"] == name) ++count;
  return count;
}

}  // namespace

TEST_CASE("images create --file builds an image from a Containerfile that sandboxes start from", "[image-build]") {
  TestAgent agent;
  agent.start();
  // The base must be in the agent's storage: provisioning the default builds it when missing.
  if (agent.podman({"image", "exists", "localhost/modbox/sandbox-lite:latest"}).exit_code != 0)
    agent.provision_running(unique_name("base"));

  const std::string name = unique_name("built app");
  ContextDir context({{"Containerfile",
                       "FROM localhost/modbox/sandbox-lite:latest\n"
                       "RUN echo built-by-run > /etc/build-mark\n"
                       "COPY hello.txt /opt/hello.txt\n"},
                      {"hello.txt", "from the context\n"}});
  auto built = agent.cli(
      {"images", "create", "--name", name, "--file", (context.path / "Containerfile").string(), "--json"}, 300s);
  INFO(built.err);
  REQUIRE(built.exit_code == 0);
  json image = json::parse(built.out);  // stdout holds the image only: progress went to stderr
  ImageGuard guard{agent, image["image"].get<std::string>() + ":" + image["tag"].get<std::string>()};
  CHECK(image["name"] == name);
  CHECK(image["image"].get<std::string>().starts_with("localhost/modbox-build/"));
  CHECK(std::regex_search(built.err, std::regex(R"(\d\d:\d\d:\d\d building: STEP 2/3: RUN echo built-by-run)")));
  CHECK(std::regex_search(built.err, std::regex(R"(\d\d:\d\d:\d\d building: built image '[^']+' \(\d+s\))")));

  const std::string task = unique_name("from-build");
  agent.provision_running(task, json{{"image_id", image["id"]}});
  auto exec = agent.api("POST", "/sandboxes/exec",
                        json{{"task_id", task}, {"command", "cat /opt/hello.txt /etc/build-mark"}}.dump());
  INFO(exec.body);
  REQUIRE(exec.status == 200);
  CHECK(exec.json_body()["stdout"] == "from the context\nbuilt-by-run\n");
  agent.api("POST", "/sandboxes/destroy", json{{"task_id", task}}.dump());

  SECTION("a failing RUN step names the step and its output, and registers nothing") {
    const std::string failing = unique_name("failing build");
    ContextDir broken(std::map<std::string, std::string>{
        {"Containerfile", "FROM localhost/modbox/sandbox-lite:latest\nRUN echo about-to-fail && exit 3\n"}});
    auto failed =
        agent.cli({"images", "create", "--name", failing, "--file", (broken.path / "Containerfile").string()}, 300s);
    CHECK(failed.exit_code == 1);
    CHECK(failed.out.empty());
    CHECK(failed.err.find("the build failed at STEP 2/2: RUN echo about-to-fail && exit 3") != std::string::npos);
    CHECK(failed.err.find("its last output:\nabout-to-fail") != std::string::npos);
    CHECK(images_named(agent, failing) == 0);
    std::string slug = failing;
    for (char& c : slug) c = std::isalnum(static_cast<unsigned char>(c)) ? static_cast<char>(std::tolower(c)) : '-';
    auto left = agent.podman({"images", "-q", "--filter", "reference=localhost/modbox-build/" + slug});
    CHECK(left.out.empty());
  }

  SECTION("over HTTP: multipart in, 201 with the image or 400 with the step, 422 for a bad body") {
    const std::string socket = agent.paths().agent_socket().string();
    auto curl = [&](std::vector<std::string> parts) {
      std::vector<std::string> argv = {"curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket", socket};
      for (auto& part : parts) {
        argv.push_back("-F");
        argv.push_back(part);
      }
      argv.push_back("http://localhost/sandbox-images/build");
      auto result = run_command(argv, {}, 300s);
      auto newline = result.out.rfind('\n');
      return std::pair{result.out.substr(newline + 1), result.out.substr(0, newline)};
    };
    const std::string over_http = unique_name("http build");
    auto [created, body] = curl({"image={\"name\":\"" + over_http + "\"}",
                                 "containerfile=FROM localhost/modbox/sandbox-lite:latest\nRUN true\n"});
    INFO(body);
    REQUIRE(created == "201");
    json made = json::parse(body);
    ImageGuard http_guard{agent, made["image"].get<std::string>() + ":" + made["tag"].get<std::string>()};
    CHECK(images_named(agent, over_http) == 1);
    auto [refused, reason] = curl({"image={\"name\":\"" + unique_name("x") + "\"}",
                                   "containerfile=FROM localhost/modbox/sandbox-lite:latest\nRUN false\n"});
    CHECK(refused == "400");
    CHECK(reason.find("the build failed at STEP 2/2: RUN false") != std::string::npos);
    auto [missing, detail] = curl({"containerfile=FROM scratch\n"});
    CHECK(missing == "422");
    CHECK(detail.find(R"(["body","image"])") != std::string::npos);
    auto [not_local, why] =
        curl({"image={\"name\":\"" + unique_name("x") + "\"}", "containerfile=FROM docker.io/library/alpine:3\n"});
    CHECK(not_local == "400");
    CHECK(why.find("builds pull nothing") != std::string::npos);
  }
}

TEST_CASE("images create --file on a terminal redraws one line and leaves the steps and the result", "[image-build]") {
  INFO("tmux comes from images/prepare-host --install --tests");
  REQUIRE(std::filesystem::exists("/usr/bin/tmux"));
  TestAgent agent;
  agent.start();
  if (agent.podman({"image", "exists", "localhost/modbox/sandbox-lite:latest"}).exit_code != 0)
    agent.provision_running(unique_name("base"));
  const std::string name = unique_name("tty build");
  ContextDir context(std::map<std::string, std::string>{
      {"Containerfile", "FROM localhost/modbox/sandbox-lite:latest\nRUN echo tty-step-output\n"}});
  const std::string socket = (context.path / "tmux.sock").string();
  auto env = agent.cli_env();
  env["TERM"] = "xterm-256color";
  auto tmux = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"tmux", "-S", socket});
    return run_command(args, env, 30s);
  };
  struct Server {
    std::function<void()> kill;
    ~Server() { kill(); }
  } server{[&] { tmux({"kill-server"}); }};
  REQUIRE(tmux({"-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "100", "-y", "30", "bash --norc --noprofile"})
              .exit_code == 0);
  // stdout goes away: what stays on the screen is standard error's.
  tmux({"send-keys", "-t", "t", "-l",
        bin_dir() + "/modbox images create --name '" + name + "' --file " + (context.path / "Containerfile").string() +
            " >/dev/null; echo exit-$?"});
  tmux({"send-keys", "-t", "t", "Enter"});
  std::string screen;
  bool ended = eventually(
      [&] {
        screen = tmux({"capture-pane", "-p", "-J", "-S", "-200", "-t", "t"}).out;
        return screen.find("\nexit-") != std::string::npos;
      },
      300s, 200ms);
  INFO(screen);
  REQUIRE(ended);
  auto listed = agent.api("GET", "/sandbox-images");
  for (const auto& image : listed.json_body())
    if (image["name"] == name)
      agent.podman({"rmi", "-f", image["image"].get<std::string>() + ":" + image["tag"].get<std::string>()});
  CHECK(screen.find("\nexit-0") != std::string::npos);
  CHECK(screen.find("\nSTEP 2/2: RUN echo tty-step-output\n") != std::string::npos);
  CHECK(screen.find("\ntty-step-output\n") != std::string::npos);
  CHECK(std::regex_search(screen, std::regex("\nbuilt image '" + name + "' \\(\\d+s\\)\n")));
  // The terminal form: no timestamped lines, and the spinner's line was cleared at the end.
  CHECK_FALSE(std::regex_search(screen, std::regex(R"(\d\d:\d\d:\d\d building:)")));
  CHECK(screen.find("- building") == std::string::npos);
  CHECK(screen.find("| building") == std::string::npos);
}
