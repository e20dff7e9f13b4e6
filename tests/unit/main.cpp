// The unit test runner: Catch2 supplies main(). The agent's log lines are kept per test case and shown
// only for a test case that failed, so that a failure's report is not buried under passing cases' logs
// (MODBOX_TEST_LOG=1 shows every line as it comes).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "agent/log.h"

namespace {

class LogPerTestCase : public Catch::TestEventListenerBase {
 public:
  using TestEventListenerBase::TestEventListenerBase;

  void testRunStarting(Catch::TestRunInfo const&) override {
    const char* all = std::getenv("MODBOX_TEST_LOG");
    if (all != nullptr && std::string(all) == "1") return;
    // Called under the log's own lock: lines from the agent's threads arrive one at a time.
    modbox::set_log_sink([this](const std::string& line) {
      std::lock_guard lock(mutex_);
      if (kept_.size() < limit) kept_ += line;
    });
  }

  void testCaseStarting(Catch::TestCaseInfo const&) override {
    std::lock_guard lock(mutex_);
    kept_.clear();
  }

  void testCaseEnded(Catch::TestCaseStats const& stats) override {
    std::lock_guard lock(mutex_);
    if (stats.totals.assertions.failed > 0 && !kept_.empty())
      std::fprintf(stderr, "---- the agent's log during \"%s\"\n%s----\n", stats.testInfo.name.c_str(), kept_.c_str());
    kept_.clear();
  }

  void testRunEnded(Catch::TestRunStats const&) override { modbox::set_log_sink({}); }

 private:
  static constexpr std::size_t limit = 1 << 20;
  std::mutex mutex_;
  std::string kept_;
};

}  // namespace

CATCH_REGISTER_LISTENER(LogPerTestCase)
