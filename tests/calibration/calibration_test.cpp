// Calibration: deterministic sampling, source resolution and errors, and the
// captured statistics against a direct double-precision computation.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "calibration/calibration.h"
#include "common/errors.h"
#include "model/model_spec.h"
#include "model/transformer.h"
#include "tests/support/test_support.h"

namespace qsweep {
namespace {

std::vector<int> iota_tokens(int n) {
  std::vector<int> t(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) t[size_t(i)] = i;
  return t;
}

TEST(Sampling, SameSeedSameWindowsDifferentSeedDifferent) {
  const auto tokens = iota_tokens(10000);
  SamplingOptions opt;
  opt.n_samples = 16;
  opt.seqlen = 64;
  opt.seed = 0;
  const auto a = sample_calibration(tokens, opt, "t", "d");
  const auto b = sample_calibration(tokens, opt, "t", "d");
  EXPECT_EQ(a.windows, b.windows);
  ASSERT_EQ(a.windows.size(), 16u);
  for (size_t i = 0; i < a.windows.size(); ++i) {
    ASSERT_EQ(a.windows[i].size(), 64u);
    EXPECT_EQ(a.windows[i][0], a.offsets[i]);  // iota: token == position
    EXPECT_LE(a.offsets[i] + 64, 10000);
  }
  opt.seed = 1;
  EXPECT_NE(sample_calibration(tokens, opt, "t", "d").offsets, a.offsets);
}

// The sensitivity study's windows (issue #19): no token position of a calibration window is in
// a held-out window (checked on the tokens themselves: iota, token == position).
TEST(Sampling, HeldOutWindowsAreDisjointFromTheCalibrationWindows) {
  const auto tokens = iota_tokens(10000);
  SamplingOptions opt;
  opt.n_samples = 16;
  opt.seqlen = 64;
  const auto calib = sample_calibration(tokens, opt, "t", "d");
  std::set<int> used;
  for (const auto& w : calib.windows) used.insert(w.begin(), w.end());
  const auto held = held_out_windows(tokens, calib.offsets, 64, 20, 100, "t", "d");
  ASSERT_EQ(held.windows.size(), 20u);
  std::set<int> seen;
  for (const auto& w : held.windows) {
    ASSERT_EQ(w.size(), 100u);
    for (int t : w) {
      EXPECT_EQ(used.count(t), 0u) << "token position " << t << " is a calibration token";
      EXPECT_TRUE(seen.insert(t).second) << "token position " << t << " is in two windows";
    }
  }
  // By hand: tiles of 100 in 0..999; [150, 250) excludes tiles 1 and 2; 8 tiles are left
  // (0, 300, ..., 900) and 4 are taken evenly: tiles 0, 2, 4, 6 of those.
  const auto small = iota_tokens(1000);
  EXPECT_EQ(held_out_windows(small, {150}, 100, 4, 100, "t", "d").offsets,
            (std::vector<int64_t>{0, 400, 600, 800}));
  try {
    held_out_windows(small, {150}, 100, 9, 100, "src", "d");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'src' has 1000 tokens: 8 windows of 100 tokens"),
              std::string::npos)
        << e.what();
  }
}

TEST(Sampling, PortableGoldenOffsets) {
  // mt19937_64 is fully specified by the standard and the range reduction is ours,
  // so these offsets are the same with every compiler and library. If this fails,
  // calibration sets (and every cached result built on them) changed.
  SamplingOptions opt;
  opt.n_samples = 4;
  opt.seqlen = 256;
  opt.seed = 0;
  const auto s = sample_calibration(iota_tokens(100000), opt, "t", "d");
  // mt19937_64(0)'s first outputs mod 99745 (= 100000 - 256 + 1), none rejected.
  std::mt19937_64 rng(0);
  std::vector<int64_t> want;
  for (int i = 0; i < 4; ++i) want.push_back(int64_t(rng() % 99745));
  EXPECT_EQ(s.offsets, want);
}

TEST(Sampling, ContiguousAndBos) {
  SamplingOptions opt;
  opt.n_samples = 3;
  opt.seqlen = 10;
  opt.mode = SamplingMode::Contiguous;
  opt.add_bos = true;
  const auto s = sample_calibration(iota_tokens(100), opt, "t", "d", /*bos_id=*/1);
  ASSERT_EQ(s.windows.size(), 3u);
  EXPECT_EQ(s.windows[1], (std::vector<int>{1, 9, 10, 11, 12, 13, 14, 15, 16, 17}));
}

TEST(Sampling, TooShortSourceSaysHowManyTokens) {
  SamplingOptions opt;
  opt.n_samples = 4;
  opt.seqlen = 256;
  try {
    sample_calibration(iota_tokens(200), opt, "mysrc", "d");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'mysrc' has 200 tokens"), std::string::npos) << e.what();
  }
  opt.mode = SamplingMode::Contiguous;
  opt.seqlen = 60;
  EXPECT_THROW(sample_calibration(iota_tokens(200), opt, "s", "d"), Error);
}

TEST(Sources, BuiltInsUserFilesJsonlAndGlobs) {
  const std::string data = test::data_dir();
  auto code = resolve_calibration_source("code", data);
  EXPECT_EQ(code.domain, "code");
  EXPECT_TRUE(code.files[0].ends_with("code/calib.txt"));
  auto wiki = resolve_calibration_source("wikitext2", data);
  EXPECT_EQ(wiki.domain, "wiki");
  EXPECT_TRUE(wiki.files[0].ends_with("wiki.valid.tokens"));  // never the test split

  const std::string dir = test::make_temp_dir("src");
  std::ofstream(dir + "/b.py") << "print('b')";
  std::ofstream(dir + "/a.py") << "print('a')";
  std::ofstream(dir + "/c.txt") << "no";
  auto glob = resolve_calibration_source(dir + "/*.py", data, "mycode");
  EXPECT_EQ(glob.domain, "mycode");
  EXPECT_EQ(read_calibration_text(glob), "print('a')\nprint('b')");

  std::ofstream(dir + "/x.jsonl") << "{\"text\":\"one\"}\n\n{\"text\":\"two\"}\n";
  EXPECT_EQ(read_calibration_text(resolve_calibration_source(dir + "/x.jsonl:text", data)),
            "one\n\ntwo");
  std::ofstream(dir + "/bad.jsonl") << "{\"text\":\"one\"}\n{\"txt\":\"two\"}\n";
  try {
    read_calibration_text(resolve_calibration_source(dir + "/bad.jsonl:text", data));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(resolve_calibration_source("nope", data), Error);
  std::ofstream(dir + "/empty.txt").close();
  EXPECT_THROW(read_calibration_text(resolve_calibration_source(dir + "/empty.txt", data)), Error);
}

TEST(Capture, StatisticsMatchDirectComputation) {
  const std::string dir = test::tinycode_dir();
  const ModelSpec spec = load_model_spec(dir);
  const Transformer model(spec, load_weights(dir, spec));
  const auto tok = load_tokenizer(dir);
  SamplingOptions opt;
  opt.n_samples = 4;
  opt.seqlen = 64;
  const CalibrationSet set = build_calibration_set("code", test::data_dir(), *tok, opt);
  EXPECT_EQ(set.domain, "code");

  ActivationCapture capture;
  // Reference: the raw inputs of layer 2's down_proj and q_proj, kept in double.
  MatrixD xtx_down = MatrixD::Zero(spec.intermediate_size, spec.intermediate_size);
  Eigen::VectorXd abs_q = Eigen::VectorXd::Zero(spec.hidden_size);
  int64_t rows = 0;
  auto cap = capture.hook();
  std::vector<int> lengths;
  MatrixRM h = model.embed(set.windows, &lengths);
  for (int l = 0; l < spec.num_layers; ++l)
    model.run_layer(l, h, lengths, [&](int layer, LinearRole role, const MatrixRM& x) {
      cap(layer, role, x);
      if (layer != 2) return;
      if (role == LinearRole::Down) xtx_down += x.cast<double>().transpose() * x.cast<double>();
      if (role == LinearRole::Q) {
        abs_q += x.cast<double>().cwiseAbs().colwise().sum().transpose();
        rows += x.rows();
      }
    });
  const ActivationStats& down = capture.stats(2, LinearInput::MlpOut);
  EXPECT_EQ(down.n_tokens, 4 * 64);
  EXPECT_LT((down.xtx - xtx_down).cwiseAbs().maxCoeff() / xtx_down.cwiseAbs().maxCoeff(), 1e-5);
  EXPECT_LT((down.hessian() - xtx_down * (2.0 / 256)).norm() / xtx_down.norm(), 1e-5);
  EXPECT_NEAR(down.sum_sq.sum(), xtx_down.trace(), 1e-6 * xtx_down.trace());
  const ActivationStats& attn = capture.stats(2, LinearInput::Attn);
  EXPECT_EQ(attn.n_tokens, rows);  // q/k/v share one input, counted once
  EXPECT_LT((attn.mean_abs() - abs_q / double(rows)).cwiseAbs().maxCoeff(), 1e-9);
  EXPECT_TRUE(capture.has(5, LinearInput::AttnOut));
  // take_hessian (GPTQ's way, no second copy) gives hessian()'s bits and forgets the input.
  const MatrixD expected = down.hessian();
  const MatrixD taken = capture.take_hessian(2, LinearInput::MlpOut);
  EXPECT_TRUE(taken == expected);
  EXPECT_FALSE(capture.has(2, LinearInput::MlpOut));
  EXPECT_TRUE(capture.has(2, LinearInput::Attn));
}

}  // namespace
}  // namespace qsweep
