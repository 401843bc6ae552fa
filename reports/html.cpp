// report.html: one self-contained page (inline CSS and SVG; no scripts, fonts or URLs).
#include "reports/detail/text.h"
#include "reports/reports.h"

namespace qsweep {

using namespace reports_detail;

namespace {

const char* const kStyle =
    R"(body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1400px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; } h3 { font-size: 15px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #f0f0f0; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
ul.notes, .meta, p.summary { font-size: 13px; color: #444; }
.error { font-family: monospace; white-space: pre-wrap; }
svg.chart { display: block; margin: 8px 0; background: #fff; }
svg text { font-family: sans-serif; font-size: 12px; fill: #222; }
svg text.small { font-size: 11px; fill: #555; }
svg text.axis-title { font-size: 13px; }
svg .grid { stroke: #e6e6e6; stroke-width: 1; }
svg .tick { stroke: #444; stroke-width: 1; }
svg .frame { fill: none; stroke: #444; stroke-width: 1; }
svg .zero { stroke: #444; stroke-width: 1; }
svg .baseline-ref { stroke: #888; stroke-width: 1; stroke-dasharray: 5 4; }
svg .pareto { fill: none; stroke-width: 2; }
)";

std::string ul(const std::vector<std::string>& lines, const std::string& css_class) {
  std::string s = "<ul class=\"" + css_class + "\">\n";
  for (const auto& l : lines) s += "<li>" + html_escape(l) + "</li>\n";
  return s + "</ul>\n";
}

}  // namespace

std::string render_html(const nlohmann::json& results) {
  const ReportData d = derive_report(results);
  const CalibrationAnalysis a = analyze_calibration(d);
  std::string s = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  s += "<title>" + html_escape("qsweep report: " + d.sweep_name) + "</title>\n";
  s += std::string("<style>\n") + kStyle + "</style>\n</head>\n<body>\n";
  s += "<h1>" + html_escape("Tradeoff report: " + d.sweep_name) + "</h1>\n";
  s += "<p class=\"meta\">" +
       html_escape("Model " + d.model + ", baseline " + d.baseline_label + " (" + d.baseline_id +
                   "), sweep " + d.sweep_file + ", qsweep " + d.qsweep_version + ".") +
       "</p>\n";

  s += "<h2>Tradeoff table</h2>\n" + table_to_html(tradeoff_table(d), "tradeoff");
  s += ul(tradeoff_notes(d), "notes");
  if (d.n_table_rows < d.rows.size()) {
    s += "<h3>Not in the table</h3>\n<ul class=\"failed\">\n";
    for (size_t i = d.n_table_rows; i < d.rows.size(); ++i) {
      const ReportRow& r = d.rows[i];
      s += "<li>" + html_escape(r.label + " (" + r.id + "): " + r.status);
      if (!r.error.empty()) s += ": <span class=\"error\">" + html_escape(r.error) + "</span>";
      s += "</li>\n";
    }
    s += "</ul>\n";
  }

  s += "<h2>Quality against bits per weight</h2>\n<figure>\n" + quality_chart_svg(d);
  s += "<figcaption class=\"meta\">" +
       html_escape(
           "Relative perplexity (lower is better) of every variant on each perplexity "
           "eval against its bits per weight (" +
           std::string(d.axis_is_file ? "file bytes × 8 / parameters"
                                      : "linears only: not every variant has a file size") +
           "); the line joins each eval's Pareto "
           "frontier (the lowest relative perplexity at that many bits per weight or "
           "fewer), whose points are filled.") +
       "</figcaption>\n</figure>\n";
  s += "<h2>Degradation per eval</h2>\n<figure>\n" + degradation_chart_svg(d);
  s += "<figcaption class=\"meta\">" +
       html_escape(
           "Per variant and eval: (relative perplexity − 1) × 100 for perplexity; for "
           "other metrics the relative loss against " +
           d.baseline_label + " in the worse direction.") +
       "</figcaption>\n</figure>\n";

  const std::vector<std::string> capabilities = capability_lines(d);
  if (!capabilities.empty()) {
    s += "<h2>Which capability suffers most</h2>\n" + ul(capabilities, "notes");
    s += "<p class=\"meta\">" + html_escape(capability_footnote(d)) + "</p>\n";
  }

  s += "<h2>Calibration domain</h2>\n";
  if (a.groups.empty()) {
    s += "<p class=\"meta\">No variants differ only by their calibration set.</p>\n";
  } else {
    s += table_to_html(calibration_table(d, a), "calibration");
    s += ul(calibration_notes(d, a), "notes");
  }
  for (const auto& l : calibration_summary(d, a))
    s += "<p class=\"summary\">" + html_escape(l) + "</p>\n";

  s += sensitivity_html(results);
  s += "<h2>How measured</h2>\n" + ul(how_measured_lines(d), "notes");
  s += "</body>\n</html>\n";
  return s;
}

}  // namespace qsweep
