#include "common/pool_models.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "common/body_reader.h"
#include "common/json_support.h"

namespace modbox {

using json_support::decode;
using json_support::decode_list;
using json_support::optional_field;
using json_support::optional_json;
using nlohmann::json;

namespace {

json pool_api_object(const PoolView& pool) {
  return {{"image_id", pool.image_id},
          {"image", pool.image},
          {"workspace_id", optional_json(pool.workspace_id)},
          {"size", pool.size},
          {"ready", pool.ready},
          {"starting", pool.starting},
          {"last_error", optional_json(pool.last_error)},
          {"updated_at", format_timestamp(pool.updated_at)}};
}

PoolView pool_from_api_object(const json& object) {
  PoolView pool;
  pool.image_id = object.at("image_id").get<std::string>();
  pool.image = object.value("image", "");
  pool.workspace_id = optional_field<std::string>(object, "workspace_id");
  pool.size = object.at("size").get<int>();
  pool.ready = object.value("ready", 0);
  pool.starting = object.value("starting", 0);
  pool.last_error = optional_field<std::string>(object, "last_error");
  if (auto updated = optional_field<std::string>(object, "updated_at"))
    if (auto parsed = parse_timestamp(*updated)) pool.updated_at = *parsed;
  return pool;
}

}  // namespace

Result<PoolSizeRequest> parse_pool_size_request(std::string_view body) {
  auto reader = BodyReader::parse(body);
  if (!reader) return std::unexpected(reader.error());
  PoolSizeRequest request;
  if (auto size = reader->integer("size", true, 0, limits::pool_size_max)) request.size = *size;
  return reader->finish(request);
}

std::string pool_size_request_to_json(const PoolSizeRequest& request) {
  return json{{"size", request.size}}.dump();
}

std::string pool_setting_to_json(const PoolSetting& setting) {
  return json{{"image_id", setting.image_id},
              {"size", setting.size},
              {"workspace_id", optional_json(setting.workspace_id)},
              {"updated_at", format_timestamp(setting.updated_at)}}
      .dump(2);
}

Result<PoolSetting> pool_setting_from_json(std::string_view text) {
  return decode<PoolSetting>(text, "pool record", [](const json& object) {
    PoolSetting setting;
    setting.image_id = object.at("image_id").get<std::string>();
    setting.size = object.at("size").get<int>();
    if (setting.image_id.empty() || setting.size < 0 || setting.size > limits::pool_size_max)
      throw std::invalid_argument("pool size out of range");
    setting.workspace_id = optional_field<std::string>(object, "workspace_id");
    if (auto updated = optional_field<std::string>(object, "updated_at"))
      if (auto parsed = parse_timestamp(*updated)) setting.updated_at = *parsed;
    return setting;
  });
}

std::string pool_to_json(const PoolView& pool) {
  return pool_api_object(pool).dump();
}

std::string pools_to_json(const std::vector<PoolView>& pools) {
  json array = json::array();
  for (const auto& pool : pools) array.push_back(pool_api_object(pool));
  return array.dump();
}

Result<PoolView> pool_from_json(std::string_view text) {
  return decode<PoolView>(text, "pool", pool_from_api_object);
}

Result<std::vector<PoolView>> pools_from_json(std::string_view text) {
  return decode_list<PoolView>(text, "pool list", pool_from_api_object);
}

}  // namespace modbox
