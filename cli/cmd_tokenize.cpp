#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/data_dir.h"
#include "common/errors.h"
#include "model/tokenizer.h"

namespace qsweep::cli {

const CommandSpec& tokenize_command() {
  static const CommandSpec cmd = {
      "tokenize",
      "qsweep tokenize --model DIR [--jsonl FILE] [--add-special]",
      "Token ids of JSON lines: each input line {\"text\": ...} becomes one output line\n"
      "{\"ids\": [...]}, in order. DIR is a model directory or one holding just the tokenizer\n"
      "files (tokenizer.model, or tokenizer.json + tokenizer_config.json).",
      {{"model", "DIR", "", "the model (or tokenizer) directory, or a model name"},
       {"jsonl", "FILE", "", "JSON lines with a \"text\" string (default: stdin)"},
       {"add-special", "", "",
        "add the BOS as the tokenizer does for a prompt (add_bos_token); default: none"},
       {"data-dir", "DIR", "", "where datasets live, to resolve a model name"}},
      ""};
  return cmd;
}

int cmd_tokenize(const std::vector<std::string>& argv) {
  Args args(argv, tokenize_command());
  QS_THROW_IF_NOT(args.positional().empty(), "unexpected argument '", args.positional()[0],
                  "'; usage: ", tokenize_command().usage);
  const std::string dir = resolve_model_dir(args.require("model"), args.get("data-dir"));
  const auto tok = load_tokenizer(dir);
  const bool add_bos = args.has("add-special") && tok->add_bos_token();

  std::ifstream file;
  const std::string name = args.has("jsonl") ? args.get("jsonl") : "<stdin>";
  if (args.has("jsonl")) {
    file.open(name);
    QS_THROW_IF_NOT(file, name, ": cannot open the JSON lines file");
  }
  std::istream& in = args.has("jsonl") ? static_cast<std::istream&>(file) : std::cin;
  // Everything is written once all lines are read: bad input leaves no partial output.
  std::string out, line;
  for (long long n = 1; std::getline(in, line); ++n) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      throw Error(
          cat(name, ":", n, ": not valid JSON (", e.what(), "); each line is {\"text\": \"...\"}"));
    }
    QS_THROW_IF_NOT(j.is_object() && j.contains("text") && j["text"].is_string(), name, ":", n,
                    ": no \"text\" string; each line is {\"text\": \"...\"}");
    const std::vector<int> ids = tok->encode(j["text"].get<std::string>(), add_bos);
    out += "{\"ids\": [";
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ", ";
      out += std::to_string(ids[i]);
    }
    out += "]}\n";
  }
  QS_THROW_IF_NOT(!in.bad(), name, ": read error");
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace qsweep::cli
