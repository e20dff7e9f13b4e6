// The real modbox-helper binary, run on the host (no container) and driven through the agent's
// helper client: exec semantics, timeouts that kill the whole process group, cancellation when the
// agent goes away, reaping, concurrency, the PID 1 duties, files and TCP relays (to servers the
// tests start on the host's loopback, which the helper shares here). The integration tests repeat the
// essentials inside real containers.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
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
#include <functional>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>

#include "agent/helper_client.h"
#include "common/main_log.h"
#include "common/system.h"
#include "tests/unit/helper_process.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using namespace modbox::testing;
using Clock = std::chrono::steady_clock;

namespace {

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

TEST_CASE("the entrypoint's stdout and stderr are kept, in order, in the main log", "[helper-process][entrypoint]") {
  HelperProcess helper({"/bin/sh", "-c", "echo out; echo err >&2; echo out again"});
  std::string log_path = (helper.dir() / std::string(helper::main_log_name)).string();
  CHECK(eventually([&] {
    auto log = main_log::read(log_path);
    return log && log->bytes == "out\nerr\nout again\n";
  }));
  // Without --exit-with-child the helper serves on, and rings no bell.
  CHECK(helper.run("echo still here").stdout_text == "still here\n");
  CHECK_FALSE(std::filesystem::exists(helper.dir() / std::string(helper::main_exit_name)));
}

TEST_CASE("with --exit-with-child the helper exits with its child's status and rings the bell",
          "[helper-process][entrypoint]") {
  TempDir marker_dir;
  auto go = marker_dir / "go";
  HelperProcess helper(
      {"/bin/sh", "-c",
       "echo started; while [ ! -f " + go.string() + " ]; do sleep 0.02; done; echo last words; exit 3"},
      {"--exit-with-child"});
  // It serves while the child runs.
  CHECK(helper.run("echo serving").stdout_text == "serving\n");
  std::filesystem::path directory = helper.dir().path();
  REQUIRE(write_file_atomic(go, "").has_value());
  auto status = helper.wait_exit(std::chrono::seconds(10));
  REQUIRE(status.has_value());
  REQUIRE(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 3);
  CHECK(read_file(directory / std::string(helper::main_exit_name)).value_or("") == "3\n");
  // What the child wrote just before it exited made it into the log.
  auto log = main_log::read((directory / std::string(helper::main_log_name)).string());
  REQUIRE(log.has_value());
  CHECK(log->bytes == "started\nlast words\n");
}

TEST_CASE("with --exit-with-child a child killed by a signal is 128+n", "[helper-process][entrypoint]") {
  TempDir marker_dir;
  auto go = marker_dir / "go";
  HelperProcess helper({"/bin/sh", "-c", "while [ ! -f " + go.string() + " ]; do sleep 0.02; done; kill -9 $$"},
                       {"--exit-with-child"});
  REQUIRE(write_file_atomic(go, "").has_value());
  auto status = helper.wait_exit(std::chrono::seconds(10));
  REQUIRE(status.has_value());
  REQUIRE(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 137);
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

namespace {

/// A TCP socket on the host's loopback (127.0.0.1, or ::1 alone), bound to `port` (0: the kernel
/// picks) and listening when asked to; invalid when the address cannot be had (no IPv6).
UniqueFd tcp_socket(int family, std::uint16_t port, bool listening) {
  UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return fd;
  int on = 1;
  int bound = -1;
  if (family == AF_INET6) {
    ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
    sockaddr_in6 address{};
    address.sin6_family = AF_INET6;
    address.sin6_addr = in6addr_loopback;
    address.sin6_port = htons(port);
    bound = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address);
  } else {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(port);
    bound = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address);
  }
  if (bound != 0 || (listening && ::listen(fd.get(), SOMAXCONN) != 0)) return UniqueFd();
  return fd;
}

std::uint16_t port_of(int fd) {
  sockaddr_storage address{};
  socklen_t size = sizeof address;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size) == 0);
  return address.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port)
                                       : ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
}

bool send_bytes(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t sent = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (sent <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(sent));
  }
  return true;
}

/// Exactly `size` bytes from `fd` (fewer when it ends first).
std::string receive_bytes(int fd, std::size_t size) {
  std::string bytes(size, '\0');
  ssize_t got = ::recv(fd, bytes.data(), size, MSG_WAITALL);
  bytes.resize(got > 0 ? static_cast<std::size_t>(got) : 0);
  return bytes;
}

std::string receive_to_end(int fd) {
  std::string bytes;
  char buffer[64 << 10];
  for (;;) {
    ssize_t got = ::recv(fd, buffer, sizeof buffer, 0);
    if (got <= 0) return bytes;
    bytes.append(buffer, static_cast<std::size_t>(got));
  }
}

/// Everything until end of file; nullopt when the end never came (the socket's receive timeout
/// passed) or the connection broke.
std::optional<std::string> receive_until_end(int fd) {
  std::string bytes;
  char buffer[64 << 10];
  for (;;) {
    ssize_t got = ::recv(fd, buffer, sizeof buffer, 0);
    if (got == 0) return bytes;
    if (got < 0) return std::nullopt;
    bytes.append(buffer, static_cast<std::size_t>(got));
  }
}

/// Echoes what arrives; passes the client's end of file on by shutting its own write side.
void echo(int fd) {
  char buffer[64 << 10];
  for (;;) {
    ssize_t got = ::recv(fd, buffer, sizeof buffer, 0);
    if (got <= 0 || !send_bytes(fd, std::string_view(buffer, static_cast<std::size_t>(got)))) break;
  }
  ::shutdown(fd, SHUT_WR);
}

/// A TCP server on a listening socket, serving each connection with `serve` on a thread of its
/// own; it owns the connections, and shuts them all down before it joins the threads.
class TcpServer {
 public:
  TcpServer(UniqueFd listener, std::function<void(int fd)> serve)
      : listener_(std::move(listener)), serve_(std::move(serve)), port_(port_of(listener_.get())) {
    acceptor_ = std::thread([this] {
      for (;;) {
        int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
          if (errno == EINTR || errno == ECONNABORTED) continue;
          return;  // the listener was shut down
        }
        std::lock_guard lock(mutex_);
        connections_.emplace_back(fd);
        threads_.emplace_back([this, fd] { serve_(fd); });
      }
    });
  }
  explicit TcpServer(std::function<void(int fd)> serve) : TcpServer(tcp_socket(AF_INET, 0, true), std::move(serve)) {}
  ~TcpServer() {
    ::shutdown(listener_.get(), SHUT_RDWR);
    acceptor_.join();
    std::lock_guard lock(mutex_);
    for (auto& connection : connections_) ::shutdown(connection.get(), SHUT_RDWR);
    for (auto& thread : threads_) thread.join();
  }
  std::uint16_t port() const { return port_; }
  std::size_t accepted() const {
    std::lock_guard lock(mutex_);
    return connections_.size();
  }

 private:
  UniqueFd listener_;
  std::function<void(int)> serve_;
  std::uint16_t port_;
  mutable std::mutex mutex_;
  std::vector<UniqueFd> connections_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

/// The largest size the kernel lets a TCP buffer grow to: the third field of `name` (tcp_rmem, tcp_wmem).
std::size_t tcp_buffer_max(const std::string& name) {
  std::ifstream limits("/proc/sys/net/ipv4/" + name);
  std::size_t least = 0, initial = 0, most = 0;
  limits >> least >> initial >> most;
  REQUIRE(most > 0);
  return most;
}

/// A relay through `helper` whose reads give up after 10 s: a relay that fails to pass an end
/// of file on fails the test instead of hanging it.
UniqueFd open_patient_relay(HelperProcess& helper, std::uint16_t port) {
  auto relay = expect_value(helper.client().open_relay(helper.socket(), port));
  timeval patience{10, 0};
  REQUIRE(::setsockopt(relay.get(), SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience) == 0);
  return relay;
}

std::size_t children_of(pid_t pid) {
  return child_states(pid).size();
}

/// `size` bytes that repeat only after 2^32: a reordered or duplicated piece shows.
std::string pattern(std::size_t size, std::uint32_t seed) {
  std::string bytes(size, '\0');
  std::uint32_t state = seed;
  for (auto& byte : bytes) {
    state = state * 1664525u + 1013904223u;
    byte = static_cast<char>(state >> 24);
  }
  return bytes;
}

}  // namespace

TEST_CASE("relay: bytes go both ways between the agent and a TCP server in the sandbox", "[helper-process][relay]") {
  TcpServer server(echo);
  HelperProcess helper;
  auto relay = open_patient_relay(helper, server.port());
  for (const std::string& message : std::vector<std::string>{"hello", "a second message", std::string(1, '\0')}) {
    REQUIRE(send_bytes(relay.get(), message));
    CHECK(receive_bytes(relay.get(), message.size()) == message);
  }
  REQUIRE(::shutdown(relay.get(), SHUT_WR) == 0);
  CHECK(receive_until_end(relay.get()) == "");
  CHECK(server.accepted() == 1);
}

TEST_CASE("relay: half-closes are passed on both ways", "[helper-process][relay]") {
  std::promise<std::string> after_end;
  SECTION("the agent ends its side; the server still answers after it saw the end") {
    TcpServer server([](int fd) {
      std::string received = receive_to_end(fd);
      send_bytes(fd, "saw the end after '" + received + "'");
      ::shutdown(fd, SHUT_WR);
    });
    HelperProcess helper;
    auto relay = open_patient_relay(helper, server.port());
    REQUIRE(send_bytes(relay.get(), "request"));
    REQUIRE(::shutdown(relay.get(), SHUT_WR) == 0);
    CHECK(receive_until_end(relay.get()) == "saw the end after 'request'");
  }
  SECTION("the server ends its side; the agent reads the end and can still send") {
    TcpServer server([&](int fd) {
      send_bytes(fd, "bye");
      ::shutdown(fd, SHUT_WR);
      after_end.set_value(receive_to_end(fd));
    });
    HelperProcess helper;
    auto relay = open_patient_relay(helper, server.port());
    CHECK(receive_until_end(relay.get()) == "bye");
    REQUIRE(send_bytes(relay.get(), "still here"));
    REQUIRE(::shutdown(relay.get(), SHUT_WR) == 0);
    auto received = after_end.get_future();
    REQUIRE(received.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(received.get() == "still here");
    // Both directions have ended: the worker is gone.
    CHECK(eventually([&] { return children_of(helper.pid()) == 0; }));
  }
}

TEST_CASE("relay: 8 MiB each way arrive byte-exact through the bounded buffers", "[helper-process][relay]") {
  TcpServer server(echo);
  HelperProcess helper;
  auto relay = open_patient_relay(helper, server.port());
  std::string sent = pattern(8 << 20, 42);
  // Written in uneven pieces while the echo is read: neither side may wait for the other to finish.
  std::thread writer([&] {
    std::size_t at = 0;
    for (std::size_t piece = 1; at < sent.size(); piece = piece * 3 % 200'003 + 1) {
      std::size_t size = std::min(piece, sent.size() - at);
      if (!send_bytes(relay.get(), std::string_view(sent).substr(at, size))) break;
      at += size;
    }
    ::shutdown(relay.get(), SHUT_WR);
  });
  auto echoed = receive_until_end(relay.get());
  writer.join();
  REQUIRE(echoed.has_value());
  REQUIRE(echoed->size() == sent.size());
  CHECK(*echoed == sent);
}

TEST_CASE("relay: an agent that stops reading stops the server, not the helper's memory", "[helper-process][relay]") {
  constexpr std::size_t offered = 256 << 20;
  std::promise<std::size_t> taken;
  TcpServer server([&](int fd) {
    // Sends until the bytes stop being taken for half a second.
    timeval stall{0, 500'000};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &stall, sizeof stall);
    std::string chunk = pattern(64 << 10, 7);
    std::size_t total = 0;
    while (total < offered) {
      ssize_t sent = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
      if (sent <= 0) break;
      total += static_cast<std::size_t>(sent);
    }
    taken.set_value(total);
    ::shutdown(fd, SHUT_WR);
  });
  HelperProcess helper;
  auto relay = open_patient_relay(helper, server.port());
  auto stalled = taken.get_future();
  REQUIRE(stalled.wait_for(std::chrono::seconds(60)) == std::future_status::ready);
  std::size_t total = stalled.get();
  INFO("the server got " << total << " bytes taken before it stalled");
  // The kernel's socket buffers hold what their limits allow (the TCP receive and send buffers
  // at most, a unix socket's ~200 KiB); the worker adds its 64 KiB, never the 256 MiB offered.
  CHECK(total < tcp_buffer_max("tcp_rmem") + tcp_buffer_max("tcp_wmem") + (1u << 20));
  // What was taken all arrives once the agent reads again.
  auto rest = receive_until_end(relay.get());
  REQUIRE(rest.has_value());
  CHECK(rest->size() == total);
}

TEST_CASE("relay: a port where nothing listens is a bad gateway naming the port", "[helper-process][relay]") {
  // Bound without listening, on both loopback addresses: refused for sure.
  auto taken = tcp_socket(AF_INET, 0, false);
  REQUIRE(taken.valid());
  auto port = port_of(taken.get());
  auto taken_ipv6 = tcp_socket(AF_INET6, port, false);
  HelperProcess helper;
  auto relay = helper.client().open_relay(helper.socket(), port);
  REQUIRE_FALSE(relay.has_value());
  CHECK(relay.error().kind == ErrorKind::bad_gateway);
  CHECK(relay.error().message ==
        "nothing is listening on port " + std::to_string(port) + " in the sandbox (connection refused)");
  CHECK(eventually([&] { return children_of(helper.pid()) == 0; }));
  CHECK(helper.run("echo still serving").stdout_text == "still serving\n");
}

TEST_CASE("relay: a server that listens on ::1 alone is reached after 127.0.0.1 refuses", "[helper-process][relay]") {
  HelperProcess helper;
  // The same port on 127.0.0.1 is held without listening, so only ::1 can answer. A port the
  // kernel gave for ::1 may be in use on 127.0.0.1: then another is tried.
  for (int attempt = 0; attempt < 20; ++attempt) {
    auto listener = tcp_socket(AF_INET6, 0, true);
    if (!listener.valid()) {
      INFO("this host has no IPv6 loopback: only the 127.0.0.1 path is checked");
      TcpServer server(echo);
      auto relay = open_patient_relay(helper, server.port());
      REQUIRE(send_bytes(relay.get(), "over IPv4"));
      CHECK(receive_bytes(relay.get(), 9) == "over IPv4");
      return;
    }
    auto port = port_of(listener.get());
    auto held = tcp_socket(AF_INET, port, false);
    if (!held.valid()) continue;
    TcpServer server(std::move(listener), echo);
    auto relay = open_patient_relay(helper, port);
    REQUIRE(send_bytes(relay.get(), "over IPv6"));
    CHECK(receive_bytes(relay.get(), 9) == "over IPv6");
    return;
  }
  FAIL("no port was free on both loopback addresses");
}

TEST_CASE("relay: 300 relays open at once each carry their own bytes", "[helper-process][relay]") {
  constexpr std::size_t count = 300;
  TcpServer server(echo);
  HelperProcess helper;
  std::vector<UniqueFd> relays(count);
  std::vector<std::string> errors(count);
  std::vector<std::thread> openers;
  constexpr std::size_t threads = 12;
  for (std::size_t t = 0; t < threads; ++t)
    openers.emplace_back([&, t] {
      for (std::size_t i = t; i < count; i += threads) {
        auto relay = helper.client().open_relay(helper.socket(), server.port());
        if (relay) {
          relays[i] = std::move(*relay);
        } else {
          errors[i] = relay.error().message;
        }
      }
    });
  for (auto& opener : openers) opener.join();
  timeval patience{10, 0};
  for (std::size_t i = 0; i < count; ++i) {
    INFO("relay " << i << ": " << errors[i]);
    REQUIRE(relays[i].valid());
    ::setsockopt(relays[i].get(), SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience);
  }
  CHECK(eventually([&] { return server.accepted() == count; }));
  CHECK(children_of(helper.pid()) == count);
  for (std::size_t i = 0; i < count; ++i) REQUIRE(send_bytes(relays[i].get(), "relay " + std::to_string(i) + "\n"));
  std::size_t correct = 0;
  for (std::size_t i = 0; i < count; ++i) {
    std::string expected = "relay " + std::to_string(i) + "\n";
    if (receive_bytes(relays[i].get(), expected.size()) == expected) ++correct;
  }
  CHECK(correct == count);
  relays.clear();
  CHECK(eventually([&] { return children_of(helper.pid()) == 0; }));
}

TEST_CASE("relay: closing the agent's end ends the worker, though the server stays silent", "[helper-process][relay]") {
  std::promise<void> server_saw_end;
  TcpServer server([&](int fd) {
    receive_to_end(fd);  // never sends a byte: an idle WebSocket, say
    server_saw_end.set_value();
  });
  HelperProcess helper;
  auto baseline = children_of(helper.pid());
  auto relay = open_patient_relay(helper, server.port());
  REQUIRE(eventually([&] { return children_of(helper.pid()) == baseline + 1; }));
  // The worker holds its stdio, its connection and its TCP socket: nothing of the helper's.
  auto children =
      std::ifstream("/proc/" + std::to_string(helper.pid()) + "/task/" + std::to_string(helper.pid()) + "/children");
  pid_t worker = 0;
  REQUIRE(children >> worker);
  std::vector<std::string> fds;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/" + std::to_string(worker) + "/fd"))
    fds.push_back(entry.path().filename().string());
  std::sort(fds.begin(), fds.end());
  CHECK(fds == std::vector<std::string>{"0", "1", "2", "3", "4"});
  relay.reset();
  CHECK(eventually([&] { return children_of(helper.pid()) == baseline; }));
  CHECK(server_saw_end.get_future().wait_for(std::chrono::seconds(10)) == std::future_status::ready);
}

TEST_CASE("relay: what the agent sends with the request is the start of the stream", "[helper-process][relay]") {
  TcpServer server(echo);
  HelperProcess helper;
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::string path = helper.socket().string();
  std::copy(path.begin(), path.end(), address.sun_path);
  REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  timeval patience{10, 0};
  REQUIRE(::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience) == 0);
  // Pipelined: the request and the first bytes of the stream in one write, before any answer.
  REQUIRE(send_bytes(fd.get(), helper::encode(helper::RelayOpen{server.port()}) + "early bytes"));
  REQUIRE(::shutdown(fd.get(), SHUT_WR) == 0);
  auto answer = receive_until_end(fd.get());
  REQUIRE(answer.has_value());
  helper::FrameDecoder decoder;
  decoder.feed(*answer);
  auto hello = decoder.next();
  REQUIRE(hello.has_value());
  REQUIRE(hello->has_value());
  CHECK(std::holds_alternative<helper::Hello>(**hello));
  auto ready = decoder.next();
  REQUIRE(ready.has_value());
  REQUIRE(ready->has_value());
  CHECK(std::holds_alternative<helper::RelayReady>(**ready));
  CHECK(decoder.unread() == "early bytes");
}
