// The two inline SVG charts of report.html: quality against bits per weight with
// the Pareto frontier, and degradation per eval per variant as grouped bars.
// Plain SVG 1.1 elements only; every data mark has a <title> tooltip.
#include <algorithm>
#include <cmath>

#include "reports/detail/text.h"
#include "reports/reports.h"

namespace qsweep::reports_detail {
namespace {

const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                               "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};
const char* color(size_t k) {
  return kColors[k % (sizeof kColors / sizeof kColors[0])];
}

std::string n1(double v) {
  return fixed(v, 1);
}

/// An axis: data range → pixels, plus its ticks.
struct Axis {
  double lo = 0, hi = 1;  ///< data range shown
  bool log = false;
  std::vector<double> ticks;
  int decimals = 0;
  double to_px(double v, double p0, double p1) const {
    const double t =
        log ? (std::log(v) - std::log(lo)) / (std::log(hi) - std::log(lo)) : (v - lo) / (hi - lo);
    return p0 + t * (p1 - p0);
  }
  std::string label(double v) const {
    if (!log) return fixed(v, decimals);
    std::string s = fixed(v, v < 10 ? 2 : 0);
    if (s.find('.') != std::string::npos) {
      while (s.back() == '0') s.pop_back();
      if (s.back() == '.') s.pop_back();
    }
    return s;
  }
};

/// About `target` ticks at 1, 2 or 5 × 10^k covering [lo, hi].
Axis linear_axis(double lo, double hi, int target) {
  if (!(hi > lo)) {
    lo -= 1;
    hi += 1;
  }
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double r = raw / mag;
  const double step = (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
  Axis a;
  a.lo = std::floor(lo / step + 1e-9) * step;
  a.hi = std::ceil(hi / step - 1e-9) * step;
  for (int i = 0; a.lo + i * step <= a.hi + step * 1e-6; ++i) a.ticks.push_back(a.lo + i * step);
  a.decimals = std::max(0, -static_cast<int>(std::floor(std::log10(step) + 1e-9)));
  return a;
}

/// Logarithmic axis with ticks at m × 10^k for m in a thinning set of mantissas.
Axis log_axis(double lo, double hi) {
  Axis a;
  a.log = true;
  const std::vector<std::vector<double>> sets = {{1, 1.5, 2, 3, 5, 7}, {1, 2, 5}, {1}};
  for (const auto& mant : sets) {
    std::vector<double> cand;
    for (int k = static_cast<int>(std::floor(std::log10(lo))) - 1;
         k <= static_cast<int>(std::ceil(std::log10(hi))) + 1; ++k)
      for (double m : mant) cand.push_back(m * std::pow(10.0, k));
    double alo = cand.front(), ahi = cand.back();
    for (double c : cand)
      if (c <= lo * (1 + 1e-9)) alo = c;
    for (auto it = cand.rbegin(); it != cand.rend(); ++it)
      if (*it >= hi * (1 - 1e-9)) ahi = *it;
    std::vector<double> ticks;
    for (double c : cand)
      if (c >= alo * (1 - 1e-9) && c <= ahi * (1 + 1e-9)) ticks.push_back(c);
    a.lo = alo;
    a.hi = ahi;
    a.ticks = ticks;
    if (ticks.size() <= 9) break;
  }
  return a;
}

std::string text(double x, double y, const std::string& s, const std::string& attrs = "") {
  return "<text x=\"" + n1(x) + "\" y=\"" + n1(y) + "\"" + (attrs.empty() ? "" : " " + attrs) +
         ">" + html_escape(s) + "</text>\n";
}

std::string line(double x1, double y1, double x2, double y2, const std::string& attrs) {
  return "<line x1=\"" + n1(x1) + "\" y1=\"" + n1(y1) + "\" x2=\"" + n1(x2) + "\" y2=\"" + n1(y2) +
         "\" " + attrs + "/>\n";
}

/// Frame, grid, ticks and axis titles of a plot area [x0, x1] × [y0, y1] (y0 at the top).
std::string axes(const Axis* ax, const Axis& ay, double x0, double x1, double y0, double y1,
                 const std::string& xtitle, const std::string& ytitle) {
  std::string s = "<g class=\"axes\">\n";
  for (double t : ay.ticks) {
    const double y = ay.to_px(t, y1, y0);
    s += line(x0, y, x1, y, "class=\"grid\"");
    s += line(x0 - 5, y, x0, y, "class=\"tick\"");
    s += text(x0 - 8, y + 4, ay.label(t), "text-anchor=\"end\"");
  }
  if (ax) {
    for (double t : ax->ticks) {
      const double x = ax->to_px(t, x0, x1);
      s += line(x, y0, x, y1, "class=\"grid\"");
      s += line(x, y1, x, y1 + 5, "class=\"tick\"");
      s += text(x, y1 + 18, ax->label(t), "text-anchor=\"middle\"");
    }
    s += text((x0 + x1) / 2, y1 + 40, xtitle, "text-anchor=\"middle\" class=\"axis-title\"");
  }
  s += "<rect class=\"frame\" x=\"" + n1(x0) + "\" y=\"" + n1(y0) + "\" width=\"" + n1(x1 - x0) +
       "\" height=\"" + n1(y1 - y0) + "\"/>\n";
  const double cy = (y0 + y1) / 2;
  s += "<text class=\"axis-title\" text-anchor=\"middle\" transform=\"translate(" + n1(x0 - 52) +
       "," + n1(cy) + ") rotate(-90)\">" + html_escape(ytitle) + "</text>\n";
  return s + "</g>\n";
}

/// (value / baseline − 1) × 100 in the "worse" direction, for any metric.
std::optional<double> degradation_pct(const ReportEval& e, const ReportCell& c,
                                      const ReportCell& base) {
  if (!c.has_relative) return std::nullopt;
  if (e.is_perplexity) return (c.relative - 1.0) * 100.0;
  if (base.value == 0) return std::nullopt;
  const double r = c.value / base.value;
  return (e.higher_is_better ? 1.0 - r : r - 1.0) * 100.0;
}

}  // namespace

std::string quality_chart_svg(const ReportData& d) {
  std::vector<size_t> series;
  for (size_t e = 0; e < d.evals.size(); ++e)
    if (d.evals[e].is_perplexity) series.push_back(e);
  double xmin = INFINITY, xmax = -INFINITY, ymin = 1.0, ymax = 1.0;
  for (size_t e : series)
    for (size_t i = 0; i < d.n_table_rows; ++i) {
      const ReportRow& r = d.rows[i];
      if (!r.cells[e].has_relative || !r.axis_bpw) continue;
      xmin = std::min(xmin, *r.axis_bpw);
      xmax = std::max(xmax, *r.axis_bpw);
      ymin = std::min(ymin, r.cells[e].relative);
      ymax = std::max(ymax, r.cells[e].relative);
    }
  if (!(xmin <= xmax))
    return "<p class=\"empty\">No perplexity measured yet: nothing to plot.</p>\n";

  const double W = 860, H = 440, L = 80, R = 230, T = 20, B = 60;
  const double x0 = L, x1 = W - R, y0 = T, y1 = H - B;
  const Axis ax = linear_axis(std::min(xmin, std::floor(xmin)), xmax, 7);
  // Linear axes get a little room below so points at 1.0 do not sit on the frame.
  const Axis ay =
      ymax / ymin > 3 ? log_axis(ymin, ymax) : linear_axis(ymin - 0.03 * (ymax - ymin), ymax, 6);
  std::string s = "<svg class=\"chart\" id=\"quality-chart\" width=\"" + n1(W) + "\" height=\"" +
                  n1(H) + "\" viewBox=\"0 0 " + n1(W) + " " + n1(H) +
                  "\" role=\"img\" aria-label=\"relative perplexity against bits per weight\">\n";
  s += axes(
      &ax, ay, x0, x1, y0, y1,
      d.axis_is_file ? "bits per weight (file bytes × 8 / parameters)"
                     : "bits per weight (linears, scales included)",
      std::string("relative perplexity vs ") + d.baseline_label + (ay.log ? " (log scale)" : ""));
  const double yb = ay.to_px(1.0, y1, y0);
  s += line(x0, yb, x1, yb, "class=\"baseline-ref\"");
  s += text(x1 - 4, yb - 5, d.baseline_label + " = 1", "text-anchor=\"end\" class=\"small\"");

  for (size_t k = 0; k < series.size(); ++k) {
    const size_t e = series[k];
    const std::string col = color(e);  // one colour per eval in both charts
    s += "<g class=\"series\" data-eval=\"" + html_escape(d.evals[e].id) + "\">\n";
    std::string pts;
    for (size_t i : d.frontier[e]) {
      const ReportRow& r = d.rows[i];
      if (!pts.empty()) pts += ' ';
      pts += n1(ax.to_px(*r.axis_bpw, x0, x1)) + "," + n1(ay.to_px(r.cells[e].relative, y1, y0));
    }
    s += "<polyline class=\"pareto\" points=\"" + pts + "\" stroke=\"" + col + "\"/>\n";
    for (size_t i = 0; i < d.n_table_rows; ++i) {
      const ReportRow& r = d.rows[i];
      const ReportCell& c = r.cells[e];
      if (!c.has_relative || !r.axis_bpw) continue;
      const double px = ax.to_px(*r.axis_bpw, x0, x1), py = ay.to_px(c.relative, y1, y0);
      s += "<circle cx=\"" + n1(px) + "\" cy=\"" + n1(py) + "\" r=\"" +
           (c.on_frontier ? "5" : "4") + "\" stroke=\"" + col + "\" fill=\"" +
           (c.on_frontier ? col : "#ffffff") + "\" class=\"" +
           (c.on_frontier ? "point frontier" : "point") + "\"><title>" +
           html_escape(r.label + " on " + d.evals[e].name + ": relative perplexity " +
                       fixed(c.relative, 3) + " at " + fixed(*r.axis_bpw, 3) + " bits/weight" +
                       (c.on_frontier ? " (Pareto frontier)" : "")) +
           "</title></circle>\n";
    }
    s += "</g>\n";
  }
  // Legend.
  double ly = T + 10;
  const double lx = x1 + 20;
  s += "<g class=\"legend\">\n";
  for (size_t k = 0; k < series.size(); ++k) {
    const std::string col = color(series[k]);
    s += line(lx, ly, lx + 24, ly, std::string("class=\"pareto\" stroke=\"") + col + "\"");
    s += "<circle cx=\"" + n1(lx + 12) + "\" cy=\"" + n1(ly) + "\" r=\"5\" fill=\"" + col +
         "\" stroke=\"" + col + "\"/>\n";
    s += text(lx + 32, ly + 4, d.evals[series[k]].name);
    ly += 22;
  }
  ly += 6;
  s += "<circle cx=\"" + n1(lx + 12) + "\" cy=\"" + n1(ly) +
       "\" r=\"5\" fill=\"#555555\" stroke=\"#555555\"/>\n";
  s += text(lx + 32, ly + 4, "on the Pareto frontier", "class=\"small\"");
  ly += 20;
  s += "<circle cx=\"" + n1(lx + 12) + "\" cy=\"" + n1(ly) +
       "\" r=\"4\" fill=\"#ffffff\" stroke=\"#555555\"/>\n";
  s += text(lx + 32, ly + 4, "dominated", "class=\"small\"");
  ly += 20;
  s += line(lx, ly, lx + 24, ly, "class=\"pareto\" stroke=\"#555555\"");
  s += text(lx + 32, ly + 4, "frontier: lowest rel. PPL", "class=\"small\"");
  s += text(lx + 32, ly + 18, "at ≤ bits per weight", "class=\"small\"");
  s += "</g>\n</svg>\n";
  return s;
}

std::string degradation_chart_svg(const ReportData& d) {
  const ReportRow* base = nullptr;
  for (const auto& r : d.rows)
    if (r.is_baseline) base = &r;
  std::vector<size_t> cats;
  for (size_t i = 0; i < d.n_table_rows; ++i)
    if (!d.rows[i].is_baseline) cats.push_back(i);
  const size_t ns = d.evals.size();
  double vmin = 0, vmax = 0;
  size_t longest = 0;
  bool any = false;
  for (size_t i : cats) {
    longest = std::max(longest, d.rows[i].label.size());
    for (size_t e = 0; e < ns; ++e)
      if (auto v = degradation_pct(d.evals[e], d.rows[i].cells[e], base->cells[e])) {
        vmin = std::min(vmin, *v);
        vmax = std::max(vmax, *v);
        any = true;
      }
  }
  if (!any) return "<p class=\"empty\">No quantized variant measured yet: nothing to plot.</p>\n";

  const double bw = 14, gap = 22, gw = ns * bw + gap;
  const double L = 80, R = 20, T = 40, ph = 300;
  const double B = 30 + std::min(220.0, 6.0 * std::min<size_t>(longest, 40) * 0.6 + 20);
  const double W = std::max(600.0, L + R + cats.size() * gw), H = T + ph + B;
  const double x0 = L, x1 = W - R, y0 = T, y1 = T + ph;
  const Axis ay = linear_axis(vmin, vmax, 6);
  std::string s = "<svg class=\"chart\" id=\"degradation-chart\" width=\"" + n1(W) +
                  "\" height=\"" + n1(H) + "\" viewBox=\"0 0 " + n1(W) + " " + n1(H) +
                  "\" role=\"img\" aria-label=\"degradation per eval per variant\">\n";
  s += axes(nullptr, ay, x0, x1, y0, y1, "", "degradation vs " + d.baseline_label + " (%)");
  const double yz = ay.to_px(0.0, y1, y0);
  s += line(x0, yz, x1, yz, "class=\"zero\"");
  const double start = x0 + (x1 - x0 - cats.size() * gw) / 2 + gap / 2;
  for (size_t ci = 0; ci < cats.size(); ++ci) {
    const ReportRow& r = d.rows[cats[ci]];
    const double gx = start + ci * gw;
    s += "<g class=\"bars\">\n";
    for (size_t e = 0; e < ns; ++e) {
      const double bx = gx + e * bw;
      const auto v = degradation_pct(d.evals[e], r.cells[e], base->cells[e]);
      if (!v) {
        s += text(bx + bw / 2, yz - 3, kMissing, "text-anchor=\"middle\" class=\"small\"");
        continue;
      }
      const double py = ay.to_px(*v, y1, y0);
      s += "<rect x=\"" + n1(bx) + "\" y=\"" + n1(std::min(py, yz)) + "\" width=\"" + n1(bw - 2) +
           "\" height=\"" + n1(std::max(0.5, std::fabs(py - yz))) + "\" fill=\"" + color(e) +
           "\"><title>" +
           html_escape(r.label + " on " + d.evals[e].name + ": " + signed_fixed(*v, 1) + "%") +
           "</title></rect>\n";
    }
    const double cx = gx + ns * bw / 2;
    s += "<text class=\"cat\" text-anchor=\"end\" transform=\"translate(" + n1(cx) + "," +
         n1(y1 + 14) + ") rotate(-35)\">" + html_escape(r.label) + "</text>\n";
    s += "</g>\n";
  }
  // Legend above the plot.
  double lx = x0;
  s += "<g class=\"legend\">\n";
  for (size_t e = 0; e < ns; ++e) {
    s += "<rect x=\"" + n1(lx) + "\" y=\"" + n1(T - 28) + "\" width=\"12\" height=\"12\" fill=\"" +
         color(e) + "\"/>\n";
    const std::string name = d.evals[e].is_perplexity
                                 ? d.evals[e].name + " (perplexity)"
                                 : d.evals[e].name + " (" + d.evals[e].metric + ")";
    s += text(lx + 18, T - 18, name);
    lx += 40 + 7.0 * name.size();
  }
  s += "</g>\n</svg>\n";
  return s;
}

}  // namespace qsweep::reports_detail
