#include "common/output_events.h"

#include <nlohmann/json.hpp>

#include "common/encoding.h"

namespace modbox {

using nlohmann::json;

namespace {

std::string_view stream_name(OutputStream stream) {
  return stream == OutputStream::stdout_stream ? "stdout" : "stderr";
}

std::string bytes_event(OutputStream stream, std::string_view bytes, bool as_text) {
  json data = as_text ? json{{"data", std::string(bytes)}} : json{{"data_base64", base64_encode(bytes)}};
  return event_text(stream_name(stream), data.dump());
}

}  // namespace

std::string event_text(std::string_view name, std::string_view data) {
  std::string text;
  text.reserve(name.size() + data.size() + 16);
  text.append("event: ").append(name).append("\ndata: ").append(data).append("\n\n");
  return text;
}

std::string OutputEventWriter::add(OutputStream stream, std::string_view bytes) {
  std::string& held = held_[stream == OutputStream::stdout_stream ? 0 : 1];
  std::string piece = held;
  piece.append(bytes);
  held.clear();
  auto whole = utf8_whole_prefix(piece);
  if (!whole) return bytes_event(stream, piece, false);
  held = piece.substr(*whole);
  if (*whole == 0) return "";
  piece.resize(*whole);
  return bytes_event(stream, piece, true);
}

std::string OutputEventWriter::flush() {
  std::string events;
  for (std::size_t which = 0; which < 2; ++which) {
    if (held_[which].empty()) continue;
    events += bytes_event(which == 0 ? OutputStream::stdout_stream : OutputStream::stderr_stream, held_[which], false);
    held_[which].clear();
  }
  return events;
}

void EventReader::feed(std::string_view bytes) {
  if (offset_ > 0 && offset_ == buffer_.size()) {
    buffer_.clear();
    offset_ = 0;
  }
  buffer_.append(bytes);
}

std::optional<EventReader::Event> EventReader::next() {
  for (;;) {
    // An event ends at a blank line; lines end with \n (a \r before it is dropped).
    std::size_t end = buffer_.find("\n\n", offset_);
    std::size_t crlf = buffer_.find("\r\n\r\n", offset_);
    if (end == std::string::npos && crlf == std::string::npos) return std::nullopt;
    std::size_t length = crlf < end ? crlf - offset_ : end - offset_;
    std::string_view block = std::string_view(buffer_).substr(offset_, length);
    offset_ += length + (crlf < end ? 4 : 2);
    Event event{"message", ""};
    bool has_data = false;
    while (!block.empty()) {
      std::size_t newline = block.find('\n');
      std::string_view line = block.substr(0, newline);
      block = newline == std::string_view::npos ? std::string_view() : block.substr(newline + 1);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty() || line.front() == ':') continue;  // a comment: a keep-alive
      std::size_t colon = line.find(':');
      std::string_view field = line.substr(0, colon);
      std::string_view value = colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
      if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      if (field == "event") event.name = value;
      if (field == "data") {
        if (has_data) event.data += '\n';
        event.data.append(value);
        has_data = true;
      }
    }
    if (has_data) return event;
  }
}

Result<std::string> output_event_bytes(std::string_view data) {
  json object = json::parse(data, nullptr, false);
  if (!object.is_object()) return fail(ErrorKind::internal, "an output event's data is not a JSON object");
  auto text = object.find("data");
  if (text != object.end() && text->is_string()) return text->get<std::string>();
  auto encoded = object.find("data_base64");
  if (encoded != object.end() && encoded->is_string())
    if (auto bytes = base64_decode(encoded->get<std::string>())) return *bytes;
  return fail(ErrorKind::internal, "an output event carries neither data nor valid data_base64");
}

std::string error_event_data(std::string_view message) {
  return json{{"detail", std::string(message)}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace modbox
