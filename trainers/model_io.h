// Models in and out of run directories, and the Hugging Face / mamba_ssm checkpoint formats.
//
// load_model(RUN_OR_CKPT): a run directory (its newest complete checkpoint) or a checkpoint folder;
// rebuilds the model from the name and resolved config stored in trainer_state.json and loads
// model.safetensors (strict: names, shapes, dtypes).
//
// export_model(..., "hf"): OUT/model.safetensors + OUT/config.json that transformers'
//   MambaForCausalLM.from_pretrained(OUT) loads as is. Names: backbone.embeddings.weight,
//   backbone.layers.{i}.norm.weight, backbone.layers.{i}.mixer.{in_proj,conv1d,x_proj,dt_proj,out_proj}
//   .weight (+ conv1d.bias, dt_proj.bias), .A_log, .D, backbone.norm_f.weight; the LM head is tied.
//   conv1d.weight is (d_inner, 1, d_conv) as PyTorch's Conv1d. HF's Mamba has RMSNorm and a tied
//   head only: a LayerNorm model or an untied head is refused (BadInput saying why).
// export_model(..., "mamba_ssm"): the same tensors under mamba_ssm's names (backbone.embedding.weight,
//   lm_head.weight always present, as MambaLMHeadModel's state dict has it) + mamba_ssm's config.json
//   (d_model, n_layer, vocab_size, rms_norm, tie_embeddings, ...). Load it with
//   MambaLMHeadModel(MambaConfig(**json.load(config))).load_state_dict(safetensors.torch.load_file(...)).
// import_model(DIR, OUT): reads either format (detected from config.json), checks every tensor
//   against the architecture the config describes, and writes a run directory OUT with
//   checkpoints/step-0/ that load_model, `ssm generate` and `ssm export` accept.
#pragma once
#include <filesystem>
#include <map>
#include <memory>
#include <ostream>
#include <string>

#include "core/device.h"
#include "layers/module.h"

namespace ssm::train {

struct LoadedModel {
  std::filesystem::path checkpoint;
  std::string name;                           // registry name, e.g. "mamba_lm"
  std::map<std::string, std::string> config;  // resolved model config
  std::shared_ptr<nn::Module> model;
};

// Checkpoint folder of a run directory (its newest complete one) or the folder itself.
std::filesystem::path resolve_checkpoint(const std::string& run_or_checkpoint);
LoadedModel load_model(const std::string& run_or_checkpoint, Device device);

void export_model(const std::string& run_or_checkpoint, const std::string& format, const std::string& out_dir,
                  std::ostream& log);
void import_model(const std::string& in_dir, const std::string& out_run_dir, std::ostream& log);

}  // namespace ssm::train
