// The front's checks of a request head (agent/front/head_checks.h), on any bytes a client may send.
// Properties: a scan never reads past what it was given; a head it calls complete ends in a blank line
// and stays complete (with the same size) whatever follows it; the checks answer only the statuses the
// front sends, each with a sentence.

#include <cstdint>
#include <string>

#include "agent/front/head_checks.h"
#include "tests/fuzz/fuzz_check.h"

using modbox::front::check_request_head;
using modbox::front::HeadScan;
using modbox::front::scan_request_head;

namespace {

bool known_status(int status) { return status == 400 || status == 414 || status == 431 || status == 501; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // Small limits too, so that inputs of a fuzzer's size reach the 414 and 431 paths.
  for (modbox::front::HeadLimits limits : {modbox::front::HeadLimits{}, modbox::front::HeadLimits{64, 256}}) {
    HeadScan scan = scan_request_head(bytes, limits);
    switch (scan.state) {
      case HeadScan::State::incomplete:
        break;
      case HeadScan::State::refused:
        FUZZ_CHECK(known_status(scan.refusal.status));
        FUZZ_CHECK(!scan.refusal.reason.empty());
        break;
      case HeadScan::State::complete: {
        FUZZ_CHECK(scan.skipped + scan.head_size <= bytes.size());
        FUZZ_CHECK(scan.head_size <= limits.head_max);
        std::string_view head = bytes.substr(scan.skipped, scan.head_size);
        FUZZ_CHECK(head.ends_with("\n"));
        // More bytes after a complete head (a body, a pipelined request) change nothing about it.
        std::string longer(bytes.substr(0, scan.skipped + scan.head_size));
        longer += "\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        HeadScan again = scan_request_head(longer, limits);
        FUZZ_CHECK(again.state == HeadScan::State::complete);
        FUZZ_CHECK(again.skipped == scan.skipped && again.head_size == scan.head_size);
        if (auto refusal = check_request_head(head)) {
          FUZZ_CHECK(known_status(refusal->status));
          FUZZ_CHECK(!refusal->reason.empty());
        }
        break;
      }
    }
    // A prefix of a head that is still arriving is never refused for a reason its end could undo:
    // whatever is complete or refused on a prefix stays so on the whole.
    if (size > 1) {
      HeadScan prefix = scan_request_head(bytes.substr(0, size / 2), limits);
      if (prefix.state == HeadScan::State::complete) {
        FUZZ_CHECK(scan.state == HeadScan::State::complete && scan.head_size == prefix.head_size);
      }
      if (prefix.state == HeadScan::State::refused) FUZZ_CHECK(scan.state == HeadScan::State::refused);
    }
  }
  // Checking any bytes as a head (the front does so only for complete ones) must not crash either.
  (void)check_request_head(bytes);
  return 0;
}
