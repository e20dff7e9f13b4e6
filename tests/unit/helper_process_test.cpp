// The real modbox-helper binary, run on the host (no container) and driven through the agent's
// helper client: exec semantics, timeouts that kill the whole process group, cancellation when the
// agent goes away, reaping, concurrency and the PID 1 duties. The integration tests repeat the
// essentials inside real containers.

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <thread>

#include "agent/helper_client.h"
#include "common/system.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using namespace modbox::testing;
using Clock = std::chrono::steady_clock;

namespace {

/// A modbox-helper child serving on a socket in a temp dir, with a clean environment.
class HelperProcess {
 public:
  explicit HelperProcess(std::vector<std::string> entrypoint = {}, std::vector<std::string> options = {}) {
    socket_ = dir_ / "helper.sock";
    std::vector<std::string> argv = {MODBOX_HELPER_BINARY, "--socket", socket_.string()};
    argv.insert(argv.end(), options.begin(), options.end());
    argv.push_back("--");
    argv.insert(argv.end(), entrypoint.begin(), entrypoint.end());
    std::vector<std::string> env = {"PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hi there", "HOME=/"};
    std::vector<char*> args, envp;
    for (auto& arg : argv) args.push_back(arg.data());
    args.push_back(nullptr);
    for (auto& item : env) envp.push_back(item.data());
    envp.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execve(args[0], args.data(), envp.data());
      ::_exit(127);
    }
    REQUIRE(pid_ > 0);
    bool ready = eventually([&] { return client_->ping(socket_, std::chrono::milliseconds(200)).has_value(); });
    REQUIRE(ready);
  }
  ~HelperProcess() {
    if (pid_ > 0) {
      // What a failed test left running goes too: the commands' shims, their groups, orphans.
      std::ifstream children("/proc/" + std::to_string(pid_) + "/task/" + std::to_string(pid_) + "/children");
      for (pid_t child = 0; children >> child;) {
        ::kill(-child, SIGKILL);
        ::kill(child, SIGKILL);
      }
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  /// SIGTERM, then the helper's exit status.
  int terminate() {
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

  Result<ExecResult> exec(const std::string& command, int timeout_ms = 10000, const std::string& cwd = "/") {
    return client_->exec(socket_, {.command = command, .timeout_ms = timeout_ms, .cwd = cwd});
  }
  ExecResult run(const std::string& command, int timeout_ms = 10000, const std::string& cwd = "/") {
    return expect_value(exec(command, timeout_ms, cwd));
  }
  pid_t pid() const { return pid_; }
  SandboxHelpers& client() { return *client_; }
  const std::filesystem::path& socket() const { return socket_; }
  const TempDir& dir() const { return dir_; }

 private:
  TempDir dir_;
  std::filesystem::path socket_;
  std::unique_ptr<SandboxHelpers> client_ = make_helper_client();
  pid_t pid_ = -1;
};

bool process_gone(pid_t pid) {
  return ::kill(pid, 0) != 0 && errno == ESRCH;
}

/// The numbers in `text`, one a line (pids a command printed).
std::vector<pid_t> pids_in(const std::string& text) {
  std::vector<pid_t> pids;
  std::istringstream lines(text);
  pid_t pid = 0;
  while (lines >> pid) pids.push_back(pid);
  return pids;
}

bool all_gone(const std::vector<pid_t>& pids) {
  return std::all_of(pids.begin(), pids.end(), process_gone);
}

/// The session of process `pid`, or -1.
pid_t session_of(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  std::istringstream fields(line.substr(line.rfind(')') + 1));
  std::string state;
  pid_t parent = 0, group = 0, session = -1;
  fields >> state >> parent >> group >> session;
  return session;
}

/// Kills, at the end of a test, the processes it learned of that are still there: a test that
/// fails must not leave them running on the host.
struct KillLeftovers {
  std::vector<pid_t> pids;
  ~KillLeftovers() {
    for (pid_t pid : pids)
      if (!process_gone(pid)) ::kill(pid, SIGKILL);
  }
};

/// The states (R, S, Z, ...) of `parent`'s children.
std::vector<char> child_states(pid_t parent) {
  std::vector<char> states;
  std::ifstream children("/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) + "/children");
  pid_t child = 0;
  while (children >> child) {
    std::ifstream stat("/proc/" + std::to_string(child) + "/stat");
    std::string line;
    std::getline(stat, line);
    auto close = line.rfind(')');
    if (close != std::string::npos && close + 2 < line.size()) states.push_back(line[close + 2]);
  }
  return states;
}

}  // namespace

TEST_CASE("the helper runs a command with the sandbox's environment and reports its status", "[helper-process]") {
  HelperProcess helper;
  auto result = helper.run("echo \"$GREETING\"; echo oops >&2; exit 3");
  CHECK(result.exit_code == 3);
  CHECK(result.stdout_text == "hi there\n");
  CHECK(result.stderr_text == "oops\n");
  CHECK_FALSE(result.killed);
  CHECK_FALSE(result.signal.has_value());
  CHECK(result.shell.find("bash") != std::string::npos);
  CHECK(helper.run("pwd", 10000, "/tmp").stdout_text == "/tmp\n");
  // bash, not sh: bash-only syntax works.
  CHECK(helper.run("[[ 1 == 1 ]] && echo yes").stdout_text == "yes\n");
}

TEST_CASE("missing and non-executable commands exit 127 and 126", "[helper-process]") {
  HelperProcess helper;
  CHECK(helper.run("no-such-command-xyz").exit_code == 127);
  auto script = helper.dir() / "not-executable";
  std::ofstream(script) << "#!/bin/sh\necho no\n";
  CHECK(helper.run(script.string()).exit_code == 126);
}

TEST_CASE("a missing cwd is exit status 1 with the reason on stderr", "[helper-process]") {
  HelperProcess helper;
  auto result = helper.run("pwd", 10000, "/no/such/dir");
  CHECK(result.exit_code == 1);
  CHECK(result.stdout_text.empty());
  CHECK_THAT(result.stderr_text, Catch::Contains("/no/such/dir") && Catch::Contains("No such file"));
}

TEST_CASE("a command ended by a signal reports the signal", "[helper-process]") {
  HelperProcess helper;
  auto result = helper.run("kill -TERM $$");
  CHECK(result.exit_code == 143);
  CHECK(result.signal == "SIGTERM");
  CHECK_FALSE(result.killed);
}

TEST_CASE("a timeout kills the whole process group and answers at once", "[helper-process]") {
  HelperProcess helper;
  auto started = Clock::now();
  auto result = helper.run("sleep 999 & echo $!; wait", 300);
  auto elapsed = Clock::now() - started;
  CHECK(result.killed);
  CHECK(result.signal == "SIGKILL");
  CHECK(result.exit_code == 137);
  CHECK(elapsed < std::chrono::milliseconds(1300));
  pid_t background = std::stoi(result.stdout_text);
  CHECK(eventually([&] { return process_gone(background); }, std::chrono::seconds(5)));
}

TEST_CASE("the command's whole tree dies when the agent hangs up", "[helper-process]") {
  HelperProcess helper;
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::string path = helper.socket().string();
  std::copy(path.begin(), path.end(), address.sun_path);
  REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  // One job in the command's group, one that left it for a session of its own.
  std::string command = "sleep 999 & echo $!; setsid sleep 998 & echo $!; wait";
  std::string request = helper::encode(helper::ExecRequest{command, "/", 30000, 1 << 20});
  REQUIRE(::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size()));
  helper::FrameDecoder decoder;
  std::string output;
  char buffer[4096];
  while (pids_in(output).size() < 2) {
    ssize_t got = ::recv(fd.get(), buffer, sizeof buffer, 0);
    REQUIRE(got > 0);
    decoder.feed(std::string_view(buffer, static_cast<std::size_t>(got)));
    for (;;) {
      auto next = decoder.next();
      REQUIRE(next.has_value());
      if (!*next) break;
      if (auto* chunk = std::get_if<helper::Output>(&**next)) output += chunk->data;
    }
  }
  auto background = pids_in(output);
  KillLeftovers leftovers{background};
  REQUIRE(eventually([&] { return session_of(background[1]) == background[1]; }));
  fd.reset();
  CHECK(eventually([&] { return all_gone(background); }, std::chrono::seconds(5)));
}

TEST_CASE("a timeout also kills what left the command's process group and session", "[helper-process]") {
  HelperProcess helper;
  auto started = Clock::now();
  // setsid in a background job, and in an orphan whose parent (the subshell) is gone at once.
  auto result = helper.run("setsid sleep 999 & echo $!; (setsid sleep 998 & echo $!); sleep 997", 300);
  auto elapsed = Clock::now() - started;
  CHECK(result.killed);
  CHECK(result.signal == "SIGKILL");
  CHECK(result.exit_code == 137);
  CHECK(elapsed < std::chrono::milliseconds(1300));
  auto background = pids_in(result.stdout_text);
  KillLeftovers leftovers{background};
  REQUIRE(background.size() == 2);
  CHECK(eventually([&] { return all_gone(background); }, std::chrono::seconds(5)));
}

TEST_CASE("a shim that does not kill the tree in time is killed by the helper", "[helper-process]") {
  HelperProcess helper;
  auto started = Clock::now();
  // The command stops its own shim (its parent), which then cannot act on the kill request.
  auto result = helper.run("kill -STOP $PPID; sleep 999 & echo $!; wait", 300);
  auto elapsed = Clock::now() - started;
  CHECK(result.killed);
  CHECK(result.signal == "SIGKILL");
  CHECK(elapsed >= std::chrono::milliseconds(1300));  // the timeout, then the shim's grace
  CHECK(elapsed < std::chrono::milliseconds(2500));
  auto background = pids_in(result.stdout_text);
  KillLeftovers leftovers{background};
  REQUIRE(background.size() == 1);
  CHECK(eventually([&] { return all_gone(background); }, std::chrono::seconds(5)));
}

TEST_CASE("the command's shell leads its own session and process group, and holds only its stdio", "[helper-process]") {
  HelperProcess helper;
  auto ids =
      pids_in(helper.run("read -r pid comm state ppid group session rest < /proc/$$/stat; echo $$ $group $session")
                  .stdout_text);
  REQUIRE(ids.size() == 3);
  CHECK(ids[1] == ids[0]);
  CHECK(ids[2] == ids[0]);
  // `kill -- -$$` reaches the command's own group, as scripts expect.
  auto group_kill = helper.run("sleep 999 & kill -TERM -- -$$; wait");
  CHECK(group_kill.signal == "SIGTERM");
  // None of the helper's descriptors (its socket, other commands' pipes) leaks into a command.
  // (Looked at in a background job: it holds what the command inherited and opens nothing.)
  CHECK(helper.run("sleep 5 & ls /proc/$!/fd | tr '\\n' ' '; kill $!").stdout_text == "0 1 2 ");
}

TEST_CASE("output past 1 MiB is dropped without blocking the command", "[helper-process]") {
  HelperProcess helper;
  auto result = helper.run("head -c 5000000 /dev/zero; echo done >&2", 20000);
  CHECK(result.exit_code == 0);
  CHECK(result.stdout_text.size() == limits::exec_output_cap_bytes);
  CHECK(result.stderr_text == "done\n");
  CHECK(result.truncated);
}

TEST_CASE("a background job that keeps stdout open does not hold the answer", "[helper-process]") {
  HelperProcess helper;
  auto started = Clock::now();
  auto result = helper.run("sleep 30 & echo $!");
  CHECK(Clock::now() - started < std::chrono::seconds(2));
  pid_t background = std::stoi(result.stdout_text);
  // It was started on purpose and outlives the command (a server, say); clean it up here.
  CHECK_FALSE(process_gone(background));
  ::kill(background, SIGKILL);
  CHECK(eventually([&] { return process_gone(background); }, std::chrono::seconds(5)));
}

TEST_CASE("many concurrent commands are all answered", "[helper-process]") {
  HelperProcess helper;
  constexpr int count = 60;
  std::vector<std::thread> threads;
  std::atomic<int> correct = 0;
  auto started = Clock::now();
  for (int i = 0; i < count; ++i)
    threads.emplace_back([&, i] {
      auto result = helper.exec("sleep 0.5; echo " + std::to_string(i));
      if (result && result->exit_code == 0 && result->stdout_text == std::to_string(i) + "\n") ++correct;
    });
  for (auto& thread : threads) thread.join();
  CHECK(correct == count);
  CHECK(Clock::now() - started < std::chrono::seconds(5));  // run side by side, not one after another
}

TEST_CASE("orphans of commands are reaped", "[helper-process]") {
  HelperProcess helper;
  for (int i = 0; i < 10; ++i) CHECK(helper.run("for i in 1 2 3 4 5; do (sleep 0.05 &); done").exit_code == 0);
  CHECK(eventually(
      [&] {
        auto states = child_states(helper.pid());
        return std::count(states.begin(), states.end(), 'Z') == 0 && states.size() <= 1;
      },
      std::chrono::seconds(5)));
}

TEST_CASE("the helper starts the entrypoint, forwards SIGTERM to it and exits with it", "[helper-process]") {
  TempDir marker_dir;
  auto marker = marker_dir / "started";
  HelperProcess helper({"/bin/sh", "-c", "echo up > " + marker.string() + "; exec sleep 1000"});
  CHECK(eventually([&] { return std::filesystem::exists(marker); }));
  int status = helper.terminate();
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 143);  // the entrypoint ended by the forwarded SIGTERM
}

TEST_CASE("the helper keeps serving when the entrypoint exits", "[helper-process]") {
  HelperProcess helper({"/bin/true"});
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(helper.run("echo still here").stdout_text == "still here\n");
  int status = helper.terminate();
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

namespace {

std::string read_whole(const std::filesystem::path& path) {
  std::ifstream file(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(file), {});
}

/// Uploads `content` through the helper in pieces of `piece` bytes.
helper::FileInfo upload_content(HelperProcess& helper, const std::string& directory, const std::string& name,
                                const std::string& content, std::size_t piece = 100000) {
  auto upload = expect_value(helper.client().upload(helper.socket(), {directory, name}));
  for (std::size_t at = 0; at < content.size(); at += piece)
    REQUIRE(upload->write(std::string_view(content).substr(at, piece)).has_value());
  return expect_value(upload->finish());
}

Result<std::string> download_content(HelperProcess& helper, const std::string& directory, const std::string& name) {
  auto download = helper.client().download(helper.socket(), {directory, name});
  if (!download) return std::unexpected(download.error());
  std::string content;
  for (;;) {
    auto chunk = (*download)->next();
    if (!chunk) return std::unexpected(chunk.error());
    if (!*chunk) break;
    content += **chunk;
  }
  CHECK(content.size() == (*download)->info().size);
  return content;
}

}  // namespace

TEST_CASE("files: upload, list, download and remove through the helper", "[helper-process][files]") {
  HelperProcess helper;
  std::string directory = (helper.dir() / "workspace" / "uploads").string();
  std::string content;
  for (int i = 0; content.size() < 3'000'000; ++i) content += "line " + std::to_string(i) + "\n";
  auto before = std::chrono::system_clock::now();
  auto stored = upload_content(helper, directory, "data.txt", content);
  // Stored as {epoch-ms}-{name} in a directory created on demand.
  CHECK(stored.name.ends_with("-data.txt"));
  auto stamp = std::stoll(stored.name.substr(0, stored.name.find('-')));
  auto before_ms = std::chrono::duration_cast<std::chrono::milliseconds>(before.time_since_epoch()).count();
  CHECK(stamp >= before_ms);
  CHECK(stamp < before_ms + 60'000);
  CHECK(stored.size == content.size());
  CHECK(read_whole(std::filesystem::path(directory) / stored.name) == content);

  // The same name in the same millisecond keeps both files.
  auto second = upload_content(helper, directory, "data.txt", "second");
  CHECK(second.name != stored.name);

  upload_content(helper, directory, "other.py", "print(1)\n");
  auto all = expect_value(helper.client().list(helper.socket(), {directory, "", 100}));
  REQUIRE(all.size() == 3);
  CHECK(std::is_sorted(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.name < b.name; }));
  auto only = expect_value(helper.client().list(helper.socket(), {directory, "other", 100}));
  REQUIRE(only.size() == 1);
  CHECK(only[0].name.ends_with("-other.py"));
  CHECK(only[0].size == 9);

  CHECK(expect_value(download_content(helper, directory, stored.name)) == content);
  REQUIRE(helper.client().remove(helper.socket(), {directory, stored.name}).has_value());
  CHECK_FALSE(std::filesystem::exists(std::filesystem::path(directory) / stored.name));
  auto again = helper.client().remove(helper.socket(), {directory, stored.name});
  REQUIRE_FALSE(again.has_value());
  CHECK(again.error().kind == ErrorKind::not_found);
  auto missing = download_content(helper, directory, stored.name);
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().kind == ErrorKind::not_found);
}

TEST_CASE("files: an abandoned upload leaves no file behind", "[helper-process][files]") {
  HelperProcess helper;
  auto directory = helper.dir() / "uploads";
  {
    auto upload = expect_value(helper.client().upload(helper.socket(), {directory.string(), "partial.bin"}));
    REQUIRE(upload->write(std::string(500'000, 'x')).has_value());
    // Destroyed without finish(): the connection closes mid-upload.
  }
  bool clean = eventually([&] {
    std::error_code error;
    return std::filesystem::exists(directory) &&
           std::filesystem::directory_iterator(directory, error) == std::filesystem::directory_iterator();
  });
  CHECK(clean);
  CHECK(expect_value(helper.client().list(helper.socket(), {directory.string(), "", 100})).empty());

  // What a worker killed by SIGKILL left (named after a pid that no longer runs) goes with the
  // next upload; a live worker's file stays.
  std::ofstream(directory / ".modbox-upload-2147483000") << "stale";
  std::ofstream(directory / (".modbox-upload-" + std::to_string(::getpid()))) << "live";
  upload_content(helper, directory.string(), "next.txt", "next");
  CHECK_FALSE(std::filesystem::exists(directory / ".modbox-upload-2147483000"));
  CHECK(std::filesystem::exists(directory / (".modbox-upload-" + std::to_string(::getpid()))));
}

TEST_CASE("files: only regular files are served; FIFOs, links and directories are refused at once",
          "[helper-process][files]") {
  HelperProcess helper;
  auto directory = helper.dir() / "uploads";
  std::filesystem::create_directories(directory / "subdir");
  REQUIRE(::mkfifo((directory / "pipe").c_str(), 0600) == 0);
  auto secret = helper.dir() / "secret.txt";
  std::ofstream(secret) << "not for download";
  std::filesystem::create_symlink(secret, directory / "link");
  std::ofstream(directory / "plain.txt") << "plain";

  auto started = Clock::now();
  for (const char* name : {"pipe", "link", "subdir"}) {
    auto refused = download_content(helper, directory.string(), name);
    INFO(name);
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error().kind == ErrorKind::bad_request);
  }
  CHECK(Clock::now() - started < std::chrono::seconds(5));

  // A listing shows regular files only.
  auto listed = expect_value(helper.client().list(helper.socket(), {directory.string(), "", 100}));
  REQUIRE(listed.size() == 1);
  CHECK(listed[0].name == "plain.txt");

  // Removing a link removes the link, not what it points to; a directory is refused.
  REQUIRE(helper.client().remove(helper.socket(), {directory.string(), "link"}).has_value());
  CHECK(std::filesystem::exists(secret));
  CHECK_FALSE(std::filesystem::is_symlink(directory / "link"));
  auto directory_removal = helper.client().remove(helper.socket(), {directory.string(), "subdir"});
  REQUIRE_FALSE(directory_removal.has_value());
  CHECK(directory_removal.error().kind == ErrorKind::bad_request);

  // A directory that does not exist yet lists as empty.
  CHECK(expect_value(helper.client().list(helper.socket(), {(helper.dir() / "none").string(), "", 100})).empty());
}

TEST_CASE("files: execs keep working while a slow upload is in progress", "[helper-process][files]") {
  HelperProcess helper;
  auto upload = expect_value(helper.client().upload(helper.socket(), {(helper.dir() / "up").string(), "slow.bin"}));
  REQUIRE(upload->write("begin").has_value());
  // The upload's worker waits for more data; the helper's own loop is free.
  CHECK(helper.run("echo still here").stdout_text == "still here\n");
  REQUIRE(upload->write("end").has_value());
  CHECK(expect_value(upload->finish()).size == 8);
}

TEST_CASE("an unknown --user stops the helper before it listens, and it leaves the reason", "[helper-process]") {
  TempDir dir;
  auto socket = dir / "helper.sock";
  pid_t pid = ::fork();
  if (pid == 0) {
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 2);  // its message is checked in the file it leaves
    ::execl(MODBOX_HELPER_BINARY, MODBOX_HELPER_BINARY, "--socket", socket.c_str(), "--user", "nobody-such", "--",
            "/bin/true", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 1);
  CHECK_FALSE(std::filesystem::exists(socket));
  auto reason = read_file(dir / "helper.failed");
  REQUIRE(reason.has_value());
  CHECK(*reason == "unable to find user nobody-such: no matching entries in passwd file");
}

TEST_CASE("with --user the entrypoint and every command run as that user", "[helper-process]") {
  // The host's own /etc/passwd: nobody is 65534 with home /nonexistent on Debian.
  HelperProcess helper({"/bin/sleep", "1000"}, {"--user", "nobody"});
  auto identity = helper.exec("id -u; id -g; echo $HOME $USER $LOGNAME; echo to-stderr > /dev/stderr");
  REQUIRE(identity.has_value());
  if (::geteuid() != 0) {
    // Only root can switch: the command says why it could not run.
    CHECK(identity->exit_code == 126);
    CHECK_THAT(identity->stderr_text, Catch::Contains("setgroups"));
    return;
  }
  // HOME was "/" (not Podman's /root for root): the helper keeps a HOME the sandbox chose.
  CHECK(identity->stdout_text == "65534\n65534\n/ nobody nobody\n");
  // Its stdio was handed to the user, who can reopen it as /dev/stderr.
  CHECK(identity->stderr_text == "to-stderr\n");
  CHECK(identity->exit_code == 0);
  // The entrypoint, the helper's first child, runs as nobody; the helper stays root.
  auto entrypoint_uid = [&] {
    std::ifstream children("/proc/" + std::to_string(helper.pid()) + "/task/" + std::to_string(helper.pid()) +
                           "/children");
    pid_t child = 0;
    if (!(children >> child)) return std::string();
    std::ifstream status("/proc/" + std::to_string(child) + "/status");
    std::string line;
    while (std::getline(status, line))
      if (line.rfind("Uid:", 0) == 0) return line;
    return std::string();
  };
  CHECK(eventually([&] { return entrypoint_uid() == "Uid:\t65534\t65534\t65534\t65534"; }));
}
