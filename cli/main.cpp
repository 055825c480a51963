// The `ssm` binary: a thin layer over trainers/ and data/. Errors print on one line and exit 2 (bad
// input: recipe, data, checkpoint, shapes) or 1 (internal failure); a signal-stopped run exits 128+sig.
#include <CLI/CLI.hpp>
#include <iostream>

#include "core/error.h"
#include "data/fashion_mnist.h"
#include "layers/registry.h"
#include "trainers/trainer.h"

namespace {

int run(int argc, char** argv) {
  CLI::App app{"ssm: train state space models (S4D today; Mamba, Mamba-2 next) from YAML recipes.\n"};
  app.footer(
      "Run `ssm <command> --help` for a command's options.\n"
      "Exit codes: 0 ok, 2 bad input (recipe, data, checkpoint), 1 internal error, 128+N stopped by signal N.");
  app.require_subcommand(1);

  std::string recipe;
  std::vector<std::string> overrides;
  auto* train = app.add_subcommand("train", "Train a model from a YAML recipe (resumes a run in the same out_dir)");
  train->add_option("recipe", recipe, "Recipe YAML file, e.g. recipes/quickstart/fashion-mnist-s4d.yaml")
      ->required();
  train->add_option("overrides", overrides,
                    "Overrides key.path=value (change a key), +key=value (add), ~key (remove)");
  train->footer(
      "Example: ssm train recipes/quickstart/fashion-mnist-s4d.yaml trainer.device=cuda data.pool=1\n"
      "The run directory (trainer.out_dir) gets recipe.yaml, metrics.jsonl, TensorBoard events, checkpoints/.");

  std::string checkpoint;
  auto* eval = app.add_subcommand("eval", "Score a checkpoint on its recipe's test split");
  eval->add_option("checkpoint", checkpoint, "Checkpoint folder, e.g. runs/quickstart/checkpoints/step-2344")
      ->required();
  eval->add_option("overrides", overrides, "Recipe overrides, e.g. trainer.device=cuda");

  auto* data = app.add_subcommand("data", "Convert public datasets to ssm's HDF5 layout (docs/data-format.md)");
  data->require_subcommand(1);
  std::string fm_root = ssm::data::kFashionMnistDefaultRoot, fm_out = "datasets/fashion-mnist";
  auto* fm = data->add_subcommand("fashion-mnist", "Fashion-MNIST IDX files -> train.h5, test.h5");
  fm->add_option("--root", fm_root, "Folder with the IDX files (.gz or not)")->capture_default_str();
  fm->add_option("--out", fm_out, "Output folder")->capture_default_str();

  auto* models = app.add_subcommand("models", "List the models a recipe can name, with their keys");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

  if (*train) {
    ssm::train::Config cfg = ssm::train::Config::load(recipe, overrides);
    auto s = ssm::train::train(cfg, std::cout);
    return s.stopped_early ? 128 + s.stop_signal : 0;
  }
  if (*eval) {
    ssm::train::evaluate_checkpoint(checkpoint, overrides, std::cout);
    return 0;
  }
  if (*fm) {
    auto s = ssm::data::convert_fashion_mnist(fm_root, fm_out);
    std::cout << "wrote " << s.train_path << " (" << s.train << " images) and " << s.test_path << " (" << s.test
              << " images)\n";
    return 0;
  }
  if (*models) {
    for (const auto& name : ssm::nn::model_names()) {
      const auto& spec = ssm::nn::model_spec(name);
      std::cout << name << ": " << spec.help << "\n";
      for (const auto& k : spec.keys)
        std::cout << "  " << k.name << " = " << (k.default_value ? *k.default_value : "(required)") << "  " << k.help
                  << "\n";
    }
    return 0;
  }
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const ssm::Error& e) {
    std::cout.flush();
    std::cerr << "ssm: error: " << e.what() << "\n";
    return e.kind() == ssm::ErrorKind::BadInput ? 2 : 1;
  } catch (const std::exception& e) {
    std::cout.flush();
    std::cerr << "ssm: internal error: " << e.what() << "\n";
    return 1;
  }
}
