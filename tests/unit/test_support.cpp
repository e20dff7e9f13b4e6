#include "tests/unit/test_support.h"

#include <stdlib.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace modbox::testing {

TempDir::TempDir() {
  // Short paths: unix socket names must fit in sun_path (108 bytes).
  std::string pattern = (std::filesystem::temp_directory_path() / "modbox-test-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::permissions(path_, std::filesystem::perms::owner_all, std::filesystem::perm_options::add, ignored);
  std::filesystem::remove_all(path_, ignored);
}

std::vector<std::string> list_directory(const std::filesystem::path& directory) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(directory)) names.push_back(entry.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace modbox::testing
