#pragma once
// `modbox agent logs`: the log the agents modbox starts append to (AgentPaths::log_file), printed
// whole, its last lines, and followed as it grows (`tail -F`: a log replaced or truncated is read
// again from its start).

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <optional>
#include <string_view>

#include "common/result.h"

namespace modbox {

/// Where the lines to print start in `text`: the offset of its last `lines` lines (0 when it has
/// no more than that). A last line without its newline counts as a line.
std::size_t start_of_last_lines(std::string_view text, std::size_t lines);

struct LogOptions {
  std::optional<std::size_t> tail;  // only the last N lines of what is there
  bool follow = false;              // then what is appended, until `keep_following` says stop
  std::chrono::milliseconds poll_interval{200};
  /// Asked between polls while following; false ends it (tests; main runs until interrupted).
  std::function<bool()> keep_following = [] { return true; };
};

/// Hands the log at `path` to `out` piece by piece. A missing log is a not_found error.
Result<void> read_agent_log(const std::filesystem::path& path, const LogOptions& options,
                            const std::function<void(std::string_view)>& out);

}  // namespace modbox
