#pragma once
// Reads the fields of a JSON request body the way FastAPI/pydantic validates them: every problem is
// collected with its location ({"loc": ["body", "field"], "msg", "type"}) instead of stopping at the
// first, and `finish` turns them into one 422 error. Shared by the parsers of every resource's models.
// Internal to common/: the json type stays out of the public model headers.

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace modbox {

class BodyReader {
 public:
  /// Parses `body` as a JSON object: 413 above the body limit, 422 for non-JSON or non-objects.
  static Result<BodyReader> parse(std::string_view body);

  /// True when the field is present (null included).
  bool has(const char* name) const;
  /// True when the field is present and null.
  bool is_null(const char* name) const;

  /// Absent or null reads as nothing; `required` records "Field required" then.
  std::optional<std::string> string(const char* name, bool required);
  /// An integer in [min, max]; floats without a fractional part are accepted, as pydantic does.
  std::optional<int> integer(const char* name, bool required, long long min, long long max);
  /// A list of at most `max_count` integers, each in [min, max]; an error names the list, or the
  /// item by its index (["body", name, "2"]). Absent or null reads as an empty list.
  std::vector<int> integers(const char* name, long long min, long long max, std::size_t max_count);
  std::optional<bool> boolean(const char* name, bool required);
  std::map<std::string, std::string> env_vars(const char* name);

  /// The field's raw value for nested objects (absent or null: nullptr, never an error).
  const nlohmann::json* value(const char* name) { return find(name, false); }
  /// `value` as an integer in [min, max], or nothing with the error recorded at `loc`.
  std::optional<int> integer_at(const nlohmann::json& value, std::vector<std::string> loc, long long min,
                                long long max);

  void add(std::vector<std::string> loc, std::string msg, std::string type);
  bool ok() const { return errors_.empty(); }

  template <class T>
  Result<T> finish(T value) {
    if (!errors_.empty()) return fail_validation(std::move(errors_));
    return value;
  }

 private:
  const nlohmann::json* find(const char* name, bool required);

  nlohmann::json object_;
  std::vector<FieldError> errors_;
};

/// pydantic's reading of a boolean query parameter: true/false, 1/0, yes/no, on/off, t/f, y/n.
std::optional<bool> parse_query_bool(std::string_view text);

}  // namespace modbox
