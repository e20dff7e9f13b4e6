// RecordStore: one JSON file per record, replaced atomically, so a crash at any moment leaves
// every record complete, and one damaged file cannot stop the agent.

#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <random>

#include "agent/store.h"
#include "common/system.h"
#include "tests/unit/test_support.h"

using namespace modbox;
using modbox::testing::list_directory;
using modbox::testing::TempDir;

namespace {

RecordStore open_store(const std::filesystem::path& directory) {
  auto store = RecordStore::open(directory);
  REQUIRE(store.has_value());
  return std::move(*store);
}

std::vector<StoredRecord> load_everything(const RecordStore& store) {
  auto records = store.load_all([](const StoredRecord&) { return true; });
  std::sort(records.begin(), records.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return records;
}

bool looks_like_json_object(const StoredRecord& record) {
  return !record.text.empty() && record.text.front() == '{' && record.text.back() == '}';
}

void write_plain_file(const std::filesystem::path& path, const std::string& content) {
  std::ofstream(path, std::ios::binary) << content;
}

}  // namespace

TEST_CASE("records put into the store are loaded back", "[store]") {
  TempDir dir;
  auto store = open_store(dir / "sandboxes");
  REQUIRE(store.put("record-a", R"({"n": 1})").has_value());
  REQUIRE(store.put("record-b", R"({"n": 2})").has_value());
  REQUIRE(store.put("record-a", R"({"n": 3})").has_value());

  auto records = load_everything(store);
  REQUIRE(records.size() == 2);
  CHECK(records[0].id == "record-a");
  CHECK(records[0].text == R"({"n": 3})");
  CHECK(records[1].id == "record-b");
  CHECK(records[1].text == R"({"n": 2})");
}

TEST_CASE("the store's directory and files are private", "[store]") {
  TempDir dir;
  auto store = open_store(dir / "state" / "sandboxes");
  REQUIRE(store.put("id", "{}").has_value());
  struct stat status {};
  REQUIRE(::stat((dir / "state" / "sandboxes").c_str(), &status) == 0);
  CHECK((status.st_mode & 0777) == 0700);
  REQUIRE(::stat((dir / "state" / "sandboxes" / "id.json").c_str(), &status) == 0);
  CHECK((status.st_mode & 0777) == 0600);
}

TEST_CASE("removing a record deletes its file; removing twice is fine", "[store]") {
  TempDir dir;
  auto store = open_store(dir.path());
  REQUIRE(store.put("gone", "{}").has_value());
  REQUIRE(store.remove("gone").has_value());
  CHECK(load_everything(store).empty());
  CHECK(store.remove("gone").has_value());
}

TEST_CASE("ids that could escape the directory are refused", "[store]") {
  TempDir dir;
  auto store = open_store(dir / "sandboxes");
  for (const char* id : {"", "..", "../x", "a/b", "/abs", "a.b", "a b", ".hidden"}) {
    INFO("id: '" << id << "'");
    CHECK_FALSE(store.put(id, "{}").has_value());
    CHECK_FALSE(store.remove(id).has_value());
  }
  CHECK_FALSE(store.put(std::string(65, 'a'), "{}").has_value());
  CHECK(list_directory(dir / "sandboxes").empty());
  CHECK(list_directory(dir.path()) == std::vector<std::string>{"sandboxes"});
}

TEST_CASE("a temp file left by a crash is removed on open and never loaded", "[store][crash]") {
  TempDir dir;
  {
    auto store = open_store(dir.path());
    REQUIRE(store.put("kept", R"({"complete": true})").has_value());
  }
  write_plain_file(dir / ".kept.json.tmp-0123456789ab", R"({"compl)");
  write_plain_file(dir / ".other.json.tmp-ba9876543210", "");

  auto store = open_store(dir.path());
  CHECK(list_directory(dir.path()) == std::vector<std::string>{"kept.json"});
  auto records = load_everything(store);
  REQUIRE(records.size() == 1);
  CHECK(records[0].text == R"({"complete": true})");
}

TEST_CASE("a damaged record is set aside and the others still load", "[store][crash]") {
  TempDir dir;
  auto store = open_store(dir.path());
  REQUIRE(store.put("good-1", R"({"n": 1})").has_value());
  REQUIRE(store.put("good-2", R"({"n": 2})").has_value());
  write_plain_file(dir / "truncated.json", R"({"n": )");
  write_plain_file(dir / "garbage.json", std::string("\0\xff\x13", 3));

  auto records = store.load_all(looks_like_json_object);
  std::sort(records.begin(), records.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  REQUIRE(records.size() == 2);
  CHECK(records[0].id == "good-1");
  CHECK(records[1].id == "good-2");

  auto names = list_directory(dir.path());
  REQUIRE(names.size() == 4);
  CHECK(names[0].starts_with("garbage.json.corrupt-"));
  CHECK(names[1] == "good-1.json");
  CHECK(names[2] == "good-2.json");
  CHECK(names[3].starts_with("truncated.json.corrupt-"));
  // The set-aside copy keeps the bytes for a human to look at.
  CHECK(read_file(dir / names[3]) == R"({"n": )");

  SECTION("set-aside files are not loaded again") {
    CHECK(store.load_all(looks_like_json_object).size() == 2);
    CHECK(list_directory(dir.path()).size() == 4);
  }
}

TEST_CASE("files that are not records are ignored", "[store]") {
  TempDir dir;
  auto store = open_store(dir.path());
  write_plain_file(dir / "notes.txt", "hello");
  write_plain_file(dir / "bad id.json", "{}");
  std::filesystem::create_directory(dir / "sub.json.d");
  CHECK(load_everything(store).empty());
  CHECK(list_directory(dir.path()).size() == 3);
}

namespace {

/// Versions of one record of different sizes, so that a torn write could not pass for any of them.
std::vector<std::string> record_versions() {
  std::vector<std::string> versions;
  for (int version = 0; version < 4; ++version)
    versions.push_back("{\"version\": " + std::to_string(version) + ", \"padding\": \"" +
                       std::string(static_cast<std::size_t>(version + 1) * 48 * 1024, static_cast<char>('a' + version)) +
                       "\"}");
  return versions;
}

/// Forks a child that rewrites the record in a loop; returns its pid once it is writing.
pid_t start_writer(const RecordStore& store, const std::vector<std::string>& versions) {
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::close(ready[0]);
    (void)::write(ready[1], "r", 1);
    for (std::size_t i = 1;; ++i)
      if (!store.put("record", versions[i % versions.size()])) ::_exit(2);
  }
  ::close(ready[1]);
  pollfd poll_ready{ready[0], POLLIN, 0};
  bool started = ::poll(&poll_ready, 1, 10'000) == 1;
  ::close(ready[0]);
  if (!started) ::kill(child, SIGKILL), ::waitpid(child, nullptr, 0);
  REQUIRE(started);
  return child;
}

}  // namespace

TEST_CASE("a writer killed at random moments always leaves a complete record", "[store][crash]") {
  TempDir dir;
  const auto versions = record_versions();
  {
    auto store = open_store(dir.path());
    REQUIRE(store.put("record", versions[0]).has_value());
  }
  std::mt19937 random(Catch::rngSeed());
  std::uniform_int_distribution<int> delay_microseconds(0, 3000);
  int temp_files_left = 0;

  for (int iteration = 0; iteration < 200; ++iteration) {
    auto store = open_store(dir.path());
    pid_t writer = start_writer(store, versions);
    // Let it run for a random moment, then kill it wherever it is.
    auto kill_at = std::chrono::steady_clock::now() + std::chrono::microseconds(delay_microseconds(random));
    while (std::chrono::steady_clock::now() < kill_at) {
    }
    REQUIRE(::kill(writer, SIGKILL) == 0);
    int status = 0;
    REQUIRE(::waitpid(writer, &status, 0) == writer);
    REQUIRE(WIFSIGNALED(status));

    if (list_directory(dir.path()).size() > 1) ++temp_files_left;
    auto reopened = open_store(dir.path());
    CHECK(list_directory(dir.path()) == std::vector<std::string>{"record.json"});
    auto records = reopened.load_all(looks_like_json_object);
    INFO("iteration " << iteration);
    REQUIRE(records.size() == 1);
    REQUIRE(std::find(versions.begin(), versions.end(), records[0].text) != versions.end());
  }
  // Most kills land inside a write, so the cleanup on open was exercised too.
  CHECK(temp_files_left > 0);
}
