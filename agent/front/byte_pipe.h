#pragma once
// Bytes handed between the event loop and one worker thread, bounded: a request body that a handler
// reads as a stream (uploads), or a response body that a handler writes as a stream (downloads).
// The loop side never blocks: it is told when there is room again, or data again, through callbacks
// that post back to the loop. The worker side blocks, with a deadline.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

namespace modbox::front {

class BytePipe {
 public:
  using Clock = std::chrono::steady_clock;
  enum class End { open, finished, aborted };

  explicit BytePipe(std::size_t capacity) : capacity_(capacity) {}

  /// Called, outside the pipe's lock, when a producer that push() turned away may push again.
  void set_on_room(std::function<void()> callback) { on_room_ = std::move(callback); }
  /// Called, outside the pipe's lock, when a consumer that try_pop() found empty has something
  /// to take (bytes, or the end).
  void set_on_data(std::function<void()> callback) { on_data_ = std::move(callback); }

  /// Loop side producer: adds `bytes`; false means the pipe is full (or aborted): push no more
  /// until on_room.
  bool push(std::string bytes);
  /// Worker side producer: waits for room until `deadline`; false when aborted or out of time.
  bool push_wait(std::string bytes, Clock::time_point deadline);
  /// The producer is done: a consumer sees the end once it has taken everything.
  void finish();
  /// Either side gives up: blocked calls return at once, and pushes and pops fail from now on.
  void abort();

  /// Worker side consumer: the next bytes, or nullopt at the end, on abort, or at `deadline`.
  std::optional<std::string> pop_wait(Clock::time_point deadline);
  /// Loop side consumer: the next bytes, or nullopt when there are none now (end() tells whether
  /// more will come; if so on_data is called when they do).
  std::optional<std::string> try_pop();

  End end() const;
  /// Bytes held, waiting for the consumer.
  std::size_t queued() const;

 private:
  void notify_room(std::unique_lock<std::mutex>& lock);

  const std::size_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<std::string> chunks_;
  std::size_t queued_ = 0;
  End end_ = End::open;
  bool producer_waiting_ = false;
  bool consumer_waiting_ = false;
  std::function<void()> on_room_;
  std::function<void()> on_data_;
};

}  // namespace modbox::front
