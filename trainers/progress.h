// Progress display for the training loop.
//   On a terminal (stderr is a tty): one line, redrawn in place with '\r' (at most every 0.1 s):
//     [ 1234/5000] ▕████▊               ▏ 24% loss 0.4123 | 812 samples/s | 00:41<02:08
//   Otherwise (logs, pipes, Slurm output): a plain line every `plain_interval_s` seconds or
//   `plain_every_steps` steps, and at the first and the last step:
//     step 1234/5000 loss 0.4123 812 samples/s eta 02:08
// Rates are smoothed: exponential moving averages of seconds per step and samples per step (weight
// `smoothing` on the newest interval); ETA = remaining steps * smoothed seconds per step.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace ssm::train {

struct ProgressOptions {
  int64_t total = 0;       // steps; 0 = unknown (no bar, no ETA)
  int64_t start_step = 0;  // where this run starts (resume)
  std::string unit = "samples";
  int bar_width = 20;
  double smoothing = 0.3;
  double redraw_interval_s = 0.1;  // terminal
  double plain_interval_s = 30.0;  // plain lines
  int64_t plain_every_steps = 0;   // plain lines every N steps too (0: off)
};

class ProgressBar {
 public:
  using Clock = std::function<double()>;  // monotonic seconds
  using Metrics = std::vector<std::pair<std::string, double>>;

  // clock defaults to std::chrono::steady_clock.
  ProgressBar(std::ostream& out, bool interactive, ProgressOptions opts, Clock clock = {});
  // To std::cerr, interactive when stderr is a terminal (and TERM is not "dumb").
  static std::unique_ptr<ProgressBar> to_stderr(ProgressOptions opts);
  ~ProgressBar();

  // `step` steps are done; `samples` were processed since the previous update.
  void update(int64_t step, const Metrics& metrics = {}, int64_t samples = 0);
  // A message on its own line that does not break the bar (eval results, warnings).
  void print(const std::string& line);
  // Final redraw and newline (terminal) or a final line (plain). Called by the destructor if needed.
  void finish();

  // The current line in either style (what update() draws); for tests and logs.
  std::string interactive_line() const;
  std::string plain_line() const;
  double samples_per_second() const;  // smoothed; 0 before the first interval
  double eta_seconds() const;         // smoothed; -1 when unknown

 private:
  std::ostream& out_;
  bool interactive_;
  ProgressOptions opts_;
  Clock clock_;
  double start_time_, last_time_, last_draw_time_ = -1e300, last_plain_time_;
  int64_t step_, last_step_, last_plain_step_ = -1;
  double ema_sec_per_step_ = -1, ema_samples_per_step_ = -1;
  Metrics metrics_;
  size_t drawn_width_ = 0;  // display width of the line on screen (terminal)
  bool finished_ = false;
  void draw();
};

std::string format_duration(double seconds);  // "02:08", "1:02:08"; "?" when negative

}  // namespace ssm::train
