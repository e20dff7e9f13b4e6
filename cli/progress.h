#pragma once
// What a long command is doing (a wait, an image build), on standard error only, so that what a
// script reads on standard output stays clean:
//  - on a terminal, one line redrawn in place: a spinner, the activity, its latest status and the
//    time elapsed ("/ building: STEP 2/5: RUN make (12s)"), with output lines printed above it;
//  - elsewhere (a pipe, a CI log), timestamped plain lines ("12:01:03 building: STEP 2/5: RUN make").
// Nothing at all with -q.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace modbox {

struct ProgressOptions {
  bool enabled = true;     // false: nothing is written (-q)
  bool terminal = false;   // standard error is a terminal: one redrawn line
  std::size_t width = 80;  // the terminal's columns
  std::function<std::chrono::steady_clock::time_point()> now = [] { return std::chrono::steady_clock::now(); };
  /// The wall clock as HH:MM:SS, for plain lines.
  std::function<std::string()> clock_text;
  /// Where the progress goes (default: standard error, flushed at once).
  std::function<void(std::string_view)> write;
};

/// ProgressOptions for this process: enabled unless `quiet`; a terminal when standard error is one
/// (and TERM is not "dumb"); the local time; standard error.
ProgressOptions progress_options(bool quiet);

class Progress {
 public:
  /// `activity` names what is going on ("building", "waiting"). Shows nothing until status or line.
  Progress(std::string activity, ProgressOptions options);
  /// Clears the redrawn line (when finish did not) and stops the ticker.
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /// The latest status: the redrawn line on a terminal; elsewhere a plain line, unless it is the
  /// line printed last.
  void status(std::string_view text);
  /// A line worth keeping (a build's output): above the redrawn line on a terminal; a plain line elsewhere.
  void line(std::string_view text);
  /// Redraws the terminal's line: the spinner turns and the elapsed time counts.
  void tick();
  /// On a terminal, calls tick() every `interval` from a thread of its own until the end.
  void start_ticker(std::chrono::milliseconds interval = std::chrono::milliseconds(100));
  /// The end: on a terminal the redrawn line is replaced by `text` and the elapsed time; elsewhere a
  /// plain line. An empty `text` only clears the line.
  void finish(std::string_view text);

  /// "12s", "3m05s".
  static std::string elapsed_text(std::chrono::steady_clock::duration elapsed);

 private:
  void redraw_locked();
  void clear_locked();
  void plain_locked(std::string_view text);
  void stop_ticker();

  std::string activity_;
  ProgressOptions options_;
  std::chrono::steady_clock::time_point started_;
  std::mutex mutex_;
  std::string status_;
  std::string last_plain_;
  std::size_t frame_ = 0;
  bool drawn_ = false;
  bool finished_ = false;
  std::condition_variable stop_;
  bool stopping_ = false;
  std::thread ticker_;
};

}  // namespace modbox
