#include "agent/store.h"

#include <unistd.h>

#include <chrono>

#include "agent/log.h"
#include "common/system.h"

namespace modbox {

bool is_record_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

Result<RecordStore> RecordStore::open(std::filesystem::path directory) {
  if (auto made = make_directories(directory, 0700); !made) return std::unexpected(made.error());
  RecordStore store(std::move(directory));
  // Temporary files are left only by a crash between create and rename; they never hold the
  // only copy of a record.
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(store.directory_, error)) {
    std::string name = entry.path().filename().string();
    if (name.starts_with(".") && name.find(".tmp-") != std::string::npos) ::unlink(entry.path().c_str());
  }
  return store;
}

Result<void> RecordStore::put(const std::string& id, const std::string& text) const {
  if (!is_record_id(id)) return fail(ErrorKind::internal, "refusing to store a record with id '" + id + "'");
  return write_file_atomic(directory_ / (id + ".json"), text, 0600);
}

Result<void> RecordStore::remove(const std::string& id) const {
  if (!is_record_id(id)) return fail(ErrorKind::internal, "refusing to remove a record with id '" + id + "'");
  std::filesystem::path path = directory_ / (id + ".json");
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return std::unexpected(system_error("unlink", path, errno));
  return {};
}

std::vector<StoredRecord> RecordStore::read_all() const {
  std::vector<StoredRecord> records;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(directory_, error)) {
    const auto& path = entry.path();
    if (path.extension() != ".json") continue;
    std::string id = path.stem().string();
    if (!is_record_id(id)) continue;
    auto text = read_file(path);
    if (!text) {
      log_error("cannot read record " + path.string() + ": " + text.error().message);
      continue;
    }
    records.push_back({id, std::move(*text)});
  }
  if (error) log_error("cannot list " + directory_.string() + ": " + error.message());
  return records;
}

void RecordStore::set_aside(const std::string& id) const {
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
  std::filesystem::path from = directory_ / (id + ".json");
  std::filesystem::path to = directory_ / (id + ".json.corrupt-" + std::to_string(seconds.count()));
  std::error_code error;
  std::filesystem::rename(from, to, error);
  log_error("record " + from.string() + " is unreadable; set aside as " + to.string());
}

}  // namespace modbox
