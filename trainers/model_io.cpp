#include "trainers/model_io.h"

#include <fstream>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "layers/registry.h"
#include "trainers/atomic_file.h"
#include "trainers/checkpoint.h"
#include "trainers/safetensors.h"

namespace ssm::train {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The Mamba LM's architecture as its tensors (and stored config) describe it.
struct MambaArch {
  int64_t d_model = 0, n_layer = 0, padded_vocab = 0, vocab_size = 0, pad_multiple = 8;
  int64_t d_inner = 0, d_state = 0, d_conv = 0, dt_rank = 0;
  bool rms = true, tied = true;
  double eps = 1e-5;
};

const Tensor& need(const std::map<std::string, Tensor>& sd, const std::string& name, const std::string& source) {
  auto it = sd.find(name);
  SSM_CHECK_INPUT(it != sd.end(), source, ": tensor '", name, "' is missing");
  return it->second;
}

std::string get_or(const std::map<std::string, std::string>& cfg, const std::string& key, const std::string& dflt) {
  auto it = cfg.find(key);
  return it == cfg.end() ? dflt : it->second;
}

// From our (mamba_ssm-named) state dict.
MambaArch infer_arch(const std::map<std::string, Tensor>& sd, const std::map<std::string, std::string>& cfg,
                     const std::string& source) {
  MambaArch a;
  const Tensor& emb = need(sd, "backbone.embedding.weight", source);
  a.padded_vocab = emb.size(0);
  a.d_model = emb.size(1);
  while (sd.count(cat("backbone.layers.", a.n_layer, ".mixer.in_proj.weight"))) ++a.n_layer;
  SSM_CHECK_INPUT(a.n_layer > 0, source, ": no backbone.layers.0.mixer.in_proj.weight: not a Mamba LM");
  const std::string l0 = "backbone.layers.0.mixer.";
  a.d_inner = need(sd, l0 + "in_proj.weight", source).size(0) / 2;
  a.d_state = need(sd, l0 + "A_log", source).size(1);
  a.d_conv = need(sd, l0 + "conv1d.weight", source).size(-1);
  a.dt_rank = need(sd, l0 + "dt_proj.weight", source).size(1);
  a.rms = sd.count("backbone.norm_f.bias") == 0;
  a.tied = sd.count("lm_head.weight") == 0;
  a.eps = std::stod(get_or(cfg, "norm_eps", "1e-5"));
  a.vocab_size = std::stoll(get_or(cfg, "vocab_size", std::to_string(a.padded_vocab)));
  a.pad_multiple = std::stoll(get_or(cfg, "pad_vocab_multiple", "8"));
  return a;
}

std::map<std::string, std::string> arch_to_config(const MambaArch& a) {
  return {{"d_model", std::to_string(a.d_model)},
          {"n_layer", std::to_string(a.n_layer)},
          {"vocab_size", std::to_string(a.vocab_size)},
          {"pad_vocab_multiple", std::to_string(a.pad_multiple)},
          {"d_state", std::to_string(a.d_state)},
          {"d_conv", std::to_string(a.d_conv)},
          {"expand", std::to_string(a.d_inner / a.d_model)},
          {"dt_rank", std::to_string(a.dt_rank)},
          {"norm", a.rms ? "rms" : "layer"},
          {"norm_eps", cat(a.eps)},
          {"tied", a.tied ? "true" : "false"}};
}

void write_json(const fs::path& path, const json& j) { write_file_atomic(path.string(), j.dump(2) + "\n"); }

json read_json(const fs::path& path) {
  std::ifstream f(path);
  SSM_CHECK_INPUT(f.good(), path.string(), ": cannot open");
  try {
    return json::parse(f);
  } catch (const json::exception& e) {
    throw_input(cat(path.string(), ": not valid JSON: ", e.what()));
  }
}

// conv1d.weight: ours (Di, W) <-> PyTorch Conv1d's (Di, 1, W).
Tensor conv_to_torch(const Tensor& w) { return w.reshape({w.size(0), 1, w.size(1)}); }
Tensor conv_from_torch(const Tensor& w, const std::string& name, const std::string& source) {
  SSM_CHECK_INPUT(w.dim() == 3 && w.size(1) == 1, source, ": ", name, " has shape ", shape_str(w.shape()),
                  ", expected (d_inner, 1, d_conv)");
  return w.reshape({w.size(0), w.size(2)});
}

}  // namespace

fs::path resolve_checkpoint(const std::string& run_or_checkpoint) {
  const fs::path p(run_or_checkpoint);
  SSM_CHECK_INPUT(fs::exists(p), run_or_checkpoint, ": no such run directory or checkpoint");
  if (fs::exists(p / CheckpointFiles::trainer_state)) return p;
  auto latest = latest_checkpoint(p);
  SSM_CHECK_INPUT(latest.has_value(), run_or_checkpoint, ": neither a checkpoint folder (no ",
                  CheckpointFiles::trainer_state, ") nor a run directory with a complete checkpoint");
  return *latest;
}

LoadedModel load_model(const std::string& run_or_checkpoint, Device device) {
  LoadedModel m;
  m.checkpoint = resolve_checkpoint(run_or_checkpoint);
  Checkpoint ck = load_checkpoint(m.checkpoint);
  const std::string state_file = (m.checkpoint / CheckpointFiles::trainer_state).string();
  const json& st = ck.trainer_state;
  SSM_CHECK_INPUT(st.contains("model") && st["model"].is_string() && st.contains("model_config") &&
                      st["model_config"].is_object(),
                  state_file, ": no model name / model_config (written by an older ssm?)");
  m.name = st["model"].get<std::string>();
  m.config = st["model_config"].get<std::map<std::string, std::string>>();
  nn::ModelConfig mc("model");
  for (const auto& [k, v] : m.config) mc.set(k, v);
  Generator gen{0, 0};
  m.model = nn::build_model(m.name, mc, gen);
  m.model->load_state_dict(ck.model, (m.checkpoint / CheckpointFiles::model).string());
  m.model->to(device);
  m.model->eval();
  return m;
}

void export_model(const std::string& run_or_checkpoint, const std::string& format, const std::string& out_dir,
                  std::ostream& log) {
  SSM_CHECK_INPUT(format == "hf" || format == "mamba_ssm", "export: unknown --format '", format,
                  "' (known: hf, mamba_ssm)");
  const fs::path ckpt = resolve_checkpoint(run_or_checkpoint);
  Checkpoint ck = load_checkpoint(ckpt);
  const std::string source = (ckpt / CheckpointFiles::model).string();
  const std::string name = ck.trainer_state.value("model", std::string());
  SSM_CHECK_INPUT(name == "mamba_lm", ckpt.string(), ": model '", name,
                  "' cannot be exported (only mamba_lm has a Hugging Face / mamba_ssm format)");
  const auto cfg = ck.trainer_state.value("model_config", std::map<std::string, std::string>());
  const MambaArch a = infer_arch(ck.model, cfg, source);

  std::vector<std::pair<std::string, Tensor>> out;
  json config;
  if (format == "hf") {
    SSM_CHECK_INPUT(a.rms, ckpt.string(), ": the model uses LayerNorm, but Hugging Face's Mamba has RMSNorm only; ",
                    "export with --format mamba_ssm instead");
    SSM_CHECK_INPUT(a.tied, ckpt.string(), ": the model has an untied LM head, which this exporter does not write ",
                    "for Hugging Face's MambaForCausalLM (tied embeddings); use --format mamba_ssm");
    for (const auto& [k, t] : ck.model) {
      std::string n = k;
      if (n == "backbone.embedding.weight") n = "backbone.embeddings.weight";
      out.emplace_back(n, n.ends_with(".mixer.conv1d.weight") ? conv_to_torch(t) : t);
    }
    config = {{"architectures", {"MambaForCausalLM"}},
              {"model_type", "mamba"},
              {"vocab_size", a.padded_vocab},
              {"hidden_size", a.d_model},
              {"intermediate_size", a.d_inner},
              {"state_size", a.d_state},
              {"num_hidden_layers", a.n_layer},
              {"layer_norm_epsilon", a.eps},
              {"expand", a.d_inner / a.d_model},
              {"conv_kernel", a.d_conv},
              {"use_bias", false},
              {"use_conv_bias", true},
              {"hidden_act", "silu"},
              {"residual_in_fp32", true},
              {"time_step_rank", a.dt_rank},
              {"time_step_scale", 1.0},
              {"time_step_min", std::stod(get_or(cfg, "dt_min", "0.001"))},
              {"time_step_max", std::stod(get_or(cfg, "dt_max", "0.1"))},
              {"time_step_floor", std::stod(get_or(cfg, "dt_init_floor", "0.0001"))},
              {"time_step_init_scheme", "random"},
              {"rescale_prenorm_residual", false},
              {"tie_word_embeddings", true},
              {"pad_token_id", 0},
              {"bos_token_id", 0},
              {"eos_token_id", 0},
              {"use_cache", true},
              {"torch_dtype", "float32"},
              // Not read by transformers (extra keys are kept as attributes); lets `ssm import` restore
              // the real vocabulary behind the padded one.
              {"ssm_vocab_size", a.vocab_size},
              {"ssm_pad_vocab_multiple", a.pad_multiple}};
  } else {
    for (const auto& [k, t] : ck.model)
      out.emplace_back(k, k.ends_with(".mixer.conv1d.weight") ? conv_to_torch(t) : t);
    if (a.tied) out.emplace_back("lm_head.weight", ck.model.at("backbone.embedding.weight"));
    config = {{"d_model", a.d_model},
              {"d_intermediate", 0},
              {"n_layer", a.n_layer},
              {"vocab_size", a.vocab_size},
              {"ssm_cfg", {{"layer", "Mamba1"}, {"d_state", a.d_state}, {"d_conv", a.d_conv},
                           {"expand", a.d_inner / a.d_model}, {"dt_rank", a.dt_rank}}},
              {"attn_layer_idx", json::array()},
              {"attn_cfg", json::object()},
              {"rms_norm", a.rms},
              {"residual_in_fp32", true},
              {"fused_add_norm", true},
              {"pad_vocab_size_multiple", a.pad_multiple},
              {"tie_embeddings", a.tied}};
  }
  fs::create_directories(out_dir);
  save_safetensors((fs::path(out_dir) / "model.safetensors").string(), out, {{"format", "pt"}});
  write_json(fs::path(out_dir) / "config.json", config);
  log << "exported " << ckpt.string() << " (" << a.n_layer << " layers, d_model " << a.d_model << ", vocab "
      << a.padded_vocab << ") to " << out_dir << " in " << (format == "hf" ? "Hugging Face" : "mamba_ssm")
      << " format\n";
}

void import_model(const std::string& in_dir, const std::string& out_run_dir, std::ostream& log) {
  const fs::path dir(in_dir);
  const fs::path cfg_path = dir / "config.json", st_path = dir / "model.safetensors";
  SSM_CHECK_INPUT(fs::exists(cfg_path), in_dir, ": no config.json");
  SSM_CHECK_INPUT(fs::exists(st_path), in_dir, ": no model.safetensors (other weight formats are not read)");
  const json config = read_json(cfg_path);
  SafetensorsContents st = load_safetensors(st_path.string());
  const std::string source = st_path.string();
  const bool hf = config.value("model_type", std::string()) == "mamba";
  SSM_CHECK_INPUT(hf || config.contains("d_model"), cfg_path.string(),
                  ": neither a Hugging Face Mamba config (model_type: mamba) nor a mamba_ssm one (d_model)");
  bool tied;
  std::map<std::string, std::string> mc;
  std::map<std::string, Tensor> sd;
  for (auto& [k, t] : st.tensors) {
    std::string n = k;
    if (hf && n == "backbone.embeddings.weight") n = "backbone.embedding.weight";
    Tensor v = t.dtype() == DType::f32 ? t : t.to(DType::f32);
    if (n.ends_with(".mixer.conv1d.weight")) v = conv_from_torch(v, k, source);
    sd[n] = v.contiguous();
  }
  try {
    if (hf) {
      tied = config.value("tie_word_embeddings", true);
      const int64_t padded = config.at("vocab_size").get<int64_t>();
      mc["vocab_size"] = std::to_string(config.value("ssm_vocab_size", padded));
      mc["pad_vocab_multiple"] = std::to_string(config.value("ssm_pad_vocab_multiple", int64_t(1)));
      mc["norm_eps"] = cat(config.value("layer_norm_epsilon", 1e-5));
      mc["norm"] = "rms";
    } else {
      tied = config.value("tie_embeddings", true);
      mc["vocab_size"] = std::to_string(config.at("vocab_size").get<int64_t>());
      mc["pad_vocab_multiple"] = std::to_string(config.value("pad_vocab_size_multiple", int64_t(8)));
      mc["norm"] = config.value("rms_norm", true) ? "rms" : "layer";
      mc["norm_eps"] = "1e-05";
    }
  } catch (const json::exception& e) {
    throw_input(cat(cfg_path.string(), ": ", e.what()));
  }
  if (tied) sd.erase("lm_head.weight");
  MambaArch a = infer_arch(sd, mc, source);
  mc = arch_to_config(a);
  mc["tied"] = tied ? "true" : "false";

  nn::ModelConfig cfg("model");
  for (const auto& [k, v] : mc) cfg.set(k, v);
  Generator gen{0, 0};
  auto model = nn::build_model("mamba_lm", cfg, gen);
  model->load_state_dict(sd, source);  // strict: every name, shape and dtype checked

  std::ostringstream recipe;
  recipe << "# imported from " << in_dir << " (" << (hf ? "Hugging Face" : "mamba_ssm") << " format)\nmodel:\n"
         << "  name: mamba_lm\n";
  for (const auto& [k, v] : mc) recipe << "  " << k << ": " << v << "\n";
  json state = {{"step", 0},
                {"model", "mamba_lm"},
                {"model_config", mc},
                {"recipe", recipe.str()},
                {"world_size", 1},
                {"imported_from", fs::absolute(dir).string()}};
  const fs::path ck = save_checkpoint(out_run_dir, 0, model->state_dict(), {}, state);
  log << "imported " << in_dir << " (" << (hf ? "Hugging Face" : "mamba_ssm") << ", " << a.n_layer
      << " layers, d_model " << a.d_model << ") to " << ck.string() << "\n";
}

}  // namespace ssm::train
