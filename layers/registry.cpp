#include "layers/registry.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <mutex>

#include "layers/models/mamba_lm.h"
#include "layers/models/s4_classifier.h"

namespace ssm::nn {

// ---------------- ModelConfig ----------------

void ModelConfig::set(const std::string& key, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", value);
  values_[key] = buf;
}

const std::string& ModelConfig::raw(const std::string& key) const {
  auto it = values_.find(key);
  SSM_CHECK_INPUT(it != values_.end(), full_key(key), ": required key missing");
  return it->second;
}

namespace {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

std::optional<double> parse_double(const std::string& s) {
  std::string t = trim(s);
  if (t.empty()) return std::nullopt;
  const char* first = t.data() + (t[0] == '+' ? 1 : 0);
  double v = 0;
  auto [ptr, ec] = std::from_chars(first, t.data() + t.size(), v);
  if (ec != std::errc() || ptr != t.data() + t.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

}  // namespace

int64_t ModelConfig::get_int(const std::string& key) const {
  const std::string& s = raw(key);
  std::string t = trim(s);
  int64_t v = 0;
  const char* first = t.data() + (!t.empty() && t[0] == '+' ? 1 : 0);
  auto [ptr, ec] = std::from_chars(first, t.data() + t.size(), v);
  if (!t.empty() && ec == std::errc() && ptr == t.data() + t.size()) return v;
  auto d = parse_double(t);  // "1e3", "64.0"
  if (d && *d == std::floor(*d) && std::fabs(*d) < 9.0e15) return int64_t(*d);
  throw_input(cat(full_key(key), ": expected an integer, got '", s, "'"));
}

int64_t ModelConfig::get_int(const std::string& key, int64_t fallback) const {
  return has(key) ? get_int(key) : fallback;
}

double ModelConfig::get_double(const std::string& key) const {
  const std::string& s = raw(key);
  auto d = parse_double(s);
  SSM_CHECK_INPUT(d.has_value(), full_key(key), ": expected a number, got '", s, "'");
  return *d;
}

double ModelConfig::get_double(const std::string& key, double fallback) const {
  return has(key) ? get_double(key) : fallback;
}

bool ModelConfig::get_bool(const std::string& key) const {
  const std::string& s = raw(key);
  std::string t = trim(s);
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  if (t == "true" || t == "yes" || t == "on" || t == "1") return true;
  if (t == "false" || t == "no" || t == "off" || t == "0") return false;
  throw_input(cat(full_key(key), ": expected true or false, got '", s, "'"));
}

bool ModelConfig::get_bool(const std::string& key, bool fallback) const {
  return has(key) ? get_bool(key) : fallback;
}

std::string ModelConfig::get_string(const std::string& key) const { return raw(key); }

std::string ModelConfig::get_string(const std::string& key, const std::string& fallback) const {
  return has(key) ? raw(key) : fallback;
}

// ---------------- registry ----------------

namespace {

std::shared_ptr<Module> build_s4d_classifier(const ModelConfig& c, Generator& gen) {
  S4ClassifierOptions o;
  o.d_input = c.get_int("d_input");
  o.n_classes = c.get_int("n_classes");
  o.d_model = c.get_int("d_model");
  o.n_layers = c.get_int("n_layers");
  o.dropout = c.get_double("dropout");
  o.prenorm = c.get_bool("prenorm");
  o.pool = c.get_string("pool");
  o.s4d.d_state = c.get_int("d_state");
  o.s4d.init = c.get_string("init");
  o.s4d.dt_min = c.get_double("dt_min");
  o.s4d.dt_max = c.get_double("dt_max");
  o.s4d.bidirectional = c.get_bool("bidirectional");
  SSM_CHECK_INPUT(o.d_input > 0, c.full_key("d_input"), ": must be positive, got ", o.d_input);
  SSM_CHECK_INPUT(o.n_classes > 0, c.full_key("n_classes"), ": must be positive, got ", o.n_classes);
  SSM_CHECK_INPUT(o.d_model > 0, c.full_key("d_model"), ": must be positive, got ", o.d_model);
  SSM_CHECK_INPUT(o.n_layers >= 0, c.full_key("n_layers"), ": must be >= 0, got ", o.n_layers);
  SSM_CHECK_INPUT(o.dropout >= 0 && o.dropout < 1, c.full_key("dropout"), ": must be in [0, 1), got ", o.dropout);
  SSM_CHECK_INPUT(o.pool == "mean" || o.pool == "last", c.full_key("pool"), ": expected \"mean\" or \"last\", got '",
                  o.pool, "'");
  SSM_CHECK_INPUT(o.s4d.d_state >= 2 && o.s4d.d_state % 2 == 0, c.full_key("d_state"),
                  ": must be even and >= 2, got ", o.s4d.d_state);
  SSM_CHECK_INPUT(o.s4d.init == "inv" || o.s4d.init == "lin", c.full_key("init"),
                  ": expected \"inv\" or \"lin\", got '", o.s4d.init, "'");
  SSM_CHECK_INPUT(o.s4d.dt_min > 0 && o.s4d.dt_max >= o.s4d.dt_min, c.full_key("dt_min"), "/", c.full_key("dt_max"),
                  ": need 0 < dt_min <= dt_max, got ", o.s4d.dt_min, " and ", o.s4d.dt_max);
  return std::make_shared<S4Classifier>(o, gen);
}

ModelSpec s4d_classifier_spec() {
  return ModelSpec{
      "s4d_classifier",
      "S4D sequence classifier: Linear encoder, pre-norm S4D blocks, LayerNorm, pooling, Linear decoder",
      "classifier",
      {
          {"d_input", std::nullopt, "input features per step"},
          {"n_classes", std::nullopt, "number of classes"},
          {"d_model", "64", "model width H"},
          {"n_layers", "4", "number of S4D blocks"},
          {"d_state", "64", "state size N (N/2 complex modes)"},
          {"dropout", "0.0", "dropout in the blocks"},
          {"prenorm", "true", "pre-norm (true) or post-norm (false) residual blocks"},
          {"bidirectional", "false", "two-direction S4D kernels"},
          {"pool", "mean", "sequence pooling: mean or last"},
          {"init", "inv", "A initialisation: inv (S4D-Inv) or lin (S4D-Lin)"},
          {"dt_min", "0.001", "smallest initial step"},
          {"dt_max", "0.1", "largest initial step"},
      },
      build_s4d_classifier};
}

struct Registry {
  std::mutex mu;
  std::map<std::string, ModelSpec> specs;
  Registry() {
    specs.emplace("s4d_classifier", s4d_classifier_spec());
    specs.emplace("mamba_lm", mamba_lm_spec());
  }
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

void register_model(ModelSpec spec) {
  SSM_CHECK(!spec.name.empty() && spec.build, "register_model: a model needs a name and a build function");
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.specs[spec.name] = std::move(spec);
}

std::vector<std::string> model_names() {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  std::vector<std::string> names;
  for (auto& [name, spec] : r.specs) names.push_back(name);
  return names;
}

const ModelSpec& model_spec(const std::string& name) {
  auto& r = registry();
  {
    std::lock_guard<std::mutex> lock(r.mu);
    auto it = r.specs.find(name);
    if (it != r.specs.end()) return it->second;  // specs are never erased: the reference stays valid
  }
  std::string known;
  for (auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  throw_input(cat("unknown model '", name, "' (known: ", known, ")"));
}

ModelConfig resolve_model_config(const std::string& name, const ModelConfig& cfg) {
  const ModelSpec& spec = model_spec(name);
  std::string known;
  for (auto& k : spec.keys) known += (known.empty() ? "" : ", ") + k.name;
  for (auto& [key, value] : cfg.values()) {
    if (key == "name") continue;
    bool ok = std::any_of(spec.keys.begin(), spec.keys.end(), [&](const ModelKey& k) { return k.name == key; });
    SSM_CHECK_INPUT(ok, cfg.full_key(key), ": unknown key for model '", name, "' (known keys: ", known, ")");
  }
  ModelConfig out = cfg;
  for (auto& k : spec.keys) {
    if (cfg.has(k.name)) continue;
    SSM_CHECK_INPUT(k.default_value.has_value(), cfg.full_key(k.name), ": required key missing for model '", name,
                    "' (", k.help, ")");
    out.set(k.name, *k.default_value);
  }
  return out;
}

std::shared_ptr<Module> build_model(const std::string& name, const ModelConfig& cfg, Generator& gen) {
  ModelConfig full = resolve_model_config(name, cfg);
  return model_spec(name).build(full, gen);
}

}  // namespace ssm::nn
