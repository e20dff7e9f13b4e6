#pragma once
// A checker for JSON values against the schemas of an OpenAPI 3.1 document, for the subset the seeds
// use: $ref, type (a name or a list, "null" included), required, properties, items, oneOf, and the
// formats uuid and date-time. The document is read from the seed itself, so the tests follow the
// contract rather than a hand copy of it.

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace modbox::test {

class OpenApiSchemas {
 public:
  /// Reads the first ```yaml block of `path` (a seed file is Markdown around the OpenAPI YAML).
  static OpenApiSchemas from_seed(const std::filesystem::path& path);

  /// The problems of `value` against components/schemas/`name`, one sentence each; empty when valid.
  std::vector<std::string> check(const nlohmann::json& value, const std::string& name) const;

  /// The names of the required properties of components/schemas/`name`.
  std::vector<std::string> required(const std::string& name) const;

 private:
  void check_node(const nlohmann::json& value, const YAML::Node& schema, const std::string& where,
                  std::vector<std::string>& problems) const;
  YAML::Node schema(const std::string& name) const;

  YAML::Node document_;
};

/// Where the seeds are: $MODBOX_SEEDS_DIR, else ../shared/seeds beside the source tree.
std::filesystem::path seeds_dir();

/// The seed file whose name starts with `prefix` ("003_").
std::filesystem::path seed_file(const std::string& prefix);

}  // namespace modbox::test
