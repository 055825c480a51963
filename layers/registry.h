// Model factory: build a model by name from a flat key -> value config (the recipe's `model:` section).
//
//   ModelConfig cfg;                      // messages call keys "model.<key>"
//   cfg.set("d_model", "128");           // values as the YAML gave them (strings) or typed
//   cfg.set("d_input", int64_t(1));
//   auto model = build_model("s4d_classifier", cfg, gen);   // BadInput on unknown/ill-typed keys
//
// Every model declares its keys with defaults (or as required); build_model rejects keys the model
// does not know, naming them, and getters reject values of the wrong type, naming key and value.
// The key "name" is reserved for the caller (the recipe's model name) and ignored here.
// Classifier models take (B, L, d_input) and return logits (B, n_classes) through Module::forward.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/ops.h"
#include "layers/module.h"

namespace ssm::nn {

class ModelConfig {
 public:
  explicit ModelConfig(std::string prefix = "model") : prefix_(std::move(prefix)) {}

  void set(const std::string& key, const std::string& value) { values_[key] = value; }
  void set(const std::string& key, const char* value) { values_[key] = value; }
  void set(const std::string& key, int64_t value) { values_[key] = std::to_string(value); }
  void set(const std::string& key, int value) { set(key, int64_t(value)); }
  void set(const std::string& key, double value);
  void set(const std::string& key, bool value) { values_[key] = value ? "true" : "false"; }

  bool has(const std::string& key) const { return values_.count(key) > 0; }
  const std::map<std::string, std::string>& values() const { return values_; }
  const std::string& prefix() const { return prefix_; }

  // Typed getters. Without a default the key is required. BadInput: "model.d_model: expected an
  // integer, got 'abc'"; "model.d_input: required key missing".
  int64_t get_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_double(const std::string& key) const;
  double get_double(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key) const;  // true/false, yes/no, on/off, 1/0 (any case)
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;

  std::string full_key(const std::string& key) const { return prefix_.empty() ? key : prefix_ + "." + key; }

 private:
  std::string prefix_;
  std::map<std::string, std::string> values_;
  const std::string& raw(const std::string& key) const;
};

struct ModelKey {
  std::string name;
  std::optional<std::string> default_value;  // nullopt: required
  std::string help;
};

struct ModelSpec {
  std::string name;
  std::string help;
  // What forward computes, for the trainer: "classifier" = (B, L, d_input) -> logits (B, n_classes),
  // with keys d_input and n_classes (the trainer may fill them from the dataset).
  std::string task;
  std::vector<ModelKey> keys;
  std::function<std::shared_ptr<Module>(const ModelConfig&, Generator&)> build;
};

// Adds (or replaces) a model. The built-in models are registered on first use of the registry.
void register_model(ModelSpec spec);
std::vector<std::string> model_names();
const ModelSpec& model_spec(const std::string& name);  // BadInput naming the known models

// cfg with every unset key filled from the model's defaults (for the resolved recipe); checks keys.
ModelConfig resolve_model_config(const std::string& name, const ModelConfig& cfg);
std::shared_ptr<Module> build_model(const std::string& name, const ModelConfig& cfg, Generator& gen);

}  // namespace ssm::nn
