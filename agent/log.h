#pragma once
// The agent's log: one timestamped line per event on stderr (which modboxd points at its log file).

#include <string>

namespace modbox {

void log_info(const std::string& message);
void log_error(const std::string& message);

}  // namespace modbox
