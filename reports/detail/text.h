#if !defined(QSWEEP_IN_REPORTS)
#error "reports/detail/ is private to qsweep_reports; include reports/reports.h"
#endif
// Private helpers of reports/: number formatting, escaping, checked JSON access
// and a format-neutral table model that the Markdown, CSV and HTML writers share.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "reports/reports.h"

namespace qsweep::reports_detail {

inline constexpr const char* kMissing = "—";  // em dash: not measured

/// printf("%.*f") in the C locale; "-0.000" is printed as "0.000".
std::string fixed(double v, int decimals);
/// fixed() with an explicit sign: "+4.2", "-0.3".
std::string signed_fixed(double v, int decimals);
/// A standard error with at least `min_decimals` decimals and enough to show one
/// significant digit (0.00042 → "0.0004").
std::string se_fixed(double v, int min_decimals);
/// 32640 → "32,640".
std::string thousands(int64_t v);
/// Shortest round-trip representation of a double (as nlohmann::json dumps it).
std::string shortest(double v);

std::string html_escape(const std::string& s);
/// A Markdown table cell: "|" escaped, newlines folded to spaces.
std::string md_cell(const std::string& s);
/// A Markdown code span holding `s` literally (newlines folded to spaces).
std::string md_code(const std::string& s);
/// An RFC 4180 field: quoted when it holds a comma, quote, CR or LF; quotes doubled.
std::string csv_field(const std::string& s);

/// Checked JSON access; `where` names the key path for the error message.
const nlohmann::json& require(const nlohmann::json& j, const std::string& key,
                              const std::string& where);
std::string get_string(const nlohmann::json& j, const std::string& key, const std::string& where,
                       const std::string& fallback = "");
std::optional<int64_t> get_int(const nlohmann::json& j, const std::string& key,
                               const std::string& where);
std::optional<double> get_number(const nlohmann::json& j, const std::string& key,
                                 const std::string& where);
bool get_bool(const nlohmann::json& j, const std::string& key, const std::string& where,
              bool fallback);

/// A table independent of the output format. Cells are plain text.
struct Table {
  std::vector<std::string> header;
  std::string align;  ///< one of 'l' / 'r' per column
  std::vector<std::vector<std::string>> rows;
};

std::string table_to_md(const Table& t);
std::string table_to_html(const Table& t, const std::string& css_class);

/// The tradeoff table, its notes (plain sentences) and the "How measured" lines; shared by the
/// Markdown and HTML writers.
Table tradeoff_table(const ReportData& d);
std::vector<std::string> tradeoff_notes(const ReportData& d);
std::vector<std::string> how_measured_lines(const ReportData& d);

/// The calibration-domain table and its two summary sentences.
Table calibration_table(const ReportData& d, const CalibrationAnalysis& a);
std::vector<std::string> calibration_notes(const ReportData& d, const CalibrationAnalysis& a);
std::vector<std::string> calibration_summary(const ReportData& d, const CalibrationAnalysis& a);

/// "Which capability suffers most": one sentence per bit width (empty when the sweep has no
/// non-perplexity task or nothing to compare) and the footnote saying how loss is computed.
std::vector<std::string> capability_lines(const ReportData& d);
std::string capability_footnote(const ReportData& d);

/// The two SVG charts.
std::string quality_chart_svg(const ReportData& d);
std::string degradation_chart_svg(const ReportData& d);

}  // namespace qsweep::reports_detail
