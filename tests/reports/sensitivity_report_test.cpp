// The sensitivity study in the reports (issue #19): heat-map cells and the table.md ranking
// against the hand-written numbers of fixtures/sensitivity.json.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/errors.h"
#include "reports/reports.h"

namespace qsweep {
namespace {
using nlohmann::json;

const std::string kDir = std::string(QSWEEP_SOURCE_DIR) + "/tests/reports";

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << "cannot read " << path;
  std::ostringstream os;
  os << f.rdbuf();
  return os.str();
}

json fixture() {
  return json::parse(slurp(kDir + "/fixtures/results.json"));
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

// Issue #19: the sensitivity study in the reports, against the hand-written numbers of
// fixtures/sensitivity.json (2 layers; attn_v, ffn_down, token_embd, output at q2_k and
// q4_k; a failed q6_k node).
json sensitivity_fixture() {
  json j = fixture();
  j["sensitivity"] = json::parse(slurp(kDir + "/fixtures/sensitivity.json"));
  return j;
}

struct RenderedCell {
  std::string group, kl, x, y, text;
};

// Every heat-map cell of an SVG/HTML text: data-group, data-kl, the rect's x/y, the text.
std::vector<RenderedCell> cells_of(const std::string& s) {
  std::vector<RenderedCell> out;
  auto attr = [&](size_t from, const std::string& name) {
    const size_t a = s.find(name + "=\"", from) + name.size() + 2;
    return s.substr(a, s.find('"', a) - a);
  };
  for (size_t p = s.find("<g class=\"cell\""); p != std::string::npos;
       p = s.find("<g class=\"cell\"", p + 1)) {
    RenderedCell c{attr(p, "data-group"), attr(p, "data-kl"), attr(s.find("<rect", p), "x"),
                   attr(s.find("<rect", p), "y"), ""};
    const size_t t = s.find('>', s.find("<text", p)) + 1;
    c.text = s.substr(t, s.find("</text>", t) - t);
    out.push_back(c);
  }
  return out;
}

TEST(ReportsSensitivity, HeatMapCellsShowTheFixturesNumbersAtTheirLayerAndRole) {
  const std::string html = render_html(sensitivity_fixture());
  const std::vector<RenderedCell> cells = cells_of(html);
  const json fx = json::parse(slurp(kDir + "/fixtures/sensitivity.json"));
  ASSERT_EQ(cells.size(), 12u);  // two maps of 6 groups; the failed node has none
  for (size_t i = 0; i < 12; ++i) {
    const json& m = fx[i / 6]["measurements"][i % 6];
    EXPECT_EQ(cells[i].group, m["name"].get<std::string>());
    EXPECT_EQ(std::stod(cells[i].kl), m["kl"].get<double>()) << cells[i].group;
  }
  // Printed to 3 significant digits, by hand; rows: embd/out, layer 0, layer 1 (20 px from
  // y 44); columns attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down,
  // token_embd, output (74 px from x 70).
  EXPECT_EQ(cells[0].text, "0.0123");  // blk.0.attn_v at q2_k
  EXPECT_EQ(cells[0].x, "218.0");
  EXPECT_EQ(cells[0].y, "64.0");
  EXPECT_EQ(cells[3].text, "0.0032");  // blk.1.ffn_down
  EXPECT_EQ(cells[3].x, "514.0");
  EXPECT_EQ(cells[3].y, "84.0");
  EXPECT_EQ(cells[5].x, "662.0");  // output: last column, first row
  EXPECT_EQ(cells[5].y, "44.0");
  EXPECT_EQ(cells[10].text, "5.5e-05");  // token_embd at q4_k
  EXPECT_EQ(count(html, "<h3>q2_k (code, seed 0)</h3>"), 1u);
  EXPECT_EQ(count(html, "Sensitivity at q6_k (code): failed"), 1u);
  // The largest KL of a map is the reddest cell, the smallest white.
  const std::string section = html.substr(html.find("Sensitivity per tensor group"));
  EXPECT_EQ(count(section, "fill=\"#ff3737\""), 2u);
  EXPECT_EQ(count(section, "fill=\"#ffffff\""), 2u);
  // Without a study: no section.
  EXPECT_EQ(count(render_html(fixture()), "Sensitivity per tensor group"), 0u);
}

TEST(ReportsSensitivity, TableMdRanksTheGroupsByTheFirstTypesKl) {
  const std::string md = render_table_md(sensitivity_fixture());
  const std::string expected =
      "| rank | group | KL at q2_k | KL at q4_k |\n"
      "|---:|---|---:|---:|\n"
      "| 1 | output.weight | 0.0802 ± 0.002 | 0.00666 ± 0.0002 |\n"
      "| 2 | blk.0.ffn_down.weight | 0.0456 ± 0.001 | 0.00222 ± 6e-05 |\n"
      "| 3 | blk.0.attn_v.weight | 0.0123 ± 0.0004 | 0.00111 ± 3e-05 |\n"
      "| 4 | blk.1.attn_v.weight | 0.0071 ± 0.0002 | 0.000333 ± 1e-05 |\n"
      "| 5 | blk.1.ffn_down.weight | 0.0032 ± 0.0001 | 0.000444 ± 1e-05 |\n"
      "| 6 | token_embd.weight | 0.0015 ± 5e-05 | 5.5e-05 ± 2e-06 |\n";
  EXPECT_NE(md.find("### Most sensitive tensor groups (code)"), std::string::npos) << md;
  EXPECT_NE(md.find(expected), std::string::npos) << md;
  EXPECT_EQ(render_table_md(fixture()).find("Most sensitive"), std::string::npos);
}

TEST(ReportsSensitivity, ABadMeasurementIsAnErrorNamingIt) {
  json j = sensitivity_fixture();
  j["sensitivity"][1]["measurements"][2]["kl"] = -1.0;
  try {
    render_html(j);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "results.json: sensitivity[1].measurements[2].kl must be a finite number >= 0");
  }
  j["sensitivity"][1]["measurements"][2].erase("kl");
  EXPECT_THROW(render_table_md(j), Error);
}

}  // namespace
}  // namespace qsweep
