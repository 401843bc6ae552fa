// The sensitivity study in the reports (issue #19): one layers × roles heat map per studied
// type in report.html and the ranking of the most sensitive tensor groups in table.md, both
// from results.json's "sensitivity" list (pipeline/results.cpp) and nothing else.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include "common/errors.h"
#include "reports/detail/text.h"
#include "reports/reports.h"

namespace qsweep {
using namespace reports_detail;
using nlohmann::json;

namespace {

const char* const kRoles[] = {"attn_q", "attn_k",   "attn_v",     "attn_output", "ffn_gate",
                              "ffn_up", "ffn_down", "token_embd", "output"};
constexpr int kRoleCount = 9;

int role_column(const std::string& role) {
  for (int i = 0; i < kRoleCount; ++i)
    if (role == kRoles[i]) return i;
  return -1;
}

std::string sci(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3g", v);
  return b;
}

}  // namespace

std::vector<SensitivityMap> sensitivity_maps(const json& results) {
  std::vector<SensitivityMap> out;
  const auto it = results.find("sensitivity");
  if (it == results.end() || it->is_null()) return out;
  QS_THROW_IF_NOT(it->is_array(), "results.json: sensitivity must be a list");
  for (size_t i = 0; i < it->size(); ++i) {
    const json& e = (*it)[i];
    const std::string where = cat("sensitivity[", i, "]");
    SensitivityMap m;
    for (const char* k : {"calibration", "type", "status"}) (void)require(e, k, where);
    m.calibration = get_string(e, "calibration", where);
    m.type = get_string(e, "type", where);
    m.status = get_string(e, "status", where);
    m.seed = get_int(e, "seed", where).value_or(0);
    if (m.status == "ok") {
      const json& ms = require(e, "measurements", where);
      QS_THROW_IF_NOT(ms.is_array(), "results.json: ", where, ".measurements must be a list");
      for (size_t k = 0; k < ms.size(); ++k) {
        const std::string w = cat(where, ".measurements[", k, "]");
        SensitivityCell c;
        c.name = get_string(ms[k], "name", w);
        c.role = get_string(ms[k], "role", w);
        c.layer = int(get_int(ms[k], "layer", w).value_or(-1));
        const auto kl = get_number(ms[k], "kl", w);
        QS_THROW_IF_NOT(kl && std::isfinite(*kl) && *kl >= 0, "results.json: ", w,
                        ".kl must be a finite number >= 0");
        c.kl = *kl;
        c.kl_se = get_number(ms[k], "kl_se", w).value_or(0);
        c.bytes = get_int(ms[k], "bytes", w).value_or(0);
        c.bytes_f16 = get_int(ms[k], "bytes_f16", w).value_or(0);
        QS_THROW_IF_NOT(c.layer >= -1 && c.layer < 100000, "results.json: ", w,
                        ".layer must be -1 or a layer number");
        m.layers = std::max(m.layers, c.layer + 1);
        m.cells.push_back(c);
      }
    }
    out.push_back(std::move(m));
  }
  return out;
}

std::string sensitivity_heatmap_svg(const SensitivityMap& m) {
  // Rows: token_embd/output first (layer −1), then the layers; columns: the roles.
  const double cw = 74, ch = 20, x0 = 70, y0 = 44;
  const int rows = m.layers + 1;
  const double w = x0 + cw * kRoleCount + 20, h = y0 + ch * rows + 30;
  double lo = INFINITY, hi = 0;
  for (const auto& c : m.cells)
    if (c.kl > 0) {
      lo = std::min(lo, c.kl);
      hi = std::max(hi, c.kl);
    }
  std::string s = "<svg class=\"chart heatmap\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
                  fixed(w, 0) + "\" height=\"" + fixed(h, 0) + "\" viewBox=\"0 0 " + fixed(w, 0) +
                  " " + fixed(h, 0) + "\" role=\"img\">\n";
  s += "<title>" + html_escape("KL vs FP16 per tensor group at " + m.type) + "</title>\n";
  for (int r = 0; r < kRoleCount; ++r)
    s += "<text x=\"" + fixed(x0 + cw * (r + 0.5), 1) + "\" y=\"" + fixed(y0 - 8, 1) +
         "\" text-anchor=\"middle\" class=\"small\">" + kRoles[r] + "</text>\n";
  for (int row = 0; row < rows; ++row)
    s += "<text x=\"" + fixed(x0 - 6, 1) + "\" y=\"" + fixed(y0 + ch * row + 14, 1) +
         "\" text-anchor=\"end\" class=\"small\">" +
         (row == 0 ? std::string("embd/out") : cat("layer ", row - 1)) + "</text>\n";
  for (const auto& c : m.cells) {
    const int col = role_column(c.role);
    if (col < 0) continue;
    const int row = c.layer + 1;
    // Colour: log KL between the map's smallest and largest, white → red.
    double t = 0;
    if (c.kl > 0 && hi > lo) t = (std::log(c.kl) - std::log(lo)) / (std::log(hi) - std::log(lo));
    if (c.kl > 0 && !(hi > lo)) t = 1;
    const int g = int(std::lround(255 - 200 * t));
    char fill[16];
    std::snprintf(fill, sizeof fill, "#ff%02x%02x", g, g);
    const double x = x0 + cw * col, y = y0 + ch * row;
    s += "<g class=\"cell\" data-group=\"" + html_escape(c.name) + "\" data-kl=\"" +
         shortest(c.kl) + "\">\n<rect x=\"" + fixed(x, 1) + "\" y=\"" + fixed(y, 1) +
         "\" width=\"" + fixed(cw, 1) + "\" height=\"" + fixed(ch, 1) + "\" fill=\"" + fill +
         "\" stroke=\"#fff\"><title>" +
         html_escape(c.name + " at " + m.type + ": KL " + sci(c.kl) + " ± " + sci(c.kl_se) +
                     ", saves " + thousands(c.bytes_f16 - c.bytes) + " bytes") +
         "</title></rect>\n<text x=\"" + fixed(x + cw / 2, 1) + "\" y=\"" + fixed(y + 14, 1) +
         "\" text-anchor=\"middle\" class=\"small\">" + sci(c.kl) + "</text>\n</g>\n";
  }
  s += "<text x=\"" + fixed(x0, 1) + "\" y=\"" + fixed(h - 8, 1) + "\" class=\"small\">" +
       html_escape("colour: log KL from " + (hi > 0 ? sci(lo) : "0") + " (white) to " + sci(hi) +
                   " (red); blank: not measured") +
       "</text>\n</svg>\n";
  return s;
}

static Table sensitivity_ranking(const std::vector<SensitivityMap>& maps,
                                 const std::string& calibration, size_t top) {
  // The maps of this calibration (first seed), in results order; ranked by the first's KL.
  std::vector<const SensitivityMap*> ms;
  for (const auto& m : maps)
    if (m.calibration == calibration && m.status == "ok" &&
        (ms.empty() || m.seed == ms.front()->seed))
      ms.push_back(&m);
  Table t;
  t.header = {"rank", "group"};
  t.align = "rl";
  for (const auto* m : ms) {
    t.header.push_back("KL at " + m->type);
    t.align += 'r';
  }
  if (ms.empty()) return t;
  std::vector<const SensitivityCell*> order;
  for (const auto& c : ms.front()->cells) order.push_back(&c);
  std::stable_sort(order.begin(), order.end(),
                   [](const auto* a, const auto* b) { return a->kl > b->kl; });
  if (order.size() > top) order.resize(top);
  for (size_t i = 0; i < order.size(); ++i) {
    std::vector<std::string> row = {std::to_string(i + 1), order[i]->name};
    for (const auto* m : ms) {
      const auto it = std::find_if(m->cells.begin(), m->cells.end(),
                                   [&](const auto& c) { return c.name == order[i]->name; });
      row.push_back(it == m->cells.end() ? "—" : sci(it->kl) + " ± " + sci(it->kl_se));
    }
    t.rows.push_back(row);
  }
  return t;
}

std::string sensitivity_md(const json& results) {
  const std::vector<SensitivityMap> maps = sensitivity_maps(results);
  std::vector<std::string> cals;
  for (const auto& m : maps)
    if (std::find(cals.begin(), cals.end(), m.calibration) == cals.end())
      cals.push_back(m.calibration);
  std::string s;
  for (const auto& cal : cals) {
    const Table t = sensitivity_ranking(maps, cal, 10);
    if (t.rows.empty()) continue;
    s += "### Most sensitive tensor groups (" + cal + ")\n\n";
    s += "KL divergence vs FP16 per token (± SE) with only that group quantized, on windows "
         "held out from calibration set `" +
         cal + "`; ranked by the first type's KL, top " + std::to_string(t.rows.size()) + ".\n\n" +
         table_to_md(t) + "\n";
  }
  return s;
}

std::string sensitivity_html(const json& results) {
  const std::vector<SensitivityMap> maps = sensitivity_maps(results);
  if (maps.empty()) return "";
  std::string s = "<h2>Sensitivity per tensor group</h2>\n";
  for (const auto& m : maps) {
    if (m.status != "ok") {
      s += "<p class=\"meta\">" +
           html_escape("Sensitivity at " + m.type + " (" + m.calibration + "): " + m.status) +
           "</p>\n";
      continue;
    }
    s += "<h3>" +
         html_escape(m.type + " (" + m.calibration + ", seed " + std::to_string(m.seed) + ")") +
         "</h3>\n<figure>\n" + sensitivity_heatmap_svg(m) + "</figure>\n";
  }
  return s;
}

}  // namespace qsweep
