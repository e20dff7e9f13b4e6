#include "cli/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace modbox {

namespace {

std::string local_clock_text() {
  std::time_t now = std::time(nullptr);
  std::tm local{};
  ::localtime_r(&now, &local);
  char text[16];
  std::strftime(text, sizeof text, "%H:%M:%S", &local);
  return text;
}

/// What fits in `columns` of `text`, cut on a UTF-8 character boundary, one line.
std::string fit(std::string_view text, std::size_t columns) {
  std::string out;
  std::size_t used = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    auto byte = static_cast<unsigned char>(text[i]);
    if (byte == '\n' || byte == '\r') break;
    bool starts_character = (byte & 0xC0) != 0x80;
    if (starts_character && ++used > columns) break;
    out += byte == '\t' ? ' ' : text[i];
  }
  return out;
}

}  // namespace

ProgressOptions progress_options(bool quiet) {
  ProgressOptions options;
  options.enabled = !quiet;
  const char* term = std::getenv("TERM");
  options.terminal = ::isatty(2) && !(term != nullptr && std::string_view(term) == "dumb");
  struct winsize size {};
  if (options.terminal && ::ioctl(2, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) options.width = size.ws_col;
  return options;
}

Progress::Progress(std::string activity, ProgressOptions options)
    : activity_(std::move(activity)), options_(std::move(options)), started_(options_.now()) {
  if (!options_.clock_text) options_.clock_text = local_clock_text;
  if (!options_.write)
    options_.write = [](std::string_view bytes) {
      std::fwrite(bytes.data(), 1, bytes.size(), stderr);
      std::fflush(stderr);
    };
}

Progress::~Progress() {
  stop_ticker();
  std::lock_guard lock(mutex_);
  if (!finished_) clear_locked();
}

std::string Progress::elapsed_text(std::chrono::steady_clock::duration elapsed) {
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(elapsed).count();
  if (seconds < 60) return std::to_string(seconds) + "s";
  std::string rest = std::to_string(seconds % 60);
  return std::to_string(seconds / 60) + "m" + (rest.size() < 2 ? "0" : "") + rest + "s";
}

void Progress::status(std::string_view text) {
  if (!options_.enabled) return;
  std::lock_guard lock(mutex_);
  status_ = std::string(text);
  if (options_.terminal)
    redraw_locked();
  else if (status_ != last_plain_)
    plain_locked(status_);
}

void Progress::line(std::string_view text) {
  if (!options_.enabled) return;
  std::lock_guard lock(mutex_);
  if (!options_.terminal) return plain_locked(text);
  clear_locked();
  options_.write(std::string(text) + "\n");
  redraw_locked();
}

void Progress::tick() {
  if (!options_.enabled || !options_.terminal) return;
  std::lock_guard lock(mutex_);
  if (finished_) return;
  ++frame_;
  redraw_locked();
}

void Progress::start_ticker(std::chrono::milliseconds interval) {
  if (!options_.enabled || !options_.terminal || ticker_.joinable()) return;
  ticker_ = std::thread([this, interval] {
    std::unique_lock lock(mutex_);
    while (!stop_.wait_for(lock, interval, [this] { return stopping_; })) {
      lock.unlock();
      tick();
      lock.lock();
    }
  });
}

void Progress::finish(std::string_view text) {
  stop_ticker();
  if (!options_.enabled) return;
  std::lock_guard lock(mutex_);
  finished_ = true;
  std::string elapsed = elapsed_text(options_.now() - started_);
  if (!options_.terminal) {
    if (!text.empty()) plain_locked(std::string(text) + " (" + elapsed + ")");
    return;
  }
  clear_locked();
  if (!text.empty()) options_.write(std::string(text) + " (" + elapsed + ")\n");
}

void Progress::redraw_locked() {
  if (finished_) return;
  static constexpr char spinner[] = {'-', '\\', '|', '/'};
  std::string suffix = " (" + elapsed_text(options_.now() - started_) + ")";
  std::string head = std::string(1, spinner[frame_ % 4]) + " " + activity_ + (status_.empty() ? "" : ": ");
  std::size_t room =
      options_.width > head.size() + suffix.size() + 1 ? options_.width - head.size() - suffix.size() - 1 : 0;
  options_.write("\r\x1b[2K" + head + fit(status_, room) + suffix);
  drawn_ = true;
}

void Progress::clear_locked() {
  if (!drawn_) return;
  options_.write("\r\x1b[2K");
  drawn_ = false;
}

void Progress::plain_locked(std::string_view text) {
  last_plain_ = std::string(text);
  options_.write(options_.clock_text() + " " + activity_ + ": " + std::string(text) + "\n");
}

void Progress::stop_ticker() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  stop_.notify_all();
  if (ticker_.joinable()) ticker_.join();
}

}  // namespace modbox
