// MambaLM: mamba_ssm's MambaLMHeadModel (Mamba-1 mixer, no MLP), pre-norm residual stream in f32.
//
//   tokens (Bt, L) i64/i32 -> embedding (V_pad, d_model)
//   residual = none
//   for each layer: (hidden, residual) = add_norm(hidden, residual, layer.norm)   (kernels/norms/add_norm)
//                   hidden = layer.mixer(hidden)                                   (MambaBlock)
//   hidden = add_norm(hidden, residual, norm_f).y
//   logits = hidden lm_head^T  (lm_head = the embedding when tied)
// Logits cover the REAL vocabulary only: (Bt, L, vocab_size), not V_pad. The head multiplies by the first
// vocab_size rows of the (V_pad, d_model) weight (a contiguous view, no copy), so the pad rows never
// produce logits and get zero gradient from the loss.
//
// State-dict names are mamba_ssm's exactly:
//   backbone.embedding.weight (V_pad, d_model)
//   backbone.layers.{i}.mixer.{in_proj.weight, conv1d.weight, conv1d.bias, x_proj.weight, dt_proj.weight,
//                              dt_proj.bias, A_log, D, out_proj.weight}     (conv1d.weight is (Di, W) here)
//   backbone.layers.{i}.norm.weight (+ .bias for LayerNorm)
//   backbone.norm_f.weight (+ .bias)
//   lm_head.weight (V_pad, d_model), only when untied (tied: the embedding's weight, no separate parameter)
// V_pad = vocab_size rounded up to a multiple of pad_vocab_multiple.
// Init (mamba_ssm's _init_weights): embedding ~ N(0, 0.02); each mixer's out_proj.weight ~
// U(+-1/sqrt(Di)) / sqrt(n_layer) (rescale_prenorm_residual, one residual per layer); the rest as in
// MambaBlock; norms weight 1, bias 0; an untied lm_head as nn.Linear (U(+-1/sqrt(d_model))).
//
// Generation: new_cache(batch) -> zero states; prefill(prompt, cache) runs the parallel forward with state
// outputs (no graph) and returns the last position's logits (Bt, vocab_size); step(tokens (Bt), cache)
// advances one token with each block's recurrent step (constant memory per token) -> (Bt, vocab_size).
// prefill continues from the cache's states, so prefill(a); prefill(b) equals prefill(a ++ b).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "layers/language_model.h"
#include "layers/mamba/mamba_block.h"
#include "layers/module.h"
#include "layers/registry.h"

namespace ssm::nn {

class Embedding;
class Linear;
class ModuleList;

// The model's configuration; MambaLM::config() returns it resolved (dt_rank and vocab_padded filled).
struct MambaLMConfig {
  int64_t d_model = 768;
  int64_t n_layer = 24;
  int64_t vocab_size = 50277;
  int64_t pad_vocab_multiple = 8;
  int64_t vocab_padded = 0;  // resolved: vocab_size rounded up to a multiple of pad_vocab_multiple
  int64_t d_state = 16;
  int64_t d_conv = 4;
  int64_t expand = 2;
  int64_t dt_rank = 0;  // 0 = ceil(d_model / 16) (resolved)
  double dt_min = 1e-3;
  double dt_max = 1e-1;
  double dt_init_floor = 1e-4;
  std::string norm = "rms";  // "rms" | "layer"
  double norm_eps = 1e-5;
  bool tied = true;
  bool deterministic = false;

  int64_t d_inner() const { return expand * d_model; }
};

// Checks the values (BadInput "MambaLM: ...") and fills vocab_padded and dt_rank.
MambaLMConfig resolve_mamba_lm_config(MambaLMConfig c);
// The model's num_parameters() without building it.
int64_t mamba_lm_num_parameters(const MambaLMConfig& c);
// The registry's model "mamba_lm" (task "lm"); keys: preset, d_model, n_layer, vocab_size, ...
ModelSpec mamba_lm_spec();
// A MambaLMConfig from a resolved registry config (BadInput naming model.<key>).
MambaLMConfig mamba_lm_config_from(const ModelConfig& cfg);

// Per-layer recurrent states for generation (LanguageModel's RecurrentState).
struct MambaCache : RecurrentState {
  std::vector<MambaBlockState> layers;  // conv (Bt, d_conv-1, Di), ssm (Bt, Di, N) f32
  int64_t batch = 0;
};

class MambaLM : public LanguageModel {
 public:
  MambaLM(const MambaLMConfig& cfg, Generator& gen);

  // tokens (Bt, L) i64/i32; seq_idx (Bt, L) i32/i64 or undefined (packed documents) -> logits (Bt, L, V).
  Variable forward(const Tensor& tokens, const Tensor& seq_idx = Tensor());
  Variable forward(const Variable& tokens) override { return forward(tokens.data()); }

  MambaCache new_cache(int64_t batch) const;
  Tensor prefill(const Tensor& tokens, MambaCache& cache);  // (Bt, L) -> logits of the last position (Bt, V)
  Tensor step(const Tensor& tokens, MambaCache& cache);     // (Bt) -> logits (Bt, V)

  // LanguageModel. The logits' last dim is the real vocabulary (the head skips the pad rows), so
  // padded_vocab_size() == vocab_size(); the padded table size is config().vocab_padded.
  Variable logits(const Tensor& tokens, const Tensor& seq_idx) override { return forward(tokens, seq_idx); }
  // Training loss through ag::linear_cross_entropy: the (Bt L, V) logits are never formed whole.
  Variable loss(const Tensor& tokens, const Tensor& seq_idx, const Tensor& targets) override;
  int64_t vocab_size() const override { return cfg_.vocab_size; }
  int64_t padded_vocab_size() const override { return cfg_.vocab_size; }
  std::unique_ptr<RecurrentState> new_state(int64_t batch) override;  // a MambaCache
  Tensor prefill(const Tensor& tokens, RecurrentState& state) override;
  Tensor step(const Tensor& tokens, RecurrentState& state) override;

  const MambaLMConfig& config() const { return cfg_; }
  MambaBlock& mixer(size_t layer);

 private:
  struct NormRef {
    Variable* weight = nullptr;
    Variable* bias = nullptr;  // LayerNorm only
  };
  MambaLMConfig cfg_;
  std::shared_ptr<Module> backbone_;
  std::shared_ptr<Embedding> embedding_;
  std::shared_ptr<ModuleList> layers_;
  std::vector<std::shared_ptr<MambaBlock>> mixers_;
  std::vector<NormRef> norms_;
  NormRef norm_f_;
  std::shared_ptr<Linear> lm_head_;  // null when tied

  struct AddNormOut {
    Variable y, residual;
  };
  AddNormOut add_norm(const Variable& x, const Variable& residual, const NormRef& n) const;
  Variable head(const Variable& hidden);  // (..., d_model) -> (..., V)
  Variable head_weight() const;           // (V, d_model): the first vocab_size rows of the table
  Variable final_hidden(const Tensor& tokens, const Tensor& seq_idx);  // after norm_f: (Bt, L, d_model)
  // tokens validated ((Bt, L) or (Bt), i64 / i32, not empty) and on the model's device; BadInput naming `what`.
  Tensor checked_tokens(const Tensor& tokens, int64_t dims, const char* what) const;
  void check_cache(const MambaCache& cache, const Tensor& tokens, const char* what) const;
};

}  // namespace ssm::nn
