// Shared helpers of the CLI tests: the binary under test and running a shell command in a folder with
// stdout and stderr captured together.
#pragma once
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

namespace ssm_cli_test {

inline const std::string kSsm = std::string(SSM_BINARY_DIR) + "/bin/ssm";

struct Result {
  int code = -1;
  std::string out;
};

// Runs `command` with sh in `dir` (OMP_NUM_THREADS=1: the tests run in parallel on small machines).
inline Result run_in(const std::filesystem::path& dir, const std::string& command) {
  const std::string cmd = "cd '" + dir.string() + "' && OMP_NUM_THREADS=1 " + command + " 2>&1";
  Result r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// Runs `ssm <args>` in `dir`.
inline Result ssm(const std::string& args, const std::filesystem::path& dir = std::filesystem::temp_directory_path()) {
  return run_in(dir, "'" + kSsm + "' " + args);
}

}  // namespace ssm_cli_test
