#include "agent/log.h"

#include <cstdio>
#include <mutex>

#include "common/system.h"

namespace modbox {

namespace {
std::mutex log_mutex;
std::function<void(const std::string&)> log_sink;

void write_line(const char* level, const std::string& message) {
  std::string line = format_timestamp(std::chrono::system_clock::now()) + " " + level + " " + message + "\n";
  std::lock_guard lock(log_mutex);
  if (log_sink) return log_sink(line);
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}
}  // namespace

void log_info(const std::string& message) { write_line("info ", message); }
void log_error(const std::string& message) { write_line("error", message); }

void set_log_sink(std::function<void(const std::string& line)> sink) {
  std::lock_guard lock(log_mutex);
  log_sink = std::move(sink);
}

}  // namespace modbox
