// The main process's log ring (common/main_log.h): what the helper appends reads back by stream
// position, across wrap-arounds and from the agent's saved copy; the tail's lines; and a file the
// sandbox tampered with is refused or read within bounds.

#include "common/main_log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "common/system.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using namespace modbox::testing;

namespace {
std::string pattern(std::size_t size, unsigned seed) {
  std::string bytes(size, '\0');
  for (std::size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>('a' + (i * 7 + seed) % 26);
  return bytes;
}
}  // namespace

TEST_CASE("main log: appended output reads back whole, and from any position", "[main-log]") {
  TempDir dir;
  std::string path = (dir / "main.log").string();
  auto writer = expect_value(main_log::Writer::create(path));
  auto empty = expect_value(main_log::read(path));
  CHECK(empty.bytes.empty());
  CHECK(empty.start == 0);
  CHECK(empty.end == 0);

  REQUIRE(writer.append("hello\n").has_value());
  REQUIRE(writer.append("world\n").has_value());
  auto all = expect_value(main_log::read(path));
  CHECK(all.bytes == "hello\nworld\n");
  CHECK(all.end == 12);
  auto rest = expect_value(main_log::read(path, 6));
  CHECK(rest.bytes == "world\n");
  CHECK(rest.start == 6);
  auto none = expect_value(main_log::read(path, 12));
  CHECK(none.bytes.empty());
  CHECK(none.start == 12);
  // A position past what the log holds is another log's (the helper started anew): read from its start.
  auto restarted = expect_value(main_log::read(path, 500));
  CHECK(restarted.bytes == "hello\nworld\n");
}

TEST_CASE("main log: past its capacity it keeps the last 1 MiB, and positions go on", "[main-log]") {
  TempDir dir;
  std::string path = (dir / "main.log").string();
  auto writer = expect_value(main_log::Writer::create(path));
  std::string first = pattern(700 << 10, 1), second = pattern(700 << 10, 2);
  REQUIRE(writer.append(first).has_value());
  auto follower = expect_value(main_log::read(path));
  REQUIRE(writer.append(second).has_value());
  std::string everything = first + second;

  auto kept = expect_value(main_log::read(path));
  CHECK(kept.end == everything.size());
  CHECK(kept.start == everything.size() - main_log::capacity);
  CHECK(kept.bytes == everything.substr(kept.start));
  // A follower where the first append ended reads the second whole.
  auto next = expect_value(main_log::read(path, follower.end));
  CHECK(next.bytes == second);
  // One append larger than the ring keeps its end.
  std::string huge = pattern(main_log::capacity + 12345, 3);
  REQUIRE(writer.append(huge).has_value());
  auto last = expect_value(main_log::read(path));
  CHECK(last.bytes == huge.substr(12345));
  CHECK(last.end == everything.size() + huge.size());
  // The file itself never grows past the header and the ring.
  CHECK(std::filesystem::file_size(path) == main_log::header_size + main_log::capacity);
}

TEST_CASE("main log: a snapshot reads back as the log it was taken of", "[main-log]") {
  TempDir dir;
  std::string path = (dir / "main.log").string();
  auto writer = expect_value(main_log::Writer::create(path));
  for (unsigned round = 0; round < 3; ++round) {
    REQUIRE(writer.append(pattern(500 << 10, round)).has_value());
    auto live = expect_value(main_log::read(path));
    std::string saved = (dir / ("saved-" + std::to_string(round))).string();
    REQUIRE(write_file_atomic(saved, main_log::snapshot(live)).has_value());
    auto copy = expect_value(main_log::read(saved));
    CHECK(copy.bytes == live.bytes);
    CHECK(copy.start == live.start);
    CHECK(copy.end == live.end);
    auto tail = expect_value(main_log::read(saved, live.end - 10));
    CHECK(tail.bytes == live.bytes.substr(live.bytes.size() - 10));
  }
}

TEST_CASE("main log: the last lines of the output", "[main-log]") {
  main_log::Chunk chunk{"one\ntwo\nthree\n", 100, 114};
  CHECK(main_log::last_lines(chunk, 1).bytes == "three\n");
  CHECK(main_log::last_lines(chunk, 1).start == 108);
  CHECK(main_log::last_lines(chunk, 2).bytes == "two\nthree\n");
  CHECK(main_log::last_lines(chunk, 3).bytes == chunk.bytes);
  CHECK(main_log::last_lines(chunk, 10).bytes == chunk.bytes);
  CHECK(main_log::last_lines(chunk, 0).bytes.empty());
  CHECK(main_log::last_lines(chunk, 0).start == 114);
  main_log::Chunk unfinished{"one\ntwo", 0, 7};
  CHECK(main_log::last_lines(unfinished, 1).bytes == "two");
  CHECK(main_log::last_lines(unfinished, 2).bytes == "one\ntwo");
  main_log::Chunk blank{"a\n\n\n", 0, 4};
  CHECK(main_log::last_lines(blank, 2).bytes == "\n\n");
}

TEST_CASE("main log: a missing file, a symlink, a FIFO or another file is refused without blocking", "[main-log]") {
  TempDir dir;
  CHECK(main_log::read((dir / "missing").string()).error().kind == ErrorKind::not_found);
  REQUIRE(write_file_atomic(dir / "target", "mbxlog01").has_value());
  REQUIRE(::symlink((dir / "target").c_str(), (dir / "link").c_str()) == 0);
  CHECK_FALSE(main_log::read((dir / "link").string()).has_value());
  REQUIRE(::mkfifo((dir / "fifo").c_str(), 0600) == 0);
  CHECK(main_log::read((dir / "fifo").string()).error().kind == ErrorKind::bad_request);
  REQUIRE(write_file_atomic(dir / "other", "not a log at all, but long enough").has_value());
  CHECK(main_log::read((dir / "other").string()).error().kind == ErrorKind::bad_request);
}

TEST_CASE("main log: a header the sandbox rewrote is read within the ring's bounds", "[main-log]") {
  TempDir dir;
  std::string path = (dir / "main.log").string();
  auto writer = expect_value(main_log::Writer::create(path));
  REQUIRE(writer.append("short\n").has_value());
  // `written` set to a huge count, though the file holds 6 bytes: what is there, nothing more.
  std::string header = std::string(main_log::magic) + std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8);
  auto file = read_file(path);
  REQUIRE(file.has_value());
  REQUIRE(write_file_atomic(path, header + file->substr(main_log::header_size)).has_value());
  auto read = expect_value(main_log::read(path));
  CHECK(read.bytes.size() <= main_log::capacity);
}
