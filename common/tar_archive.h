#pragma once
// Tar archives written in memory (POSIX ustar, with a pax header for a path or link target over 99
// bytes): the build context `modbox images create --file` uploads, and the Containerfile entry the
// agent puts in front of a context it receives. Owner and group are 0, as `docker build` sends them.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "common/result.h"

namespace modbox {

/// One regular file `path` (relative, '/'-separated) holding `content`.
std::string tar_file_entry(std::string_view path, std::string_view content, unsigned mode = 0644);
/// The two zero blocks that end an archive.
std::string tar_end();
/// Every directory, regular file and symbolic link under `directory`, with paths relative to it,
/// then tar_end(). Other kinds of file (sockets, fifos) are left out. `too_large` when the archive
/// would exceed `max_bytes`.
Result<std::string> tar_directory(const std::filesystem::path& directory, std::uint64_t max_bytes);

}  // namespace modbox
