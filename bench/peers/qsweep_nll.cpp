// The qsweep side of bench/peers/compare_llama_cpp.sh: the first N tokens of a text and qsweep's
// per-token NLLs for a GGUF (optionally first writing an F32 GGUF of the HF model).
#include <cmath>
#include <cstdio>
#include <fstream>
#include "common/mapped_file.h"
#include "formats/formats.h"
#include "formats/gguf.h"
#include "model/tokenizer.h"
#include "model/transformer.h"
#include "quantize/kquant_mix.h"
using namespace qsweep;
int main(int argc, char** argv) {
  const std::string gguf = argv[1], model_dir = argv[2], text = argv[3], out_tokens = argv[4];
  const int n = std::atoi(argv[5]);
  auto tok = load_tokenizer(model_dir);
  std::vector<int> ids = tok->encode(read_text_file(text), false);
  ids.resize(size_t(n));
  std::ofstream(out_tokens) << [&] {
    std::string s;
    for (int t : ids) s += std::to_string(t) + "\n";
    return s;
  }();
  if (argc > 6) {  // write an F32 GGUF of the HF model first
    LoadedModel hf = load_model(model_dir);
    GgufTypePlan plan;
    plan.weights = 0;
    write_gguf(gguf, hf.spec, hf.weights, model_dir, plan);
  }
  LoadedModel m = load_model(gguf);
  Transformer t(m.spec, std::move(m.weights));
  MatrixRM logits = t.forward(ids);
  log_softmax_rows(logits);
  for (int i = 0; i + 1 < n; ++i) std::printf("%.6f\n", -double(logits(i, ids[size_t(i) + 1])));
}
