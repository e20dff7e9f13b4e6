#include "cli/event_printer.h"

#include <cstdio>

#include <nlohmann/json.hpp>

namespace modbox {

bool EventPrinter::feed(std::string_view bytes) {
  reader_.feed(bytes);
  while (auto event = reader_.next()) {
    if (event->name == "stdout" || event->name == "stderr") {
      auto output = output_event_bytes(event->data);
      if (!output) return false;
      FILE* to = event->name == "stdout" ? stdout : stderr;
      if (std::fwrite(output->data(), 1, output->size(), to) != output->size() || std::fflush(to) != 0) return false;
    } else if (event->name == "exit" || event->name == "end" || event->name == "error") {
      ending_ = std::move(*event);
    }
  }
  return true;
}

std::string EventPrinter::failure(std::string_view what) const {
  if (!ending_) return std::string(what) + ": the event stream ended before its last event";
  auto data = nlohmann::json::parse(ending_->data, nullptr, false);
  if (data.is_object() && data.contains("detail") && data["detail"].is_string())
    return std::string(what) + ": " + data["detail"].get<std::string>();
  return std::string(what) + ": " + ending_->data.substr(0, 300);
}

}  // namespace modbox
