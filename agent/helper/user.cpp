#include "agent/helper/user.h"

#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>

#include "agent/helper/os.h"

namespace modbox::helper {

namespace {

constexpr std::uint32_t id_max = 2147483647;  // runc's bound for uids and gids

bool all_digits(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::optional<std::uint32_t> parse_id(std::string_view text) {
  std::uint32_t value = 0;
  if (!all_digits(text)) return std::nullopt;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || value > id_max) return std::nullopt;
  return value;
}

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> fields;
  std::size_t start = 0;
  for (;;) {
    std::size_t end = text.find(separator, start);
    fields.push_back(text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) return fields;
    start = end + 1;
  }
}

/// Calls `visit` with the fields of each line of a passwd or group file until it returns true.
/// A file that cannot be read has no lines: an image without /etc/passwd knows numbers only.
void scan_file(const std::filesystem::path& path,
               const std::function<bool(const std::vector<std::string_view>&)>& visit) {
  std::ifstream file(path);
  std::string line;
  while (std::getline(file, line)) {
    if (line.empty() || line.front() == '#') continue;
    if (visit(split(line, ':'))) return;
  }
}

struct PasswdEntry {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string home;
};

/// The first passwd entry named `user`, or whose uid is `user` when it is a number; the root entry
/// for an empty `user`, as runc reads ":group".
std::optional<PasswdEntry> find_passwd_entry(const std::filesystem::path& root, std::string_view user) {
  auto number = user.empty() ? std::optional<std::uint32_t>(0) : parse_id(user);
  std::optional<PasswdEntry> found;
  scan_file(root / "etc/passwd", [&](const std::vector<std::string_view>& fields) {
    if (fields.size() < 4) return false;
    auto uid = parse_id(fields[2]);
    auto gid = parse_id(fields[3]);
    if (!uid || !gid) return false;
    if (fields[0] != user && !(number && *uid == *number)) return false;
    found = PasswdEntry{std::string(fields[0]), *uid, *gid, fields.size() > 5 ? std::string(fields[5]) : ""};
    return true;
  });
  return found;
}

/// The gid of the first group named `group`, or whose gid is `group` when it is a number.
std::optional<gid_t> find_group(const std::filesystem::path& root, std::string_view group) {
  auto number = parse_id(group);
  std::optional<gid_t> found;
  scan_file(root / "etc/group", [&](const std::vector<std::string_view>& fields) {
    if (fields.size() < 3) return false;
    auto gid = parse_id(fields[2]);
    if (!gid || (fields[0] != group && !(number && *gid == *number))) return false;
    found = *gid;
    return true;
  });
  return found;
}

/// The gids of the groups that list `name` as a member.
std::vector<gid_t> groups_listing(const std::filesystem::path& root, std::string_view name) {
  std::vector<gid_t> groups;
  scan_file(root / "etc/group", [&](const std::vector<std::string_view>& fields) {
    auto gid = fields.size() >= 4 ? parse_id(fields[2]) : std::nullopt;
    if (!gid) return false;
    auto members = split(fields[3], ',');
    if (std::find(members.begin(), members.end(), name) != members.end() &&
        std::find(groups.begin(), groups.end(), *gid) == groups.end())
      groups.push_back(*gid);
    return false;
  });
  return groups;
}

std::unexpected<Error> out_of_range(std::string_view id) {
  return fail(
      ErrorKind::bad_request,
      "user id " + std::string(id) + " is out of range: uids and gids must be in range 0-" + std::to_string(id_max));
}

std::string describe(const SandboxUser& user) {
  return user.name.empty() ? "uid " + std::to_string(user.uid) : user.name;
}

}  // namespace

Result<SandboxUser> resolve_user(std::string_view spec, const std::filesystem::path& root) {
  std::size_t colon = spec.find(':');
  std::string_view user_part = spec.substr(0, colon);
  std::optional<std::string_view> group_part;
  if (colon != std::string_view::npos) group_part = spec.substr(colon + 1);
  if (all_digits(user_part) && !parse_id(user_part)) return out_of_range(user_part);
  if (group_part && all_digits(*group_part) && !parse_id(*group_part)) return out_of_range(*group_part);

  SandboxUser user;
  user.home = "/";
  if (auto entry = find_passwd_entry(root, user_part)) {
    user.uid = entry->uid;
    user.gid = entry->gid;
    user.name = entry->name;
    if (!entry->home.empty()) user.home = entry->home;
  } else if (auto number = parse_id(user_part)) {
    user.uid = *number;  // a uid without a passwd entry: group 0 and home /, as in Docker
  } else if (!user_part.empty()) {
    return fail(ErrorKind::not_found,
                "unable to find user " + std::string(user_part) + ": no matching entries in passwd file");
  }

  if (group_part) {
    auto gid = find_group(root, *group_part);
    if (!gid) gid = parse_id(*group_part);
    if (!gid)
      return fail(ErrorKind::not_found,
                  "unable to find group " + std::string(*group_part) + ": no matching entries in group file");
    user.gid = *gid;
  } else if (!user.name.empty()) {
    user.groups = groups_listing(root, user.name);
  }
  return user;
}

Result<void> become_user(const SandboxUser& user) {
  if (::setgroups(user.groups.size(), user.groups.data()) != 0)
    return std::unexpected(os_error("setgroups", describe(user), errno));
  if (::setgid(user.gid) != 0) return std::unexpected(os_error("setgid", std::to_string(user.gid), errno));
  if (::setuid(user.uid) != 0) return std::unexpected(os_error("setuid", std::to_string(user.uid), errno));
  // Podman sets HOME for the container's user, root here; the image's or the sandbox's own HOME stays.
  const char* home = std::getenv("HOME");
  if (home == nullptr || std::string_view(home) == "/root") ::setenv("HOME", user.home.c_str(), 1);
  if (user.name.empty()) {
    ::unsetenv("USER");
    ::unsetenv("LOGNAME");
  } else {
    ::setenv("USER", user.name.c_str(), 1);
    ::setenv("LOGNAME", user.name.c_str(), 1);
  }
  return {};
}

void give_stdio_to(const SandboxUser& user) {
  struct stat null_device {};
  bool have_null = ::stat("/dev/null", &null_device) == 0;
  for (int fd = 0; fd <= 2; ++fd) {
    struct stat info {};
    if (::fstat(fd, &info) != 0 || info.st_uid == user.uid) continue;
    if (have_null && S_ISCHR(info.st_mode) && info.st_rdev == null_device.st_rdev) continue;
    // Only the owner changes, as runc does; a descriptor that refuses stays as it is.
    if (::fchown(fd, user.uid, static_cast<gid_t>(-1)) != 0) continue;
  }
}

}  // namespace modbox::helper
