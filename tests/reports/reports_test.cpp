// Golden and property tests for reports/: the tradeoff table, the calibration-domain
// table, CSV quoting, the HTML page, and the page rendered by headless Chromium.
//
// To regenerate the golden files after an intended change:
//   QSWEEP_UPDATE_GOLDEN=1 ./test_reports --gtest_filter='ReportsGolden.*'
// then read the diff by eye before committing it.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>

#include "common/errors.h"
#include "reports/reports.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const std::string kDir = std::string(QSWEEP_SOURCE_DIR) + "/tests/reports";
const char* const kWiki = "ppl-wikitext2-chunks-ctx256-n32768";

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

size_t row_of(const ReportData& d, const std::string& id) {
  for (size_t i = 0; i < d.rows.size(); ++i)
    if (d.rows[i].id == id) return i;
  ADD_FAILURE() << "no row " << id;
  return 0;
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

void expect_golden(const std::string& name, const std::string& actual) {
  const std::string path = kDir + "/golden/" + name;
  if (std::getenv("QSWEEP_UPDATE_GOLDEN")) {
    std::ofstream(path, std::ios::binary) << actual;
    GTEST_SKIP() << "rewrote " << path;
  }
  const std::string expected = slurp(path);
  EXPECT_EQ(expected, actual) << "rendering differs from " << path
                              << " (QSWEEP_UPDATE_GOLDEN=1 rewrites it; check the diff by eye)";
}

TEST(ReportsGolden, TableMd) {
  expect_golden("table.md", render_table_md(fixture()));
}
TEST(ReportsGolden, TableCsv) {
  expect_golden("table.csv", render_table_csv(fixture()));
}
TEST(ReportsGolden, CalibrationMd) {
  expect_golden("calibration.md", render_calibration_md(fixture()));
}

TEST(Reports, RelativePerplexityMatchesHandComputedValues) {
  const ReportData d = derive_report(fixture());
  ASSERT_EQ(d.evals.size(), 2u);
  // By hand: 314.2 / 304.777 = 1.030918 and 24.35 / 23.6387 = 1.030090.
  const auto& g4w = d.rows[row_of(d, "gptq-b4-g128-wiki")];
  EXPECT_NEAR(g4w.cells[0].relative, 1.030918, 1e-6);
  const auto& g4c = d.rows[row_of(d, "gptq-b4-g128-code")];
  EXPECT_NEAR(g4c.cells[1].relative, 1.030090, 1e-6);
  // Delta method: 1.030918 × √(0.0167² + 0.0166²) = 0.024275.
  EXPECT_NEAR(g4w.cells[0].relative_se, 0.024275, 1e-6);
  // 362.0 / 304.777 = 1.187754 is the 3-bit code-calibrated variant's worst → marginal.
  const auto& g3c = d.rows[row_of(d, "gptq-b3-g128-code")];
  EXPECT_NEAR(*g3c.worst_relative_ppl, 1.187754, 1e-6);
  EXPECT_EQ(g3c.acceptable, "marginal");
  // And the rendered table shows the same numbers.
  const std::string md = render_table_md(fixture());
  EXPECT_NE(
      md.find("| GPTQ 4-bit g128 (wiki) | 4 | 8.936 | 4.242 | 7.62 | 1.031 ±0.024 ≈ | 314.20 |"),
      std::string::npos)
      << md;
  EXPECT_NE(md.find("| 1.188 ±0.028 ≈ | 362.00 | 1.151 ±0.025 ≈ | 27.20 | marginal |"),
            std::string::npos);
}

TEST(Reports, RowsSortedBaselineFirstThenBitsPerWeightDescending) {
  const ReportData d = derive_report(fixture());
  std::vector<std::string> ids;
  for (const auto& r : d.rows) ids.push_back(r.id);
  const std::vector<std::string> expected = {"fp16",
                                             "rtn-b8-g128",
                                             "rtn-b4-g128",
                                             "gptq-b4-g128-code",
                                             "gptq-b4-g128-wiki",
                                             "rtn-b3-g128",
                                             "gptq-b3-g128-code",
                                             "gptq-b3-g128-wiki",
                                             "gptq-b2-g64-wiki",
                                             "gptq-b2-g64-code"};
  EXPECT_EQ(ids, expected);
  EXPECT_EQ(d.n_table_rows, 8u);
}

TEST(Reports, AcceptableCategories) {
  EXPECT_EQ(acceptable_category(1.05, 1.05, 1.12, 1.20), "yes");  // boundaries are inclusive
  EXPECT_EQ(acceptable_category(1.0501, 1.05, 1.12, 1.20), "usually");
  EXPECT_EQ(acceptable_category(1.12, 1.05, 1.12, 1.20), "usually");
  EXPECT_EQ(acceptable_category(1.20, 1.05, 1.12, 1.20), "marginal");
  EXPECT_EQ(acceptable_category(1.2001, 1.05, 1.12, 1.20), "no");
  const ReportData d = derive_report(fixture());
  EXPECT_EQ(d.rows[row_of(d, "fp16")].acceptable, "baseline");
  EXPECT_EQ(d.rows[row_of(d, "rtn-b8-g128")].acceptable, "yes");
  EXPECT_EQ(d.rows[row_of(d, "rtn-b4-g128")].acceptable, "usually");        // 1.1126 on code
  EXPECT_EQ(d.rows[row_of(d, "gptq-b4-g128-wiki")].acceptable, "usually");  // 1.0534 on code
  EXPECT_EQ(d.rows[row_of(d, "gptq-b3-g128-wiki")].acceptable, "no");       // 1.2014 on code
  EXPECT_EQ(d.rows[row_of(d, "rtn-b3-g128")].acceptable, "—");              // code not measured
  EXPECT_FALSE(d.rows[row_of(d, "rtn-b3-g128")].cells[1].present);
}

TEST(Reports, NoiseRule) {
  const ReportData d = derive_report(fixture());
  const size_t base = row_of(d, "fp16"), b8 = row_of(d, "rtn-b8-g128"),
               b4 = row_of(d, "rtn-b4-g128"), r3 = row_of(d, "rtn-b3-g128");
  // |1.00106 − 1| = 0.00106 < 2 × 1.00106 × √(2 × 0.0166²) = 0.0470.
  EXPECT_TRUE(rows_within_noise(d, 0, base, b8));
  EXPECT_TRUE(d.rows[base].cells[0].near_noise);
  EXPECT_TRUE(d.rows[b8].cells[0].near_noise);
  EXPECT_NEAR(d.rows[b8].cells[0].relative_se, 0.023501, 1e-6);
  // 1.706 against 1.188 is far outside the noise.
  EXPECT_FALSE(rows_within_noise(d, 0, r3, r3 + 1));
  // 1.0992 vs 1.00106 differ by 0.098 > 2σ ≈ 0.048.
  EXPECT_FALSE(rows_within_noise(d, 0, b8, b4));
  const std::string md = render_table_md(fixture());
  EXPECT_NE(md.find("| FP16 | 16 | 16.000 | 16.000 | 13.64 | 1.000 ≈ | 304.78 | 1.000 ≈ | 23.64 | "
                    "baseline |"),
            std::string::npos);
  EXPECT_NE(md.find("| RTN 8-bit g128 | 8 | 11.961 | 8.250 | 10.20 | 1.001 ±0.024 ≈ |"),
            std::string::npos);
}

TEST(Reports, PairedStandardErrorTightensTheNoiseRule) {
  json j = fixture();
  // Give RTN 8-bit and RTN 4-bit paired errors on the first eval (0.0005 nats).
  for (auto& v : j["variants"])
    if (v["id"] == "rtn-b8-g128" || v["id"] == "rtn-b4-g128")
      v["metrics"]["ppl-wikitext2-chunks-ctx256-n32768"]["paired_nll_standard_error"] = 0.0005;
  const ReportData d = derive_report(j);
  const size_t base = row_of(d, "fp16"), b8 = row_of(d, "rtn-b8-g128");
  // SE(r) = r × SE(Δ) = 1.00106 × 0.0005 (by hand: 0.00050053).
  EXPECT_NEAR(d.rows[b8].cells[0].relative_se, 1.00106 * 0.0005, 2e-7);
  // |1.00106 − 1| = 0.00106 > 2 × 0.0005: the baseline and 8-bit are now told apart,
  // where the unpaired rule (NoiseRule above) could not.
  EXPECT_FALSE(rows_within_noise(d, 0, base, b8));
  // Without a paired error on the neighbour, the unpaired rule still applies.
  EXPECT_TRUE(rows_within_noise(derive_report(fixture()), 0, base, b8));
}

TEST(Reports, ParetoFrontier) {
  const ReportData d = derive_report(fixture());
  std::vector<std::string> wiki;
  for (size_t i : d.frontier[0]) wiki.push_back(d.rows[i].id);
  // Lowest relative perplexity at ≤ bits: 3.242 (wiki cal) 1.170, 4.242 (code cal) 1.027,
  // 8.25 1.001, 16 1.0; RTN 4-bit at 4.25 is dominated by GPTQ at 4.242.
  EXPECT_EQ(wiki, (std::vector<std::string>{"gptq-b3-g128-wiki", "gptq-b4-g128-code", "rtn-b8-g128",
                                            "fp16"}));
  EXPECT_FALSE(d.rows[row_of(d, "rtn-b4-g128")].cells[0].on_frontier);
  std::vector<std::string> code;
  for (size_t i : d.frontier[1]) code.push_back(d.rows[i].id);
  EXPECT_EQ(code, (std::vector<std::string>{"gptq-b3-g128-code", "gptq-b4-g128-code", "rtn-b8-g128",
                                            "fp16"}));
}

// Issue #19: rows and the Pareto frontier use the file's bits per weight (bytes on disk × 8 /
// parameters) when every row has it. RTN-4 made smaller on disk than GPTQ-4 (8.90 vs 8.936)
// while its linears count more (4.25 vs 4.242): it moves below GPTQ-4 and joins the wiki
// frontier (1.099 < GPTQ-3's 1.170 at fewer bits than GPTQ-4). With one row lacking a file
// size, the whole report falls back to the linears' bits per weight, as before.
TEST(Reports, RankingAndParetoUseFileBitsPerWeight) {
  json r = fixture();
  for (auto& v : r["variants"])
    if (v["id"] == "rtn-b4-g128") v["file_bits_per_weight"] = 8.90;
  const ReportData d = derive_report(r);
  EXPECT_TRUE(d.axis_is_file);
  EXPECT_GT(row_of(d, "rtn-b4-g128"), row_of(d, "gptq-b4-g128-wiki"));
  std::vector<std::string> wiki;
  for (size_t i : d.frontier[0]) wiki.push_back(d.rows[i].id);
  EXPECT_EQ(wiki, (std::vector<std::string>{"gptq-b3-g128-wiki", "rtn-b4-g128", "gptq-b4-g128-code",
                                            "rtn-b8-g128", "fp16"}));
  EXPECT_NE(render_table_md(r).find("| RTN 4-bit g128, \"naive\" | 4 | 8.900 | 4.250 | 7.63 |"),
            std::string::npos);

  for (auto& v : r["variants"])
    if (v["id"] == "rtn-b8-g128") v.erase("file_bits_per_weight");
  const ReportData lin = derive_report(r);
  EXPECT_FALSE(lin.axis_is_file);
  EXPECT_LT(row_of(lin, "rtn-b4-g128"), row_of(lin, "gptq-b4-g128-wiki"));
  EXPECT_FALSE(lin.rows[row_of(lin, "rtn-b4-g128")].cells[0].on_frontier);
  EXPECT_NE(render_table_md(r).find("then by bpw linears"), std::string::npos);
}

TEST(Reports, CalibrationDomainAnalysis) {
  const ReportData d = derive_report(fixture());
  const CalibrationAnalysis a = analyze_calibration(d);
  ASSERT_EQ(a.groups.size(), 3u);  // GPTQ 3-bit, 4-bit, and the failed/skipped 2-bit pair
  EXPECT_EQ(a.groups[0].name, "GPTQ 4-bit g128");  // groups in table order
  EXPECT_EQ(a.groups[2].name, "GPTQ 2-bit g64");
  ASSERT_EQ(a.comparisons.size(), 4u);
  size_t helped = 0;
  for (const auto& c : a.comparisons) helped += c.in_domain_better;
  EXPECT_EQ(helped, 3u);  // only 4-bit on wiki: code calibration 313.0 beat wiki's 314.2
  // 3-bit on code: (28.4 / 27.2 − 1) × 100 = +4.412%.
  bool found = false;
  for (const auto& c : a.comparisons)
    if (a.groups[c.group].name == "GPTQ 3-bit g128" && c.eval == 1) {
      EXPECT_NEAR(c.change_pct, 4.4118, 1e-3);
      found = true;
    }
  EXPECT_TRUE(found);
  EXPECT_EQ(a.n_variants_in_mean, 6u);  // RTN 3-bit lacks code
  const std::string cal = render_calibration_md(fixture());
  // The fixture carries no paired SE: every out-vs-in difference is within the independent
  // token noise (e.g. 3-bit on code: 1.201 − 1.151 = 0.050 < 2·√(0.025² + 0.026²) = 0.072), so
  // none counts as an effect.
  for (const auto& c : a.comparisons) EXPECT_TRUE(c.within_noise);
  EXPECT_NE(cal.find("helped in 0 of 4 perplexity comparisons (4 within noise"), std::string::npos)
      << cal;
  EXPECT_NE(cal.find("code suffered most"), std::string::npos) << cal;
}

TEST(Reports, CsvQuotingIsRfc4180) {
  const std::string csv = render_table_csv(fixture());
  EXPECT_NE(csv.find(",\"RTN 4-bit g128, \"\"naive\"\"\",ok,"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\"model.layers.3.mlp.up_proj: Hessian not positive definite (damp 0.01 | "
                     "64 dead columns); try \"\"damp: 0.1\"\" <or> a larger calibration set\"\r\n"),
            std::string::npos);
  // Every record ends in CRLF and no bare LF occurs.
  EXPECT_EQ(count(csv, "\n"), count(csv, "\r\n"));
  EXPECT_EQ(count(csv, "\r\n"), 11u);  // header + 10 variants
}

TEST(Reports, NonPerplexityMetricsShowDeltas) {
  json r = fixture();
  r["evals"].push_back({{"id", "humaneval-pass1"},
                        {"task", "code_generation"},
                        {"dataset", "humaneval"},
                        {"domain", "code"},
                        {"metric", "pass@1"},
                        {"higher_is_better", true}});
  r["variants"][0]["metrics"]["humaneval-pass1"] = {{"value", 12.5}, {"standard_error", 2.6}};
  r["variants"][1]["metrics"]["humaneval-pass1"] = {{"value", 9.1}, {"standard_error", 2.2}};
  const ReportData d = derive_report(r);
  const auto& c = d.rows[row_of(d, "gptq-b3-g128-code")].cells[2];
  EXPECT_NEAR(c.relative, 9.1 - 12.5, 1e-12);
  EXPECT_NEAR(c.relative_se, std::hypot(2.6, 2.2), 1e-12);
  EXPECT_TRUE(d.frontier[2].empty());
  // Acceptable? still comes from the perplexity evals only.
  EXPECT_EQ(d.rows[row_of(d, "gptq-b3-g128-code")].acceptable, "marginal");
  const std::string md = render_table_md(r);
  EXPECT_NE(md.find("| pass@1 humaneval | Δ pass@1 humaneval |"), std::string::npos) << md;
  EXPECT_NE(md.find("| 9.100 | -3.400 |"), std::string::npos);
  EXPECT_NO_THROW(render_html(r));
}

TEST(Reports, CapabilitySummaryNamesTheLargestLossPerBitWidth) {
  json r = fixture();
  auto add_eval = [&](const char* id, const char* task, const char* metric) {
    r["evals"].push_back({{"id", id},
                          {"task", task},
                          {"dataset", task},
                          {"domain", "code"},
                          {"metric", metric},
                          {"higher_is_better", true}});
  };
  add_eval("humaneval", "humaneval", "pass@1_pct");
  add_eval("mmlu", "mmlu", "accuracy_pct");
  add_eval("gsm8k", "gsm8k", "accuracy_pct");
  auto set = [&](size_t v, const char* eval, json value, json se) {
    r["variants"][v]["metrics"][eval] = {{"value", value},
                                         {"standard_error", se},
                                         {"status", "ok"},
                                         {"items", 164},
                                         {"protocol", "humaneval greedy"}};
  };
  set(0, "humaneval", 40.0, 3.0);  // fp16
  set(1, "humaneval", 20.0, 3.0);  // gptq-b3-g128-code
  set(2, "humaneval", 30.0, 3.0);  // gptq-b3-g128-wiki
  set(3, "humaneval", 36.0, 3.0);  // gptq-b4-g128-code: −10 %, but within noise
  for (size_t v : {0, 1, 2, 3}) set(v, "gsm8k", 0.0, 0.0);
  for (size_t v : {0, 1, 2, 3})
    r["variants"][v]["metrics"]["mmlu"] = {{"value", nullptr},
                                           {"status", "skipped: /data/mmlu/test not found"}};
  const ReportData d = derive_report(r);
  const std::vector<CapabilityAtBits> caps = analyze_capabilities(d);
  ASSERT_EQ(caps.size(), 3u);  // 3, 4 and 8 bits (the 2-bit variants are not in the table)
  const CapabilityAtBits& c3 = caps[0];
  EXPECT_EQ(c3.bits, 3);
  EXPECT_EQ(c3.rows.size(), 3u);
  // humaneval: (40−20)/40 and (40−30)/40 → 37.5 %; WikiText-2: mean of the three relative
  // perplexities − 1 (rtn-b3 included); code: rtn-b3 has no code value, so two variants.
  ASSERT_EQ(c3.losses.size(), 3u);
  EXPECT_EQ(d.evals[c3.losses[0].eval].id, "humaneval");
  EXPECT_NEAR(c3.losses[0].loss_pct, 37.5, 1e-9);
  EXPECT_FALSE(c3.losses[0].within_noise);
  EXPECT_EQ(d.evals[c3.losses[1].eval].id, kWiki);
  EXPECT_NEAR(c3.losses[1].loss_pct, ((362.0 + 356.5 + 520.0) / 304.777 / 3 - 1) * 100, 1e-9);
  EXPECT_EQ(c3.losses[1].variants, 3u);
  EXPECT_NEAR(c3.losses[2].loss_pct, ((27.2 + 28.4) / 23.6387 / 2 - 1) * 100, 1e-9);
  EXPECT_EQ(c3.losses[2].variants, 2u);
  ASSERT_EQ(c3.at_floor.size(), 1u);  // gsm8k: the baseline scores 0
  EXPECT_EQ(d.evals[c3.at_floor[0]].id, "gsm8k");
  // 4 bits: humaneval 36 vs 40 ± 3 — within noise, so ranked after the perplexities.
  for (const auto& l : caps[1].losses) {
    if (d.evals[l.eval].id == "humaneval") {
      EXPECT_TRUE(l.within_noise);
    }
  }
  const std::string md = render_table_md(r);
  EXPECT_NE(md.find("## Which capability suffers most"), std::string::npos) << md;
  EXPECT_NE(md.find("- at 3 bits (RTN 3-bit g128, GPTQ 3-bit g128 (code), GPTQ 3-bit g128 "
                    "(wiki)): humaneval loses most: humaneval pass@1_pct -37.5% vs wikitext2 "
                    "perplexity +35.5%, code perplexity +17.6%; not ranked (the baseline scores "
                    "0, nothing to lose): gsm8k."),
            std::string::npos)
      << md;
  EXPECT_NE(md.find("skipped: /data/mmlu/test not found (the task did not run)"),
            std::string::npos);
  EXPECT_NE(md.find("humaneval greedy; 164 items"), std::string::npos);
  // A change within noise is never named as the largest loss: it is listed apart.
  EXPECT_NE(md.find("within noise: humaneval pass@1_pct -10.0%"), std::string::npos) << md;
  ASSERT_FALSE(caps[1].losses.empty());
  EXPECT_FALSE(caps[1].losses.front().within_noise);
  EXPECT_TRUE(caps[1].losses.back().within_noise);
  EXPECT_GT(caps[1].losses.back().loss_pct, caps[1].losses.front().loss_pct);
  // report.html carries the same sentences.
  const std::string html = render_html(r);
  EXPECT_NE(html.find("<h2>Which capability suffers most</h2>"), std::string::npos);
  EXPECT_NE(html.find("<li>at 3 bits (RTN 3-bit g128, GPTQ 3-bit g128 (code), GPTQ 3-bit g128 "
                      "(wiki)): humaneval loses most: humaneval pass@1_pct -37.5% vs wikitext2"),
            std::string::npos);
}

// Issue #20: a row that is the mean of calibration-seed replicates.
TEST(Reports, SeedReplicatesShowTheSpreadAndWidenTheNoise) {
  json r = fixture();
  const std::string ev = "ppl-wikitext2-chunks-ctx256-n32768";
  for (auto& v : r["variants"])
    if (v["id"] == "gptq-b3-g128-code") {
      v["metrics"][ev]["seed_sd"] = 3.0;
      v["metrics"][ev]["n_seeds"] = 3;
    }
  r["calibrations"]["code"]["seeds"] = {0, 1, 2};
  const ReportData d = derive_report(r);
  const ReportCell& c = d.rows[row_of(d, "gptq-b3-g128-code")].cells[0];
  ASSERT_TRUE(c.has_seed_sd);
  const double rel = 362.0 / 304.777, token = rel * std::sqrt(0.0171 * 0.0171 + 0.0166 * 0.0166),
               seed_rel = 3.0 / 304.777;
  EXPECT_NEAR(c.relative_seed_sd, seed_rel, 1e-12);
  EXPECT_NEAR(c.relative_se, std::sqrt(token * token + seed_rel * seed_rel / 3), 1e-12);
  const std::string md = render_table_md(r);
  EXPECT_NE(md.find("| 1.188 ±0.010 ≈ | 362.00 ±3.00 |"), std::string::npos) << md;
  EXPECT_NE(md.find("seeds 0, 1, 2 (one quantization per seed; mean ± sd)"), std::string::npos);
  // A spread without the count it is over is malformed.
  for (auto& v : r["variants"])
    if (v["id"] == "gptq-b3-g128-code") v["metrics"][ev].erase("n_seeds");
  try {
    derive_report(r);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("metrics[\"" + ev + "\"].seed_sd needs n_seeds >= 2"),
              std::string::npos)
        << e.what();
  }
}

TEST(Reports, BadInputThrowsNamingTheKey) {
  json r = fixture();
  r["sweep"]["baseline"] = "nope";
  EXPECT_THROW(derive_report(r), Error);
  r = fixture();
  r["variants"][2]["bits_per_weight"] = "three";
  try {
    derive_report(r);
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("variants[2].bits_per_weight"), std::string::npos)
        << e.what();
  }
  r = fixture();
  r["variants"][1]["status"] = "exploded";
  EXPECT_THROW(derive_report(r), Error);
  EXPECT_THROW(derive_report(json::array()), Error);
}

TEST(Reports, BaselineOnlyRendersEverything) {
  json r = fixture();
  r["variants"] = json::array({fixture()["variants"][0]});
  EXPECT_NO_THROW(render_table_md(r));
  EXPECT_NO_THROW(render_table_csv(r));
  const std::string cal = render_calibration_md(r);
  EXPECT_NE(cal.find("No variants differ only by their calibration set."), std::string::npos);
  const std::string html = render_html(r);
  EXPECT_NE(html.find("nothing to plot"), std::string::npos);
}

TEST(Reports, WideRangesUseALogAxisAndLabelsAreEscaped) {
  json r = fixture();
  r["variants"][7]["label"] = "RTN | 3-bit <x> *y*";
  r["variants"][7]["metrics"][kWiki]["value"] = 3047.77;  // 10× the baseline
  const std::string html = render_html(r);
  EXPECT_NE(html.find("(log scale)"), std::string::npos);
  EXPECT_NE(html.find("RTN | 3-bit &lt;x&gt; *y*"), std::string::npos);
  const std::string md = render_table_md(r);
  EXPECT_NE(
      md.find("| RTN \\| 3-bit \\<x\\> \\*y\\* | 3 | 7.177 | 3.250 | 6.12 | 10.000 | 3047.77 |"),
      std::string::npos)
      << md;
}

TEST(Reports, RenderReportsWritesTheRequestedFiles) {
  const std::string dir = test::make_temp_dir("reports") + "/out";
  render_reports(fixture(), dir, {"md", "json"});
  EXPECT_TRUE(fs::exists(dir + "/table.md"));
  EXPECT_TRUE(fs::exists(dir + "/results.json"));
  EXPECT_FALSE(fs::exists(dir + "/report.html"));
  EXPECT_EQ(json::parse(slurp(dir + "/results.json")), fixture());
  EXPECT_EQ(slurp(dir + "/table.md"), render_table_md(fixture()));
  render_reports(fixture(), dir, {});
  for (const char* f : {"table.md", "table.csv", "results.json", "report.html"})
    EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;
  const std::string dir2 = test::make_temp_dir("reports") + "/out2";
  EXPECT_THROW(render_reports(fixture(), dir2, {"md", "pdf"}), Error);
  EXPECT_FALSE(fs::exists(dir2 + "/table.md"));
  fs::remove_all(fs::path(dir).parent_path());
  fs::remove_all(fs::path(dir2).parent_path());
}

TEST(ReportsHtml, SelfContainedAndWellFormed) {
  const std::string html = render_html(fixture());
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_EQ(count(html, "<svg"), 2u);
  EXPECT_EQ(count(html, "</svg>"), 2u);
  for (const char* tag : {"table", "g", "ul", "figure", "title", "text"})
    EXPECT_EQ(count(html, std::string("<") + tag + (std::string(tag) == "g" ? " " : "")),
              count(html, std::string("</") + tag + ">"))
        << tag;
  EXPECT_EQ(count(html, "<polyline class=\"pareto\""), 2u);  // one frontier per perplexity eval
  EXPECT_EQ(count(html, "http"), 0u);
  EXPECT_EQ(count(html, "<script"), 0u);
  EXPECT_EQ(count(html, "url("), 0u);
  EXPECT_EQ(count(html, "@import"), 0u);
  // Labels and errors are escaped.
  EXPECT_NE(html.find("RTN 4-bit g128, &quot;naive&quot;"), std::string::npos);
  EXPECT_NE(html.find("try &quot;damp: 0.1&quot; &lt;or&gt; a larger"), std::string::npos);
  EXPECT_EQ(html.find("<or>"), std::string::npos);
  // The frontier polyline joins the 4 frontier points (x,y pairs).
  const std::regex poly("<polyline class=\"pareto\" points=\"([0-9., ]+)\"");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(html, m, poly));
  EXPECT_EQ(count(m[1].str(), ","), 4u);
}

const char* const kChromium = "/usr/bin/chromium";

/// Screenshots `html` (a file path) with headless Chromium into `png`; returns
/// Chromium's stderr log. Fails the test when Chromium exits non-zero.
std::string screenshot(const std::string& html, const std::string& png, const std::string& dir) {
  const std::string log = dir + "/chromium.log";
  const std::string cmd = std::string("timeout 120 ") + kChromium +
                          " --headless --no-sandbox --disable-gpu --disable-quic --no-first-run"
                          " --disable-background-networking --disable-component-update"
                          " --disable-sync --disable-dev-shm-usage --user-data-dir=" +
                          dir + "/profile --enable-logging=stderr --v=0 --screenshot=" + png +
                          " --window-size=1200,1600 file://" + html + " > " + log + " 2>&1";
  const int rc = std::system(cmd.c_str());
  const std::string out = slurp(log);
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << cmd << "\n" << out;
  return out;
}

/// The lines of Chromium's log that come from the page's console: "INFO:CONSOLE:1]"
/// (Chromium 120+) or "CONSOLE(12)" (older), plus any uncaught exception.
std::vector<std::string> console_lines(const std::string& log) {
  std::vector<std::string> found;
  std::istringstream lines(log);
  for (std::string l; std::getline(lines, l);)
    if (l.find(":CONSOLE") != std::string::npos || l.find("CONSOLE(") != std::string::npos ||
        l.find("Uncaught") != std::string::npos)
      found.push_back(l);
  return found;
}

// Loads report.html in headless Chromium: the page must render to a non-trivial
// screenshot and log nothing to the console.
TEST(ReportsHtml, RendersInHeadlessChromium) {
  if (!fs::exists(kChromium))
    GTEST_SKIP() << kChromium << " not installed (apt-get install chromium)";
  const std::string dir = test::make_temp_dir("reports-chromium");
  render_reports(fixture(), dir, {"html"});
  const std::string png = dir + "/report.png";
  const std::string log = screenshot(dir + "/report.html", png, dir);
  ASSERT_TRUE(fs::exists(png)) << log;
  // A blank 1200×1600 page compresses to a few kB; tables and two charts to well over 100 kB.
  EXPECT_GT(fs::file_size(png), 50000u) << "screenshot looks blank";
  for (const auto& l : console_lines(log)) ADD_FAILURE() << "the page logged: " << l;
  if (const char* keep = std::getenv("QSWEEP_KEEP_SCREENSHOT"))
    fs::copy_file(png, keep, fs::copy_options::overwrite_existing);
  fs::remove_all(dir);
}

// The console check above can fail: a page that logs and throws is caught.
TEST(ReportsHtml, ChromiumConsoleCheckCatchesPageErrors) {
  if (!fs::exists(kChromium))
    GTEST_SKIP() << kChromium << " not installed (apt-get install chromium)";
  const std::string dir = test::make_temp_dir("reports-chromium-bad");
  std::ofstream(dir + "/bad.html") << "<!DOCTYPE html><html><body><p>x</p><script>"
                                      "console.error('boom'); undefined_function();"
                                      "</script></body></html>";
  const std::string log = screenshot(dir + "/bad.html", dir + "/bad.png", dir);
  const auto lines = console_lines(log);
  EXPECT_EQ(lines.size(), 2u) << log;
  EXPECT_NE(log.find("Uncaught ReferenceError"), std::string::npos) << log;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace qsweep
