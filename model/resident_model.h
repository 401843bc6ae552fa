// The forward pass written over the Backend interface, with the weights resident in the
// backend's memory (device memory on CUDA): what runs the model on a GPU. On the CPU backend
// it computes exactly what Transformer::forward computes (tests/model/resident_model_test.cpp),
// which makes the CPU path the referee of the CUDA one.
#pragma once

#include <memory>
#include <vector>

#include "backends/backend.h"
#include "common/matrix.h"
#include "model/transformer.h"

namespace qsweep {

class ResidentModel {
 public:
  /// Uploads every weight of `model` (fp32) to `backend`'s memory. The backend must outlive
  /// this object. Throws Error (with the size asked for) when memory runs out.
  ResidentModel(Backend& backend, const Transformer& model);
  ~ResidentModel();
  ResidentModel(const ResidentModel&) = delete;
  ResidentModel& operator=(const ResidentModel&) = delete;

  const ModelSpec& spec() const { return spec_; }
  /// Logits [Σ lengths, vocab] of packed sequences (each starting at position 0), on the host.
  MatrixRM forward(const std::vector<std::vector<int>>& sequences);
  /// Per sequence s and position p < len − 1: −log P(s[p + 1] | s[0..p]), concatenated; the
  /// logits stay in backend memory (only the NLLs come back).
  std::vector<float> next_token_nll(const std::vector<std::vector<int>>& sequences);

 private:
  struct Weights;
  struct Hidden;
  void run(const std::vector<std::vector<int>>& sequences, Hidden& h);

  Backend& backend_;
  ModelSpec spec_;
  std::vector<float> inv_freq_;  ///< rope_inv_freq(spec_)
  MatrixRM embed_;               ///< the embedding table stays on the host: rows are gathered there
  std::unique_ptr<Weights> w_;
};

}  // namespace qsweep
