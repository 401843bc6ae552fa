// The test referee of the forward pass: the CPU Transformer as it was before issue #15
// (fp32 MatrixRM weights, CPU kernels called directly), renamed and kept test-only.
// tests/model/forward_equivalence_test.cpp requires the Backend forward pass to equal it
// bit for bit on the CPU backend.
#pragma once

#include <optional>
#include <vector>

#include "common/matrix.h"
#include "model/model_spec.h"
#include "model/transformer.h"
#include "model/weights.h"

namespace qsweep::test {

struct RefLayerWeights {
  MatrixRM wq, wk, wv, wo, w_gate, w_up, w_down;
  VectorF bq, bk, bv, bo, attn_norm, mlp_norm, q_norm, k_norm;
  const MatrixRM& linear(LinearRole r) const;
};

struct RefWeights {
  MatrixRM embed;
  std::vector<RefLayerWeights> layers;
  VectorF final_norm;
  MatrixRM lm_head;
};

/// Every tensor of `w` widened to fp32 (WeightTensor::to_matrix()).
RefWeights reference_weights(const ModelWeights& w);

/// Keys and values of one sequence decoded so far (the old KvCache).
struct RefKvCache {
  struct Layer {
    MatrixRM k, v;
  };
  std::vector<Layer> layers;
  int length = 0;
};

class ReferenceForward {
 public:
  ReferenceForward(ModelSpec spec, RefWeights weights);
  const ModelSpec& spec() const { return spec_; }
  MatrixRM forward(const std::vector<std::vector<int>>& sequences) const;
  MatrixRM decode(RefKvCache& cache, const std::vector<int>& new_tokens) const;
  MatrixRM embed(const std::vector<std::vector<int>>& sequences, std::vector<int>* lengths) const;
  void run_layer(int layer, MatrixRM& hidden, const std::vector<int>& lengths,
                 const LinearInputHook& hook = {},
                 std::optional<LinearRole> stop_after = std::nullopt) const;
  MatrixRM head(const MatrixRM& hidden) const;

 private:
  void layer_impl(int layer, MatrixRM& hidden, const std::vector<int>& lengths, RefKvCache* cache,
                  const LinearInputHook& hook, std::optional<LinearRole> stop_after) const;
  ModelSpec spec_;
  RefWeights weights_;
  std::vector<float> inv_freq_;
};

}  // namespace qsweep::test
