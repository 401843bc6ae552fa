// `qsweep quantize --method f32|f16|bf16 --out FILE.gguf`: the unquantized GGUF (llama.cpp's
// convert_hf_to_gguf.py --outtype step) of a Qwen3 model, and its refusals.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>

#include "common/errors.h"
#include "common/half.h"
#include "common/mapped_file.h"
#include "formats/formats.h"
#include "formats/gguf.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

struct CliResult {
  int status = -1;
  std::string out, err;
};

CliResult qsweep(const std::string& args) {
  const std::string dir = test::make_temp_dir("cli-gguf");
  const std::string cmd = std::string(QSWEEP_BINARY_DIR) + "/qsweep " + args + " >" + dir +
                          "/out 2>" + dir + "/err </dev/null";
  const int rc = std::system(cmd.c_str());
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc), read_text_file(dir + "/out"),
          read_text_file(dir + "/err")};
}

const std::string kModel = test::shared_dir() + "/models/qwen3-tiny-random";

TEST(CliGguf, FloatMethodsWriteTheUnquantizedGguf) {
  const LoadedModel hf = load_model(kModel);
  const std::string tmp = test::make_temp_dir("cli-gguf-out");
  // ggml_type and llama_ftype (llama.h) of each --outtype; the expected value of a weight x.
  struct Case {
    const char* method;
    int32_t type, ftype;
    float (*round)(float);
  };
  const Case cases[] = {{"f32", 0, 0, [](float x) { return x; }},
                        {"f16", 1, 1, [](float x) { return half_to_float(float_to_half(x)); }},
                        {"bf16", 30, 32, [](float x) { return bf16_to_float(float_to_bf16(x)); }}};
  for (const Case& c : cases) {
    const std::string out = cat(tmp, "/", c.method, ".gguf");
    const CliResult r =
        qsweep(cat("quantize --model ", kModel, " --method ", c.method, " --out ", out));
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("unquantized GGUF"), std::string::npos) << r.out;
    const GgufFile f(out);
    EXPECT_EQ(f.get_int("general.file_type"), c.ftype) << c.method;
    EXPECT_EQ(f.find("general.quantization_version"), nullptr);
    EXPECT_EQ(f.get_string("general.architecture"), "qwen3");
    const GgufTensorInfo* e = f.find_tensor("token_embd.weight");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->ggml_type, c.type) << c.method;
    EXPECT_EQ(f.find_tensor("blk.1.attn_k_norm.weight")->ggml_type, 0);  // norms stay F32
    EXPECT_EQ(f.find_tensor("blk.1.ffn_down.weight")->ggml_type, c.type);
    const std::vector<float> v = f.to_float(*e);
    const MatrixRM embed = hf.weights.embed.to_matrix();
    for (int64_t i = 0; i < embed.size(); i += 997)
      ASSERT_EQ(v[size_t(i)], c.round(embed.data()[i])) << c.method << " at " << i;
  }
}

TEST(CliGguf, FloatMethodsRefuseQuantizationFlagsAndNonGgufOutputs) {
  const std::string tmp = test::make_temp_dir("cli-gguf-bad");
  const std::pair<std::string, std::string> bad[] = {
      {"--method f16 --bits 4 --out " + tmp + "/a.gguf", "--bits does not apply to method f16"},
      {"--method bf16 --calib code --out " + tmp + "/a.gguf",
       "--calib does not apply to method bf16"},
      {"--method f32 --out " + tmp + "/dir", "name it FILE.gguf"}};
  for (const auto& [args, msg] : bad) {
    const CliResult r = qsweep("quantize --model " + kModel + " " + args);
    EXPECT_EQ(r.status, 2) << args;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(msg), std::string::npos) << r.err;
  }
}

}  // namespace
}  // namespace qsweep
