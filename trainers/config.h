// Config: a recipe (YAML tree) plus command-line overrides, with typed getters whose errors name the
// file, the dotted key and the YAML line.
//
//   Config c = Config::load("recipes/lra/listops-s4.yaml", {"optimizer.lr=3e-3", "+trainer.note=x"});
//   int64_t steps = c.get_int("trainer.steps", 1000);
//   Config model = c.sub("model");           // keys relative to "model", messages keep "model.d_model"
//   c.check_unknown_keys({"model", "optimizer", "trainer.steps", ...});
//
// Overrides (Hydra style):
//   a.b.c=value   change an existing key (value parsed as YAML: 3, 3e-3, true, [1, 2], {x: 1}, text);
//                 a key that does not exist is BadInput with the closest existing key as a suggestion
//   +a.b=value    add a key that does not exist yet (parents are created as maps)
//   ++a.b=value   set a key whether or not it exists
//   ~a.b          remove a key
// A key that holds null (`key:` or `key: ~`) counts as absent for the getters and has().
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace ssm::train {

class Config {
 public:
  Config();  // an empty recipe ("<empty>")
  // Reads and parses `path`, then applies `overrides` in order. Missing file, YAML syntax error (with
  // file:line:column), a root that is not a map, or a bad override -> BadInput.
  static Config load(const std::string& path, const std::vector<std::string>& overrides = {});
  // Parses YAML text; `source` stands for the file name in messages.
  static Config from_string(const std::string& yaml, const std::string& source = "<string>",
                            const std::vector<std::string>& overrides = {});

  void apply_override(const std::string& override_text);
  void apply_overrides(const std::vector<std::string>& overrides);
  const std::vector<std::string>& overrides() const;  // applied so far, in order

  // ---- typed getters (key: dotted, relative to this view; a list element is "layers.0.d") ----
  bool has(const std::string& key) const;  // exists and is not null
  int64_t get_int(const std::string& key) const;  // required: missing -> BadInput
  int64_t get_int(const std::string& key, int64_t def) const;
  double get_double(const std::string& key) const;
  double get_double(const std::string& key, double def) const;
  std::string get_string(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& def) const;
  bool get_bool(const std::string& key) const;
  bool get_bool(const std::string& key, bool def) const;
  std::vector<std::string> get_string_list(const std::string& key) const;
  std::vector<std::string> get_string_list(const std::string& key, const std::vector<std::string>& def) const;
  std::vector<double> get_double_list(const std::string& key) const;
  std::vector<double> get_double_list(const std::string& key, const std::vector<double>& def) const;
  std::vector<int64_t> get_int_list(const std::string& key) const;
  std::vector<int64_t> get_int_list(const std::string& key, const std::vector<int64_t>& def) const;
  // The child names of a map key ("optimizer.groups" -> {"no_decay", "ssm"}); empty when absent.
  std::vector<std::string> child_keys(const std::string& key) const;

  // A view of the subtree at `key` (which must be a map, or absent/null: then an empty view). It shares
  // the tree with this Config: keys are relative, messages show the full dotted path and the file.
  Config sub(const std::string& key) const;

  // Every leaf key of this view (full dotted path relative to the view); sequences are leaves.
  std::vector<std::string> keys() const;
  // BadInput listing every leaf key not covered by `known` (an entry covers itself and everything below
  // it: "model" covers "model.d_model"), each as "file:line: unknown key 'a.b'" (+ a suggestion when a
  // known key is close). Keys are relative to this view.
  void check_unknown_keys(const std::set<std::string>& known) const;

  // The tree of this view after overrides, as YAML text (for the run directory).
  std::string resolved_yaml() const;
  const std::string& source() const;  // the file name (or what stood for it)
  std::string full_key(const std::string& key) const;  // prefix + key, dotted
  // The raw node at `key` (undefined node when absent); for what the typed getters do not cover.
  YAML::Node node(const std::string& key) const;

 private:
  struct State;
  std::shared_ptr<State> state_;
  std::vector<std::string> prefix_;  // path of this view from the root

  std::string where(const std::string& full, const YAML::Node& n) const;  // "file:12" or "override '...'"
  [[noreturn]] void type_error(const std::string& key, const YAML::Node& n, const char* expected) const;
  YAML::Node require(const std::string& key) const;
};

// Levenshtein edit distance (for "did you mean" suggestions).
size_t edit_distance(const std::string& a, const std::string& b);

}  // namespace ssm::train
