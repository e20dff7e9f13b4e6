#include "common/body_reader.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>

#include "common/models.h"

namespace modbox {

using nlohmann::json;

namespace {
bool is_env_name(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
  return true;
}
}  // namespace

Result<BodyReader> BodyReader::parse(std::string_view body) {
  BodyReader reader;
  if (body.size() > limits::request_body_max_bytes)
    return fail(ErrorKind::too_large, "request body is larger than 1 MiB");
  json parsed = json::parse(body, nullptr, false);
  if (parsed.is_discarded())
    return fail_validation({{{"body"}, "JSON decode error: the body is not valid JSON", "json_invalid"}});
  if (!parsed.is_object())
    return fail_validation(
        {{{"body"}, "Input should be a valid dictionary or object to extract fields from", "model_attributes_type"}});
  reader.object_ = std::move(parsed);
  return reader;
}

bool BodyReader::has(const char* name) const { return object_.contains(name); }

bool BodyReader::is_null(const char* name) const {
  auto it = object_.find(name);
  return it != object_.end() && it->is_null();
}

std::optional<std::string> BodyReader::string(const char* name, bool required) {
  const json* value = find(name, required);
  if (value == nullptr) return std::nullopt;
  if (!value->is_string()) {
    add({"body", name}, "Input should be a valid string", "string_type");
    return std::nullopt;
  }
  return value->get<std::string>();
}

std::optional<int> BodyReader::integer(const char* name, bool required, long long min, long long max) {
  const json* value = find(name, required);
  if (value == nullptr) return std::nullopt;
  return integer_at(*value, {"body", name}, min, max);
}

std::vector<int> BodyReader::integers(const char* name, long long min, long long max, std::size_t max_count) {
  std::vector<int> result;
  const json* value = find(name, false);
  if (value == nullptr) return result;
  if (!value->is_array()) {
    add({"body", name}, "Input should be a valid list", "list_type");
    return result;
  }
  if (value->size() > max_count) {
    add({"body", name},
        "List should have at most " + std::to_string(max_count) + " items after validation, not " +
            std::to_string(value->size()),
        "too_long");
    return result;
  }
  for (std::size_t index = 0; index < value->size(); ++index)
    if (auto item = integer_at((*value)[index], {"body", name, std::to_string(index)}, min, max))
      result.push_back(*item);
  return result;
}

std::optional<int> BodyReader::integer_at(const json& value, std::vector<std::string> loc, long long min,
                                          long long max) {
  // pydantic accepts floats with no fractional part; bools and strings are refused here.
  // Numbers beyond long long are clamped first: converting them is undefined (or wraps), and
  // clamped they fail the range checks below with the right message.
  constexpr long long largest = std::numeric_limits<long long>::max();
  long long number = 0;
  if (value.is_number_unsigned() && value.get<unsigned long long>() > static_cast<unsigned long long>(largest)) {
    number = largest;
  } else if (value.is_number_integer()) {
    number = value.get<long long>();
  } else if (value.is_number_float() && std::trunc(value.get<double>()) == value.get<double>()) {
    double whole = value.get<double>();
    number = whole >= 0x1p63 ? largest : whole < -0x1p63 ? std::numeric_limits<long long>::min() : static_cast<long long>(whole);
  } else {
    add(std::move(loc), "Input should be a valid integer", "int_type");
    return std::nullopt;
  }
  if (number < min) {
    add(std::move(loc), "Input should be greater than or equal to " + std::to_string(min), "greater_than_equal");
    return std::nullopt;
  }
  if (number > max) {
    add(std::move(loc), "Input should be less than or equal to " + std::to_string(max), "less_than_equal");
    return std::nullopt;
  }
  return static_cast<int>(number);
}

std::optional<bool> BodyReader::boolean(const char* name, bool required) {
  const json* value = find(name, required);
  if (value == nullptr) return std::nullopt;
  if (!value->is_boolean()) {
    add({"body", name}, "Input should be a valid boolean", "bool_type");
    return std::nullopt;
  }
  return value->get<bool>();
}

std::map<std::string, std::string> BodyReader::env_vars(const char* name) {
  std::map<std::string, std::string> result;
  const json* value = find(name, false);
  if (value == nullptr) return result;
  if (!value->is_object()) {
    add({"body", name}, "Input should be a valid dictionary", "dict_type");
    return result;
  }
  if (value->size() > limits::env_vars_max_count)
    add({"body", name}, "at most " + std::to_string(limits::env_vars_max_count) + " variables are allowed",
        "too_long");
  for (const auto& [key, item] : value->items()) {
    if (!is_env_name(key))
      add({"body", name, key}, "variable names must match ^[A-Za-z_][A-Za-z0-9_]*$", "value_error");
    else if (!item.is_string())
      add({"body", name, key}, "Input should be a valid string", "string_type");
    else if (item.get<std::string>().find('\0') != std::string::npos)
      add({"body", name, key}, "values must not contain NUL bytes", "value_error");
    else if (item.get<std::string>().size() > limits::env_value_max_bytes)
      add({"body", name, key}, "values must be at most 32 KiB", "string_too_long");
    else
      result[key] = item.get<std::string>();
  }
  return result;
}

void BodyReader::add(std::vector<std::string> loc, std::string msg, std::string type) {
  errors_.push_back({std::move(loc), std::move(msg), std::move(type)});
}

const json* BodyReader::find(const char* name, bool required) {
  auto it = object_.find(name);
  if (it == object_.end() || it->is_null()) {
    if (required) add({"body", name}, "Field required", "missing");
    return nullptr;
  }
  return &*it;
}

std::optional<bool> parse_query_bool(std::string_view text) {
  std::string lowered(text);
  std::transform(lowered.begin(), lowered.end(), lowered.begin(), [](unsigned char c) { return std::tolower(c); });
  for (const char* yes : {"true", "1", "yes", "on", "t", "y"})
    if (lowered == yes) return true;
  for (const char* no : {"false", "0", "no", "off", "f", "n"})
    if (lowered == no) return false;
  return std::nullopt;
}

}  // namespace modbox
