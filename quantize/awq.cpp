#include "quantize/awq.h"

#include <tbb/parallel_for.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>

#include "backends/cpu/cpu_gemm.h"
#include "common/errors.h"

namespace qsweep {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// y[N, out] = x[N, in] · Wᵀ
MatrixRM matmul_nt(const MatrixRM& x, const MatrixRM& W) {
  MatrixRM y(x.rows(), W.rows());
  cpu_gemm_nt(x.data(), W.data(), y.data(), x.rows(), W.rows(), x.cols());
  return y;
}

double mse(const MatrixRM& a, const MatrixRM& b) {
  QS_ASSERT(a.rows() == b.rows() && a.cols() == b.cols());
  const int64_t n = a.size();
  double s = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = double(a.data()[i]) - double(b.data()[i]);
    s += d * d;
  }
  return n > 0 ? s / double(n) : 0;
}

// Runs layer `l` on `hidden` in batches of windows; the inputs of the roles named in `sinks`
// are copied, rows in window order, into the matrices given there.
using Sinks = std::vector<std::pair<LinearRole, MatrixRM*>>;
void run_layer_collect(const Transformer& m, int l, MatrixRM& hidden,
                       const std::vector<int>& lengths, int batch_windows, const Sinks& sinks,
                       std::optional<LinearRole> stop_after = std::nullopt) {
  for (auto& s : sinks) s.second->resize(0, 0);
  int64_t row = 0;
  for (size_t w0 = 0; w0 < lengths.size(); w0 += size_t(batch_windows)) {
    const size_t w1 = std::min(lengths.size(), w0 + size_t(batch_windows));
    std::vector<int> lens(lengths.begin() + long(w0), lengths.begin() + long(w1));
    int64_t rows = 0;
    for (int n : lens) rows += n;
    MatrixRM part = hidden.middleRows(row, rows);
    auto hook = [&](int, LinearRole r, const MatrixRM& x) {
      for (auto& s : sinks) {
        if (s.first != r) continue;
        if (s.second->rows() != hidden.rows()) s.second->resize(hidden.rows(), x.cols());
        s.second->middleRows(row, rows) = x;
      }
    };
    m.run_layer(l, part, lens, sinks.empty() ? LinearInputHook() : LinearInputHook(hook),
                stop_after);
    if (!stop_after) hidden.middleRows(row, rows) = part;
    row += rows;
  }
}

// SwiGLU block output, computed like Transformer::run_layer: down(silu(gate(x)) * up(x)).
MatrixRM mlp_forward(const MatrixRM& x, const MatrixRM& Wg, const MatrixRM& Wu,
                     const MatrixRM& Wd) {
  MatrixRM g = matmul_nt(x, Wg);
  const MatrixRM u = matmul_nt(x, Wu);
  tbb::parallel_for(int64_t(0), int64_t(g.rows()), [&](int64_t i) {
    float* gr = g.row(i).data();
    const float* ur = u.row(i).data();
    for (int64_t j = 0; j < g.cols(); ++j) gr[j] = gr[j] / (1.0f + std::exp(-gr[j])) * ur[j];
  });
  return matmul_nt(g, Wd);
}

// Per input channel mean |x| over tokens (AWQ's x_mean), in double.
Eigen::VectorXd mean_abs_cols(const MatrixRM& x) {
  ActivationStats st;
  st.add(x, /*with_xtx=*/false);
  return st.mean_abs();
}

// AutoAWQ's w_mean: |w| / (max |w| of its quantization group + 1e-6), averaged over the
// output rows of all the group's linears, per input column.
Eigen::VectorXd weight_mean(const std::vector<const MatrixRM*>& Ws, int group_size) {
  const int64_t in = Ws.front()->cols();
  const int64_t gs = group_size > 0 ? group_size : in;
  Eigen::VectorXd sum = Eigen::VectorXd::Zero(in);
  int64_t rows = 0;
  for (const MatrixRM* W : Ws) {
    for (int64_t r = 0; r < W->rows(); ++r)
      for (int64_t c0 = 0; c0 < in; c0 += gs) {
        const int64_t n = std::min(gs, in - c0);
        const double mx = double(W->row(r).segment(c0, n).cwiseAbs().maxCoeff()) + 1e-6;
        for (int64_t c = c0; c < c0 + n; ++c) sum[c] += std::abs(double((*W)(r, c))) / mx;
      }
    rows += W->rows();
  }
  return sum / double(rows);
}

// Q(W · diag(s)) · diag(s)^-1 with the RTN grid.
MatrixRM fake_quant_scaled(const MatrixRM& W, const VectorF& s, const RtnConfig& rtn) {
  MatrixRM Ws = W.array().rowwise() * s.transpose().array();
  MatrixRM Q = quantize_rtn(Ws, rtn).dequantize();
  Q.array().rowwise() /= s.transpose().array();
  return Q;
}

struct ScaleResult {
  VectorF s;
  double loss = 0;
  double ratio = 0;
};

// The grid search over α (AutoAWQ _compute_best_scale). `loss` gets the group's fake-quantized
// weights (same order as Ws) and returns the block output MSE against fp32.
ScaleResult search_scale(const Eigen::VectorXd& x_mean, const std::vector<const MatrixRM*>& Ws,
                         const AwqOptions& cfg, const AwqSearchOptions& opt,
                         const std::function<double(const std::vector<MatrixRM>&)>& loss) {
  const RtnConfig rtn{cfg.bits, cfg.group_size, cfg.sym};
  const Eigen::VectorXd w_mean =
      opt.duo_scaling ? weight_mean(Ws, cfg.group_size) : Eigen::VectorXd();
  ScaleResult best;
  best.loss = std::numeric_limits<double>::infinity();
  for (int i = 0; i < opt.n_grid; ++i) {
    const double ratio = double(i) / double(opt.n_grid);
    // AutoAWQ computes in fp16/fp32 torch; here in double, then cast to fp32.
    Eigen::VectorXd sd(x_mean.size());
    for (int64_t c = 0; c < x_mean.size(); ++c) {
      double v = std::pow(x_mean[c], ratio);
      if (opt.duo_scaling) v /= std::pow(w_mean[c], 1.0 - ratio) + 1e-4;
      sd[c] = std::max(v, 1e-4);
    }
    sd /= std::sqrt(sd.maxCoeff() * sd.minCoeff());
    VectorF s = sd.cast<float>();
    for (int64_t c = 0; c < s.size(); ++c)
      if (!std::isfinite(s[c])) s[c] = 1.0f;  // AutoAWQ: "avoid scaling values that overflow"
    std::vector<MatrixRM> Q;
    for (const MatrixRM* W : Ws) Q.push_back(fake_quant_scaled(*W, s, rtn));
    const double l = loss(Q);
    if (l < best.loss) best = {s, l, ratio};
  }
  QS_THROW_IF_NOT(std::isfinite(best.loss), "AWQ scale search found no finite loss");
  return best;
}

// auto_clip for one linear: W [out, in] (already scaled), X [N, in] its (scaled) inputs.
// Clamps W in place per (row, group) to the best ±max found.
void clip_search(MatrixRM& W, const MatrixRM& X, const AwqOptions& cfg,
                 const AwqSearchOptions& opt) {
  const int64_t out = W.rows(), in = W.cols();
  const int64_t gs = cfg.group_size > 0 ? cfg.group_size : in;
  const int64_t step = std::max<int64_t>(1, X.rows() / opt.clip_n_sample_tokens);
  const int64_t T = (X.rows() + step - 1) / step;
  MatrixRM Xs(T, in);
  for (int64_t t = 0; t < T; ++t) Xs.row(t) = X.row(t * step);
  const QuantGrid grid{cfg.bits, cfg.sym, true};
  const int n_shrink = int(opt.clip_max_shrink * opt.clip_n_grid);
  const int64_t n_groups = (in + gs - 1) / gs;
  tbb::parallel_for(int64_t(0), n_groups, [&](int64_t g) {
    const int64_t c0 = g * gs, n = std::min(gs, in - c0);
    const MatrixRM Xg = Xs.middleCols(c0, n);
    const MatrixRM Wg = W.middleCols(c0, n);
    const MatrixRM org = Xg * Wg.transpose();  // [T, out]
    const VectorF org_max = Wg.cwiseAbs().rowwise().maxCoeff();
    VectorF best_max = org_max;
    Eigen::VectorXd min_err = Eigen::VectorXd::Constant(out, 1e9);
    MatrixRM Qg(out, n);
    std::vector<float> row(static_cast<size_t>(n));
    for (int i_s = 0; i_s < n_shrink; ++i_s) {
      const VectorF max_val = org_max * (1.0f - float(i_s) / float(opt.clip_n_grid));
      for (int64_t r = 0; r < out; ++r) {
        for (int64_t c = 0; c < n; ++c)
          row[size_t(c)] = std::clamp(Wg(r, c), -max_val[r], max_val[r]);
        const GroupParams p = grid.find_params(row.data(), n);
        for (int64_t c = 0; c < n; ++c)
          Qg(r, c) = p.scale * (float(grid.quantize(row[size_t(c)], p)) - p.zero);
      }
      const MatrixRM cur = Xg * Qg.transpose();
      for (int64_t r = 0; r < out; ++r) {
        const double err = double((cur.col(r) - org.col(r)).squaredNorm()) / double(T);
        if (err < min_err[r]) {
          min_err[r] = err;
          best_max[r] = max_val[r];
        }
      }
    }
    for (int64_t r = 0; r < out; ++r)
      for (int64_t c = c0; c < c0 + n; ++c)
        W(r, c) = std::clamp(W(r, c), -best_max[r], best_max[r]);
  });
}

}  // namespace

bool awq_scales_o(const ModelSpec& spec) {
  // v_proj [kv·hd, H] and o_proj [H, heads·hd] have the same shape (AutoAWQ models/llama.py).
  return int64_t(spec.num_kv_heads) * spec.head_dim == spec.hidden_size &&
         int64_t(spec.num_heads) * spec.head_dim == spec.hidden_size;
}

void awq_apply_scale(LayerWeights& w, AwqScaleGroup group, const VectorF& s) {
  auto scale_cols = [&](MatrixRM& W) {
    QS_THROW_IF_NOT(W.cols() == s.size(), "awq_apply_scale: ", s.size(), " scales for ", W.cols(),
                    " input features");
    W.array().rowwise() *= s.transpose().array();
  };
  auto div_norm = [&](VectorF& n) {
    QS_THROW_IF_NOT(n.size() == s.size(), "awq_apply_scale: norm size mismatch");
    n.array() /= s.array();
  };
  // scale_fc_fc: the last s.size() output rows (and bias) of the previous linear.
  auto div_rows = [&](MatrixRM& W, VectorF& b) {
    QS_THROW_IF_NOT(W.rows() >= s.size(), "awq_apply_scale: previous op has too few rows");
    W.bottomRows(s.size()).array().colwise() /= s.array();
    if (b.size()) b.tail(s.size()).array() /= s.array();
  };
  VectorF none;
  switch (group) {
    case AwqScaleGroup::QKV:
      div_norm(w.attn_norm);
      scale_cols(w.wq.mutable_matrix());
      scale_cols(w.wk.mutable_matrix());
      scale_cols(w.wv.mutable_matrix());
      break;
    case AwqScaleGroup::O:
      QS_THROW_IF_NOT(w.wv.rows() == w.wo.rows() && w.wv.cols() == w.wo.cols(),
                      "awq_apply_scale: v_proj and o_proj shapes differ; O cannot be scaled");
      div_rows(w.wv.mutable_matrix(), w.bv);
      scale_cols(w.wo.mutable_matrix());
      break;
    case AwqScaleGroup::GateUp:
      div_norm(w.mlp_norm);
      scale_cols(w.w_gate.mutable_matrix());
      scale_cols(w.w_up.mutable_matrix());
      break;
    case AwqScaleGroup::Down:
      div_rows(w.w_up.mutable_matrix(), none);
      scale_cols(w.w_down.mutable_matrix());
      break;
  }
}

QuantizedModel awq_quantize_model(const Transformer& source, const QuantMethodConfig& config,
                                  const CalibrationSet& calib, const QuantProgress& progress,
                                  const QuantRunOptions& run, const AwqSearchOptions& opt) {
  config.validate(/*for_export=*/false);
  QS_THROW_IF_NOT(config.awq() != nullptr, "awq_quantize_model: method is '", config.info().name,
                  "'");
  const AwqOptions& cfg = *config.awq();
  const int batch_windows = run.batch_windows;
  QS_THROW_IF_NOT(batch_windows >= 1, "batch_windows must be >= 1");
  QS_THROW_IF_NOT(!calib.windows.empty(),
                  "AWQ needs a calibration set (--calib NAME); none was given");
  QS_THROW_IF_NOT(opt.n_grid >= 1 && opt.clip_n_grid >= 1 && opt.clip_n_sample_tokens >= 1,
                  "AwqSearchOptions: grids and the token subsample must be >= 1");
  const auto t0 = Clock::now();
  const ModelSpec& spec = source.spec();
  QuantizedModel out{config,
                     calib.source,
                     calib.domain,
                     calib.options,
                     {},
                     Transformer(spec, source.weights(), source.backend()),
                     {},
                     0,
                     {}};
  ModelWeights& w = out.model.mutable_weights();
  const RtnConfig rtn{cfg.bits, cfg.group_size, cfg.sym};
  std::vector<int> lengths;
  MatrixRM inps = out.model.embed(calib.windows, &lengths);
  const bool scale_o = awq_scales_o(spec);

  for (int l = 0; l < spec.num_layers; ++l) {
    const auto tl = Clock::now();
    LayerWeights& L = w.layers[size_t(l)];
    for (LinearRole r : kAllLinearRoles) L.linear(r).mutable_matrix();  // this layer in fp32
    // [1] The inputs of every linear, with this layer in fp32.
    MatrixRM x_attn, x_o, x_mlp, x_down;
    {
      MatrixRM scratch = inps;
      run_layer_collect(out.model, l, scratch, lengths, batch_windows,
                        {{LinearRole::Q, &x_attn},
                         {LinearRole::O, &x_o},
                         {LinearRole::Gate, &x_mlp},
                         {LinearRole::Down, &x_down}});
    }
    const LayerWeights L0 = L;  // the original weights every search starts from

    // [2] Scale searches, all on the original weights (AutoAWQ: scales_list, then apply).
    std::map<LinearRole, double> group_loss;
    // (q, k, v): loss on the attention block output o_proj(attn(...)), o_proj in fp32.
    const MatrixRM attn_ref = matmul_nt(x_o, L0.wo.matrix());
    const ScaleResult s_qkv =
        search_scale(mean_abs_cols(x_attn), {&L0.wq.matrix(), &L0.wk.matrix(), &L0.wv.matrix()},
                     cfg, opt, [&](const std::vector<MatrixRM>& Q) {
                       L.wq = WeightTensor::from_matrix(Q[0]);
                       L.wk = WeightTensor::from_matrix(Q[1]);
                       L.wv = WeightTensor::from_matrix(Q[2]);
                       MatrixRM scratch = inps, a;
                       run_layer_collect(out.model, l, scratch, lengths, batch_windows,
                                         {{LinearRole::O, &a}}, LinearRole::O);
                       L.wq = L0.wq;
                       L.wk = L0.wk;
                       L.wv = L0.wv;
                       return mse(matmul_nt(a, L0.wo.matrix()), attn_ref);
                     });
    std::optional<ScaleResult> s_o;
    if (scale_o) {
      const MatrixRM ref = matmul_nt(x_o, L0.wo.matrix());
      s_o = search_scale(
          mean_abs_cols(x_o), {&L0.wo.matrix()}, cfg, opt,
          [&](const std::vector<MatrixRM>& Q) { return mse(matmul_nt(x_o, Q[0]), ref); });
    }
    const MatrixRM mlp_ref = matmul_nt(x_down, L0.w_down.matrix());
    const ScaleResult s_gu =
        search_scale(mean_abs_cols(x_mlp), {&L0.w_gate.matrix(), &L0.w_up.matrix()}, cfg, opt,
                     [&](const std::vector<MatrixRM>& Q) {
                       return mse(mlp_forward(x_mlp, Q[0], Q[1], L0.w_down.matrix()), mlp_ref);
                     });
    const ScaleResult s_down = search_scale(
        mean_abs_cols(x_down), {&L0.w_down.matrix()}, cfg, opt,
        [&](const std::vector<MatrixRM>& Q) { return mse(matmul_nt(x_down, Q[0]), mlp_ref); });
    // Fold, and scale the captured inputs the same way (x / s) for the clip search.
    auto div_cols = [](MatrixRM& x, const VectorF& s) {
      x.array().rowwise() /= s.transpose().array();
    };
    awq_apply_scale(L, AwqScaleGroup::QKV, s_qkv.s);
    div_cols(x_attn, s_qkv.s);
    if (s_o) {
      awq_apply_scale(L, AwqScaleGroup::O, s_o->s);
      div_cols(x_o, s_o->s);
    }
    awq_apply_scale(L, AwqScaleGroup::GateUp, s_gu.s);
    div_cols(x_mlp, s_gu.s);
    awq_apply_scale(L, AwqScaleGroup::Down, s_down.s);
    div_cols(x_down, s_down.s);
    group_loss[LinearRole::Q] = group_loss[LinearRole::K] = group_loss[LinearRole::V] = s_qkv.loss;
    group_loss[LinearRole::O] = s_o ? s_o->loss : 0.0;
    group_loss[LinearRole::Gate] = group_loss[LinearRole::Up] = s_gu.loss;
    group_loss[LinearRole::Down] = s_down.loss;

    // [3] Clip search, all linears but q and k ("due to qk bmm, it is hard to clip precisely").
    if (opt.apply_clip) {
      clip_search(L.wv.mutable_matrix(), x_attn, cfg, opt);
      clip_search(L.wo.mutable_matrix(), x_o, cfg, opt);
      clip_search(L.w_gate.mutable_matrix(), x_mlp, cfg, opt);
      clip_search(L.w_up.mutable_matrix(), x_mlp, cfg, opt);
      clip_search(L.w_down.mutable_matrix(), x_down, cfg, opt);
    }

    // [4] Quantize.
    for (LinearRole r : kAllLinearRoles) {
      const auto t = Clock::now();
      WeightTensor& W = L.linear(r);
      QuantizedLinear ql{
          l, r, std::make_shared<const QTensor>(quantize_rtn(W.matrix(), rtn)), group_loss[r],
          0, 0};
      W = qtensor_weight(ql.q);  // codes, not fp32
      ql.seconds = since(t);
      out.linears.push_back(std::move(ql));
    }
    // The quantized layer's outputs feed the next layer.
    run_layer_collect(out.model, l, inps, lengths, batch_windows, {});
    if (progress)
      progress(l + 1, spec.num_layers,
               cat("layer ", l, " awq a_qkv=", s_qkv.ratio, s_o ? cat(" a_o=", s_o->ratio) : "",
                   " a_gu=", s_gu.ratio, " a_down=", s_down.ratio, " ", since(tl), "s"));
  }
  out.seconds = since(t0);
  return out;
}

}  // namespace qsweep
