#pragma once
// What a fuzz target asserts beyond "no crash, no sanitizer report": a property that must hold for
// every input. A broken one prints what was expected and aborts, so libFuzzer keeps the input.

#include <cstdio>
#include <cstdlib>
#include <string_view>

#define FUZZ_CHECK(condition)                                                                  \
  do {                                                                                         \
    if (!(condition)) {                                                                        \
      std::fprintf(stderr, "%s:%d: property broken: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                            \
    }                                                                                          \
  } while (false)

namespace modbox::fuzz {

/// Splits a fuzz input into the pieces a reader may get it in: the first byte chooses the piece size
/// (1 to 256 bytes, cycling), the rest is the data.
struct Cutting {
  std::size_t piece = 1;
  std::string_view data;
};

inline Cutting cut(const unsigned char* bytes, std::size_t size) {
  if (size == 0) return {1, {}};
  return {static_cast<std::size_t>(bytes[0]) + 1, std::string_view(reinterpret_cast<const char*>(bytes + 1), size - 1)};
}

}  // namespace modbox::fuzz
