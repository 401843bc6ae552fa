#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string_view>

#include "common/errors.h"
#include "reports/detail/text.h"

namespace qsweep::reports_detail {

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  std::string s = buf;
  if (s[0] == '-' && s.find_first_not_of("-0.") == std::string::npos) s.erase(0, 1);
  return s;
}

std::string signed_fixed(double v, int decimals) {
  std::string s = fixed(v, decimals);
  return s[0] == '-' ? s : "+" + s;
}

std::string se_fixed(double v, int min_decimals) {
  int decimals = min_decimals;
  while (decimals < 8 && v > 0 && std::fabs(v) < 0.95 * std::pow(10.0, -decimals)) ++decimals;
  return fixed(v, decimals);
}

std::string thousands(int64_t v) {
  std::string digits = std::to_string(v < 0 ? -v : v), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

std::string shortest(double v) {
  return nlohmann::json(v).dump();
}

std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string_view("\\`*|<>[]").find(c) != std::string_view::npos) {
      out += '\\';
      out += c;
    } else if (c == '\n' || c == '\r') {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string md_code(const std::string& s) {
  std::string body;
  size_t run = 0, longest = 0;
  for (char c : s) {
    body += (c == '\n' || c == '\r') ? ' ' : c;
    run = c == '`' ? run + 1 : 0;
    longest = std::max(longest, run);
  }
  const std::string fence(longest + 1, '`');
  const bool pad = !body.empty() && (body.front() == '`' || body.back() == '`');
  return fence + (pad ? " " : "") + body + (pad ? " " : "") + fence;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    out += c;
    if (c == '"') out += '"';
  }
  return out + "\"";
}

const nlohmann::json& require(const nlohmann::json& j, const std::string& key,
                              const std::string& where) {
  QS_THROW_IF_NOT(j.is_object(), "results.json: ", where, " must be an object");
  auto it = j.find(key);
  QS_THROW_IF_NOT(it != j.end(), "results.json: ", where, " has no \"", key, "\"");
  return *it;
}

std::string get_string(const nlohmann::json& j, const std::string& key, const std::string& where,
                       const std::string& fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  QS_THROW_IF_NOT(it->is_string(), "results.json: ", where, ".", key, " must be a string");
  return it->get<std::string>();
}

std::optional<int64_t> get_int(const nlohmann::json& j, const std::string& key,
                               const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  QS_THROW_IF_NOT(
      it->is_number_integer() ||
          (it->is_number_float() && std::nearbyint(it->get<double>()) == it->get<double>()),
      "results.json: ", where, ".", key, " must be an integer");
  return it->is_number_integer() ? it->get<int64_t>() : static_cast<int64_t>(it->get<double>());
}

std::optional<double> get_number(const nlohmann::json& j, const std::string& key,
                                 const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  QS_THROW_IF_NOT(it->is_number(), "results.json: ", where, ".", key, " must be a number");
  const double v = it->get<double>();
  QS_THROW_IF_NOT(std::isfinite(v), "results.json: ", where, ".", key, " is not finite");
  return v;
}

bool get_bool(const nlohmann::json& j, const std::string& key, const std::string& where,
              bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  QS_THROW_IF_NOT(it->is_boolean(), "results.json: ", where, ".", key, " must be true or false");
  return it->get<bool>();
}

std::string table_to_md(const Table& t) {
  std::string out = "|";
  for (const auto& h : t.header) {
    out += ' ';
    out += md_cell(h);
    out += " |";
  }
  out += "\n|";
  for (char a : t.align) out += a == 'r' ? "---:|" : "---|";
  out += "\n";
  for (const auto& row : t.rows) {
    out += "|";
    for (const auto& c : row) {
      out += ' ';
      out += md_cell(c);
      out += " |";
    }
    out += "\n";
  }
  return out;
}

std::string table_to_html(const Table& t, const std::string& css_class) {
  std::string out = "<table class=\"" + css_class + "\">\n<thead><tr>";
  for (size_t i = 0; i < t.header.size(); ++i)
    out += std::string("<th") + (t.align[i] == 'r' ? " class=\"num\"" : "") + ">" +
           html_escape(t.header[i]) + "</th>";
  out += "</tr></thead>\n<tbody>\n";
  for (const auto& row : t.rows) {
    out += "<tr>";
    for (size_t i = 0; i < row.size(); ++i)
      out += std::string("<td") + (t.align[i] == 'r' ? " class=\"num\"" : "") + ">" +
             html_escape(row[i]) + "</td>";
    out += "</tr>\n";
  }
  return out + "</tbody>\n</table>\n";
}

}  // namespace qsweep::reports_detail
