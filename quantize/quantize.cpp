#include "quantize/quantize.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <optional>

#include "common/errors.h"
#include "formats/awq_packing.h"
#include "formats/gptq_packing.h"
#include "quantize/auto_mix_model.h"
#include "quantize/awq.h"
#include "quantize/gptq_budget.h"
#include "quantize/layer_inputs.h"

namespace qsweep {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The groups of linears quantized together, in order.
std::vector<std::vector<LinearRole>> sequential_groups(bool true_sequential) {
  using R = LinearRole;
  if (true_sequential) return {{R::Q, R::K, R::V}, {R::O}, {R::Gate, R::Up}, {R::Down}};
  return {{R::Q, R::K, R::V, R::O, R::Gate, R::Up, R::Down}};
}

}  // namespace

namespace {

QuantizedModel quantize_rtn_model(const Transformer& source, const QuantMethodConfig& config,
                                  const QuantProgress& progress) {
  const auto t0 = Clock::now();
  const RtnOptions& o = *config.rtn();
  const ModelSpec& spec = source.spec();
  QuantizedModel out{config, "", "", {}, {}, Transformer(spec, source.weights(), source.backend()),
                     {},     0,  {}};
  ModelWeights& w = out.model.mutable_weights();
  for (int l = 0; l < spec.num_layers; ++l) {
    for (LinearRole r : kAllLinearRoles) {
      const auto t = Clock::now();
      WeightTensor& W = w.layers[size_t(l)].linear(r);
      QuantizedLinear ql{
          l,
          r,
          std::make_shared<const QTensor>(quantize_rtn(W.to_matrix(), {o.bits, o.group_size, o.sym})),
          0,
          0,
          0};
      W = qtensor_weight(ql.q);  // codes, not fp32
      ql.seconds = since(t);
      out.linears.push_back(std::move(ql));
    }
    if (progress) progress(l + 1, spec.num_layers, cat("layer ", l, " rtn"));
  }
  out.seconds = since(t0);
  return out;
}

// budget_bpw: a width per linear (layer-major, kAllLinearRoles order) from the Hessians of
// the unquantized model (one calibration pass), recorded in out.method_meta.
std::vector<int> choose_bits_for_budget(const Transformer& model, const CalibrationSet& calib,
                                        const GptqOptions& cfg, const QuantRunOptions& run,
                                        const QuantProgress& progress, nlohmann::json& meta) {
  const ModelSpec& spec = model.spec();
  const std::string what =
      cfg.group_size > 0 ? cat("group_size ", cfg.group_size) : std::string("group_size -1");
  {  // A budget below the least the shapes allow is refused before any work.
    std::vector<std::vector<GptqBitsOption>> least;
    std::vector<int64_t> shapes;
    for (const LayerWeights& L : model.weights().layers)
      for (LinearRole r : kAllLinearRoles) {
        QTensor q;
        q.rows = L.linear(r).rows();
        q.cols = L.linear(r).cols();
        q.bits = kGptqBudgetBits[0];
        q.group_size = cfg.group_size;
        least.push_back({{q.bits, gptq_storage_bytes(q), 0.0}});
        shapes.push_back(q.rows * q.cols);
      }
    choose_gptq_bits(least, shapes, cfg.budget_bpw, what);
  }
  std::vector<std::vector<GptqBitsOption>> options;
  std::vector<int64_t> params;
  std::vector<std::string> names;
  LayerInputs inps(model, calib.windows, run.batch_windows, run.fp32_layer_inputs);
  for (int l = 0; l < spec.num_layers; ++l) {
    ActivationCapture capture(/*with_xtx=*/true);
    inps.advance(l, capture.hook());
    for (LinearRole r : kAllLinearRoles) {
      const MatrixRM W = model.weights().layers[size_t(l)].linear(r).to_matrix();
      options.push_back(gptq_bits_options(W, capture.stats(l, linear_input_of(r)).hessian(),
                                          cfg.group_size, cfg.sym));
      params.push_back(int64_t(W.size()));
      names.push_back(hf_linear_name(l, r));
    }
    if (progress) progress(l + 1, spec.num_layers, cat("layer ", l, " bit costs"));
  }
  const GptqBitsChoice c = choose_gptq_bits(options, params, cfg.budget_bpw, what);
  meta = gptq_bits_meta(c, cfg.budget_bpw, names, options);
  return c.bits;
}

QuantizedModel quantize_gptq_model(const Transformer& source, const QuantMethodConfig& config,
                                   const CalibrationSet* calib, const QuantProgress& progress,
                                   const QuantRunOptions& run) {
  QS_THROW_IF_NOT(calib && !calib->windows.empty(),
                  "GPTQ needs a calibration set (--calib NAME); none was given");
  const auto t0 = Clock::now();
  const GptqOptions& cfg = *config.gptq();
  const ModelSpec& spec = source.spec();
  QuantizedModel out{config, "", "", {}, {}, Transformer(spec, source.weights(), source.backend()),
                     {},     0,  {}};
  ModelWeights& w = out.model.mutable_weights();
  out.calibration_source = calib->source;
  out.calibration_domain = calib->domain;
  out.calibration_options = calib->options;
  std::vector<int> bits;  // per linear, layer-major in kAllLinearRoles order
  if (cfg.budget_bpw > 0)
    bits = choose_bits_for_budget(out.model, *calib, cfg, run, progress, out.method_meta);
  LayerInputs inps(out.model, calib->windows, run.batch_windows, run.fp32_layer_inputs);

  for (int l = 0; l < spec.num_layers; ++l) {
    const auto tl = Clock::now();
    for (const auto& group : sequential_groups(cfg.true_sequential)) {
      ActivationCapture capture(/*with_xtx=*/true);
      std::vector<LinearInput> inputs;
      for (LinearRole r : group) inputs.push_back(linear_input_of(r));
      capture.restrict_to(inputs);
      // The layer's inputs with the weights as they are now (earlier groups quantized),
      // computed only as far as this group's last input.
      inps.for_each_batch([&](int64_t, MatrixRM& x, const std::vector<int>& lens) {
        out.model.run_layer(l, x, lens, capture.hook(), group.back());
      });
      // One Hessian per distinct input, taken out of the capture (not copied), each dropped
      // after the group's last linear that reads it.
      std::map<LinearInput, MatrixD> hessians;
      for (LinearInput in : inputs)
        if (!hessians.count(in)) hessians.emplace(in, capture.take_hessian(l, in));
      for (size_t gi = 0; gi < group.size(); ++gi) {
        const LinearRole r = group[gi];
        GptqConfig g;
        g.bits =
            bits.empty() ? cfg.bits : bits[size_t(l) * std::size(kAllLinearRoles) + size_t(int(r))];
        g.group_size = cfg.group_size;
        g.sym = cfg.sym;
        g.desc_act = cfg.desc_act;
        g.static_groups = cfg.static_groups;
        g.block_size = cfg.block_size;
        g.damp_percent = cfg.damp_percent;
        g.layer_name = hf_linear_name(l, r);
        WeightTensor& W = w.layers[size_t(l)].linear(r);
        const LinearInput in = linear_input_of(r);
        GptqResult res = gptq_quantize(W.to_matrix(), hessians.at(in), g, run.backend);
        if (std::none_of(group.begin() + long(gi) + 1, group.end(),
                         [&](LinearRole later) { return linear_input_of(later) == in; }))
          hessians.erase(in);
        auto codes = std::make_shared<const QTensor>(std::move(res.q));
        W = qtensor_weight(codes);  // codes, not fp32
        out.linears.push_back({l, r, codes, res.loss, res.damp_percent_used, res.seconds});
      }
    }
    // This layer's outputs with all its weights quantized feed the next layer.
    inps.advance(l);
    if (progress) progress(l + 1, spec.num_layers, cat("layer ", l, " gptq ", since(tl), "s"));
  }
  out.seconds = since(t0);
  return out;
}

QuantizedModel quantize_mix_model(const Transformer& source, const QuantMethodConfig& config,
                                  const CalibrationSet* calib, const QuantProgress& progress,
                                  const QuantRunOptions& run) {
  const auto t0 = Clock::now();
  const ModelSpec& spec = source.spec();
  ModelWeights none;
  none.layers.resize(size_t(spec.num_layers));
  QuantizedModel out{config, "", "", {}, {}, Transformer(spec, std::move(none)), {}, 0, {}};
  if (calib) {
    out.calibration_source = calib->source;
    out.calibration_domain = calib->domain;
    out.calibration_options = calib->options;
  }
  out.mix = std::make_shared<const KQuantMixResult>(
      quantize_kquant_mix(source, *config.info().mix, calib, run.batch_windows));
  if (progress)
    progress(spec.num_layers, spec.num_layers, cat(config.info().display, " ", since(t0), "s"));
  out.seconds = since(t0);
  return out;
}

}  // namespace

double QuantizedModel::linear_bits_per_weight() const {
  switch (config.info().layout) {
    case CheckpointLayout::Gguf:
      return mix ? mix->linear_bits_per_weight : 0;
    case CheckpointLayout::GptqSafetensors:
    case CheckpointLayout::AwqGemmSafetensors:
      break;
  }
  const bool awq = config.info().layout == CheckpointLayout::AwqGemmSafetensors;
  double bits = 0, n = 0;
  for (const auto& l : linears) {
    const double w = double(l.q->rows) * double(l.q->cols);
    bits += (awq ? awq_bits_per_weight(*l.q) : gptq_bits_per_weight(*l.q)) * w;
    n += w;
  }
  return n > 0 ? bits / n : 0;
}

int64_t QuantizedModel::model_bytes(double other_bytes_per_param) const {
  int64_t quantized_params = 0, bytes = 0;
  for (const auto& l : linears) {
    quantized_params += l.q->rows * l.q->cols;
    bytes += gptq_storage_bytes(*l.q);
  }
  const int64_t other = model.spec().parameter_count() - quantized_params;
  return bytes + int64_t(double(other) * other_bytes_per_param);
}

QuantizedModel quantize_model(const Transformer& source, const QuantMethodConfig& config,
                              const CalibrationSet* calib, const QuantProgress& progress,
                              const QuantRunOptions& run) {
  config.validate(/*for_export=*/false);
  QS_THROW_IF_NOT(run.batch_windows >= 1, "batch_windows must be >= 1");
  switch (config.family()) {
    case MethodFamily::Rtn:
      return quantize_rtn_model(source, config, progress);
    case MethodFamily::Gptq:
      return quantize_gptq_model(source, config, calib, progress, run);
    case MethodFamily::Awq:
      QS_THROW_IF_NOT(calib && !calib->windows.empty(),
                      "AWQ needs a calibration set (--calib NAME); none was given");
      return awq_quantize_model(source, config, *calib, progress, run);
    case MethodFamily::KQuantMix:
      return quantize_mix_model(source, config, calib, progress, run);
    case MethodFamily::AutoMix:
      QS_THROW_IF_NOT(calib && !calib->windows.empty(),
                      "auto_mix needs a calibration set (--calib NAME); none was given");
      return quantize_auto_mix_model(source, config, *calib, progress, run);
  }
  QS_ASSERT(false, "unknown method family");
  return quantize_rtn_model(source, config, progress);
}

}  // namespace qsweep
