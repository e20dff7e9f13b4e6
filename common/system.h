#pragma once
// Thin wrappers around the system calls modbox uses: each returns an Error that names the call
// and errno, so callers propagate failures instead of checking errno themselves.

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/unique_fd.h"

namespace modbox {

/// An Error of kind `internal` for a failed system call: "open(/path): No such file or directory".
Error system_error(std::string_view call, const std::string& subject, int errno_value);

/// Replaces `path` with `content` so that a crash at any moment leaves either the old or the new
/// file: write a temporary file in the same directory, fsync it, rename it over `path`, fsync the
/// directory.
Result<void> write_file_atomic(const std::filesystem::path& path, std::string_view content,
                               unsigned mode = 0600);

/// Reads a whole file, refusing files larger than `max_bytes`.
Result<std::string> read_file(const std::filesystem::path& path, std::size_t max_bytes = 16 << 20);

/// At most `max_bytes` of a regular file that someone else may have put there (a directory the
/// sandbox can write in): a symlink, FIFO or device is refused, without following or blocking.
Result<std::string> read_untrusted_file(const std::filesystem::path& path, std::size_t max_bytes);

/// Creates `path` and its missing parents; the last component gets `mode`.
Result<void> make_directories(const std::filesystem::path& path, unsigned mode = 0700);

/// Whether another open file description holds a flock() lock on `path` (false when the file is
/// missing): tested by taking LOCK_EX | LOCK_NB on a description of its own, released at once.
Result<bool> file_lock_held(const std::filesystem::path& path);

/// Whether a process listens on the unix socket `path`: false when the socket is missing or
/// refuses the connection; true when it accepts or its backlog is full. Never blocks.
Result<bool> unix_socket_listening(const std::filesystem::path& path);

/// Random bytes from the kernel, hex-encoded (2 characters per byte).
std::string random_hex(std::size_t bytes);

/// A random (version 4) UUID in canonical form.
std::string new_uuid();

/// Compares two secrets in time that depends only on their lengths.
bool constant_time_equals(std::string_view a, std::string_view b);

/// Full path of an executable found in PATH (a name with a slash: itself, when executable), or nullopt.
std::optional<std::string> find_in_path(const std::string& name);

/// The login name of the effective user, or the uid as text when it has no passwd entry.
std::string current_user_name();

using TimePoint = std::chrono::system_clock::time_point;

/// RFC 3339 in UTC with milliseconds: "2026-05-22T10:00:00.000Z".
std::string format_timestamp(TimePoint time);
/// Every byte but the URL-unreserved ones (RFC 3986) as %XX: safe as one path segment or query value.
std::string percent_encode(std::string_view text);
Result<TimePoint> parse_timestamp(std::string_view text);
/// A duration for people: "5 minutes", "1 minute", "30 s", "250 ms" (the largest unit that divides it).
std::string describe_duration(std::chrono::milliseconds duration);

}  // namespace modbox
