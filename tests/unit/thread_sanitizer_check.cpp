// A data race on purpose, hidden from every normal run ([.] tag): tests/sanitizers/threads runs it
// first and expects ThreadSanitizer to report it, so that a build without the instrumentation (a wrong
// flag, a cached build directory) cannot pass for a race-free run.

#include <catch2/catch.hpp>
#include <thread>

TEST_CASE("ThreadSanitizer sees a data race", "[.][tsan-self-check]") {
  int shared = 0;
  std::thread writer([&] {
    for (int i = 0; i < 1000; ++i) shared = shared + 1;
  });
  for (int i = 0; i < 1000; ++i) shared = shared + 1;
  writer.join();
  CHECK(shared > 0);
}
