// Request validation and the JSON models (common/*_models.h): every body a client can send to the
// control API, and every record the agent reads back from its state directory. The first byte picks
// the parser, the rest is the text. Properties: a parser answers a value or an error, never throws;
// a validation error names at least one field; an accepted value written out and read again is
// accepted and writes out the same (what the agent stores is what it reads after a restart).

#include <cstdint>
#include <functional>
#include <string>

#include "common/image_models.h"
#include "common/models.h"
#include "common/pool_models.h"
#include "common/process_models.h"
#include "common/registry_models.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using Check = std::function<void(std::string_view)>;

void check_error(const modbox::Error& error) {
  FUZZ_CHECK(!error.message.empty());
  if (error.kind == modbox::ErrorKind::validation) FUZZ_CHECK(!error.fields.empty());
  (void)modbox::error_to_json(error);
}

/// parse → write → parse → write gives the same text twice.
template <typename Parse, typename Write>
Check round_trip(Parse parse, Write write) {
  return [parse, write](std::string_view text) {
    auto first = parse(text);
    if (!first) return check_error(first.error());
    std::string written = write(*first);
    auto second = parse(written);
    if (!second) {
      std::fprintf(stderr, "written: %s\nrefused: %s\n", written.c_str(), second.error().message.c_str());
    }
    FUZZ_CHECK(second.has_value());
    FUZZ_CHECK(write(*second) == written);
  };
}

template <typename Parse>
Check parse_only(Parse parse) {
  return [parse](std::string_view text) {
    auto parsed = parse(text);
    if (!parsed) check_error(parsed.error());
  };
}

const std::vector<Check>& checks() {
  using namespace modbox;
  static const std::vector<Check> all = {
      round_trip(parse_provision_request, provision_request_to_json),
      round_trip(parse_wait_request, wait_request_to_json),
      round_trip(parse_destroy_request, destroy_request_to_json),
      round_trip(parse_extend_request, extend_request_to_json),
      round_trip(parse_exec_request, exec_request_to_json),
      round_trip(parse_sandbox_exec_request, sandbox_exec_request_to_json),
      round_trip(sandbox_record_from_json, sandbox_record_to_json),
      parse_only(parse_status_query),
      round_trip(parse_image_create_request, image_create_request_to_json),
      round_trip(parse_snapshot_request, snapshot_request_to_json),
      round_trip(parse_image_update_request, image_update_request_to_json),
      round_trip(image_record_from_json, image_record_to_json),
      round_trip(parse_image_build_fields, image_build_fields_to_json),
      round_trip(parse_registry_create_request, registry_create_request_to_json),
      round_trip(registry_record_from_json, registry_record_to_json),
      round_trip(parse_pool_size_request, pool_size_request_to_json),
      round_trip(pool_setting_from_json, pool_setting_to_json),
      round_trip(parse_process_start_request, process_start_request_to_json),
      parse_only(parse_process_stdin_request),
      parse_only(parse_process_signal_request),
  };
  return all;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto& all = checks();
  all[data[0] % all.size()](std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  return 0;
}
