// Metrics of a run: one JSON object per line in <run_dir>/metrics.jsonl ({"step": 100, "time": <unix s>,
// "loss": 0.41, ...}, flushed per line) and the same scalars in a TensorBoard event file
// <run_dir>/events.out.tfevents.<unix time>.<host> (see tfevents.h).
#pragma once
#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <utility>
#include <vector>
#include <memory>
#include <string>

namespace ssm::train {

class EventFileWriter;

class MetricsLogger {
 public:
  using WallClock = std::function<double()>;  // seconds since the epoch
  // Creates run_dir if needed. tensorboard = false writes only metrics.jsonl.
  explicit MetricsLogger(const std::string& run_dir, bool tensorboard = true, WallClock clock = {});
  ~MetricsLogger();

  void log(int64_t step, const std::map<std::string, double>& values);
  void log_pairs(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
    log(step, std::map<std::string, double>(values.begin(), values.end()));
  }

  const std::string& jsonl_path() const { return jsonl_path_; }
  const std::string& events_path() const { return events_path_; }  // empty without TensorBoard

 private:
  WallClock clock_;
  std::string jsonl_path_, events_path_;
  std::ofstream jsonl_;
  std::unique_ptr<EventFileWriter> events_;
};

}  // namespace ssm::train
