#pragma once
// The event stream (text/event-stream) of a command's output, as a streamed exec and a background
// process's output answer it, and as the CLI reads it back: one definition for both ends.
//
//   event: stdout             data: {"data": "text"}  or  {"data_base64": "Ynl0ZXM="}
//   event: stderr             the same
//   event: exit               data: how the command ended (the route's own JSON)
//   event: end                data: a background process that still runs (a read without follow)
//   event: error              data: {"detail": "sentence"} when the stream fails after it began
//
// A piece is text when it is whole UTF-8: a character cut at the end of a piece is held back and
// sent with the next one, so text never splits inside a character. A piece that is not UTF-8 goes
// as base64 of its bytes. Concatenating each stream's decoded pieces gives its bytes exactly.

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace modbox {

enum class OutputStream { stdout_stream, stderr_stream };

/// One event: "event: NAME\ndata: DATA\n\n". `data` must be one line (JSON is).
std::string event_text(std::string_view name, std::string_view data);

/// Turns a command's output into stdout and stderr events, UTF-8 safe.
class OutputEventWriter {
 public:
  /// The events for `bytes` of `stream` (empty when everything is held back).
  std::string add(OutputStream stream, std::string_view bytes);
  /// What is still held back of either stream (a character cut at the very end), as base64 events.
  std::string flush();

 private:
  std::array<std::string, 2> held_;
};

/// Reads events back from the bytes of a stream, as they arrive.
class EventReader {
 public:
  struct Event {
    std::string name;  // "message" when the event named none
    std::string data;  // its data lines joined by '\n'
  };
  void feed(std::string_view bytes);
  /// The next complete event, nullopt when more bytes are needed.
  std::optional<Event> next();

 private:
  std::string buffer_;
  std::size_t offset_ = 0;
};

/// The bytes an stdout or stderr event's data carries.
Result<std::string> output_event_bytes(std::string_view data);
/// An error event's data: {"detail": message}.
std::string error_event_data(std::string_view message);

}  // namespace modbox
