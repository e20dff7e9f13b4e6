// The sandbox's terminal against the real agent and real (rootless) Podman, on the default image and
// on an image that is a static busybox alone (no bash, no libc): the page at {sandbox_url}/terminal/ in
// Chromium, the WebSocket at /terminal/ws driven by a Node client (its limits, refusals, control
// messages, pipes, and what ends a session), `modbox shell` in a tmux terminal, and `modbox exec -i`
// with stdin from a pipe.

#include <catch2/catch.hpp>

#include "tests/integration/harness.h"
#include "tests/integration/web_sandbox.h"

using namespace modbox::test;
using Clock = std::chrono::system_clock;

namespace {

/// A static-busybox-only image in the agent's storage, removed with the object.
struct BusyboxImage {
  const TestAgent& agent;
  std::string tag = "localhost/modbox-test/busybox:" + unique_name("t");
  ImageGuard guard{agent, tag};
  explicit BusyboxImage(const TestAgent& agent_in) : agent(agent_in) {
    INFO("the image is built from the host's /bin/busybox (images/prepare-host --tests installs busybox-static)");
    REQUIRE(std::filesystem::exists("/bin/busybox"));
    build_image(agent, tag,
                "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
                {{"busybox", "/bin/busybox"}});
  }
};

/// A running sandbox of `image` (the default image when empty) with a key of its own; destroyed with
/// the object.
class TerminalSandbox {
 public:
  TerminalSandbox(TestAgent& agent, const std::string& image = "")
      : agent_(agent), task_(unique_name("term")), key_(unique_name("key")) {
    json extra{{"ttl_seconds", 900}, {"env_vars", {{"SANDBOX_API_KEY", key_}}}};
    if (!image.empty()) extra["image"] = image;
    url_ = agent_.provision_running(task_, extra).value("sandbox_url", "");
    REQUIRE(url_.starts_with("http://127.0.0.1:"));
  }
  ~TerminalSandbox() { agent_.api("POST", "/sandboxes/destroy", json{{"task_id", task_}}.dump()); }

  const std::string& task() const { return task_; }
  const std::string& url() const { return url_; }
  std::string bearer() const { return "Authorization: Bearer " + key_; }
  const std::string& key() const { return key_; }

  /// Runs a shell line through the control API (no key needed); its stdout.
  std::string sh(const std::string& command) const {
    auto reply = agent_.api("POST", "/sandboxes/exec", json{{"task_id", task_}, {"command", command}}.dump());
    INFO("exec: " << command << "\nanswer: " << reply.body);
    REQUIRE(reply.status == 200);
    return reply.json_body().value("stdout", "");
  }
  /// How many processes of the sandbox have `needle` in their command line (the command that counts
  /// them excluded: write the needle with a bracket, "sleep 424[2]", and it matches "sleep 4242").
  int processes_matching(const std::string& pattern) const {
    std::string out = sh("for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c -e '" +
                         pattern + "' || true");
    return std::atoi(out.c_str());
  }
  bool process_alive(std::uint32_t pid) const {
    return sh("test -e /proc/" + std::to_string(pid) + " && echo alive || echo gone") == "alive\n";
  }

 private:
  TestAgent& agent_;
  std::string task_;
  std::string key_;
  std::string url_;
};

/// terminal-ws.mjs against the sandbox's terminal with `steps`; `args` adds --header and --query.
ClientRun terminal_client(const TerminalSandbox& box, const json& steps, std::vector<std::string> args = {},
                          bool with_key = true) {
  std::vector<std::string> argv = {box.url(), "--steps", steps.dump(), "--timeout-ms", "30000"};
  if (with_key) argv.insert(argv.end(), {"--header", box.bearer()});
  argv.insert(argv.end(), args.begin(), args.end());
  return run_client("terminal-ws.mjs", argv, 60s);
}

/// The first text message of `type` the server sent, or null.
json server_event(const ClientRun& run, const std::string& type) {
  for (const json& message : run.result.value("events", json::array()))
    if (message.value("type", "") == type) return message;
  return nullptr;
}

/// The image a test runs on: the default one, or a busybox alone (built for the test).
struct ImageUnderTest {
  std::string name;
  std::optional<BusyboxImage> busybox;
  std::string reference() const { return busybox ? busybox->tag : ""; }
};

void prepare(ImageUnderTest& image, const TestAgent& agent) {
  if (image.name == "busybox") image.busybox.emplace(agent);
}

// ---- tmux ------------------------------------------------------------------------------------

/// A tmux server and session of its own (a private socket), whose one pane runs a plain bash with
/// the agent's CLI environment; killed with the object.
class Tmux {
 public:
  Tmux(const TestAgent& agent, int cols, int rows) : socket_(dir_.path / "tmux.sock") {
    INFO("tmux comes from images/prepare-host --install --tests");
    REQUIRE(std::filesystem::exists("/usr/bin/tmux"));
    auto env = agent.cli_env();
    env["TERM"] = "xterm-256color";
    auto started = run_command({"tmux", "-S", socket_.string(), "-f", "/dev/null", "new-session", "-d", "-s", "t", "-x",
                                std::to_string(cols), "-y", std::to_string(rows), "bash --norc --noprofile"},
                               env, 30s);
    INFO(started.err);
    REQUIRE(started.exit_code == 0);
    // A prompt of its own (tmux does not pass PS1 on), so that the host's shell is told apart.
    type("PS1='host$ '");
  }
  ~Tmux() { run_command({"tmux", "-S", socket_.string(), "kill-server"}, {}, 10s); }

  /// Types `line` and Enter, as keys.
  void type(const std::string& line) {
    tmux({"send-keys", "-t", "t", "-l", line});
    tmux({"send-keys", "-t", "t", "Enter"});
  }
  /// Presses one key, named as tmux names them ("C-c").
  void press(const std::string& key) { tmux({"send-keys", "-t", "t", key}); }
  void resize(int cols, int rows) {
    tmux({"resize-window", "-t", "t", "-x", std::to_string(cols), "-y", std::to_string(rows)});
  }
  /// The pane's lines, its scrollback included.
  std::vector<std::string> lines() {
    auto captured =
        run_command({"tmux", "-S", socket_.string(), "capture-pane", "-p", "-J", "-S", "-500", "-t", "t"}, {}, 10s);
    std::vector<std::string> lines;
    std::size_t start = 0;
    const std::string& out = captured.out;
    while (start < out.size()) {
      std::size_t end = std::min(out.find('\n', start), out.size());
      std::string line = out.substr(start, end - start);
      while (!line.empty() && line.back() == ' ') line.pop_back();
      lines.push_back(line);
      start = end + 1;
    }
    return lines;
  }
  std::string screen() {
    std::string text;
    for (const auto& line : lines()) text += line + "\n";
    return text;
  }
  /// Waits until a line of the pane equals `line`.
  bool shows(const std::string& line, std::chrono::milliseconds timeout = 15s) {
    return eventually([&] { return count(line) > 0; }, timeout, 50ms);
  }
  std::size_t count(const std::string& line) {
    auto all = lines();
    return static_cast<std::size_t>(std::count(all.begin(), all.end(), line));
  }

 private:
  void tmux(std::vector<std::string> args) {
    args.insert(args.begin(), {"tmux", "-S", socket_.string()});
    auto ran = run_command(args, {}, 10s);
    INFO(ran.err);
    REQUIRE(ran.exit_code == 0);
  }
  LocalDir dir_;
  std::filesystem::path socket_;
};

}  // namespace

TEST_CASE("terminal: the page in Chromium runs a shell that answers, and its size follows the window", "[terminal]") {
  INFO("Chromium comes from Debian's chromium package, which images/prepare-host --install --tests installs");
  REQUIRE(std::filesystem::exists("/usr/bin/chromium"));
  TestAgent agent;
  agent.start();
  ImageUnderTest image{GENERATE(as<std::string>(), "sandbox-lite", "busybox")};
  INFO("image: " << image.name);
  prepare(image, agent);
  TerminalSandbox box(agent, image.reference());

  auto page = run_client("terminal-page.mjs", {box.url(), "--token", box.key(), "--timeout-ms", "30000"}, 120s);
  INFO(page.out << page.err);
  CHECK(page.exit_code == 0);
  REQUIRE(page.result.is_object());
  CHECK(page.result["failures"] == json::array());
  CHECK(page.result["foreign_requests"] == json::array());
  CHECK(page.out.find(box.key()) == std::string::npos);
  // The tab is closed: its shell is gone with it.
  std::optional<std::uint32_t> shell;
  for (const json& text : page.result["websocket"].value("received_text", json::array()))
    if (json message = json::parse(text.get<std::string>(), nullptr, false); message.value("type", "") == "ready")
      shell = message["pid"].get<std::uint32_t>();
  REQUIRE(shell.has_value());
  CHECK(eventually([&] { return !box.process_alive(*shell); }, 10s, 200ms));
}

TEST_CASE("terminal: the page and the WebSocket need the sandbox's credentials, and nothing starts without",
          "[terminal]") {
  TestAgent agent;
  agent.start();
  TerminalSandbox box(agent);

  CHECK(curl(box.url() + "/terminal/").status == 401);
  CHECK(curl(box.url() + "/terminal/", {"-H", "Authorization: Bearer wrong"}).status == 401);
  auto page = curl(box.url() + "/terminal/", {"-H", box.bearer()});
  CHECK(page.status == 200);
  CHECK(page.header("Content-Type").starts_with("text/html"));
  CHECK(page.body.find("xterm.js") != std::string::npos);
  CHECK(curl(box.url() + "/terminal/xterm.js", {"-H", box.bearer()}).status == 200);
  auto redirect = curl(box.url() + "/terminal", {"-H", box.bearer()});
  CHECK(redirect.status == 301);
  CHECK(redirect.header("Location") == "/terminal/");
  auto owner = curl(box.url() + "/terminal/", {"-H", "Authorization: Bearer " + owner_token(agent)});
  CHECK(owner.status == 200);

  // A sleep that would run if the upgrade were let in (it is, with the key: the check sees it).
  std::vector<std::string> query = {"--query", "command=sleep 4242"};
  for (const auto& header : std::vector<std::string>{"", "Authorization: Bearer wrong"}) {
    std::vector<std::string> args = query;
    if (!header.empty()) args.insert(args.end(), {"--header", header});
    auto refused = terminal_client(box, json::array(), args, false);
    INFO(refused.out << refused.err);
    CHECK(refused.exit_code == 1);
    CHECK(refused.result.value("status", 0) == 401);
  }
  CHECK(box.processes_matching("sleep 424[2]") == 0);
  auto let_in = terminal_client(box, json::array({{{"expect_event", "ready"}}}), query);
  INFO(let_in.out << let_in.err);
  CHECK(let_in.exit_code == 0);
  CHECK(eventually([&] { return box.processes_matching("sleep 424[2]") == 0; }, 10s, 200ms));

  // Not an upgrade, or a query out of range: refused before anything starts.
  auto plain = curl(box.url() + "/terminal/ws", {"-H", box.bearer()});
  CHECK(plain.status == 426);
  auto bad_size = terminal_client(box, json::array(), {"--query", "cols=0"});
  CHECK(bad_size.result.value("status", 0) == 422);
}

TEST_CASE("terminal: a message over 1 MiB is closed with 1009 and ends the shell", "[terminal]") {
  TestAgent agent;
  agent.start();
  TerminalSandbox box(agent);
  auto run = terminal_client(box, json::array({{{"expect_event", "ready"}},
                                               {{"send", "echo fits-$((20+1))\r"}},
                                               {{"expect_output", "fits-21"}},
                                               {{"send_size", (1 << 20) + 1}},
                                               {{"expect_close", 1009}}}));
  INFO(run.out << run.err);
  CHECK(run.exit_code == 0);
  json ready = server_event(run, "ready");
  REQUIRE(ready.is_object());
  auto pid = ready["pid"].get<std::uint32_t>();
  CHECK(eventually([&] { return !box.process_alive(pid); }, 10s, 200ms));
  // A message of exactly 1 MiB is input like any other.
  auto fits = terminal_client(box,
                              json::array({{{"expect_event", "ready"}},
                                           {{"send_size", 1 << 20}},
                                           {{"send_json", {{"type", "eof"}}}},
                                           {{"expect_output", "^1048576\n$"}},
                                           {{"expect_event", "exit"}}}),
                              {"--query", "tty=0", "--query", "command=wc -c"});
  INFO(fits.out << fits.err);
  CHECK(fits.exit_code == 0);
}

TEST_CASE("terminal: control messages resize, signal and end input; refused ones leave the session going",
          "[terminal]") {
  TestAgent agent;
  agent.start();
  ImageUnderTest image{GENERATE(as<std::string>(), "sandbox-lite", "busybox")};
  INFO("image: " << image.name);
  prepare(image, agent);
  TerminalSandbox box(agent, image.reference());
  auto run = terminal_client(box,
                             json::array({{{"expect_event", "ready"}},
                                          {{"send_json", {{"type", "resize"}, {"cols", 0}, {"rows", 24}}}},
                                          {{"expect_event", "error"}},
                                          {{"send_json", {{"type", "resize"}, {"cols", 80}, {"rows", 1001}}}},
                                          {{"expect_event", "error"}},
                                          {{"send_json", {{"type", "explode"}}}},
                                          {{"expect_event", "error"}},
                                          {{"send", "echo size=$(stty size)\r"}},
                                          {{"expect_output", "size=40 132"}},
                                          {{"send_json", {{"type", "resize"}, {"cols", 77}, {"rows", 19}}}},
                                          {{"send", "echo size=$(stty size)\r"}},
                                          {{"expect_output", "size=19 77"}},
                                          {{"send_json", {{"type", "input"}, {"data", "echo after-$((1+1))\r"}}}},
                                          {{"expect_output", "after-2"}},
                                          {{"send", "exit 3\r"}},
                                          {{"expect_event", "exit"}},
                                          {{"expect_close", 1000}}}),
                             {"--query", "cols=132", "--query", "rows=40"});
  INFO(run.out << run.err);
  CHECK(run.exit_code == 0);
  CHECK(server_event(run, "exit") == json{{"type", "exit"}, {"exit_code", 3}});

  // A signal goes to the terminal's foreground: a command that says when its trap is set.
  auto signalled =
      terminal_client(box,
                      json::array({{{"expect_output", "trap-set"}},
                                   {{"send_json", {{"type", "signal"}, {"signal", "SIGINT"}}}},
                                   {{"expect_output", "got-int"}},
                                   {{"expect_event", "exit"}},
                                   {{"expect_close", 1000}}}),
                      {"--query", "command=trap 'echo got-int; exit 0' INT; echo trap-set; while :; do sleep 1; done"});
  INFO(signalled.out << signalled.err);
  CHECK(signalled.exit_code == 0);
  CHECK(server_event(signalled, "exit") == json{{"type", "exit"}, {"exit_code", 0}});
}

TEST_CASE("terminal: on pipes stdout and stderr stay apart, and eof ends the command's input", "[terminal]") {
  TestAgent agent;
  agent.start();
  TerminalSandbox box(agent);
  auto run = terminal_client(box,
                             json::array({{{"expect_event", "ready"}},
                                          {{"send", "hello\nworld\n"}},
                                          {{"send_json", {{"type", "eof"}}}},
                                          {{"expect_event", "exit"}},
                                          {{"expect_close", 1000}}}),
                             {"--query", "tty=0", "--query", "command=cat; echo err >&2; exit 7"});
  INFO(run.out << run.err);
  CHECK(run.exit_code == 0);
  CHECK(run.result["stdout"] == "hello\nworld\n");
  CHECK(run.result["stderr"] == "err\n");
  CHECK(server_event(run, "exit") == json{{"type", "exit"}, {"exit_code", 7}});
}

TEST_CASE("terminal: closing the WebSocket kills the shell and everything it started", "[terminal]") {
  TestAgent agent;
  agent.start();
  TerminalSandbox box(agent);
  auto run = terminal_client(box, json::array({{{"expect_event", "ready"}},
                                               {{"send", "sleep 4343 & setsid sleep 4344 & echo started-$((1+1))\r"}},
                                               {{"expect_output", "started-2"}},
                                               {{"close", 1000}}}));
  INFO(run.out << run.err);
  CHECK(run.exit_code == 0);
  json ready = server_event(run, "ready");
  REQUIRE(ready.is_object());
  auto pid = ready["pid"].get<std::uint32_t>();
  CHECK(eventually([&] { return !box.process_alive(pid); }, 5s, 100ms));
  CHECK(eventually([&] { return box.processes_matching("sleep 434[34]") == 0; }, 5s, 100ms));
}

TEST_CASE("terminal: destroying the sandbox closes an open terminal within a second", "[terminal]") {
  TestAgent agent;
  agent.start();
  TerminalSandbox box(agent);
  REQUIRE(std::filesystem::exists(test_clients_dir() / "node_modules" / "ws"));
  BackgroundProcess hold(
      client_command("terminal-ws.mjs", {box.url(), "--header", box.bearer(), "--timeout-ms", "60000", "--steps",
                                         json::array({{{"expect_event", "ready"}}, {{"hold", true}}}).dump()}));
  bool ready = false;
  while (!ready) {
    auto line = hold.next_line(20s);
    INFO(hold.errors());
    REQUIRE(line.has_value());
    json event = json::parse(line->text, nullptr, false);
    ready = event.value("event", "") == "message" && event["message"].value("type", "") == "ready";
  }
  auto destroyed = agent.api("POST", "/sandboxes/destroy", json{{"task_id", box.task()}}.dump());
  auto answered = Clock::now();
  REQUIRE(destroyed.status == 200);
  std::optional<Clock::time_point> closed;
  while (!closed) {
    auto line = hold.next_line(3s);
    if (!line) break;
    if (json::parse(line->text, nullptr, false).value("event", "") == "close") closed = line->arrived;
  }
  INFO(hold.errors());
  REQUIRE(closed.has_value());
  INFO(
      "the terminal saw its close " << std::chrono::duration_cast<std::chrono::milliseconds>(*closed - answered).count()
                                    << " ms after the destroy answer");
  CHECK(*closed <= answered + 1s);
}

TEST_CASE("modbox shell in a terminal: a prompt, the window's size, the exit status, the terminal restored",
          "[terminal]") {
  TestAgent agent;
  agent.start();
  ImageUnderTest image{GENERATE(as<std::string>(), "sandbox-lite", "busybox")};
  INFO("image: " << image.name);
  prepare(image, agent);
  TerminalSandbox box(agent, image.reference());
  Tmux tmux(agent, 100, 30);
  // tput where the image has it; busybox has only stty.
  std::string columns = image.busybox ? "echo cols=$(stty size | cut -d' ' -f2)" : "echo cols=$(tput cols)";

  tmux.type(bin_dir() + "/modbox shell " + box.task());
  tmux.type("echo mark-$((2+3))");
  INFO(tmux.screen());
  REQUIRE(tmux.shows("mark-5", 30s));
  tmux.type(columns);
  CHECK(tmux.shows("cols=100"));

  // The window shrinks: the shell's terminal follows (its SIGWINCH can race the next keys, so ask until).
  tmux.resize(72, 20);
  CHECK(eventually(
      [&] {
        tmux.type(columns);
        return tmux.shows("cols=72", 1s);
      },
      15s, 0ms));

  // Raw mode: ^C goes to the sandbox's shell (it interrupts the sleep there), not to modbox.
  tmux.type("echo sleeping-$((1+1)); sleep 60");
  REQUIRE(tmux.shows("sleeping-2"));
  tmux.press("C-c");
  tmux.type("echo alive-$((3+4))");
  CHECK(tmux.shows("alive-7"));

  // The shell exits 3: so does modbox, back at the host's prompt (a line of its own only then).
  tmux.type("exit 3");
  INFO(tmux.screen());
  REQUIRE(tmux.shows("host$"));
  tmux.type("echo rc=$?");
  CHECK(tmux.shows("rc=3"));
  // And the host's terminal is as it was: echo, canonical input and signals on again.
  tmux.type("stty -a | tr ' ;' '\\n\\n' | grep -x -e echo -e icanon -e isig | sort | tr '\\n' ,; echo");
  INFO(tmux.screen());
  CHECK(tmux.shows("echo,icanon,isig,"));
  CHECK(box.processes_matching("sleep 6[0]") == 0);
}

TEST_CASE("modbox exec -i streams stdin from a pipe, keeps stdout and stderr apart, exits with the status",
          "[terminal]") {
  TestAgent agent;
  agent.start();
  TerminalSandbox box(agent);
  LocalDir dir;
  auto input = write_random_file(dir.path / "in.bin", (1 << 20) + 12345, 11);
  std::string modbox = bin_dir() + "/modbox";
  auto copied = run_command({"sh", "-c", "\"$0\" exec -i \"$1\" -- cat < \"$2\" > \"$3\"", modbox, box.task(),
                             input.string(), (dir.path / "out.bin").string()},
                            agent.cli_env(), 120s);
  INFO(copied.err);
  CHECK(copied.exit_code == 0);
  CHECK(sha256_of_file(dir.path / "out.bin") == sha256_of_file(input));

  auto split =
      run_command({"sh", "-c", "printf 'one\\ntwo' | \"$0\" exec -i \"$1\" -- 'cat; echo; echo err >&2; exit 5'",
                   modbox, box.task()},
                  agent.cli_env(), 60s);
  CHECK(split.exit_code == 5);
  CHECK(split.out == "one\ntwo\n");
  CHECK(split.err == "err\n");

  // modbox shell with a pipe for stdin: the sandbox's shell reads its commands from it, no prompts.
  auto scripted =
      run_command({"sh", "-c", "printf 'echo $((6*7))\\nexit 4\\n' | \"$0\" shell \"$1\"", modbox, box.task()},
                  agent.cli_env(), 60s);
  CHECK(scripted.exit_code == 4);
  CHECK(scripted.out == "42\n");
  CHECK(scripted.err == "");

  // -t without a terminal on stdin is refused; -i alone is what a pipe gets.
  auto no_tty =
      run_command({"sh", "-c", "echo x | \"$0\" exec -it \"$1\" -- cat", modbox, box.task()}, agent.cli_env(), 60s);
  CHECK(no_tty.exit_code == 1);
  CHECK(no_tty.err.find("terminal") != std::string::npos);
}
