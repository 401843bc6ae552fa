#include "common/progress.h"

#include <unistd.h>

namespace qsweep {

Progress::Progress(std::string label, int64_t total, std::string unit, bool enabled, std::FILE* out)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      enabled_(enabled),
      tty_(::isatty(::fileno(out)) != 0),
      out_(out),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() {
  finish();
}

void Progress::advance(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  done_ += n;
  const auto now = std::chrono::steady_clock::now();
  // Terminals redraw often; logs get a line every 5 s at most.
  const auto every = tty_ ? std::chrono::milliseconds(100) : std::chrono::milliseconds(5000);
  if (now - last_draw_ >= every) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  draw(true);
}

void Progress::abandon() {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  if (enabled_ && tty_) std::fputc('\n', out_);
}

void Progress::draw(bool final_line) {
  if (!enabled_) return;
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double frac = total_ > 0 ? double(done_) / double(total_) : 1.0;
  const double eta = (frac > 0 && frac < 1) ? secs / frac - secs : 0;
  if (tty_) {
    const int width = 30;
    const int fill = int(frac * width + 0.5);
    std::fprintf(out_, "\r%s [%.*s%*s] %lld/%lld %s %5.1fs eta %4.0fs\x1b[K", label_.c_str(), fill,
                 "##############################", width - fill, "", (long long)done_,
                 (long long)total_, unit_.c_str(), secs, eta);
    if (final_line) std::fputc('\n', out_);
  } else {
    std::fprintf(out_, "%s: %lld/%lld %s (%.0f%%) %.1fs\n", label_.c_str(), (long long)done_,
                 (long long)total_, unit_.c_str(), frac * 100, secs);
  }
  std::fflush(out_);
}

}  // namespace qsweep
