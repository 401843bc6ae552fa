// GPTQ of a random Llama-shaped model's linears on the CPU twin and on CUDA (when usable): per
// linear the time on each, the fraction of identical codes and the relative loss difference.
// What scripts/device_bundle.sh's run.sh runs; one JSON object on stdout. Exit 1 when a linear
// differs by more than the documented tolerance (more than 1% of codes, or a loss more than
// 1e-3 apart: tests/backends/quant_ops_test.cpp's bounds), 0 otherwise (CUDA rows skipped,
// saying why, without a GPU).
//
//   bench_gptq_device [--hidden 512] [--inter 1376] [--layers 2] [--tokens 2048] [--group 128]
//                     [--bits 4] [--act-order] [--no-cpu]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "backends/backend.h"
#include "quantizers/quantizers.h"

namespace {

using qsweep::MatrixD;
using qsweep::MatrixRM;

// Activations with per-channel magnitudes (so act-order matters) and a shared component.
MatrixD hessian(int64_t in, int64_t tokens, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  std::uniform_real_distribution<float> mag(0.2f, 3.0f);
  std::vector<float> m(static_cast<size_t>(in));
  for (auto& v : m) v = mag(rng);
  MatrixRM X(tokens, in);
  for (int64_t t = 0; t < tokens; ++t) {
    const float common = n01(rng);
    for (int64_t j = 0; j < in; ++j) X(t, j) = m[size_t(j)] * (n01(rng) + 0.3f * common);
  }
  const Eigen::MatrixXd Xd = X.cast<double>();
  MatrixD H = (Xd.transpose() * Xd) * (2.0 / double(tokens));
  return H;
}

MatrixRM weight(int64_t out, int64_t in, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n(0.0f, 0.02f);
  MatrixRM W(out, in);
  for (int64_t i = 0; i < W.size(); ++i) W.data()[i] = n(rng);
  return W;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  int64_t hidden = 512, inter = 1376, layers = 2, tokens = 2048;
  int group = 128, bits = 4;
  bool act_order = false, cpu = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> int64_t {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_gptq_device: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return std::atoll(argv[++i]);
    };
    if (a == "--hidden")
      hidden = next();
    else if (a == "--inter")
      inter = next();
    else if (a == "--layers")
      layers = next();
    else if (a == "--tokens")
      tokens = next();
    else if (a == "--group")
      group = int(next());
    else if (a == "--bits")
      bits = int(next());
    else if (a == "--act-order")
      act_order = true;
    else if (a == "--no-cpu")
      cpu = false;
    else {
      std::fprintf(stderr, "bench_gptq_device: unknown argument %s\n", a.c_str());
      return 2;
    }
  }
  std::unique_ptr<qsweep::Backend> cuda;
  const std::string why = qsweep::cuda_unavailable_reason();
  if (why.empty()) cuda = qsweep::make_backend("cuda");
  nlohmann::json out;
  out["shape"] = {{"hidden", hidden}, {"inter", inter}, {"layers", layers},      {"tokens", tokens},
                  {"group", group},   {"bits", bits},   {"act_order", act_order}};
  out["cuda"] = cuda ? nlohmann::json(cuda->name()) : nlohmann::json("skipped: " + why);
  const struct {
    const char* name;
    int64_t out, in;
  } linears[] = {{"q_proj", hidden, hidden},   {"k_proj", hidden, hidden},
                 {"v_proj", hidden, hidden},   {"o_proj", hidden, hidden},
                 {"gate_proj", inter, hidden}, {"up_proj", inter, hidden},
                 {"down_proj", hidden, inter}};
  bool ok = true;
  double cpu_total = 0, cuda_total = 0;
  uint64_t seed = 1000;
  for (int64_t l = 0; l < layers; ++l) {
    const MatrixD H_attn = hessian(hidden, tokens, uint64_t(100 + l));
    const MatrixD H_down = hessian(inter, tokens, uint64_t(200 + l));
    for (const auto& lin : linears) {
      const MatrixD& H = lin.in == hidden ? H_attn : H_down;
      const MatrixRM W = weight(lin.out, lin.in, ++seed);  // a different weight per linear
      qsweep::GptqConfig cfg;
      cfg.bits = bits;
      cfg.group_size = group;
      cfg.desc_act = act_order;
      cfg.layer_name = "model.layers." + std::to_string(l) + "." + lin.name;
      nlohmann::json row = {{"linear", cfg.layer_name}, {"out", lin.out}, {"in", lin.in}};
      qsweep::GptqResult rc, rg;
      if (cpu) {
        const auto t0 = std::chrono::steady_clock::now();
        rc = qsweep::gptq_quantize(W, H, cfg);
        row["cpu_s"] = seconds_since(t0);
        row["cpu_loss"] = rc.loss;
        cpu_total += row["cpu_s"].get<double>();
      }
      if (cuda) {
        const auto t0 = std::chrono::steady_clock::now();
        rg = qsweep::gptq_quantize(W, H, cfg, cuda.get());
        row["cuda_s"] = seconds_since(t0);
        row["cuda_loss"] = rg.loss;
        cuda_total += row["cuda_s"].get<double>();
        if (cpu) {
          int64_t same = 0;
          for (size_t i = 0; i < rc.q.codes.size(); ++i) same += rc.q.codes[i] == rg.q.codes[i];
          const double frac = double(same) / double(rc.q.codes.size());
          const double loss_rel = std::abs(rg.loss - rc.loss) / std::max(rc.loss, 1e-30);
          row["codes_identical"] = frac;
          row["loss_rel_diff"] = loss_rel;
          if (frac < 0.99 || loss_rel > 1e-3) {
            row["within_tolerance"] = false;
            ok = false;
          }
        }
      }
      out["linears"].push_back(row);
      std::fprintf(stderr, "%s\n", row.dump().c_str());
    }
  }
  out["cpu_total_s"] = cpu_total;
  out["cuda_total_s"] = cuda_total;
  out["ok"] = ok;
  std::printf("%s\n", out.dump(2).c_str());
  return ok ? 0 : 1;
}
