#include "quantize/awq.h"

#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>

#include "backends/backend.h"
#include "common/errors.h"
#include "quantize/layer_inputs.h"

namespace qsweep {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A host matrix in a backend's memory: the host data itself where backend memory is host
// memory (the CPU: no copy), else an uploaded copy.
class OnBackend {
 public:
  OnBackend(Backend& b, const MatrixRM& m) : rows_(m.rows()), cols_(m.cols()), p_(m.data()) {
    if (b.host_memory()) return;
    copy_ = std::make_unique<BackendArray<float>>(b, size_t(m.size()));
    b.to_device(copy_->get(), m.data(), sizeof(float) * size_t(m.size()));
    p_ = copy_->get();
  }
  const float* get() const { return p_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }

 private:
  int64_t rows_, cols_;
  std::unique_ptr<BackendArray<float>> copy_;
  const float* p_;
};

// y = x·Wᵀ into `y` (backend memory, x.rows() × W_rows), then MSE against `ref`.
double linear_mse(Backend& b, const OnBackend& x, const float* W, int64_t W_rows,
                  BackendArray<float>& y, const float* ref) {
  b.gemm_nt(x.get(), W, y.get(), x.rows(), W_rows, x.cols());
  return b.mean_squared_error(y.get(), ref, x.rows() * W_rows);
}

// Runs layer `l` on the held inputs in batches of windows (their outputs are not kept); the
// inputs of the roles named in `sinks` are copied, rows in window order, into the matrices
// given there.
using Sinks = std::vector<std::pair<LinearRole, MatrixRM*>>;
void run_layer_collect(const Transformer& m, int l, const LayerInputs& inps, const Sinks& sinks,
                       std::optional<LinearRole> stop_after = std::nullopt) {
  for (auto& s : sinks) s.second->resize(0, 0);
  inps.for_each_batch([&](int64_t row, MatrixRM& x, const std::vector<int>& lens) {
    auto hook = [&](int, LinearRole r, const MatrixRM& in) {
      for (auto& s : sinks) {
        if (s.first != r) continue;
        if (s.second->rows() != inps.rows()) s.second->resize(inps.rows(), in.cols());
        s.second->middleRows(row, in.rows()) = in;
      }
    };
    m.run_layer(l, x, lens, sinks.empty() ? LinearInputHook() : LinearInputHook(hook), stop_after);
  });
}

// Per input channel mean |x| over tokens (AWQ's x_mean), in double (Backend::column_stats).
Eigen::VectorXd mean_abs_cols(Backend& b, const OnBackend& x) {
  const int64_t d = x.cols();
  BackendArray<double> sq(b, size_t(d)), ab(b, size_t(d));
  const std::vector<double> zeros(size_t(d), 0.0);
  sq.upload(zeros);
  ab.upload(zeros);
  b.column_stats(x.get(), x.rows(), d, sq.get(), ab.get());
  const std::vector<double> sum_abs = ab.download();
  return Eigen::Map<const Eigen::VectorXd>(sum_abs.data(), d) /
         double(std::max<int64_t>(1, x.rows()));
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

kernels::AwqGridConfig awq_grid(const AwqOptions& cfg, int64_t cols) {
  return {cfg.bits, cfg.sym, cfg.group_size > 0 ? int64_t(cfg.group_size) : cols};
}

struct ScaleResult {
  VectorF s;
  double loss = 0;
  double ratio = 0;
};

// The grid search over α (AutoAWQ _compute_best_scale) on backend `b`. `loss` gets the
// group's fake-quantized weights Q(W·s)/s (backend memory, same order as Ws) and returns the
// block output MSE against fp32.
ScaleResult search_scale(Backend& b, const Eigen::VectorXd& x_mean,
                         const std::vector<const MatrixRM*>& Ws, const AwqOptions& cfg,
                         const AwqSearchOptions& opt,
                         const std::function<double(const std::vector<const float*>&)>& loss) {
  const int64_t in = Ws.front()->cols();
  const kernels::AwqGridConfig grid = awq_grid(cfg, in);
  const Eigen::VectorXd w_mean =
      opt.duo_scaling ? weight_mean(Ws, cfg.group_size) : Eigen::VectorXd();
  std::vector<OnBackend> Wd;
  std::vector<std::unique_ptr<BackendArray<float>>> Qd;
  std::vector<const float*> Qp;
  for (const MatrixRM* W : Ws) {
    Wd.emplace_back(b, *W);
    Qd.push_back(std::make_unique<BackendArray<float>>(b, size_t(W->size())));
    Qp.push_back(Qd.back()->get());
  }
  BackendArray<float> s_dev(b, size_t(in));
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
    b.to_device(s_dev.get(), s.data(), sizeof(float) * size_t(in));
    for (size_t k = 0; k < Ws.size(); ++k)
      b.awq_fake_quant_scaled(Wd[k].get(), s_dev.get(), Qd[k]->get(), Ws[k]->rows(), in, grid);
    const double l = loss(Qp);
    if (l < best.loss) best = {s, l, ratio};
  }
  QS_THROW_IF_NOT(std::isfinite(best.loss), "AWQ scale search found no finite loss");
  return best;
}

// auto_clip for one linear on backend `b`: W [out, in] (already scaled), X [N, in] its
// (scaled) inputs. Clamps W in place per (row, group) to the best ±max found.
void clip_search(Backend& b, MatrixRM& W, const MatrixRM& X, const AwqOptions& cfg,
                 const AwqSearchOptions& opt) {
  const int64_t out = W.rows(), in = W.cols();
  const kernels::AwqGridConfig grid = awq_grid(cfg, in);
  const int64_t gs = grid.group_size;
  const int64_t step = std::max<int64_t>(1, X.rows() / opt.clip_n_sample_tokens);
  const int64_t T = (X.rows() + step - 1) / step;
  MatrixRM Xs(T, in);
  for (int64_t t = 0; t < T; ++t) Xs.row(t) = X.row(t * step);
  const int n_shrink = int(opt.clip_max_shrink * opt.clip_n_grid);
  const int64_t n_groups = (in + gs - 1) / gs;
  BackendArray<float> best(b, size_t(n_groups * out));
  {
    const OnBackend Wd(b, W), Xd(b, Xs);
    b.awq_clip_search(Wd.get(), Xd.get(), T, out, in, grid, opt.clip_n_grid, n_shrink, best.get());
  }
  const std::vector<float> best_max = best.download();
  for (int64_t r = 0; r < out; ++r)
    for (int64_t c = 0; c < in; ++c) {
      const float m = best_max[size_t((c / gs) * out + r)];
      W(r, c) = std::clamp(W(r, c), -m, m);
    }
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
  // AWQ's searches run on the given backend; the layer passes that capture inputs on the
  // source's.
  Backend& b = run.backend ? *run.backend : source.backend();
  LayerInputs inps(out.model, calib.windows, batch_windows, run.fp32_layer_inputs);
  const bool scale_o = awq_scales_o(spec);

  for (int l = 0; l < spec.num_layers; ++l) {
    const auto tl = Clock::now();
    LayerWeights& L = w.layers[size_t(l)];
    for (LinearRole r : kAllLinearRoles) L.linear(r).mutable_matrix();  // this layer in fp32
    // [1] The inputs of every linear, with this layer in fp32.
    MatrixRM x_attn, x_o, x_mlp, x_down;
    run_layer_collect(out.model, l, inps,
                      {{LinearRole::Q, &x_attn},
                       {LinearRole::O, &x_o},
                       {LinearRole::Gate, &x_mlp},
                       {LinearRole::Down, &x_down}});
    const LayerWeights L0 = L;  // the original weights every search starts from

    // [2] Scale searches, all on the original weights (AutoAWQ: scales_list, then apply), on
    // the source's backend: captured inputs, weights and references uploaded once per search.
    std::map<LinearRole, double> group_loss;
    const OnBackend xo_d(b, x_o), wo_d(b, L0.wo.matrix()), xd_d(b, x_down),
        wd_d(b, L0.w_down.matrix());
    const int64_t H = x_o.cols();
    // o_proj(attention) in fp32 (the qkv and o searches' reference) and down(mlp) in fp32.
    BackendArray<float> attn_ref(b, size_t(x_o.rows() * L0.wo.rows())),
        mlp_ref(b, size_t(x_down.rows() * L0.w_down.rows()));
    b.gemm_nt(xo_d.get(), wo_d.get(), attn_ref.get(), x_o.rows(), L0.wo.rows(), H);
    b.gemm_nt(xd_d.get(), wd_d.get(), mlp_ref.get(), x_down.rows(), L0.w_down.rows(),
              x_down.cols());
    BackendArray<float> y_attn(b, size_t(x_o.rows() * L0.wo.rows())),
        y_mlp(b, size_t(x_down.rows() * L0.w_down.rows()));
    // (q, k, v): loss on the attention block output o_proj(attn(...)), o_proj in fp32.
    auto download = [&](const float* Q, const WeightTensor& like) {
      MatrixRM m(like.rows(), like.cols());
      b.to_host(m.data(), Q, sizeof(float) * size_t(m.size()));
      return WeightTensor::from_matrix(m);
    };
    const ScaleResult s_qkv = search_scale(
        b, mean_abs_cols(b, OnBackend(b, x_attn)),
        {&L0.wq.matrix(), &L0.wk.matrix(), &L0.wv.matrix()}, cfg, opt,
        [&](const std::vector<const float*>& Q) {
          L.wq = download(Q[0], L0.wq);
          L.wk = download(Q[1], L0.wk);
          L.wv = download(Q[2], L0.wv);
          MatrixRM a;
          run_layer_collect(out.model, l, inps, {{LinearRole::O, &a}}, LinearRole::O);
          L.wq = L0.wq;
          L.wk = L0.wk;
          L.wv = L0.wv;
          return linear_mse(b, OnBackend(b, a), wo_d.get(), L0.wo.rows(), y_attn, attn_ref.get());
        });
    std::optional<ScaleResult> s_o;
    if (scale_o)
      s_o = search_scale(b, mean_abs_cols(b, xo_d), {&L0.wo.matrix()}, cfg, opt,
                         [&](const std::vector<const float*>& Q) {
                           return linear_mse(b, xo_d, Q[0], L0.wo.rows(), y_attn, attn_ref.get());
                         });
    // gate/up: down(silu(gate(x)) · up(x)) as Transformer::run_layer computes it.
    const OnBackend xm_d(b, x_mlp);
    const int64_t I = L0.w_gate.rows();
    BackendArray<float> g(b, size_t(x_mlp.rows() * I)), u(b, size_t(x_mlp.rows() * I));
    const ScaleResult s_gu = search_scale(
        b, mean_abs_cols(b, xm_d), {&L0.w_gate.matrix(), &L0.w_up.matrix()}, cfg, opt,
        [&](const std::vector<const float*>& Q) {
          b.gemm_nt(xm_d.get(), Q[0], g.get(), x_mlp.rows(), I, x_mlp.cols());
          b.gemm_nt(xm_d.get(), Q[1], u.get(), x_mlp.rows(), I, x_mlp.cols());
          b.swiglu(g.get(), u.get(), x_mlp.rows() * I);
          b.gemm_nt(g.get(), wd_d.get(), y_mlp.get(), x_mlp.rows(), L0.w_down.rows(), I);
          return b.mean_squared_error(y_mlp.get(), mlp_ref.get(), x_mlp.rows() * L0.w_down.rows());
        });
    const ScaleResult s_down =
        search_scale(b, mean_abs_cols(b, xd_d), {&L0.w_down.matrix()}, cfg, opt,
                     [&](const std::vector<const float*>& Q) {
                       return linear_mse(b, xd_d, Q[0], L0.w_down.rows(), y_mlp, mlp_ref.get());
                     });
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
      clip_search(b, L.wv.mutable_matrix(), x_attn, cfg, opt);
      clip_search(b, L.wo.mutable_matrix(), x_o, cfg, opt);
      clip_search(b, L.w_gate.mutable_matrix(), x_mlp, cfg, opt);
      clip_search(b, L.w_up.mutable_matrix(), x_mlp, cfg, opt);
      clip_search(b, L.w_down.mutable_matrix(), x_down, cfg, opt);
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
    inps.advance(l);
    if (progress)
      progress(l + 1, spec.num_layers,
               cat("layer ", l, " awq a_qkv=", s_qkv.ratio, s_o ? cat(" a_o=", s_o->ratio) : "",
                   " a_gu=", s_gu.ratio, " a_down=", s_down.ratio, " ", since(tl), "s"));
  }
  out.seconds = since(t0);
  return out;
}

}  // namespace qsweep
