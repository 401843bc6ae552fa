#include <filesystem>
#include <set>

#include "common/errors.h"
#include "common/mapped_file.h"
#include "reports/reports.h"

namespace qsweep {

void render_reports(const nlohmann::json& results, const std::string& out_dir,
                    const std::vector<std::string>& formats) {
  static const std::vector<std::string> kAll = {"md", "csv", "json", "html"};
  const std::vector<std::string>& wanted = formats.empty() ? kAll : formats;
  for (const auto& f : wanted)
    QS_THROW_IF_NOT(f == "md" || f == "csv" || f == "json" || f == "html",
                    "unknown report format \"", f, "\" (choose from md, csv, json, html)");
  const std::set<std::string> want(wanted.begin(), wanted.end());
  // Render everything first: bad input throws before any file is written.
  std::vector<std::pair<std::string, std::string>> files;
  if (want.count("md")) files.emplace_back("table.md", render_table_md(results));
  if (want.count("csv")) files.emplace_back("table.csv", render_table_csv(results));
  if (want.count("json")) files.emplace_back("results.json", results.dump(2) + "\n");
  if (want.count("html")) files.emplace_back("report.html", render_html(results));

  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  QS_THROW_IF_NOT(!ec, "cannot create the report directory ", out_dir, ": ", ec.message());
  for (const auto& [name, text] : files)
    write_file_atomic((std::filesystem::path(out_dir) / name).string(), text.data(), text.size());
}

}  // namespace qsweep
