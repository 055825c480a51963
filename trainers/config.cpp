#include "trainers/config.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>

#include "core/error.h"

namespace ssm::train {

namespace {

using Path = std::vector<std::string>;

std::string join(const Path& p, size_t begin = 0, size_t end = std::string::npos) {
  std::string out;
  end = std::min(end, p.size());
  for (size_t i = begin; i < end; ++i) {
    if (i > begin) out += '.';
    out += p[i];
  }
  return out;
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// "a.b.c" -> {"a", "b", "c"}; "" -> {}. Empty segments ("a..b", ".a") are bad input.
Path split_key(const std::string& key, const std::string& context) {
  Path out;
  if (key.empty()) return out;
  size_t start = 0;
  while (true) {
    size_t dot = key.find('.', start);
    std::string seg = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    SSM_CHECK_INPUT(!seg.empty(), context, "bad key '", key, "': empty part between dots");
    out.push_back(seg);
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return out;
}

bool parse_index(const std::string& s, size_t& idx) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), idx);
  return ec == std::errc() && p == s.data() + s.size();
}

// Follows `path` from `start`; false when some part is missing. Maps by key, sequences by index.
bool find(const YAML::Node& start, const Path& path, YAML::Node& out) {
  YAML::Node cur = start;
  for (const std::string& seg : path) {
    const YAML::Node c = cur;  // const: looking up a missing key must not insert it
    size_t idx = 0;
    if (c.IsSequence() && (!parse_index(seg, idx) || idx >= c.size())) return false;
    if (!c.IsMap() && !c.IsSequence()) return false;
    // Copy-construct (a missing key gives an invalid node, which reset() would throw on).
    const YAML::Node next = c.IsMap() ? c[seg] : c[idx];
    if (!next.IsDefined()) return false;
    cur.reset(next);
  }
  out.reset(cur);
  return true;
}

int line_of(const YAML::Node& n) {
  if (!n.IsDefined()) return -1;
  YAML::Mark m = n.Mark();
  return m.is_null() ? -1 : m.line + 1;
}

struct Leaf {
  std::string key;  // dotted, relative to where the walk started
  int line;         // 1-based line of the key in the file, -1 when unknown
};

// Leaves in document order: scalars, nulls, sequences and empty maps.
void collect_leaves(const YAML::Node& n, const std::string& prefix, std::vector<Leaf>& out) {
  for (auto it = n.begin(); it != n.end(); ++it) {
    std::string k = it->first.Scalar();
    std::string full = prefix.empty() ? k : prefix + "." + k;
    const YAML::Node v = it->second;
    if (v.IsMap() && v.size() > 0) {
      collect_leaves(v, full, out);
    } else {
      out.push_back({full, line_of(it->first)});
    }
  }
}

// Every dotted path in the tree (maps and leaves), for suggestions.
void collect_paths(const YAML::Node& n, const std::string& prefix, std::vector<std::string>& out) {
  if (!n.IsMap()) return;
  for (auto it = n.begin(); it != n.end(); ++it) {
    std::string full = prefix.empty() ? it->first.Scalar() : prefix + "." + it->first.Scalar();
    out.push_back(full);
    collect_paths(it->second, full, out);
  }
}

// Duplicate keys in one map are almost always a mistake in a recipe.
void check_duplicates(const YAML::Node& n, const std::string& source, const std::string& prefix) {
  if (n.IsMap()) {
    std::set<std::string> seen;
    for (auto it = n.begin(); it != n.end(); ++it) {
      std::string k = it->first.Scalar();
      std::string full = prefix.empty() ? k : prefix + "." + k;
      SSM_CHECK_INPUT(seen.insert(k).second, source, ":", line_of(it->first), ": duplicate key '", full, "'");
      check_duplicates(it->second, source, full);
    }
  } else if (n.IsSequence()) {
    for (size_t i = 0; i < n.size(); ++i) check_duplicates(n[i], source, cat(prefix, ".", i));
  }
}

std::string closest(const std::string& key, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::numeric_limits<size_t>::max();
  for (const auto& c : candidates) {
    size_t d = edit_distance(key, c);
    if (d < best_d) best_d = d, best = c;
  }
  return best;
}

std::string describe(const YAML::Node& n) {
  if (n.IsMap()) return "a map";
  if (n.IsSequence()) return "a list";
  if (n.IsNull()) return "null";
  return cat("'", n.Scalar(), "'");
}

bool parse_int(const std::string& s, int64_t& out) {
  if (s.empty()) return false;
  const char* b = s.data();
  const char* e = b + s.size();
  if (*b == '+') ++b;
  auto [p, ec] = std::from_chars(b, e, out);
  if (ec == std::errc() && p == e) return true;
  // 1e5 and 1000.0 are integers too when they are exact.
  double d;
  auto [p2, ec2] = std::from_chars(b, e, d);
  if (ec2 != std::errc() || p2 != e || !std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9.0e15) return false;
  out = int64_t(d);
  return true;
}

bool parse_double(const std::string& s, double& out) {
  static const std::map<std::string, double> special = {
      {".inf", INFINITY}, {".Inf", INFINITY}, {".INF", INFINITY}, {"+.inf", INFINITY},
      {"-.inf", -INFINITY}, {"-.Inf", -INFINITY}, {"-.INF", -INFINITY},
      {".nan", NAN}, {".NaN", NAN}, {".NAN", NAN}};
  if (auto it = special.find(s); it != special.end()) {
    out = it->second;
    return true;
  }
  if (s.empty()) return false;
  const char* b = s.data();
  const char* e = b + s.size();
  if (*b == '+') ++b;
  auto [p, ec] = std::from_chars(b, e, out);
  return ec == std::errc() && p == e;
}

bool parse_bool(const std::string& s, bool& out) {
  static const std::set<std::string> yes = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
  static const std::set<std::string> no = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
  if (yes.count(s)) return out = true, true;
  if (no.count(s)) return out = false, true;
  return false;
}

}  // namespace

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

struct Config::State {
  YAML::Node root;
  std::string source;
  std::vector<std::string> overrides;
  std::map<std::string, std::string> override_of;  // full dotted key -> the override that set it
};

Config::Config() : state_(std::make_shared<State>()) {
  state_->root = YAML::Node(YAML::NodeType::Map);
  state_->source = "<empty>";
}

Config Config::from_string(const std::string& yaml, const std::string& source,
                            const std::vector<std::string>& overrides) {
  Config c;
  c.state_->source = source;
  YAML::Node root;
  try {
    root = YAML::Load(yaml);
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) throw_input(cat(source, ": YAML syntax error: ", e.msg));
    throw_input(cat(source, ":", e.mark.line + 1, ":", e.mark.column + 1, ": YAML syntax error: ", e.msg));
  }
  if (root.IsNull() || !root.IsDefined()) root = YAML::Node(YAML::NodeType::Map);
  SSM_CHECK_INPUT(root.IsMap(), source, ":", std::max(1, line_of(root)),
                  ": a recipe must be a map of keys (key: value), got ", describe(root));
  check_duplicates(root, source, "");
  c.state_->root.reset(root);
  c.apply_overrides(overrides);
  return c;
}

Config Config::load(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_input(cat("cannot read recipe '", path, "': ", std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  return from_string(ss.str(), path, overrides);
}

void Config::apply_overrides(const std::vector<std::string>& overrides) {
  for (const auto& o : overrides) apply_override(o);
}

const std::vector<std::string>& Config::overrides() const { return state_->overrides; }

void Config::apply_override(const std::string& override_text) {
  const std::string text = trim(override_text);
  const std::string ctx = cat("override '", text, "': ");
  const char* usage = "expected key=value (+key=value adds a key, ++key=value sets one, ~key removes one)";

  // ~key: remove.
  if (!text.empty() && text[0] == '~') {
    std::string key = trim(text.substr(1));
    if (size_t eq = key.find('='); eq != std::string::npos) key = trim(key.substr(0, eq));
    Path rel = split_key(key, ctx);
    SSM_CHECK_INPUT(!rel.empty(), ctx, usage);
    Path full = prefix_;
    full.insert(full.end(), rel.begin(), rel.end());
    YAML::Node parent;
    Path parent_path(full.begin(), full.end() - 1);
    YAML::Node dummy;
    SSM_CHECK_INPUT(find(state_->root, full, dummy) && find(state_->root, parent_path, parent) && parent.IsMap(),
                    ctx, "cannot remove '", join(full), "': no such key");
    parent.remove(full.back());
    state_->overrides.push_back(text);
    return;
  }

  size_t eq = text.find('=');
  SSM_CHECK_INPUT(eq != std::string::npos, "bad override '", text, "': ", usage);
  std::string lhs = trim(text.substr(0, eq));
  std::string value_text = trim(text.substr(eq + 1));
  int mode = 0;  // 0: change, 1: add, 2: set
  if (lhs.rfind("++", 0) == 0) {
    mode = 2;
    lhs = lhs.substr(2);
  } else if (lhs.rfind("+", 0) == 0) {
    mode = 1;
    lhs = lhs.substr(1);
  }
  SSM_CHECK_INPUT(!lhs.empty(), "bad override '", text, "': ", usage);
  Path rel = split_key(lhs, ctx);
  Path full = prefix_;
  full.insert(full.end(), rel.begin(), rel.end());
  const std::string full_key = join(full);

  YAML::Node value;
  if (value_text.empty()) {
    value = YAML::Node(std::string());
  } else {
    try {
      value = YAML::Load(value_text);
    } catch (const YAML::Exception& e) {
      throw_input(cat(ctx, "bad value '", value_text, "': ", e.msg));
    }
  }

  YAML::Node existing;
  bool exists = find(state_->root, full, existing);
  if (mode == 0 && !exists) {
    std::vector<std::string> paths;
    collect_paths(state_->root, "", paths);
    std::string msg = cat(ctx, "unknown key '", full_key, "'");
    if (!paths.empty()) msg += cat(" (did you mean '", closest(full_key, paths), "'?)");
    msg += cat("; use '+", text, "' to add a new key");
    throw_input(msg);
  }
  SSM_CHECK_INPUT(!(mode == 1 && exists), ctx, "key '", full_key, "' already exists (use '", text.substr(1),
                  "' to change it)");

  // Walk down the existing part, then hang the rest (fresh maps) under the deepest existing node.
  YAML::Node cur = state_->root;
  size_t depth = 0;
  for (; depth + 1 < full.size(); ++depth) {
    YAML::Node next;
    if (!find(cur, {full[depth]}, next)) break;
    if (!next.IsMap() && !next.IsSequence()) {
      SSM_CHECK_INPUT(next.IsNull(), ctx, "cannot set '", full_key, "': '", join(full, 0, depth + 1), "' is ",
                      describe(next), ", not a map");
      break;  // a null parent becomes a map
    }
    cur.reset(next);
  }
  YAML::Node tail = value;
  for (size_t i = full.size() - 1; i > depth; --i) {
    YAML::Node m(YAML::NodeType::Map);
    m[full[i]] = tail;
    tail.reset(m);
  }
  if (cur.IsSequence()) {
    size_t idx;
    SSM_CHECK_INPUT(parse_index(full[depth], idx) && idx < cur.size(), ctx, "index '", full[depth],
                    "' is out of range for the list '", join(full, 0, depth), "' of size ", cur.size());
    cur[idx] = tail;
  } else {
    cur[full[depth]] = tail;
  }

  // Keys under the one just set no longer come from older overrides.
  const std::string set_key = join(full, 0, depth + 1);
  for (auto it = state_->override_of.begin(); it != state_->override_of.end();) {
    if (it->first == set_key || it->first.rfind(set_key + ".", 0) == 0)
      it = state_->override_of.erase(it);
    else
      ++it;
  }
  state_->override_of[set_key] = text;
  state_->overrides.push_back(text);
}

std::string Config::full_key(const std::string& key) const {
  std::string p = join(prefix_);
  if (p.empty()) return key;
  if (key.empty()) return p;
  return p + "." + key;
}

std::string Config::where(const std::string& full, const YAML::Node& n) const {
  // The longest key that an override set, at or above `full`, wins.
  std::string best;
  const std::string* text = nullptr;
  for (const auto& [k, t] : state_->override_of) {
    if ((full == k || full.rfind(k + ".", 0) == 0) && k.size() >= best.size()) best = k, text = &t;
  }
  if (text) return cat("override '", *text, "'");
  int line = line_of(n);
  return line > 0 ? cat(state_->source, ":", line) : state_->source;
}

void Config::type_error(const std::string& key, const YAML::Node& n, const char* expected) const {
  std::string full = full_key(key);
  throw_input(cat(where(full, n), ": ", full, ": expected ", expected, ", got ", describe(n)));
}

YAML::Node Config::node(const std::string& key) const {
  Path full = prefix_;
  Path rel = split_key(key, cat(state_->source, ": "));
  full.insert(full.end(), rel.begin(), rel.end());
  YAML::Node n;
  if (!find(state_->root, full, n)) return YAML::Node(YAML::NodeType::Undefined);
  return n;
}

bool Config::has(const std::string& key) const {
  YAML::Node n = node(key);
  return n.IsDefined() && !n.IsNull();
}

YAML::Node Config::require(const std::string& key) const {
  YAML::Node n = node(key);
  SSM_CHECK_INPUT(n.IsDefined() && !n.IsNull(), state_->source, ": missing required key '", full_key(key), "'");
  return n;
}

int64_t Config::get_int(const std::string& key) const {
  YAML::Node n = require(key);
  int64_t v;
  if (!n.IsScalar() || !parse_int(n.Scalar(), v)) type_error(key, n, "an integer");
  return v;
}
int64_t Config::get_int(const std::string& key, int64_t def) const { return has(key) ? get_int(key) : def; }

double Config::get_double(const std::string& key) const {
  YAML::Node n = require(key);
  double v;
  if (!n.IsScalar() || !parse_double(n.Scalar(), v)) type_error(key, n, "a number");
  return v;
}
double Config::get_double(const std::string& key, double def) const { return has(key) ? get_double(key) : def; }

std::string Config::get_string(const std::string& key) const {
  YAML::Node n = require(key);
  if (!n.IsScalar()) type_error(key, n, "a string");
  return n.Scalar();
}
std::string Config::get_string(const std::string& key, const std::string& def) const {
  return has(key) ? get_string(key) : def;
}

bool Config::get_bool(const std::string& key) const {
  YAML::Node n = require(key);
  bool v;
  if (!n.IsScalar() || !parse_bool(n.Scalar(), v)) type_error(key, n, "true or false");
  return v;
}
bool Config::get_bool(const std::string& key, bool def) const { return has(key) ? get_bool(key) : def; }

namespace {
template <typename T, typename Parse>
std::vector<T> parse_list(const Config& c, const std::string& key, const YAML::Node& n, const char* what,
                          Parse parse, const std::function<std::string(const YAML::Node&)>& where) {
  std::vector<T> out;
  for (size_t i = 0; i < n.size(); ++i) {
    YAML::Node e = n[i];
    T v{};
    if (!e.IsScalar() || !parse(e.Scalar(), v))
      throw_input(cat(where(e), ": ", c.full_key(key), "[", i, "]: expected ", what, ", got ", describe(e)));
    out.push_back(v);
  }
  return out;
}
}  // namespace

std::vector<std::string> Config::get_string_list(const std::string& key) const {
  YAML::Node n = require(key);
  if (!n.IsSequence()) type_error(key, n, "a list of strings");
  auto w = [&](const YAML::Node& e) { return where(full_key(key), e); };
  return parse_list<std::string>(*this, key, n, "a string",
                                 [](const std::string& s, std::string& v) { return v = s, true; }, w);
}
std::vector<std::string> Config::get_string_list(const std::string& key, const std::vector<std::string>& def) const {
  return has(key) ? get_string_list(key) : def;
}

std::vector<double> Config::get_double_list(const std::string& key) const {
  YAML::Node n = require(key);
  if (!n.IsSequence()) type_error(key, n, "a list of numbers");
  auto w = [&](const YAML::Node& e) { return where(full_key(key), e); };
  return parse_list<double>(*this, key, n, "a number", parse_double, w);
}
std::vector<double> Config::get_double_list(const std::string& key, const std::vector<double>& def) const {
  return has(key) ? get_double_list(key) : def;
}

std::vector<int64_t> Config::get_int_list(const std::string& key) const {
  YAML::Node n = require(key);
  if (!n.IsSequence()) type_error(key, n, "a list of integers");
  auto w = [&](const YAML::Node& e) { return where(full_key(key), e); };
  return parse_list<int64_t>(*this, key, n, "an integer", parse_int, w);
}
std::vector<int64_t> Config::get_int_list(const std::string& key, const std::vector<int64_t>& def) const {
  return has(key) ? get_int_list(key) : def;
}

std::vector<std::string> Config::child_keys(const std::string& key) const {
  std::vector<std::string> out;
  YAML::Node n = key.empty() ? node("") : node(key);
  if (!n.IsDefined() || n.IsNull()) return out;
  if (!n.IsMap()) type_error(key, n, "a map");
  for (auto it = n.begin(); it != n.end(); ++it) out.push_back(it->first.Scalar());
  return out;
}

Config Config::sub(const std::string& key) const {
  Path rel = split_key(key, cat(state_->source, ": "));
  YAML::Node n = node(key);
  if (n.IsDefined() && !n.IsNull() && !n.IsMap()) type_error(key, n, "a map");
  Config c = *this;
  c.prefix_.insert(c.prefix_.end(), rel.begin(), rel.end());
  return c;
}

std::vector<std::string> Config::keys() const {
  std::vector<std::string> out;
  YAML::Node n = node("");
  if (!n.IsDefined() || !n.IsMap()) return out;
  std::vector<Leaf> leaves;
  collect_leaves(n, "", leaves);
  for (auto& l : leaves) out.push_back(l.key);
  return out;
}

void Config::check_unknown_keys(const std::set<std::string>& known) const {
  YAML::Node n = node("");
  if (!n.IsDefined() || !n.IsMap()) return;
  std::vector<Leaf> leaves;
  collect_leaves(n, "", leaves);
  std::vector<std::string> known_list(known.begin(), known.end());
  std::vector<std::string> problems;
  for (const Leaf& leaf : leaves) {
    bool covered = false;
    for (const auto& k : known) {
      if (leaf.key == k || leaf.key.rfind(k + ".", 0) == 0 || k.rfind(leaf.key + ".", 0) == 0) {
        covered = true;
        break;
      }
    }
    if (covered) continue;
    std::string full = full_key(leaf.key);
    std::string loc;
    std::string ov = where(full, YAML::Node(YAML::NodeType::Undefined));
    if (ov.rfind("override", 0) == 0)
      loc = ov;
    else
      loc = leaf.line > 0 ? cat(state_->source, ":", leaf.line) : state_->source;
    std::string msg = cat(loc, ": unknown key '", full, "'");
    // Suggest a known key that is close (a typo) or that the unknown key begins ("warmup" -> "warmup_init").
    std::vector<std::string> extensions;
    for (const auto& k : known_list)
      if (k.rfind(leaf.key, 0) == 0) extensions.push_back(k);
    if (!extensions.empty()) {
      msg += cat(" (did you mean '", full_key(closest(leaf.key, extensions)), "'?)");
    } else if (!known_list.empty()) {
      std::string best = closest(leaf.key, known_list);
      if (edit_distance(leaf.key, best) <= std::max<size_t>(2, leaf.key.size() / 3))
        msg += cat(" (did you mean '", full_key(best), "'?)");
    }
    problems.push_back(msg);
  }
  if (problems.empty()) return;
  std::string all;
  for (size_t i = 0; i < problems.size(); ++i) all += (i ? "; " : "") + problems[i];
  throw_input(all);
}

std::string Config::resolved_yaml() const {
  YAML::Node n = node("");
  YAML::Emitter out;
  if (n.IsDefined()) out << n;
  return std::string(out.c_str()) + "\n";
}

const std::string& Config::source() const { return state_->source; }

}  // namespace ssm::train
