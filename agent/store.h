#pragma once
// Durable records: one JSON file per record in a directory, each replaced atomically, so a crash
// at any moment leaves every record either old or new and always parseable.

#include <filesystem>
#include <string>
#include <vector>

#include "common/result.h"

namespace modbox {

struct StoredRecord {
  std::string id;
  std::string text;
};

class RecordStore {
 public:
  /// Creates the directory (0700) if needed.
  static Result<RecordStore> open(std::filesystem::path directory);

  Result<void> put(const std::string& id, const std::string& text) const;
  Result<void> remove(const std::string& id) const;

  /// Every `<id>.json`. A file that `accept` rejects is renamed to `<id>.json.corrupt-<time>` and
  /// logged instead of being returned, so one bad file cannot stop the agent.
  template <class Accept>
  std::vector<StoredRecord> load_all(Accept accept) const {
    std::vector<StoredRecord> records;
    for (auto& record : read_all())
      if (accept(record)) records.push_back(std::move(record));
      else set_aside(record.id);
    return records;
  }

  const std::filesystem::path& directory() const { return directory_; }

 private:
  explicit RecordStore(std::filesystem::path directory) : directory_(std::move(directory)) {}
  std::vector<StoredRecord> read_all() const;
  void set_aside(const std::string& id) const;

  std::filesystem::path directory_;
};

/// True when `id` is safe as a file name: [A-Za-z0-9-] only.
bool is_record_id(const std::string& id);

}  // namespace modbox
