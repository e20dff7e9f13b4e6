#include "agent/front/byte_pipe.h"

namespace modbox::front {

bool BytePipe::push(std::string bytes) {
  std::unique_lock lock(mutex_);
  if (end_ != End::open) return false;
  queued_ += bytes.size();
  if (!bytes.empty()) chunks_.push_back(std::move(bytes));
  bool room = queued_ < capacity_;
  if (!room) producer_waiting_ = true;
  bool wake_consumer = consumer_waiting_;
  consumer_waiting_ = false;
  changed_.notify_all();
  lock.unlock();
  if (wake_consumer && on_data_) on_data_();
  return room;
}

bool BytePipe::push_wait(std::string bytes, Clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  if (!changed_.wait_until(lock, deadline, [this] { return end_ != End::open || queued_ < capacity_; })) return false;
  if (end_ != End::open) return false;
  queued_ += bytes.size();
  if (!bytes.empty()) chunks_.push_back(std::move(bytes));
  bool wake_consumer = consumer_waiting_;
  consumer_waiting_ = false;
  lock.unlock();
  if (wake_consumer && on_data_) on_data_();
  return true;
}

void BytePipe::finish() {
  std::unique_lock lock(mutex_);
  if (end_ != End::open) return;
  end_ = End::finished;
  changed_.notify_all();
  bool wake_consumer = consumer_waiting_;
  consumer_waiting_ = false;
  lock.unlock();
  if (wake_consumer && on_data_) on_data_();
}

void BytePipe::abort() {
  std::unique_lock lock(mutex_);
  if (end_ == End::aborted) return;
  end_ = End::aborted;
  chunks_.clear();
  queued_ = 0;
  changed_.notify_all();
}

void BytePipe::notify_room(std::unique_lock<std::mutex>& lock) {
  changed_.notify_all();
  if (!producer_waiting_ || queued_ >= capacity_) return;
  producer_waiting_ = false;
  lock.unlock();
  if (on_room_) on_room_();
  lock.lock();
}

std::optional<std::string> BytePipe::pop_wait(Clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  if (!changed_.wait_until(lock, deadline, [this] { return end_ != End::open || !chunks_.empty(); }))
    return std::nullopt;
  if (end_ == End::aborted || chunks_.empty()) return std::nullopt;
  std::string bytes = std::move(chunks_.front());
  chunks_.pop_front();
  queued_ -= bytes.size();
  notify_room(lock);
  return bytes;
}

std::optional<std::string> BytePipe::try_pop() {
  std::unique_lock lock(mutex_);
  if (end_ == End::aborted) return std::nullopt;
  if (chunks_.empty()) {
    if (end_ == End::open) consumer_waiting_ = true;
    return std::nullopt;
  }
  std::string bytes = std::move(chunks_.front());
  chunks_.pop_front();
  queued_ -= bytes.size();
  notify_room(lock);
  return bytes;
}

BytePipe::End BytePipe::end() const {
  std::lock_guard lock(mutex_);
  return end_;
}

std::size_t BytePipe::queued() const {
  std::lock_guard lock(mutex_);
  return queued_;
}

}  // namespace modbox::front
