// Shared helpers of the trainers tests: a temporary folder removed at the end, and a check that a call
// throws BadInput (returning its message for further checks).
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "core/error.h"

namespace ssm_trainers_test {

struct TmpDir {
  std::filesystem::path path;
  explicit TmpDir(const std::string& tag) {
    path = std::filesystem::temp_directory_path() / ssm::cat("ssm-trainers-test-", ::getpid(), "-", tag);
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TmpDir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

template <typename F>
std::string bad_input(F f) {
  try {
    f();
  } catch (const ssm::Error& e) {
    EXPECT_EQ(e.kind(), ssm::ErrorKind::BadInput) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected a BadInput error";
  return "";
}

}  // namespace ssm_trainers_test
