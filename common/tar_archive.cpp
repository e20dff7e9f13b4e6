#include "common/tar_archive.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <system_error>
#include <vector>

namespace modbox {

namespace {

constexpr std::size_t block = 512;

struct Entry {
  std::string path;
  char type = '0';  // '0' file, '5' directory, '2' symbolic link
  unsigned mode = 0644;
  std::uint64_t size = 0;
  std::int64_t mtime = 0;
  std::string link;
};

/// `value` as a zero-padded octal field of `width` bytes (the last one NUL).
void put_octal(char* field, std::size_t width, std::uint64_t value) {
  std::string digits(width - 1, '0');
  for (std::size_t i = width - 1; i-- > 0 && value > 0; value >>= 3) digits[i] = static_cast<char>('0' + (value & 7));
  std::memcpy(field, digits.data(), width - 1);
  field[width - 1] = '\0';
}

std::string header_block(const Entry& entry, std::string_view name, std::string_view link) {
  std::string header(block, '\0');
  char* h = header.data();
  std::memcpy(h, name.data(), std::min<std::size_t>(name.size(), 100));
  put_octal(h + 100, 8, entry.mode & 07777);
  put_octal(h + 108, 8, 0);
  put_octal(h + 116, 8, 0);
  put_octal(h + 124, 12, entry.size);
  put_octal(h + 136, 12, static_cast<std::uint64_t>(std::max<std::int64_t>(entry.mtime, 0)));
  std::memset(h + 148, ' ', 8);
  h[156] = entry.type;
  std::memcpy(h + 157, link.data(), std::min<std::size_t>(link.size(), 100));
  std::memcpy(h + 257, "ustar", 6);
  std::memcpy(h + 263, "00", 2);
  unsigned sum = 0;
  for (unsigned char c : header) sum += c;
  put_octal(h + 148, 7, sum);
  h[155] = ' ';
  return header;
}

/// A pax record "LEN key=value\n", whose LEN counts itself.
std::string pax_record(std::string_view key, std::string_view value) {
  std::size_t body = key.size() + value.size() + 3;  // ' ', '=', '\n'
  std::size_t length = body + 1;
  while (std::to_string(length).size() + body != length) length = std::to_string(length).size() + body;
  return std::to_string(length) + " " + std::string(key) + "=" + std::string(value) + "\n";
}

std::string padding(std::uint64_t size) {
  return std::string((block - size % block) % block, '\0');
}

std::string entry_head(const Entry& entry) {
  std::string out;
  std::string records;
  if (entry.path.size() > 99) records += pax_record("path", entry.path);
  if (entry.link.size() > 99) records += pax_record("linkpath", entry.link);
  if (!records.empty()) {
    Entry pax{.path = "PaxHeaders/" + entry.path.substr(0, 80), .type = 'x', .mode = 0644, .size = records.size()};
    out += header_block(pax, pax.path, "");
    out += records + padding(records.size());
  }
  out += header_block(entry, std::string_view(entry.path).substr(0, 100), std::string_view(entry.link).substr(0, 100));
  return out;
}

}  // namespace

std::string tar_file_entry(std::string_view path, std::string_view content, unsigned mode) {
  Entry entry{.path = std::string(path), .type = '0', .mode = mode, .size = content.size()};
  return entry_head(entry) + std::string(content) + padding(content.size());
}

std::string tar_end() {
  return std::string(2 * block, '\0');
}

Result<std::string> tar_directory(const std::filesystem::path& directory, std::uint64_t max_bytes) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (!fs::is_directory(directory, error))
    return fail(ErrorKind::not_found, "the build context " + directory.string() + " is not a directory");
  std::vector<fs::path> paths;
  for (auto it = fs::recursive_directory_iterator(directory, error); !error && it != fs::recursive_directory_iterator();
       it.increment(error))
    paths.push_back(it->path());
  if (error)
    return fail(ErrorKind::bad_request, "cannot read the build context " + directory.string() + ": " + error.message());
  // Parents before their children, in the same order on every run.
  std::sort(paths.begin(), paths.end());
  std::string archive;
  auto too_large = [&] {
    return fail(ErrorKind::too_large, "the build context " + directory.string() + " is larger than " +
                                          std::to_string(max_bytes >> 20) +
                                          " MiB; build from a smaller directory (--context)");
  };
  for (const auto& path : paths) {
    struct stat info {};
    if (::lstat(path.c_str(), &info) != 0)
      return fail(ErrorKind::bad_request, "cannot read " + path.string() + ": " + std::strerror(errno));
    Entry entry{.path = path.lexically_relative(directory).generic_string(),
                .mode = info.st_mode & 07777,
                .mtime = info.st_mtim.tv_sec};
    std::string content;
    if (S_ISDIR(info.st_mode)) {
      entry.type = '5';
      entry.path += '/';
    } else if (S_ISLNK(info.st_mode)) {
      entry.type = '2';
      entry.link = fs::read_symlink(path, error).string();
      if (error) return fail(ErrorKind::bad_request, "cannot read the link " + path.string() + ": " + error.message());
    } else if (S_ISREG(info.st_mode)) {
      if (archive.size() + static_cast<std::uint64_t>(info.st_size) > max_bytes) return too_large();
      std::ifstream file(path, std::ios::binary);
      content.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
      if (!file.good() && !file.eof()) return fail(ErrorKind::bad_request, "cannot read " + path.string());
      entry.size = content.size();
    } else {
      continue;
    }
    archive += entry_head(entry);
    archive += content;
    archive += padding(content.size());
    if (archive.size() > max_bytes) return too_large();
  }
  archive += tar_end();
  return archive;
}

}  // namespace modbox
