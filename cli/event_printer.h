#pragma once
// Prints a command's output event stream (common/output_events.h) as it arrives: stdout events to
// standard output, stderr events to standard error, each flushed at once; keeps the event that
// ends the stream (exit, end or error) for the caller.

#include <optional>
#include <string_view>

#include "common/output_events.h"

namespace modbox {

class EventPrinter {
 public:
  /// Takes the next bytes of the stream; false when an output event cannot be decoded or written
  /// (the caller stops reading).
  bool feed(std::string_view bytes);
  /// The event that ended the stream (exit, end, error), once it came.
  const std::optional<EventReader::Event>& ending() const { return ending_; }
  /// The sentence of an error event, or of a stream that ended without its last event.
  std::string failure(std::string_view what) const;

 private:
  EventReader reader_;
  std::optional<EventReader::Event> ending_;
};

}  // namespace modbox
