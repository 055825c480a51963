#include "trainers/progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

namespace ssm::train {

namespace {

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string format_value(double v) {
  double a = std::fabs(v);
  if (v == 0 || (a >= 1e-3 && a < 1e5)) return fmt("%.4f", v);
  return fmt("%.3e", v);
}

std::string format_rate(double r) {
  if (r >= 100) return fmt("%.0f", r);
  if (r >= 10) return fmt("%.1f", r);
  return fmt("%.2f", r);
}

// Characters on screen: UTF-8 continuation bytes take no column.
size_t display_width(const std::string& s) {
  size_t w = 0;
  for (unsigned char c : s) w += (c & 0xC0) != 0x80;
  return w;
}

}  // namespace

std::string format_duration(double s) {
  if (!(s >= 0) || !std::isfinite(s)) return "?";
  int64_t t = int64_t(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)(t / 3600), (long long)(t / 60 % 60),
                  (long long)(t % 60));
  else
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", (long long)(t / 60), (long long)(t % 60));
  return buf;
}

ProgressBar::ProgressBar(std::ostream& out, bool interactive, ProgressOptions opts, Clock clock)
    : out_(out), interactive_(interactive), opts_(std::move(opts)), clock_(clock ? std::move(clock) : Clock(steady_seconds)) {
  start_time_ = last_time_ = last_plain_time_ = clock_();
  step_ = last_step_ = opts_.start_step;
}

std::unique_ptr<ProgressBar> ProgressBar::to_stderr(ProgressOptions opts) {
  const char* term = std::getenv("TERM");
  bool tty = ::isatty(STDERR_FILENO) && !(term && std::strcmp(term, "dumb") == 0);
  return std::make_unique<ProgressBar>(std::cerr, tty, std::move(opts));
}

ProgressBar::~ProgressBar() {
  if (!finished_ && step_ > opts_.start_step) finish();
}

double ProgressBar::samples_per_second() const {
  if (ema_sec_per_step_ <= 0 || ema_samples_per_step_ < 0) return 0;
  return ema_samples_per_step_ / ema_sec_per_step_;
}

double ProgressBar::eta_seconds() const {
  if (opts_.total <= 0 || ema_sec_per_step_ < 0) return -1;
  return double(std::max<int64_t>(0, opts_.total - step_)) * ema_sec_per_step_;
}

void ProgressBar::update(int64_t step, const Metrics& metrics, int64_t samples) {
  const double now = clock_();
  if (!metrics.empty()) metrics_ = metrics;
  if (step > last_step_) {
    // EMA of seconds per step and samples per step over the interval since the last update.
    const double n = double(step - last_step_);
    const double sps = (now - last_time_) / n, samp = double(samples) / n;
    const double a = opts_.smoothing;
    ema_sec_per_step_ = ema_sec_per_step_ < 0 ? sps : a * sps + (1 - a) * ema_sec_per_step_;
    ema_samples_per_step_ = ema_samples_per_step_ < 0 ? samp : a * samp + (1 - a) * ema_samples_per_step_;
    last_time_ = now;
    last_step_ = step;
  }
  step_ = step;
  const bool last = opts_.total > 0 && step >= opts_.total;
  if (interactive_) {
    if (last || now - last_draw_time_ >= opts_.redraw_interval_s) {
      draw();
      last_draw_time_ = now;
    }
  } else {
    const bool first = last_plain_step_ < 0;
    const bool by_time = now - last_plain_time_ >= opts_.plain_interval_s;
    const bool by_steps = opts_.plain_every_steps > 0 && step - last_plain_step_ >= opts_.plain_every_steps;
    if (first || last || by_time || by_steps) {
      out_ << plain_line() << "\n" << std::flush;
      last_plain_time_ = now;
      last_plain_step_ = step;
    }
  }
}

// Appends every piece (plain += avoids a GCC 12 -Wrestrict false positive on operator+ chains).
template <typename... Pieces>
void append(std::string& s, const Pieces&... pieces) {
  (s += ... += pieces);
}

std::string ProgressBar::interactive_line() const {
  std::string s = "[";
  const std::string total = opts_.total > 0 ? std::to_string(opts_.total) : std::string();
  const std::string cur = std::to_string(step_);
  if (cur.size() < total.size()) s.append(total.size() - cur.size(), ' ');
  append(s, cur);
  if (!total.empty()) append(s, "/", total);
  s += ']';
  if (opts_.total > 0) {
    // Bar in eighths of a cell: full blocks, one partial block, spaces.
    static const char* partial[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
    double frac = std::clamp(double(step_) / double(opts_.total), 0.0, 1.0);
    int eighths = int(frac * opts_.bar_width * 8);
    int full = eighths / 8, rest = eighths % 8;
    s += " ▕";
    for (int i = 0; i < full; ++i) s += "█";
    s += partial[rest];
    for (int i = full + (rest ? 1 : 0); i < opts_.bar_width; ++i) s += ' ';
    s += "▏";
    char pct[16];
    std::snprintf(pct, sizeof pct, " %3d%%", int(frac * 100));
    s += pct;
  }
  for (const auto& [k, v] : metrics_) append(s, " ", k, " ", format_value(v));
  if (ema_sec_per_step_ > 0) {
    if (ema_samples_per_step_ > 0)
      append(s, " | ", format_rate(samples_per_second()), " ", opts_.unit, "/s");
    else
      append(s, " | ", format_rate(1.0 / ema_sec_per_step_), " it/s");
  }
  append(s, " | ", format_duration(last_time_ - start_time_));
  if (opts_.total > 0) append(s, "<", format_duration(eta_seconds()));
  return s;
}

std::string ProgressBar::plain_line() const {
  std::string s = "step ";
  s += std::to_string(step_);
  if (opts_.total > 0) append(s, "/", std::to_string(opts_.total));
  for (const auto& [k, v] : metrics_) append(s, " ", k, " ", format_value(v));
  if (ema_sec_per_step_ > 0) {
    if (ema_samples_per_step_ > 0)
      append(s, " ", format_rate(samples_per_second()), " ", opts_.unit, "/s");
    else
      append(s, " ", format_rate(1.0 / ema_sec_per_step_), " it/s");
  }
  if (opts_.total > 0) append(s, " eta ", format_duration(eta_seconds()));
  return s;
}

void ProgressBar::draw() {
  std::string line = interactive_line();
  size_t w = display_width(line);
  out_ << "\r" << line;
  if (w < drawn_width_) out_ << std::string(drawn_width_ - w, ' ');  // wipe the rest of a longer line
  out_ << std::flush;
  drawn_width_ = std::max(w, drawn_width_);
}

void ProgressBar::print(const std::string& line) {
  if (interactive_ && drawn_width_ > 0) {
    out_ << "\r" << std::string(drawn_width_, ' ') << "\r" << line << "\n";
    drawn_width_ = 0;
    if (!finished_) draw();
    out_ << std::flush;
  } else {
    out_ << line << "\n" << std::flush;
  }
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  if (interactive_) {
    draw();
    out_ << "\n" << std::flush;
  } else if (last_plain_step_ != step_) {
    out_ << plain_line() << "\n" << std::flush;
  }
}

}  // namespace ssm::train
