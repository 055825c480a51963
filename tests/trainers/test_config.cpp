#include "tests/trainers/trainers_test_util.h"
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "trainers/config.h"

using namespace ssm;
using namespace ssm::train;
namespace fs = std::filesystem;

namespace {

using namespace ssm_trainers_test;

struct RecipeDir {
  fs::path path;
  RecipeDir() {
    path = fs::temp_directory_path() / cat("ssm-config-test-", ::getpid(), "-", counter()++);
    fs::create_directories(path);
  }
  ~RecipeDir() { fs::remove_all(path); }
  static int& counter() {
    static int c = 0;
    return c;
  }
  std::string write(const std::string& name, const std::string& text) const {
    fs::path p = path / name;
    std::ofstream(p) << text;
    return p.string();
  }
};

const char* kRecipe =
    "trainer:\n"              // 1
    "  steps: ten\n"          // 2
    "  batch_size: 32\n"      // 3
    "  log_every: 1e3\n"      // 4
    "optimizer:\n"            // 5
    "  name: adamw\n"         // 6
    "  learning_rate: 0.001\n"  // 7
    "  betas: [0.9, 0.95]\n"  // 8
    "  fused: yes\n"          // 9
    "model:\n"                // 10
    "  d_model: 64\n"         // 11
    "  tags: [s4d, small]\n"  // 12
    "  dropout: ~\n"          // 13
    "  norm: {kind: layer, eps: 1.0e-5}\n";  // 14

}  // namespace

TEST(Config, TypedGettersAndDefaults) {
  Config c = Config::from_string(kRecipe, "recipes/x.yaml");
  EXPECT_EQ(c.get_int("trainer.batch_size", 1), 32);
  EXPECT_EQ(c.get_int("trainer.log_every"), 1000);  // 1e3 is an exact integer
  EXPECT_EQ(c.get_int("trainer.missing", 7), 7);
  EXPECT_DOUBLE_EQ(c.get_double("optimizer.learning_rate"), 0.001);
  EXPECT_DOUBLE_EQ(c.get_double("trainer.batch_size"), 32.0);  // an integer is a number
  EXPECT_DOUBLE_EQ(c.get_double("model.norm.eps"), 1e-5);
  EXPECT_EQ(c.get_string("optimizer.name"), "adamw");
  EXPECT_EQ(c.get_string("model.norm.kind", "rms"), "layer");
  EXPECT_TRUE(c.get_bool("optimizer.fused"));
  EXPECT_FALSE(c.get_bool("optimizer.other", false));
  EXPECT_EQ(c.get_string_list("model.tags"), (std::vector<std::string>{"s4d", "small"}));
  EXPECT_EQ(c.get_double_list("optimizer.betas"), (std::vector<double>{0.9, 0.95}));
  EXPECT_TRUE(c.has("model.d_model"));
  EXPECT_FALSE(c.has("model.dropout"));  // null counts as absent
  EXPECT_DOUBLE_EQ(c.get_double("model.dropout", 0.25), 0.25);
  EXPECT_FALSE(c.has("nothing.here"));
  EXPECT_EQ(c.child_keys("model.norm"), (std::vector<std::string>{"kind", "eps"}));
}

TEST(Config, WrongTypeNamesFileKeyAndLine) {
  Config c = Config::from_string(kRecipe, "recipes/x.yaml");
  EXPECT_EQ(bad_input([&] { c.get_int("trainer.steps", 5); }),
            "recipes/x.yaml:2: trainer.steps: expected an integer, got 'ten'");
  EXPECT_EQ(bad_input([&] { c.get_double("optimizer.name"); }),
            "recipes/x.yaml:6: optimizer.name: expected a number, got 'adamw'");
  EXPECT_EQ(bad_input([&] { c.get_bool("model.d_model"); }),
            "recipes/x.yaml:11: model.d_model: expected true or false, got '64'");
  EXPECT_EQ(bad_input([&] { c.get_string("model.tags"); }),
            "recipes/x.yaml:12: model.tags: expected a string, got a list");
  EXPECT_EQ(bad_input([&] { c.get_int("model.norm"); }),
            "recipes/x.yaml:14: model.norm: expected an integer, got a map");
  std::string e = bad_input([&] { c.get_double_list("model.tags"); });
  EXPECT_NE(e.find("recipes/x.yaml:12: model.tags[0]: expected a number, got 's4d'"), std::string::npos) << e;
  EXPECT_EQ(bad_input([&] { c.get_int("trainer.epochs"); }), "recipes/x.yaml: missing required key 'trainer.epochs'");
}

TEST(Config, LoadFromFileAndFileErrors) {
  RecipeDir d;
  std::string path = d.write("x.yaml", kRecipe);
  Config c = Config::load(path, {"trainer.steps=10"});
  EXPECT_EQ(c.get_int("trainer.steps"), 10);
  EXPECT_EQ(c.source(), path);

  std::string missing = (d.path / "nope.yaml").string();
  std::string e = bad_input([&] { Config::load(missing); });
  EXPECT_NE(e.find("cannot read recipe '" + missing + "'"), std::string::npos) << e;

  // Unclosed flow list: yaml-cpp reports where it gave up; the message carries file:line:column.
  std::string bad = d.write("bad.yaml", "a: 1\nb: [1, 2\nc: 3\n");
  e = bad_input([&] { Config::load(bad); });
  EXPECT_EQ(e.rfind(bad + ":", 0), 0u) << e;
  EXPECT_NE(e.find("YAML syntax error"), std::string::npos) << e;

  // Bad indentation on line 4.
  std::string bad2 = d.write("bad2.yaml", "a: 1\nb:\n  c: 2\n d: 3\n");
  e = bad_input([&] { Config::load(bad2); });
  EXPECT_EQ(e.rfind(bad2 + ":4:", 0), 0u) << e;

  e = bad_input([&] { Config::from_string("- 1\n- 2\n", "list.yaml"); });
  EXPECT_NE(e.find("list.yaml:1: a recipe must be a map"), std::string::npos) << e;
  e = bad_input([&] { Config::from_string("a: 1\nb:\n  c: 1\n  c: 2\n", "dup.yaml"); });
  EXPECT_EQ(e, "dup.yaml:4: duplicate key 'b.c'");

  Config empty = Config::from_string("# only a comment\n", "e.yaml");
  EXPECT_TRUE(empty.keys().empty());
}

TEST(Config, Overrides) {
  Config c = Config::from_string(kRecipe, "recipes/x.yaml");
  c.apply_overrides({"optimizer.learning_rate=3e-3", "+trainer.note=hello world", "model.tags=[a, b, c]",
                     "++extra.deep.key=5", "~model.dropout", " trainer.batch_size = 64 "});
  EXPECT_DOUBLE_EQ(c.get_double("optimizer.learning_rate"), 3e-3);
  EXPECT_EQ(c.get_string("trainer.note"), "hello world");
  EXPECT_EQ(c.get_string_list("model.tags"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(c.get_int("extra.deep.key"), 5);
  EXPECT_EQ(c.get_int("trainer.batch_size"), 64);
  EXPECT_EQ(c.node("model.dropout").IsDefined(), false);
  EXPECT_EQ(c.overrides().size(), 6u);
  c.apply_override("++extra.deep.key=6");  // ++ also changes an existing key
  EXPECT_EQ(c.get_int("extra.deep.key"), 6);
  c.apply_override("model.tags.1=z");  // a list element by index
  EXPECT_EQ(c.get_string_list("model.tags"), (std::vector<std::string>{"a", "z", "c"}));

  // Unknown key: named, with the closest existing key.
  std::string e = bad_input([&] { c.apply_override("optimizer.learnin_rate=3"); });
  EXPECT_NE(e.find("unknown key 'optimizer.learnin_rate' (did you mean 'optimizer.learning_rate'?)"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("+optimizer.learnin_rate=3"), std::string::npos) << e;
  // No '='.
  e = bad_input([&] { c.apply_override("trainer.steps"); });
  EXPECT_NE(e.find("bad override 'trainer.steps': expected key=value"), std::string::npos) << e;
  e = bad_input([&] { c.apply_override("=3"); });
  EXPECT_NE(e.find("bad override '=3'"), std::string::npos) << e;
  e = bad_input([&] { c.apply_override("trainer..steps=3"); });
  EXPECT_NE(e.find("empty part"), std::string::npos) << e;
  // + on an existing key, a bad YAML value, a scalar parent, removing a missing key.
  e = bad_input([&] { c.apply_override("+trainer.batch_size=1"); });
  EXPECT_NE(e.find("key 'trainer.batch_size' already exists (use 'trainer.batch_size=1' to change it)"),
            std::string::npos)
      << e;
  e = bad_input([&] { c.apply_override("trainer.batch_size=[1, 2"); });
  EXPECT_NE(e.find("override 'trainer.batch_size=[1, 2': bad value"), std::string::npos) << e;
  e = bad_input([&] { c.apply_override("+optimizer.name.x=1"); });
  EXPECT_NE(e.find("'optimizer.name' is 'adamw', not a map"), std::string::npos) << e;
  e = bad_input([&] { c.apply_override("~model.nothing"); });
  EXPECT_NE(e.find("cannot remove 'model.nothing'"), std::string::npos) << e;
  // An override's wrong type names the override instead of a line.
  c.apply_override("trainer.batch_size=abc");
  EXPECT_EQ(bad_input([&] { c.get_int("trainer.batch_size"); }),
            "override 'trainer.batch_size=abc': trainer.batch_size: expected an integer, got 'abc'");
  // A key from the file keeps its line after unrelated overrides.
  EXPECT_EQ(bad_input([&] { c.get_int("trainer.steps"); }),
            "recipes/x.yaml:2: trainer.steps: expected an integer, got 'ten'");
}

TEST(Config, SubViewsKeepFullPathsAndFile) {
  Config c = Config::from_string(kRecipe, "recipes/x.yaml");
  Config m = c.sub("model");
  EXPECT_EQ(m.get_int("d_model"), 64);
  EXPECT_EQ(m.get_string("norm.kind"), "layer");
  EXPECT_EQ(m.sub("norm").get_double("eps"), 1e-5);
  EXPECT_EQ(m.full_key("d_model"), "model.d_model");
  EXPECT_EQ(bad_input([&] { m.get_double("tags"); }), "recipes/x.yaml:12: model.tags: expected a number, got a list");
  EXPECT_EQ(bad_input([&] { m.sub("norm").get_int("kind"); }),
            "recipes/x.yaml:14: model.norm.kind: expected an integer, got 'layer'");
  EXPECT_EQ(bad_input([&] { c.sub("trainer.steps"); }),
            "recipes/x.yaml:2: trainer.steps: expected a map, got 'ten'");
  // A view shares the tree: an override through the root is seen by the view.
  c.apply_override("model.d_model=128");
  EXPECT_EQ(m.get_int("d_model"), 128);
  // An absent subtree is an empty view.
  Config none = c.sub("data");
  EXPECT_TRUE(none.keys().empty());
  EXPECT_EQ(none.get_int("workers", 2), 2);
  EXPECT_EQ(m.keys(), (std::vector<std::string>{"d_model", "tags", "dropout", "norm.kind", "norm.eps"}));
}

TEST(Config, UnknownKeysWithLines) {
  const char* q =
      "trainer:\n"             // 1
      "  steps: 10\n"          // 2
      "model:\n"               // 3
      "  d_model: 64\n"        // 4
      "optimizer:\n"           // 5
      "  lr: 0.01\n"           // 6
      "  lr_warmup: 100\n"     // 7
      "  weight_decya: 0.1\n"; // 8
  Config c = Config::from_string(q, "recipes/q.yaml");
  std::set<std::string> known = {"trainer.steps", "model", "optimizer.lr", "optimizer.weight_decay"};
  std::string e = bad_input([&] { c.check_unknown_keys(known); });
  EXPECT_NE(e.find("recipes/q.yaml:7: unknown key 'optimizer.lr_warmup'"), std::string::npos) << e;
  EXPECT_NE(e.find("recipes/q.yaml:8: unknown key 'optimizer.weight_decya' (did you mean 'optimizer.weight_decay'?)"),
            std::string::npos)
      << e;
  EXPECT_EQ(e.find("trainer.steps"), std::string::npos) << e;
  EXPECT_EQ(e.find("model.d_model"), std::string::npos) << e;  // covered by the prefix "model"

  known.insert("optimizer.lr_warmup");
  known.insert("optimizer.weight_decya");
  EXPECT_NO_THROW(c.check_unknown_keys(known));

  // On a view: relative known keys, full names in the message; overrides are named.
  Config o = c.sub("optimizer");
  c.apply_override("+optimizer.nesterov=true");
  e = bad_input([&] { o.check_unknown_keys({"lr", "lr_warmup", "weight_decya"}); });
  EXPECT_EQ(e, "override '+optimizer.nesterov=true': unknown key 'optimizer.nesterov'");
}

TEST(Config, ResolvedYamlRoundTrips) {
  Config c = Config::from_string(kRecipe, "recipes/x.yaml", {"trainer.steps=12", "+data.path=/tmp/x.h5"});
  Config r = Config::from_string(c.resolved_yaml(), "resolved.yaml");
  EXPECT_EQ(r.get_int("trainer.steps"), 12);
  EXPECT_EQ(r.get_string("data.path"), "/tmp/x.h5");
  EXPECT_EQ(r.get_double_list("optimizer.betas"), (std::vector<double>{0.9, 0.95}));
  EXPECT_EQ(r.keys(), c.keys());
  EXPECT_NE(c.sub("model").resolved_yaml().find("d_model: 64"), std::string::npos);
}

TEST(Config, EditDistance) {
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
  EXPECT_EQ(edit_distance("", "abc"), 3u);
  EXPECT_EQ(edit_distance("same", "same"), 0u);
}
