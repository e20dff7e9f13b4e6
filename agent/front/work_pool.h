#pragma once
// The threads that run blocking work for the front: handlers (Podman calls, disk writes) and the
// long calls (wait, exec, transfers, opening a relay). Threads are started as work arrives and end
// after idling, so their number follows the work in flight, never the number of sandboxes or of
// connections. Long calls are capped below the thread limit, so they can never take the threads
// that short calls need.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>

namespace modbox::front {

class WorkPool {
 public:
  enum class Kind { short_call, long_call };

  /// At most `max_threads` threads, of which at most `long_max` run long calls at once.
  WorkPool(std::size_t max_threads, std::size_t long_max,
           std::chrono::milliseconds idle_timeout = std::chrono::seconds(10));
  /// Lets the tasks that run finish, drops the queued ones, and waits for every thread to end.
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  /// Runs `task` on a pool thread. A long call beyond `long_max` is refused (false: the caller
  /// answers 503); a short call waits for a thread when all are busy.
  bool submit(Kind kind, std::function<void()> task);

  std::size_t threads() const;
  std::size_t long_in_flight() const;

 private:
  struct Task {
    Kind kind;
    std::function<void()> run;
  };
  void work();

  const std::size_t max_threads_;
  const std::size_t long_max_;
  const std::chrono::milliseconds idle_timeout_;
  mutable std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable all_ended_;
  std::deque<Task> queue_;
  std::size_t threads_ = 0;
  std::size_t idle_ = 0;
  std::size_t long_in_flight_ = 0;
  bool stopping_ = false;
};

}  // namespace modbox::front
