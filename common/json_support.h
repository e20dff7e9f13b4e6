#pragma once
// JSON helpers shared by the model files (models, image_models, registry_models) and the routes that
// write JSON. Only for .cpp files that already include nlohmann/json.hpp; headers stay free of it.

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <stdexcept>
#include <vector>

#include "common/result.h"

namespace modbox::json_support {

using nlohmann::json;

/// A value as compact JSON text; bytes that are not UTF-8 (a file name, a command's output) become
/// U+FFFD instead of throwing.
inline std::string to_text(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

/// The value, or JSON null when absent.
template <class T>
json optional_json(const std::optional<T>& value) {
  return value ? json(*value) : json(nullptr);
}

/// A member that may be missing or null.
template <class T>
std::optional<T> optional_field(const json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return std::nullopt;
  return it->get<T>();
}

/// Runs a decoder over untrusted JSON text, turning any parse or type error into an Error. json's
/// messages quote no values, so a secret cannot leak through them.
template <class T, class Decode>
Result<T> decode(std::string_view text, const char* what, Decode decode_object) {
  json parsed = json::parse(text, nullptr, false);
  if (parsed.is_discarded()) return fail(ErrorKind::internal, std::string(what) + " is not valid JSON");
  try {
    return decode_object(parsed);
  } catch (const std::exception& error) {
    // json's type errors, and the decoders' own refusals (a malformed timestamp).
    return fail(ErrorKind::internal, std::string(what) + " has an unexpected shape: " + error.what());
  }
}

/// decode() of a JSON array, each element through `decode_object`.
template <class T, class Decode>
Result<std::vector<T>> decode_list(std::string_view text, const char* what, Decode decode_object) {
  return decode<std::vector<T>>(text, what, [&](const json& array) {
    if (!array.is_array()) throw std::invalid_argument("not an array");
    std::vector<T> items;
    items.reserve(array.size());
    for (const auto& object : array) items.push_back(decode_object(object));
    return items;
  });
}

}  // namespace modbox::json_support
