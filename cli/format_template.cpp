#include "cli/format_template.h"

#include <nlohmann/json.hpp>

namespace modbox {

namespace {

/// `\t`, `\n` and `\\` as the characters they name; any other backslash stays.
std::string unescape(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      char next = text[i + 1];
      if (next == 't' || next == 'n' || next == '\\') {
        out += next == 't' ? '\t' : next == 'n' ? '\n' : '\\';
        ++i;
        continue;
      }
    }
    out += text[i];
  }
  return out;
}

std::string_view trim(std::string_view text) {
  auto first = text.find_first_not_of(" \t");
  if (first == std::string_view::npos) return {};
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

const char* const syntax_hint = "fields are written {{.name}}, nested {{.readiness.phase}}; {{json .tags}} prints JSON";

/// "." or ".a.b" as {} or {"a", "b"}.
Result<std::vector<std::string>> field_path(std::string_view action, std::string_view whole) {
  if (!action.starts_with('.'))
    return fail(ErrorKind::bad_request, "'" + std::string(whole) + "' is not a field: " + syntax_hint);
  std::vector<std::string> path;
  if (action == ".") return path;
  std::size_t start = 1;
  while (true) {
    std::size_t dot = std::min(action.find('.', start), action.size());
    std::string_view name = action.substr(start, dot - start);
    if (name.empty() || name.find_first_of(" \t{}") != std::string_view::npos)
      return fail(ErrorKind::bad_request, "'" + std::string(whole) + "' is not a field: " + syntax_hint);
    path.emplace_back(name);
    if (dot == action.size()) return path;
    start = dot + 1;
  }
}

/// A value as the template prints it: strings as they are, null as nothing, the rest as JSON.
std::string printed(const nlohmann::json& value, bool as_json) {
  if (as_json) return value.dump();
  if (value.is_null()) return "";
  if (value.is_string()) return value.get<std::string>();
  return value.dump();
}

}  // namespace

Result<FormatTemplate> FormatTemplate::parse(std::string_view text) {
  FormatTemplate parsed;
  std::size_t position = 0;
  while (position < text.size()) {
    std::size_t open = text.find("{{", position);
    if (open != position) {
      std::size_t end = open == std::string_view::npos ? text.size() : open;
      parsed.pieces_.push_back({.text = unescape(text.substr(position, end - position))});
      if (open == std::string_view::npos) break;
    }
    std::size_t close = text.find("}}", open + 2);
    if (close == std::string_view::npos)
      return fail(ErrorKind::bad_request,
                  "'{{' at character " + std::to_string(open + 1) + " has no closing '}}': " + syntax_hint);
    std::string_view whole = text.substr(open, close + 2 - open);
    std::string_view action = trim(text.substr(open + 2, close - open - 2));
    Piece piece{.is_field = true};
    if (action.starts_with("json ") || action.starts_with("json\t")) {
      piece.as_json = true;
      action = trim(action.substr(4));
    }
    auto path = field_path(action, whole);
    if (!path) return std::unexpected(path.error());
    piece.path = std::move(*path);
    parsed.pieces_.push_back(std::move(piece));
    position = close + 2;
  }
  return parsed;
}

Result<std::string> FormatTemplate::render(std::string_view json) const {
  nlohmann::json document = nlohmann::json::parse(json, nullptr, false);
  if (document.is_discarded()) return fail(ErrorKind::internal, "the agent's answer is not JSON");
  nlohmann::json single = nlohmann::json::array({document});
  const nlohmann::json& items = document.is_array() ? document : single;
  std::string out;
  for (const auto& item : items) {
    for (const auto& piece : pieces_) {
      if (!piece.is_field) {
        out += piece.text;
        continue;
      }
      const nlohmann::json* value = &item;
      static const nlohmann::json null_value;
      std::string walked;
      for (const auto& name : piece.path) {
        if (value->is_object()) {
          auto found = value->find(name);
          value = found == value->end() ? &null_value : &*found;
        } else if (value->is_array() && !name.empty() && name.find_first_not_of("0123456789") == std::string::npos &&
                   name.size() < 10) {
          std::size_t index = std::stoul(name);
          value = index < value->size() ? &(*value)[index] : &null_value;
        } else if (value->is_null()) {
          break;  // a missing object has no fields: nothing
        } else {
          return fail(ErrorKind::bad_request, "--format: {{" + walked + "." + name +
                                                  "}}: " + (walked.empty() ? "the item" : walked) + " is a " +
                                                  value->type_name() + ", which has no field '" + name + "'");
        }
        walked += "." + name;
      }
      out += printed(*value, piece.as_json);
    }
    out += "\n";
  }
  return out;
}

}  // namespace modbox
