#pragma once
// The agent's log: one timestamped line per event on stderr (which modboxd points at its log file).

#include <functional>
#include <string>

namespace modbox {

void log_info(const std::string& message);
void log_error(const std::string& message);

/// Where log lines go instead of stderr (each line ends in '\n'), called under the log's lock; an empty
/// function puts them back on stderr. The unit tests keep each test case's lines and show them only when
/// it fails.
void set_log_sink(std::function<void(const std::string& line)> sink);

}  // namespace modbox
