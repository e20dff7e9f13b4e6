#include "agent/log.h"

#include <cstdio>
#include <mutex>

#include "common/system.h"

namespace modbox {

namespace {
void write_line(const char* level, const std::string& message) {
  static std::mutex mutex;
  std::string line = format_timestamp(std::chrono::system_clock::now()) + " " + level + " " + message + "\n";
  std::lock_guard lock(mutex);
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}
}  // namespace

void log_info(const std::string& message) { write_line("info ", message); }
void log_error(const std::string& message) { write_line("error", message); }

}  // namespace modbox
