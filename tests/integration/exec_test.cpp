// Exec through the in-sandbox helper, against the real agent and real (rootless) Podman: timeouts
// that leave nothing running, the sandbox's environment and nothing of the agent's, concurrency,
// races with destroy, reaping, exit codes, images without bash, and a helper that was tampered with.

#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <thread>

#include "common/system.h"
#include "tests/integration/harness.h"

using namespace modbox::test;
using Clock = std::chrono::steady_clock;

namespace {

/// A running sandbox with a key, and exec through its URL.
struct ExecSandbox {
  TestAgent& agent;
  std::string task = unique_name("exec");
  std::string key = unique_name("key");
  json sandbox;
  std::string url;

  explicit ExecSandbox(TestAgent& test_agent, json extra = json::object()) : agent(test_agent) {
    extra["env_vars"]["SANDBOX_API_KEY"] = key;
    extra["ttl_seconds"] = 900;
    sandbox = agent.provision_running(task, extra);
    url = sandbox["sandbox_url"];
  }
  HttpReply exec(const json& body, std::chrono::seconds timeout = 60s) const {
    return http_request(url, "POST", "/modbox/api/exec", body.dump(), {{"Authorization", "Bearer " + key}}, timeout);
  }
  json run(const std::string& command, int timeout_ms = 30000) const {
    auto reply = exec({{"command", command}, {"timeout", timeout_ms}});
    INFO(reply.body);
    REQUIRE(reply.status == 200);
    return reply.json_body();
  }
};

int count_lines_containing(const std::string& text, const std::string& needle) {
  int count = 0;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (text.substr(start, end - start).find(needle) != std::string::npos) ++count;
    start = end + 1;
  }
  return count;
}

}  // namespace

TEST_CASE("a timeout kills the whole process tree and answers within a second of the deadline", "[exec]") {
  TestAgent agent;
  agent.start();
  ExecSandbox box(agent);
  auto started = Clock::now();
  json result = box.run("sleep 999 & sleep 998 & wait", 1000);
  auto elapsed = Clock::now() - started;
  CHECK(result["killed"] == true);
  CHECK(result["signal"] == "SIGKILL");
  CHECK(result["exitCode"] == 137);
  CHECK(elapsed < 2s);
  // Nothing of it is left running: look from another exec.
  json ps = box.run("ps -eo stat,args");
  INFO(ps["stdout"].get<std::string>());
  CHECK(count_lines_containing(ps["stdout"], "sleep 99") == 0);
}

TEST_CASE("a timeout also kills what left the command's session (setsid)", "[exec]") {
  TestAgent agent;
  agent.start();
  ExecSandbox box(agent);
  auto started = Clock::now();
  // A background job that calls setsid, and an orphan that does (its subshell exits at once).
  json result = box.run("setsid sleep 999 & (setsid sleep 998 &); sleep 999", 1000);
  auto elapsed = Clock::now() - started;
  CHECK(result["killed"] == true);
  CHECK(result["signal"] == "SIGKILL");
  CHECK(result["exitCode"] == 137);
  CHECK(elapsed < 2s);
  std::string processes;
  bool gone = eventually(
      [&] {
        processes = box.run("ps -eo pid,pgid,sid,args")["stdout"];
        return count_lines_containing(processes, "sleep 998") + count_lines_containing(processes, "sleep 999") == 0;
      },
      5s, 100ms);
  INFO(processes);
  CHECK(gone);
}

TEST_CASE("commands see the sandbox's env_vars and none of the agent's secrets", "[exec]") {
  TestAgent agent;
  agent.start();
  ExecSandbox box(agent, {{"env_vars", {{"GREETING", "hi there"}, {"EMPTY_ONE", ""}}}});
  json result = box.run("env");
  std::string env = result["stdout"];
  CHECK(env.find("GREETING=hi there\n") != std::string::npos);
  CHECK(env.find("SANDBOX_API_KEY=" + box.key) != std::string::npos);
  CHECK(env.find("MODBOX_") == std::string::npos);
  CHECK(env.find("XDG_RUNTIME_DIR") == std::string::npos);
  auto token = modbox::read_file(agent.paths().token_file(), 4096);
  REQUIRE(token.has_value());
  std::string token_value = token->substr(0, token->find('\n'));
  REQUIRE(token_value.size() > 8);
  CHECK(env.find(token_value) == std::string::npos);
  // Nor can the sandbox read the token where the agent keeps it.
  json cat = box.run("cat " + agent.paths().token_file().string() + " 2>&1; true");
  CHECK(cat["stdout"].get<std::string>().find(token_value) == std::string::npos);
}

TEST_CASE("exit codes: 127 for a missing command, 126 for a non-executable one, 1 for a missing cwd", "[exec]") {
  TestAgent agent;
  agent.start();
  ExecSandbox box(agent);
  CHECK(box.run("no-such-command-xyz")["exitCode"] == 127);
  CHECK(box.run("printf '#!/bin/sh\\n' > /tmp/script; chmod -x /tmp/script; /tmp/script")["exitCode"] == 126);
  auto missing = box.exec({{"command", "pwd"}, {"cwd", "/no/such/dir"}});
  REQUIRE(missing.status == 200);
  CHECK(missing.json_body()["exitCode"] == 1);
  CHECK(missing.json_body()["stderr"].get<std::string>().find("/no/such/dir") != std::string::npos);
  json big = box.run("head -c 3000000 /dev/zero | tr '\\0' x");
  CHECK(big["stdout"].get<std::string>().size() == 1 << 20);
  CHECK(big["truncated"] == true);
}

TEST_CASE("50 parallel execs in one sandbox are all answered", "[exec]") {
  TestAgent agent;
  agent.start();
  ExecSandbox box(agent);
  constexpr int count = 50;
  std::vector<std::string> failures(count);
  std::vector<std::thread> threads;
  for (int i = 0; i < count; ++i)
    threads.emplace_back([&, i] {
      auto reply = box.exec({{"command", "sleep 0.2; echo " + std::to_string(i)}});
      if (reply.status != 200 || reply.json_body()["stdout"] != std::to_string(i) + "\n")
        failures[static_cast<std::size_t>(i)] = std::to_string(reply.status) + " " + reply.body;
    });
  for (auto& thread : threads) thread.join();
  for (const auto& failure : failures) {
    INFO(failure);
    CHECK(failure.empty());
  }
}

TEST_CASE("execs racing a destroy each get a defined answer", "[exec]") {
  TestAgent agent;
  agent.start();
  ExecSandbox box(agent);
  constexpr int count = 12;
  std::vector<int> statuses(count, -1);
  std::vector<std::thread> threads;
  for (int i = 0; i < count; ++i)
    threads.emplace_back([&, i] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20 * i));
      statuses[static_cast<std::size_t>(i)] = box.exec({{"command", "sleep 5"}}, 30s).status;
    });
  std::this_thread::sleep_for(100ms);
  auto started = Clock::now();
  CHECK(agent.api("POST", "/sandboxes/destroy", json{{"task_id", box.task}}.dump()).status == 200);
  for (auto& thread : threads) thread.join();
  CHECK(Clock::now() - started < 15s);
  for (int status : statuses) {
    INFO("status " << status);
    // 0: the sandbox URL closed with the sandbox before the request was taken.
    CHECK((status == 0 || status == 200 || status == 404 || status == 409 || status == 503));
  }
  CHECK(!std::filesystem::exists(agent.paths().runtime_dir / "sandboxes" / box.sandbox["id"].get<std::string>()));
}

TEST_CASE("an exec cut short by a destroy answers 409 with the reason", "[exec]") {
  TestAgent agent;
  agent.start();
  ExecSandbox box(agent);
  HttpReply cut;
  std::thread running([&] { cut = box.exec({{"command", "touch /tmp/started; sleep 25"}}, 60s); });
  // The command is running (not merely sent) before the destroy.
  bool started = eventually(
      [&] {
        auto probe = box.exec({{"command", "test -f /tmp/started"}});
        return probe.status == 200 && probe.json_body().value("exitCode", -1) == 0;
      },
      30s, 50ms);
  auto destroyed_at = Clock::now();
  auto destroy = agent.api("POST", "/sandboxes/destroy", json{{"task_id", box.task}}.dump());
  running.join();
  REQUIRE(started);
  CHECK(destroy.status == 200);
  INFO("exec answered " << cut.status << ": " << cut.body);
  CHECK(cut.status == 409);
  CHECK(cut.json_body().value("detail", "").find("destroyed") != std::string::npos);
  CHECK(Clock::now() - destroyed_at < 15s);  // the 25 s command did not run out its time
}

TEST_CASE("a caller that hangs up on an exec kills its command", "[exec]") {
  TestAgent agent;
  agent.start();
  ExecSandbox box(agent);
  // The client gives up after 2 s of a 25 s command (the JSON exec answers only at the end).
  auto given_up = box.exec({{"command", "echo $$ > /tmp/shell.pid; sleep 25 & echo $! > /tmp/child.pid; wait"}}, 2s);
  CHECK(given_up.status == 0);
  // The shell and the child it started are gone soon after, long before the command's own end.
  auto gone_within = Clock::now();
  bool gone = eventually(
      [&] {
        auto probe = box.exec({{"command", "for f in /tmp/shell.pid /tmp/child.pid; do kill -0 $(cat $f) 2>/dev/null && "
                                           "echo alive; done; test -s /tmp/child.pid && echo checked"}});
        return probe.status == 200 && probe.json_body().value("stdout", "") == "checked\n";
      },
      20s, 100ms);
  CHECK(gone);
  CHECK(Clock::now() - gone_within < 20s);
}

TEST_CASE("orphans of commands are reaped: no zombies pile up", "[exec]") {
  TestAgent agent;
  agent.start();
  ExecSandbox box(agent);
  for (int i = 0; i < 20; ++i) CHECK(box.run("(sleep 0.05 &); (sleep 0.05 &); (true &)")["exitCode"] == 0);
  bool clean = eventually(
      [&] {
        json ps = box.run("ps -eo stat= | grep -c '^Z' || true");
        return ps["stdout"] == "0\n";
      },
      10s, 100ms);
  CHECK(clean);
}

TEST_CASE("an image without bash runs commands with sh and says so", "[exec]") {
  TestAgent agent;
  agent.start();
  std::string tag = "localhost/modbox-test/no-bash:" + unique_name("t");
  ImageGuard guard{agent, tag};
  build_image(agent, tag, "FROM localhost/modbox/sandbox-lite:latest\nRUN rm -f /bin/bash /usr/bin/bash\n");

  ExecSandbox box(agent, {{"image", tag}});
  auto reply = box.exec({{"command", "test -e /bin/bash || echo no bash here; echo $((6 * 7))"}});
  REQUIRE(reply.status == 200);
  CHECK(reply.json_body()["stdout"] == "no bash here\n42\n");
  CHECK(reply.headers["X-Modbox-Shell"].find("sh") != std::string::npos);
  CHECK(reply.headers["X-Modbox-Shell"].find("bash") == std::string::npos);
  CHECK(agent.api("POST", "/sandboxes/destroy", json{{"task_id", box.task}}.dump()).status == 200);
}

TEST_CASE("an image with no libc and no bash, a static busybox alone, runs exec and files", "[exec]") {
  TestAgent agent;
  agent.start();
  INFO("the image is built from the host's /bin/busybox (images/prepare-host --tests installs busybox-static)");
  REQUIRE(std::filesystem::exists("/bin/busybox"));
  std::string tag = "localhost/modbox-test/busybox:" + unique_name("t");
  ImageGuard guard{agent, tag};
  build_image(agent, tag,
              "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
              {{"busybox", "/bin/busybox"}});

  ExecSandbox box(agent, {{"image", tag}});
  auto reply = box.exec({{"command", "ls /lib /usr/lib 2>/dev/null | wc -l; echo $((6 * 7))"}});
  INFO(reply.body);
  REQUIRE(reply.status == 200);
  CHECK(reply.json_body()["stdout"] == "0\n42\n");
  CHECK(reply.headers["X-Modbox-Shell"] == "/bin/sh");
  // The files API's workers need nothing from the image either.
  box.run("mkdir -p /workspace/uploads && echo hi > /workspace/uploads/1-note.txt");
  auto listed = http_request(box.url, "GET", "/modbox/api/files", "", {{"Authorization", "Bearer " + box.key}});
  REQUIRE(listed.status == 200);
  CHECK(listed.json_body()[0]["filename"] == "1-note.txt");
  auto download = http_request(box.url, "GET", "/modbox/api/files/download/1-note.txt", "",
                               {{"Authorization", "Bearer " + box.key}});
  CHECK(download.body == "hi\n");
  CHECK(agent.api("POST", "/sandboxes/destroy", json{{"task_id", box.task}}.dump()).status == 200);
}

TEST_CASE("an image with a non-root USER runs its entrypoint and every command as that user", "[exec]") {
  TestAgent agent;
  agent.start();
  std::string tag = "localhost/modbox-test/user:" + unique_name("t");
  ImageGuard guard{agent, tag};
  build_image(agent, tag, "FROM localhost/modbox/sandbox-lite:latest\nRUN useradd -m -u 1234 sandbox\nUSER sandbox\n");

  ExecSandbox box(agent, {{"image", tag}});
  json who = box.run("id -u; echo $HOME; whoami");
  CHECK(who["stdout"] == "1234\n/home/sandbox\nsandbox\n");
  CHECK(who["exitCode"] == 0);
  // The entrypoint (the helper's child other than this command's shim, $PPID) runs as the user;
  // the helper itself, PID 1, stays root.
  json uids = box.run(
      "for child in $(cat /proc/1/task/1/children); do [ $child = $PPID ] || grep '^Uid:' /proc/$child/status; done; "
      "grep '^Uid:' /proc/1/status");
  CHECK(uids["stdout"] == "Uid:\t1234\t1234\t1234\t1234\nUid:\t0\t0\t0\t0\n");
  // The command's stdio is the user's to reopen; the helper's socket is out of its reach.
  json reach = box.run("echo to-stderr > /dev/stderr; ls /run/modbox >/dev/null 2>&1 || echo no access");
  CHECK(reach["stderr"] == "to-stderr\n");
  CHECK(reach["stdout"] == "no access\n");
  CHECK(agent.api("POST", "/sandboxes/destroy", json{{"task_id", box.task}}.dump()).status == 200);
}

TEST_CASE("the image's ENV reaches exec, and the provision's env_vars override it", "[exec]") {
  TestAgent agent;
  agent.start();
  std::string tag = "localhost/modbox-test/env:" + unique_name("t");
  ImageGuard guard{agent, tag};
  build_image(agent, tag,
              "FROM localhost/modbox/sandbox-lite:latest\nENV FROM_IMAGE=image-value OVERRIDDEN=image PATH=/opt/tools:$PATH\n"
              "RUN mkdir -p /opt/tools && printf '#!/bin/sh\\necho tool ran\\n' > /opt/tools/mytool && chmod +x /opt/tools/mytool\n");
  ExecSandbox box(agent, {{"image", tag}, {"env_vars", {{"OVERRIDDEN", "provision"}}}});
  json env = box.run("echo \"$FROM_IMAGE $OVERRIDDEN\"; mytool");
  CHECK(env["stdout"] == "image-value provision\ntool ran\n");
  CHECK(env["exitCode"] == 0);
  CHECK(agent.api("POST", "/sandboxes/destroy", json{{"task_id", box.task}}.dump()).status == 200);
}

TEST_CASE("an image whose USER does not exist fails provisioning with the reason", "[exec]") {
  TestAgent agent;
  agent.start();
  std::string tag = "localhost/modbox-test/no-user:" + unique_name("t");
  ImageGuard guard{agent, tag};
  build_image(agent, tag, "FROM localhost/modbox/sandbox-lite:latest\nUSER nobody-such\n");

  std::string task = unique_name("nouser");
  auto provisioned = agent.api("POST", "/sandboxes/provision", json{{"task_id", task}, {"image", tag}}.dump());
  REQUIRE(provisioned.status == 200);
  auto waited = agent.api("POST", "/sandboxes/wait", json{{"task_id", task}, {"timeout", 60}}.dump());
  INFO(waited.body);
  CHECK(waited.status == 409);
  CHECK(waited.json_body()["detail"].get<std::string>().find("unable to find user nobody-such") != std::string::npos);
  auto detail = agent.api("GET", "/sandboxes/detail/" + task).json_body();
  CHECK(detail["status"] == "failed");
  CHECK(agent.container_states(provisioned.json_body()["id"]).empty());
}

TEST_CASE("a tampered helper socket gives 503 with a reason, never a hang", "[exec]") {
  TestAgent agent;
  agent.start();
  ExecSandbox box(agent);
  SECTION("the socket removed") {
    CHECK(box.run("rm /run/modbox/helper.sock")["exitCode"] == 0);
  }
  SECTION("the socket replaced by a symlink to another socket") {
    CHECK(box.run("mv /run/modbox/helper.sock /run/modbox/real.sock && ln -s real.sock /run/modbox/helper.sock")
              ["exitCode"] == 0);
  }
  SECTION("an impostor that answers garbage") {
    std::string impostor =
        "import os, socket\n"
        "os.unlink('/run/modbox/helper.sock')\n"
        "s = socket.socket(socket.AF_UNIX); s.bind('/run/modbox/helper.sock'); s.listen(8)\n"
        "if os.fork() == 0:\n"
        "    while True:\n"
        "        c, _ = s.accept(); c.sendall(b'HTTP/1.1 200 OK\\r\\n\\r\\n' * 1000); c.close()\n";
    // The impostor keeps serving in the background after this exec has answered.
    CHECK(box.run("cat > /tmp/impostor.py <<'EOF'\n" + impostor + "EOF\npython3 /tmp/impostor.py")["exitCode"] == 0);
  }
  auto started = Clock::now();
  auto reply = box.exec({{"command", "true"}});
  CHECK(Clock::now() - started < 5s);
  CHECK(reply.status == 503);
  CHECK(reply.json_body()["detail"].get<std::string>().find("helper") != std::string::npos);
}

TEST_CASE("running sandboxes keep their exec across an agent restart", "[exec]") {
  TestAgent agent;
  agent.start();
  ExecSandbox box(agent);
  CHECK(box.run("echo before")["stdout"] == "before\n");
  agent.stop();
  agent.start();
  CHECK(box.run("echo after")["stdout"] == "after\n");
}
