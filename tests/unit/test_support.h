#pragma once
// Helpers shared by the unit tests: a temporary directory that cleans up after itself, and
// waiting for a condition with a deadline instead of sleeping.

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/models.h"

namespace modbox::testing {

/// A fresh directory under the system temp directory, removed with everything in it.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
template <class Condition>
bool eventually(Condition condition, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

/// The value of a result that must have succeeded; fails the test with the error otherwise.
template <class T>
T expect_value(Result<T> result) {
  INFO("error: " << (result ? std::string() : result.error().message));
  REQUIRE(result.has_value());
  return std::move(*result);
}

/// The kind of a result's error, or nothing when it succeeded.
template <class T>
std::optional<ErrorKind> error_kind(const Result<T>& result) {
  if (result) return std::nullopt;
  return result.error().kind;
}

/// Names of the entries of `directory`, sorted.
std::vector<std::string> list_directory(const std::filesystem::path& directory);

}  // namespace modbox::testing

namespace Catch {
template <>
struct StringMaker<modbox::ErrorKind> {
  static std::string convert(modbox::ErrorKind kind) { return "HTTP " + std::to_string(modbox::http_status(kind)); }
};
template <>
struct StringMaker<modbox::SandboxStatus> {
  static std::string convert(modbox::SandboxStatus status) { return std::string(modbox::to_string(status)); }
};
}  // namespace Catch
