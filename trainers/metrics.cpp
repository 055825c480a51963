#include "trainers/metrics.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "trainers/tfevents.h"

namespace ssm::train {

namespace fs = std::filesystem;

namespace {
double system_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}
std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || !buf[0]) return "localhost";
  std::string h(buf);
  for (char& c : h)
    if (c == '/' || c == ' ') c = '_';
  return h;
}
}  // namespace

MetricsLogger::MetricsLogger(const std::string& run_dir, bool tensorboard, WallClock clock)
    : clock_(clock ? std::move(clock) : WallClock(system_seconds)) {
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  if (ec) throw_input(cat("cannot create run folder '", run_dir, "': ", ec.message()));
  jsonl_path_ = (fs::path(run_dir) / "metrics.jsonl").string();
  jsonl_.open(jsonl_path_, std::ios::app);
  SSM_CHECK_INPUT(jsonl_.good(), "cannot write '", jsonl_path_, "'");
  if (tensorboard) {
    double now = clock_();
    std::string base = (fs::path(run_dir) / cat("events.out.tfevents.", int64_t(now), ".", host_name())).string();
    events_path_ = base;
    for (int i = 1; fs::exists(events_path_, ec); ++i) events_path_ = cat(base, ".", i);  // a restart in the same second
    events_ = std::make_unique<EventFileWriter>(events_path_, now);
  }
}

MetricsLogger::~MetricsLogger() = default;

void MetricsLogger::log(int64_t step, const std::map<std::string, double>& values) {
  const double now = clock_();
  nlohmann::ordered_json j = nlohmann::ordered_json::object();  // step, time, then the metrics
  j["step"] = step;
  j["time"] = now;
  std::vector<std::pair<std::string, float>> scalars;
  for (const auto& [k, v] : values) {
    j[k] = std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(std::isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
    scalars.emplace_back(k, float(v));
  }
  jsonl_ << j.dump() << "\n";
  jsonl_.flush();
  SSM_CHECK(jsonl_.good(), "writing '", jsonl_path_, "' failed");
  if (events_) events_->add_scalars(step, scalars, now);
}

}  // namespace ssm::train
