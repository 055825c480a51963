#include "layers/models/mamba_lm.h"

#include <cmath>
#include <optional>

#include "autograd/functions.h"
#include "kernels/norms/add_norm.h"
#include "layers/containers.h"
#include "layers/embedding.h"
#include "layers/linear.h"
#include "layers/norm.h"

namespace ssm::nn {

namespace {

// A module that only holds named children (backbone, backbone.layers.{i}).
class Holder : public Module {
 public:
  using Module::register_module;
};

}  // namespace

// ---------------- configuration ----------------

MambaLMConfig resolve_mamba_lm_config(MambaLMConfig c) {
  SSM_CHECK_INPUT(c.d_model > 0, "MambaLM: d_model must be positive, got ", c.d_model);
  SSM_CHECK_INPUT(c.n_layer >= 0, "MambaLM: n_layer must be >= 0, got ", c.n_layer);
  SSM_CHECK_INPUT(c.vocab_size > 0, "MambaLM: vocab_size must be positive, got ", c.vocab_size);
  SSM_CHECK_INPUT(c.pad_vocab_multiple >= 1, "MambaLM: pad_vocab_multiple must be >= 1, got ", c.pad_vocab_multiple);
  SSM_CHECK_INPUT(c.norm == "rms" || c.norm == "layer", "MambaLM: norm must be \"rms\" or \"layer\", got '", c.norm,
                  "'");
  SSM_CHECK_INPUT(c.norm_eps >= 0, "MambaLM: norm_eps must be >= 0, got ", c.norm_eps);
  SSM_CHECK_INPUT(c.dt_rank >= 0, "MambaLM: dt_rank must be >= 1 (or 0 for ceil(d_model / 16)), got ", c.dt_rank);
  c.vocab_padded = (c.vocab_size + c.pad_vocab_multiple - 1) / c.pad_vocab_multiple * c.pad_vocab_multiple;
  if (c.dt_rank == 0) c.dt_rank = (c.d_model + 15) / 16;
  return c;
}

int64_t mamba_lm_num_parameters(const MambaLMConfig& cfg) {
  const MambaLMConfig c = resolve_mamba_lm_config(cfg);
  const int64_t dm = c.d_model, Di = c.d_inner(), R = c.dt_rank, N = c.d_state, W = c.d_conv;
  const int64_t norm = c.norm == "layer" ? 2 * dm : dm;
  const int64_t mixer = 2 * Di * dm               // in_proj
                        + Di * W + Di             // conv1d
                        + (R + 2 * N) * Di        // x_proj
                        + Di * R + Di             // dt_proj
                        + Di * N + Di             // A_log, D
                        + dm * Di;                // out_proj
  return c.vocab_padded * dm * (c.tied ? 1 : 2) + c.n_layer * (mixer + norm) + norm;
}

namespace {

struct Preset {
  const char* name;
  int64_t d_model, n_layer;
};
constexpr Preset kPresets[] = {{"130m", 768, 24}, {"370m", 1024, 48}, {"790m", 1536, 48}, {"1.4b", 2048, 48},
                               {"2.8b", 2560, 64}};

// "auto" (or empty) means: from the preset / the default rule.
bool is_auto(const ModelConfig& c, const std::string& key) {
  if (!c.has(key)) return true;
  std::string v = c.get_string(key);
  return v == "auto" || v.empty();
}

}  // namespace

MambaLMConfig mamba_lm_config_from(const ModelConfig& c) {
  MambaLMConfig o;
  const std::string preset = c.get_string("preset", "none");
  const Preset* p = nullptr;
  std::string known = "none";
  for (const Preset& q : kPresets) {
    known += std::string(", ") + q.name;
    if (preset == q.name) p = &q;
  }
  SSM_CHECK_INPUT(p || preset == "none", c.full_key("preset"), ": unknown preset '", preset, "' (known: ", known, ")");
  for (const char* key : {"d_model", "n_layer"}) {
    SSM_CHECK_INPUT(p || !is_auto(c, key), c.full_key(key), ": required (or set ", c.full_key("preset"), " to one of ",
                    known.substr(6), ")");
  }
  o.d_model = is_auto(c, "d_model") ? p->d_model : c.get_int("d_model");
  o.n_layer = is_auto(c, "n_layer") ? p->n_layer : c.get_int("n_layer");
  o.vocab_size = c.get_int("vocab_size", o.vocab_size);
  o.pad_vocab_multiple = c.get_int("pad_vocab_multiple", o.pad_vocab_multiple);
  o.d_state = c.get_int("d_state", o.d_state);
  o.d_conv = c.get_int("d_conv", o.d_conv);
  o.expand = c.get_int("expand", o.expand);
  o.dt_rank = is_auto(c, "dt_rank") ? 0 : c.get_int("dt_rank");
  o.dt_min = c.get_double("dt_min", o.dt_min);
  o.dt_max = c.get_double("dt_max", o.dt_max);
  o.dt_init_floor = c.get_double("dt_init_floor", o.dt_init_floor);
  o.norm = c.get_string("norm", o.norm);
  o.norm_eps = c.get_double("norm_eps", o.norm_eps);
  o.tied = c.get_bool("tied", o.tied);
  o.deterministic = c.get_bool("deterministic", o.deterministic);

  auto pos = [&](const char* key, int64_t v) {
    SSM_CHECK_INPUT(v > 0, c.full_key(key), ": must be positive, got ", v);
  };
  pos("d_model", o.d_model);
  SSM_CHECK_INPUT(o.n_layer >= 0, c.full_key("n_layer"), ": must be >= 0, got ", o.n_layer);
  pos("vocab_size", o.vocab_size);
  pos("pad_vocab_multiple", o.pad_vocab_multiple);
  pos("expand", o.expand);
  SSM_CHECK_INPUT(o.d_state >= 1 && o.d_state <= 256, c.full_key("d_state"), ": must be in 1..256, got ", o.d_state);
  SSM_CHECK_INPUT(o.d_conv >= 2 && o.d_conv <= 4, c.full_key("d_conv"),
                  ": must be in 2..4 (the causal conv kernel's widths), got ", o.d_conv);
  SSM_CHECK_INPUT(o.dt_rank >= 0, c.full_key("dt_rank"), ": must be positive or \"auto\", got ", o.dt_rank);
  if (!is_auto(c, "dt_rank")) pos("dt_rank", o.dt_rank);
  SSM_CHECK_INPUT(o.dt_min > 0 && o.dt_max >= o.dt_min, c.full_key("dt_min"), "/", c.full_key("dt_max"),
                  ": need 0 < dt_min <= dt_max, got ", o.dt_min, " and ", o.dt_max);
  SSM_CHECK_INPUT(o.dt_init_floor >= 0, c.full_key("dt_init_floor"), ": must be >= 0, got ", o.dt_init_floor);
  SSM_CHECK_INPUT(o.norm == "rms" || o.norm == "layer", c.full_key("norm"), ": expected \"rms\" or \"layer\", got '",
                  o.norm, "'");
  SSM_CHECK_INPUT(o.norm_eps >= 0, c.full_key("norm_eps"), ": must be >= 0, got ", o.norm_eps);
  return resolve_mamba_lm_config(o);
}

ModelSpec mamba_lm_spec() {
  return ModelSpec{
      "mamba_lm",
      "Mamba-1 language model (mamba_ssm's MambaLMHeadModel): embedding, pre-norm Mamba blocks with a fused "
      "add+norm residual stream in f32, final norm, (tied) LM head",
      "lm",
      {
          {"preset", "none", "size preset: none, 130m (768x24), 370m (1024x48), 790m (1536x48), 1.4b (2048x48), "
                             "2.8b (2560x64); explicit d_model / n_layer win"},
          {"d_model", "auto", "model width (auto: from the preset)"},
          {"n_layer", "auto", "number of Mamba blocks (auto: from the preset)"},
          {"vocab_size", "50277", "vocabulary size (GPT-NeoX tokenizer: 50277)"},
          {"pad_vocab_multiple", "8", "the embedding / head rows are padded to a multiple of this"},
          {"d_state", "16", "SSM state size N"},
          {"d_conv", "4", "causal conv width (2..4)"},
          {"expand", "2", "inner width = expand * d_model"},
          {"dt_rank", "auto", "rank of the dt projection (auto: ceil(d_model / 16))"},
          {"dt_min", "0.001", "smallest initial dt"},
          {"dt_max", "0.1", "largest initial dt"},
          {"dt_init_floor", "0.0001", "floor of the initial dt"},
          {"norm", "rms", "rms (RMSNorm) or layer (LayerNorm)"},
          {"norm_eps", "1e-5", "norm epsilon"},
          {"tied", "true", "tie the LM head to the embedding"},
          {"deterministic", "false", "deterministic selective-scan backward (no atomics)"},
      },
      [](const ModelConfig& c, Generator& gen) -> std::shared_ptr<Module> {
        return std::make_shared<MambaLM>(mamba_lm_config_from(c), gen);
      }};
}

// ---------------- model ----------------

MambaLM::MambaLM(const MambaLMConfig& cfg, Generator& gen) : cfg_(resolve_mamba_lm_config(cfg)) {
  const MambaLMConfig& c = cfg_;
  MambaOptions mo;
  mo.d_state = c.d_state;
  mo.d_conv = c.d_conv;
  mo.expand = c.expand;
  mo.dt_rank = c.dt_rank;
  mo.dt_min = c.dt_min;
  mo.dt_max = c.dt_max;
  mo.dt_init_floor = c.dt_init_floor;
  mo.deterministic = c.deterministic;

  auto make_norm = [&](Holder& parent, const std::string& name) {
    NormRef ref;
    if (c.norm == "rms") {
      auto n = parent.register_module(name, std::make_shared<RMSNorm>(c.d_model, c.norm_eps));
      ref.weight = &n->weight();
    } else {
      auto n = parent.register_module(name, std::make_shared<LayerNorm>(c.d_model, c.norm_eps));
      ref.weight = &n->weight();
      ref.bias = &n->bias();
    }
    return ref;
  };

  auto backbone = std::make_shared<Holder>();
  backbone_ = register_module("backbone", std::static_pointer_cast<Module>(backbone));
  embedding_ = backbone->register_module("embedding", std::make_shared<Embedding>(c.vocab_padded, c.d_model, gen));
  embedding_->weight().data().copy_(mul(embedding_->weight().data(), 0.02));  // N(0, 1) -> N(0, 0.02^2)
  layers_ = backbone->register_module("layers", std::make_shared<ModuleList>());
  for (int64_t i = 0; i < c.n_layer; ++i) {
    auto layer = std::make_shared<Holder>();
    auto mixer = layer->register_module("mixer", std::make_shared<MambaBlock>(c.d_model, mo, gen));
    // rescale_prenorm_residual: out_proj ~ kaiming-uniform (as drawn), divided by sqrt(n_layer).
    Tensor& w = mixer->out_proj().weight().data();
    w.copy_(mul(w, 1.0 / std::sqrt(double(c.n_layer))));
    norms_.push_back(make_norm(*layer, "norm"));
    mixers_.push_back(mixer);
    layers_->push_back(layer);
  }
  norm_f_ = make_norm(*backbone, "norm_f");
  if (!c.tied) lm_head_ = register_module("lm_head", std::make_shared<Linear>(c.d_model, c.vocab_padded, false, gen));
}

MambaBlock& MambaLM::mixer(size_t layer) {
  SSM_CHECK_INPUT(layer < mixers_.size(), "MambaLM::mixer: layer ", layer, " out of range (n_layer ",
                  mixers_.size(), ")");
  return *mixers_[layer];
}

MambaLM::AddNormOut MambaLM::add_norm(const Variable& x, const Variable& residual, const NormRef& n) const {
  // Under autocast the normalised activations go to the next matmul in bf16 (the residual stays f32).
  std::optional<DType> out;
  if (ag::autocast_enabled() && x.device().is_cuda()) out = DType::bf16;
  kernels::AddNormResult r = kernels::add_norm(x, residual, *n.weight, n.bias ? *n.bias : Variable(), cfg_.norm_eps,
                                               cfg_.norm == "rms", out);
  return {r.y, r.residual};
}

// logits = hidden W[:V]^T (W: the embedding when tied, else lm_head.weight), Linear's autocast rule.
Variable MambaLM::head_weight() const {
  const Variable& w_full = lm_head_ ? lm_head_->weight() : embedding_->weight();
  const int64_t V = cfg_.vocab_size;
  return V == cfg_.vocab_padded ? w_full : ag::narrow(w_full, 0, 0, V);  // first V rows: contiguous
}

Variable MambaLM::loss(const Tensor& tokens, const Tensor& seq_idx, const Tensor& targets) {
  Variable h = final_hidden(tokens, seq_idx);
  const int64_t dm = cfg_.d_model;
  SSM_CHECK_INPUT(targets.numel() * dm == h.numel(), "MambaLM::loss: targets ", shape_str(targets.shape()),
                  " do not match tokens ", shape_str(tokens.shape()));
  Variable h2 = ag::reshape(h, {h.numel() / dm, dm});
  // Targets in the padding rows would meet a -inf logit (an infinite loss): refuse them by name while they
  // are still on the host (the loader's batches are).
  if (targets.device().is_cpu() && cfg_.vocab_size < cfg_.vocab_padded) {
    const std::vector<int64_t> t = targets.to_int_vector();
    for (size_t i = 0; i < t.size(); ++i)
      SSM_CHECK_INPUT(t[i] < cfg_.vocab_size || t[i] >= cfg_.vocab_padded, "MambaLM::loss: target ", t[i],
                      " at position ", i, " is a padding row of the vocabulary (vocab_size ", cfg_.vocab_size, ")");
  }
  // All vocab_padded rows (aligned matmuls); the padding rows are excluded from the softmax.
  // Under autocast the head's products run in bf16 on a copy of w made inside; w's gradient arrives in f32.
  const Variable& w = lm_head_ ? lm_head_->weight() : embedding_->weight();
  if (ag::autocast_enabled() && h.device().is_cuda() && h2.dtype() == DType::f32) h2 = ag::cast(h2, DType::bf16);
  return ag::linear_cross_entropy(h2, w, targets.reshape({targets.numel()}).to(h.device(), DType::i64), 4096,
                                  cfg_.vocab_size);
}

Variable MambaLM::head(const Variable& hidden) { return autocast_linear(hidden, head_weight(), false); }

Tensor MambaLM::checked_tokens(const Tensor& tokens, int64_t dims, const char* what) const {
  SSM_CHECK_INPUT(tokens.defined() && tokens.dim() == dims, "MambaLM::", what, ": expected tokens ",
                  dims == 2 ? "(Bt, L)" : "(Bt)", ", got ",
                  tokens.defined() ? shape_str(tokens.shape()) : std::string("undefined"));
  SSM_CHECK_INPUT(tokens.dtype() == DType::i64 || tokens.dtype() == DType::i32, "MambaLM::", what,
                  ": tokens must be i64 or i32, got ", dtype_name(tokens.dtype()));
  SSM_CHECK_INPUT(tokens.numel() > 0, "MambaLM::", what, ": no tokens (shape ", shape_str(tokens.shape()), ")");
  const Device dev = embedding_->weight().device();
  return tokens.device() == dev ? tokens : tokens.to(dev);
}

void MambaLM::check_cache(const MambaCache& cache, const Tensor& tokens, const char* what) const {
  SSM_CHECK_INPUT(cache.batch == tokens.size(0) && cache.layers.size() == mixers_.size(), "MambaLM::", what,
                  ": the cache holds ", cache.batch, " rows and ", cache.layers.size(), " layers but tokens are ",
                  shape_str(tokens.shape()), " for ", mixers_.size(), " layers; use new_cache(", tokens.size(0), ")");
}

Variable MambaLM::forward(const Tensor& tokens, const Tensor& seq_idx) {
  return head(final_hidden(tokens, seq_idx));
}

Variable MambaLM::final_hidden(const Tensor& tokens_in, const Tensor& seq_idx) {
  const Tensor tokens = checked_tokens(tokens_in, 2, "forward");
  const Device dev = tokens.device();
  Tensor sidx;
  if (seq_idx.defined()) {
    SSM_CHECK_INPUT(seq_idx.shape() == tokens.shape(), "MambaLM::forward: seq_idx ", shape_str(seq_idx.shape()),
                    " must match tokens ", shape_str(tokens.shape()));
    sidx = seq_idx.to(dev, DType::i32);  // once for all layers
  }
  Variable hidden = embedding_->forward(tokens), residual;
  for (size_t i = 0; i < mixers_.size(); ++i) {
    AddNormOut an = add_norm(hidden, residual, norms_[i]);
    residual = an.residual;
    hidden = mixers_[i]->forward(an.y, sidx);
  }
  return add_norm(hidden, residual, norm_f_).y;
}

MambaCache MambaLM::new_cache(int64_t batch) const {
  SSM_CHECK_INPUT(batch > 0, "MambaLM::new_cache: batch must be positive, got ", batch);
  MambaCache cache;
  cache.batch = batch;
  for (const auto& m : mixers_) cache.layers.push_back(m->initial_state(batch));
  return cache;
}

std::unique_ptr<RecurrentState> MambaLM::new_state(int64_t batch) {
  return std::make_unique<MambaCache>(new_cache(batch));
}

namespace {
MambaCache& as_cache(RecurrentState& s, const char* what) {
  auto* c = dynamic_cast<MambaCache*>(&s);
  SSM_CHECK_INPUT(c != nullptr, "MambaLM::", what, ": the state is not a MambaCache (use MambaLM::new_state)");
  return *c;
}
}  // namespace

Tensor MambaLM::prefill(const Tensor& tokens, RecurrentState& state) {
  return prefill(tokens, as_cache(state, "prefill"));
}

Tensor MambaLM::step(const Tensor& tokens, RecurrentState& state) { return step(tokens, as_cache(state, "step")); }

Tensor MambaLM::prefill(const Tensor& tokens_in, MambaCache& cache) {
  const Tensor tokens = checked_tokens(tokens_in, 2, "prefill");
  check_cache(cache, tokens, "prefill");
  ag::NoGradGuard no_grad;
  const int64_t L = tokens.size(1);
  Variable hidden = embedding_->forward(tokens), residual;
  for (size_t i = 0; i < mixers_.size(); ++i) {
    AddNormOut an = add_norm(hidden, residual, norms_[i]);
    residual = an.residual;
    hidden = mixers_[i]->forward(an.y, Tensor(), cache.layers[i]);
  }
  // Only the last position goes through norm_f and the head.
  Variable h_last = ag::narrow(hidden, 1, L - 1, 1);
  Variable r_last = residual.defined() ? ag::narrow(residual, 1, L - 1, 1) : Variable();
  Variable logits = head(add_norm(h_last, r_last, norm_f_).y);  // (Bt, 1, V)
  return logits.data().reshape({tokens.size(0), cfg_.vocab_size});
}

Tensor MambaLM::step(const Tensor& tokens_in, MambaCache& cache) {
  const Tensor tokens = checked_tokens(tokens_in, 1, "step");
  check_cache(cache, tokens, "step");
  ag::NoGradGuard no_grad;
  Variable hidden = embedding_->forward(tokens), residual;  // (Bt, d_model)
  for (size_t i = 0; i < mixers_.size(); ++i) {
    AddNormOut an = add_norm(hidden, residual, norms_[i]);
    residual = an.residual;
    hidden = Variable(mixers_[i]->step(an.y.data(), cache.layers[i]));
  }
  return head(add_norm(hidden, residual, norm_f_).y).data();
}

}  // namespace ssm::nn
