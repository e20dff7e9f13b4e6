// The system call wrappers: timestamps, identifiers, secrets comparison, atomic files, and the
// lock and socket probes the CLI tells a live agent by.

#include "common/system.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <set>
#include <sstream>

#include "agent/process.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using modbox::testing::error_kind;
using modbox::testing::list_directory;
using modbox::testing::TempDir;

namespace {

TimePoint at_millisecond(std::int64_t milliseconds) {
  return TimePoint(std::chrono::milliseconds(milliseconds));
}

/// xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx in lowercase hex, V one of 8, 9, a, b (RFC 4122 variant).
bool is_version_4_uuid(const std::string& text) {
  if (text.size() != 36) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash != (text[i] == '-')) return false;
    if (!dash && std::string_view("0123456789abcdef").find(text[i]) == std::string_view::npos) return false;
  }
  return text[14] == '4' && std::string_view("89ab").find(text[19]) != std::string_view::npos;
}

unsigned file_mode(const std::filesystem::path& path) {
  struct stat status {};
  REQUIRE(::stat(path.c_str(), &status) == 0);
  return status.st_mode & 07777;
}

void write_plain_file(const std::filesystem::path& path, const std::string& content) {
  std::ofstream(path, std::ios::binary) << content;
}

}  // namespace

TEST_CASE("timestamps are RFC 3339 in UTC with milliseconds", "[system][time]") {
  CHECK(format_timestamp(at_millisecond(0)) == "1970-01-01T00:00:00.000Z");
  CHECK(format_timestamp(at_millisecond(1'779'444'000'007)) == "2026-05-22T10:00:00.007Z");
  // Sub-millisecond parts are dropped, not rounded up.
  CHECK(format_timestamp(at_millisecond(999) + std::chrono::microseconds(999)) == "1970-01-01T00:00:00.999Z");
  CHECK(format_timestamp(at_millisecond(-1)) == "1969-12-31T23:59:59.999Z");
}

TEST_CASE("a formatted timestamp parses back to the same millisecond", "[system][time]") {
  for (std::int64_t milliseconds : {0LL, 1LL, 999LL, 1'779'444'000'123LL, 4'102'444'799'999LL}) {
    INFO("milliseconds " << milliseconds);
    auto parsed = parse_timestamp(format_timestamp(at_millisecond(milliseconds)));
    REQUIRE(parsed.has_value());
    CHECK(*parsed == at_millisecond(milliseconds));
  }
  auto now = std::chrono::floor<std::chrono::milliseconds>(std::chrono::system_clock::now());
  CHECK(parse_timestamp(format_timestamp(now)) == TimePoint(now));
}

TEST_CASE("timestamps without milliseconds or with +00:00 are accepted", "[system][time]") {
  CHECK(parse_timestamp("2026-05-22T10:00:00Z") == at_millisecond(1'779'444'000'000));
  CHECK(parse_timestamp("2026-05-22T10:00:00.5Z") == at_millisecond(1'779'444'000'500));
  CHECK(parse_timestamp("2026-05-22T10:00:00.123456+00:00") == at_millisecond(1'779'444'000'123));
}

TEST_CASE("timestamps that are not UTC or not timestamps are refused", "[system][time]") {
  for (const char* text : {"", "yesterday", "2026-05-22", "2026-05-22T10:00:00", "2026-05-22T10:00:00+02:00",
                           "2026-05-22T10:00:00.000Zjunk"}) {
    INFO("text: " << text);
    CHECK_FALSE(parse_timestamp(text).has_value());
  }
}

TEST_CASE("a full disk is told apart from other failures of a system call", "[system]") {
  for (int full : {ENOSPC, EDQUOT}) {
    Error error = system_error("write", "/state/x.json", full);
    CHECK(error.kind == ErrorKind::insufficient_storage);
    CHECK(http_status(error.kind) == 507);
    CHECK(error.message.find("free space") != std::string::npos);
  }
  CHECK(system_error("write", "/state/x.json", EIO).kind == ErrorKind::internal);
  CHECK(error_kind_for_status(507) == ErrorKind::insufficient_storage);
}

TEST_CASE("new_uuid yields distinct version 4 UUIDs", "[system][uuid]") {
  CHECK(is_version_4_uuid("0b0e7a4c-2f7e-4c4e-9a53-5f0b6a1d2e3f"));
  CHECK_FALSE(is_version_4_uuid("0b0e7a4c-2f7e-1c4e-9a53-5f0b6a1d2e3f"));  // version 1
  CHECK_FALSE(is_version_4_uuid("0b0e7a4c-2f7e-4c4e-ca53-5f0b6a1d2e3f"));  // other variant
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string uuid = new_uuid();
    INFO("uuid " << uuid);
    REQUIRE(is_version_4_uuid(uuid));
    seen.insert(uuid);
  }
  CHECK(seen.size() == 1000);
}

TEST_CASE("random_hex yields two lowercase hex digits per byte", "[system][random]") {
  CHECK(random_hex(0).empty());
  std::string hex = random_hex(32);
  CHECK(hex.size() == 64);
  CHECK(hex.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(random_hex(32) != hex);
}

TEST_CASE("constant_time_equals compares whole secrets", "[system][secrets]") {
  CHECK(constant_time_equals("", ""));
  CHECK(constant_time_equals("secret", "secret"));
  CHECK_FALSE(constant_time_equals("secret", "secreT"));
  CHECK_FALSE(constant_time_equals("secret", "secre"));
  CHECK_FALSE(constant_time_equals("secre", "secret"));
  CHECK_FALSE(constant_time_equals("secret", ""));
  CHECK(constant_time_equals(std::string_view("a\0b", 3), std::string_view("a\0b", 3)));
  CHECK_FALSE(constant_time_equals(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
}

TEST_CASE("write_file_atomic writes the content with the mode and leaves no temp file", "[system][files]") {
  TempDir dir;
  auto path = dir / "record.json";
  REQUIRE(write_file_atomic(path, "first").has_value());
  CHECK(read_file(path) == "first");
  CHECK(file_mode(path) == 0600);
  CHECK(list_directory(dir.path()) == std::vector<std::string>{"record.json"});
}

TEST_CASE("write_file_atomic replaces an existing file", "[system][files]") {
  TempDir dir;
  auto path = dir / "record.json";
  write_plain_file(path, "a much longer old content that must not survive");
  REQUIRE(write_file_atomic(path, "new").has_value());
  CHECK(read_file(path) == "new");
  CHECK(file_mode(path) == 0600);
  CHECK(list_directory(dir.path()) == std::vector<std::string>{"record.json"});
}

TEST_CASE("write_file_atomic writes empty and binary content", "[system][files]") {
  TempDir dir;
  REQUIRE(write_file_atomic(dir / "empty", "").has_value());
  CHECK(read_file(dir / "empty") == "");
  std::string binary("\0\x01\xff", 3);
  REQUIRE(write_file_atomic(dir / "binary", binary).has_value());
  CHECK(read_file(dir / "binary") == binary);
}

TEST_CASE("write_file_atomic into a missing directory fails with the call's name", "[system][files]") {
  TempDir dir;
  auto written = write_file_atomic(dir / "missing" / "record.json", "x");
  REQUIRE_FALSE(written.has_value());
  CHECK(written.error().message.find("open(") == 0);
  CHECK(list_directory(dir.path()).empty());
}

TEST_CASE("read_file refuses files larger than its limit", "[system][files]") {
  TempDir dir;
  auto path = dir / "hundred";
  write_plain_file(path, std::string(100, 'x'));
  CHECK(read_file(path, 100) == std::string(100, 'x'));
  auto refused = read_file(path, 99);
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error().kind == ErrorKind::too_large);
}

TEST_CASE("read_file of a missing file is not_found", "[system][files]") {
  TempDir dir;
  auto missing = read_file(dir / "missing");
  REQUIRE_FALSE(missing.has_value());
  CHECK(missing.error().kind == ErrorKind::not_found);
  CHECK(missing.error().message.find("No such file") != std::string::npos);
}

TEST_CASE("read_untrusted_file reads a bounded start of regular files only", "[system][files]") {
  TempDir dir;
  write_plain_file(dir / "note", "unable to find user x");
  CHECK(read_untrusted_file(dir / "note", 1024) == "unable to find user x");
  CHECK(read_untrusted_file(dir / "note", 6) == "unable");
  CHECK(error_kind(read_untrusted_file(dir / "missing", 1024)) == ErrorKind::not_found);
  // A symlink planted where the file should be is not followed, even to a readable file.
  std::filesystem::create_symlink(dir / "note", dir / "link");
  CHECK_FALSE(read_untrusted_file(dir / "link", 1024).has_value());
  // Nor does a FIFO block the reader.
  REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
  auto fifo = read_untrusted_file(dir / "fifo", 1024);
  REQUIRE_FALSE(fifo.has_value());
  CHECK_THAT(fifo.error().message, Catch::Contains("not a regular file"));
}

TEST_CASE("make_directories creates parents and gives the last one its mode", "[system][files]") {
  TempDir dir;
  auto path = dir / "a" / "b" / "c";
  REQUIRE(make_directories(path, 0700).has_value());
  CHECK(std::filesystem::is_directory(path));
  CHECK(file_mode(path) == 0700);
  CHECK(make_directories(path, 0700).has_value());  // existing is fine
}

TEST_CASE("UniqueFd closes its descriptor once", "[system][fd]") {
  int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(raw >= 0);
  {
    UniqueFd owner(raw);
    UniqueFd moved(std::move(owner));
    CHECK_FALSE(owner.valid());
    CHECK(moved.get() == raw);
  }
  CHECK(::fcntl(raw, F_GETFD) == -1);
}

TEST_CASE("file_lock_held tells a held flock from a free one and leaves it free", "[system][lock]") {
  TempDir dir;
  auto path = dir / "agent.lock";
  CHECK(file_lock_held(path) == false);  // missing: nobody holds it
  UniqueFd holder(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  REQUIRE(holder.valid());
  CHECK(file_lock_held(path) == false);
  REQUIRE(::flock(holder.get(), LOCK_EX | LOCK_NB) == 0);
  CHECK(file_lock_held(path) == true);
  REQUIRE(::flock(holder.get(), LOCK_UN) == 0);
  CHECK(file_lock_held(path) == false);
  CHECK(::flock(holder.get(), LOCK_EX | LOCK_NB) == 0);  // the probe let go of it
}

TEST_CASE("unix_socket_listening tells a listening socket from a missing or stale one", "[system][socket]") {
  TempDir dir;
  auto path = dir / "agent.sock";
  CHECK(unix_socket_listening(path) == false);
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::copy(path.native().begin(), path.native().end(), address.sun_path);
  REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  REQUIRE(::listen(listener.get(), 4) == 0);
  CHECK(unix_socket_listening(path) == true);
  listener.reset();
  CHECK(unix_socket_listening(path) == false);  // the file stays, nobody listens
}

TEST_CASE("children of the agent start with only descriptors 0-2, whatever the agent holds", "[system][process]") {
  // The front's sockets are opened without O_CLOEXEC; none may reach a child (a child that kept a
  // sandbox port open would outlive its destroy, and dash cannot redirect onto a taken fd 11).
  TempDir dir;
  int leaked = ::open("/dev/null", O_RDONLY);  // inheritable, like an Asio socket
  REQUIRE(leaked >= 0);
  int high = ::fcntl(leaked, F_DUPFD, 11);
  REQUIRE(high >= 11);
  auto listing = dir / "fds";
  auto pid = spawn_process({.argv = {"/bin/sh", "-c", "ls /proc/self/fd"}, .output_file = listing.string()});
  REQUIRE(pid.has_value());
  auto status = wait_process(*pid, std::chrono::seconds(10));
  ::close(leaked);
  ::close(high);
  REQUIRE(status.has_value());
  auto fds = read_file(listing, 4096);
  REQUIRE(fds.has_value());
  // ls itself opens one descriptor for /proc/self/fd: 0, 1, 2 and that one.
  std::istringstream lines(*fds);
  std::vector<int> open;
  for (std::string line; std::getline(lines, line);) open.push_back(std::stoi(line));
  INFO(*fds);
  CHECK(open.size() == 4);
  CHECK(std::find(open.begin(), open.end(), high) == open.end());
}
