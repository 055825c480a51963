// Shared helpers of the CLI tests: the binary under test and running a shell command in a folder with
// stdout and stderr captured together.
#pragma once
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "trainers/safetensors.h"

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

// Waits up to `seconds` for the child `pid` to exit; true (and its status) when it did. Never blocks longer:
// a hang fails the calling test instead of stalling CI.
inline bool wait_for_exit(pid_t pid, int* status, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (waitpid(pid, status, WNOHANG) == pid) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// Waits up to `seconds` for a file to exist and be non-empty.
inline bool wait_for_file(const std::filesystem::path& f, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    std::error_code ec;
    if (std::filesystem::exists(f, ec) && std::filesystem::file_size(f, ec) > 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

// The "loss" of every line of a metrics.jsonl, in order.
inline std::vector<double> losses(const std::filesystem::path& metrics) {
  std::vector<double> v;
  std::ifstream f(metrics);
  std::string line;
  while (std::getline(f, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) v.push_back(j["loss"].get<double>());
  }
  return v;
}

// max |a - b| / max |b| over each tensor of two checkpoints' models.
inline double max_rel_diff(const std::filesystem::path& a, const std::filesystem::path& b) {
  auto ta = ssm::train::load_safetensors((a / "model.safetensors").string());
  auto tb = ssm::train::load_safetensors((b / "model.safetensors").string());
  double worst = 0;
  for (const auto& [name, t] : tb.tensors) {
    const auto x = ta.tensors.at(name).to_double_vector(), y = t.to_double_vector();
    double num = 0, den = 0;
    for (size_t i = 0; i < y.size(); ++i) {
      num = std::max(num, std::abs(x[i] - y[i]));
      den = std::max(den, std::abs(y[i]));
    }
    worst = std::max(worst, den > 0 ? num / den : num);
  }
  return worst;
}

}  // namespace ssm_cli_test
