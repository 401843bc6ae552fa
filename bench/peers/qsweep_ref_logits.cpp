// qsweep's logits for a shared model's reference prompts, from a GGUF file (what load_model
// reads back), compared with the reference (bench/peers/ref_logits.h); the twin of
// llama_cpp_ref_logits.cpp. With a third argument "write-f32" it first writes MODEL.gguf as
// the HF model's F32 GGUF.
//   qsweep_ref_logits MODEL.gguf MODEL_DIR [write-f32]
#include <cstdio>
#include <string>

#include "bench/peers/ref_logits.h"
#include "formats/formats.h"
#include "formats/gguf.h"
#include "model/transformer.h"
#include "quantize/kquant_mix.h"

using namespace qsweep;

int main(int argc, char** argv) {
  if (argc < 3)
    return std::fprintf(stderr, "usage: %s MODEL.gguf MODEL_DIR [write-f32]\n", argv[0]), 2;
  const std::string gguf = argv[1], dir = argv[2];
  if (argc > 3 && std::string(argv[3]) == "write-f32") {
    const LoadedModel hf = load_model(dir);
    GgufTypePlan plan;
    plan.weights = 0;  // F32
    write_gguf(gguf, hf.spec, hf.weights, dir, plan);
  }
  int64_t vocab = 0;
  const auto prompts = ref_logits::load(dir, &vocab);
  LoadedModel m = load_model(gguf);
  const Transformer t(m.spec, std::move(m.weights));
  std::vector<MatrixRM> logits;
  for (const auto& q : prompts) logits.push_back(t.forward(q.ids));
  ref_logits::report("qsweep", prompts, vocab,
                     [&](size_t p, size_t r) { return logits[p].row(prompts[p].rows[r]).data(); });
  return 0;
}
