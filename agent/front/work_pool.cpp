#include "agent/front/work_pool.h"

#include <thread>

#include "agent/log.h"

namespace modbox::front {

WorkPool::WorkPool(std::size_t max_threads, std::size_t long_max, std::chrono::milliseconds idle_timeout)
    : max_threads_(max_threads),
      long_max_(long_max < max_threads ? long_max : max_threads),
      idle_timeout_(idle_timeout) {}

WorkPool::~WorkPool() {
  std::deque<Task> dropped;
  std::unique_lock lock(mutex_);
  stopping_ = true;
  dropped.swap(queue_);
  work_ready_.notify_all();
  lock.unlock();
  dropped.clear();  // what the tasks hold is released outside the lock
  lock.lock();
  all_ended_.wait(lock, [this] { return threads_ == 0; });
}

bool WorkPool::submit(Kind kind, std::function<void()> task) {
  std::lock_guard lock(mutex_);
  if (stopping_) return false;
  if (kind == Kind::long_call) {
    if (long_in_flight_ >= long_max_) return false;
    ++long_in_flight_;
  }
  queue_.push_back({kind, std::move(task)});
  if (idle_ >= queue_.size()) {
    work_ready_.notify_one();
    return true;
  }
  if (threads_ < max_threads_) {
    try {
      std::thread([this] { work(); }).detach();
      ++threads_;
    } catch (const std::system_error& error) {
      // Out of threads on this host: the queued task runs when a thread frees up.
      log_error(std::string("cannot start a worker thread: ") + error.what());
    }
  }
  return true;
}

void WorkPool::work() {
  std::unique_lock lock(mutex_);
  for (;;) {
    ++idle_;
    bool woken = work_ready_.wait_for(lock, idle_timeout_, [this] { return stopping_ || !queue_.empty(); });
    --idle_;
    if (stopping_ || !woken) break;
    Task task = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    try {
      task.run();
    } catch (const std::exception& error) {
      log_error(std::string("unhandled exception in a worker: ") + error.what());
    }
    task.run = nullptr;  // what the task holds (a connection) is released outside the lock
    lock.lock();
    if (task.kind == Kind::long_call) --long_in_flight_;
  }
  if (--threads_ == 0) all_ended_.notify_all();
}

std::size_t WorkPool::threads() const {
  std::lock_guard lock(mutex_);
  return threads_;
}

std::size_t WorkPool::long_in_flight() const {
  std::lock_guard lock(mutex_);
  return long_in_flight_;
}

}  // namespace modbox::front
