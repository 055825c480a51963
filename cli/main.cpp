// The `ssm` binary: a thin layer over trainers/ and data/. Errors print on one line and exit 2 (bad
// input: recipe, data, checkpoint, shapes) or 1 (internal failure); a signal-stopped run exits 128+sig.
#include <CLI/CLI.hpp>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "data/fashion_mnist.h"
#include "data/pg19.h"
#include "layers/language_model.h"
#include "layers/registry.h"
#include "trainers/generate.h"
#include "trainers/launch.h"
#include "trainers/model_io.h"
#include "trainers/safetensors.h"
#include "trainers/throughput.h"
#include "trainers/trainer.h"

namespace {

std::vector<int64_t> parse_token_ids(const std::string& s) {
  std::vector<int64_t> ids;
  std::istringstream in(s);
  std::string word;
  while (in >> word) {
    try {
      size_t used = 0;
      ids.push_back(std::stoll(word, &used));
      if (used != word.size()) throw std::invalid_argument(word);
    } catch (const std::exception&) {
      ssm::throw_input(ssm::cat("--prompt-tokens: '", word, "' is not a token id"));
    }
  }
  return ids;
}

int run_generate(const std::string& checkpoint, const std::string& prompt, const std::string& prompt_tokens,
                 int64_t max_new, const ssm::train::SamplingOptions& sampling, const std::string& device) {
  SSM_CHECK_INPUT(prompt.empty() != prompt_tokens.empty(), "generate: give --prompt or --prompt-tokens (one of them)");
  ssm::train::check_sampling(sampling);
  const ssm::Device dev = ssm::Device::parse(device);
  auto loaded = ssm::train::load_model(checkpoint, dev);
  auto* lm = dynamic_cast<ssm::nn::LanguageModel*>(loaded.model.get());
  SSM_CHECK_INPUT(lm != nullptr, loaded.checkpoint.string(), ": model '", loaded.name, "' is not a language model");
  const bool bytes = lm->vocab_size() == 256;
  std::vector<int64_t> ids;
  if (!prompt.empty()) {
    SSM_CHECK_INPUT(bytes, "generate: --prompt needs a byte-level model (vocab 256); this one has vocab ",
                    lm->vocab_size(), ": give --prompt-tokens");
    for (unsigned char c : prompt) ids.push_back(int64_t(c));
  } else {
    ids = parse_token_ids(prompt_tokens);
  }
  if (bytes) std::cout << prompt << std::flush;
  ssm::train::generate(*lm, ids, max_new, sampling, dev, [&](int64_t tok) {
    if (bytes)
      std::cout << char(tok) << std::flush;
    else
      std::cout << tok << "\n" << std::flush;
  });
  if (bytes) std::cout << "\n";
  return 0;
}

int run(int argc, char** argv) {
  CLI::App app{"ssm: train state space models (S4D, Mamba) from YAML recipes.\n"};
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

  int nproc = 1;
  double grace = 30;
  auto* launch = app.add_subcommand("launch", "Run `ssm train` as N local processes (one per GPU), data parallel; "
                                              "signals are forwarded to them");
  launch->add_option("--nproc", nproc, "Processes (one per GPU)")->required()->check(CLI::PositiveNumber);
  launch->add_option("--grace", grace, "Seconds the others get after one process fails, before SIGTERM")
      ->capture_default_str();
  launch->add_option("recipe", recipe, "Recipe YAML file")->required();
  launch->add_option("overrides", overrides, "Recipe overrides, e.g. trainer.device=cuda");
  launch->footer("Example: ssm launch --nproc 8 recipes/lm/mamba-130m.yaml\n"
                 "Multi-node: torchrun --no-python, srun or mpirun start `ssm train` directly (docs/multi-node.md).");

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

  std::string pg_root, pg_out = "datasets/pg19";
  auto* pg = data->add_subcommand("pg19", "PG19 layout (train/ validation/ test/ of <book_id>.txt) -> byte-level "
                                          "OUT/{train,validation,test}.h5 with book boundaries");
  pg->add_option("--root", pg_root, "PG19 folder (e.g. made by scripts/kjv-to-pg19.sh)")->required();
  pg->add_option("--out", pg_out, "Output folder")->capture_default_str();

  auto* models = app.add_subcommand("models", "List the models a recipe can name, with their keys");

  std::string gen_prompt, gen_prompt_tokens, gen_device = "cpu";
  int64_t gen_max_new = 256;
  ssm::train::SamplingOptions sampling;
  auto* generate = app.add_subcommand("generate", "Sample text from a language-model checkpoint (recurrent, "
                                                  "constant memory per token)");
  generate->add_option("checkpoint", checkpoint, "Run directory (newest checkpoint) or checkpoint folder")
      ->required();
  generate->add_option("--prompt", gen_prompt, "Prompt text (byte-level models: its UTF-8 bytes)");
  generate->add_option("--prompt-tokens", gen_prompt_tokens, "Prompt as token ids, e.g. \"510 2269 4044\"");
  generate->add_option("--max-new", gen_max_new, "Tokens to generate")->capture_default_str();
  generate->add_option("--temperature", sampling.temperature, "0: greedy")->capture_default_str();
  generate->add_option("--top-k", sampling.top_k, "Keep the k most likely tokens (0: off)")->capture_default_str();
  generate->add_option("--top-p", sampling.top_p, "Nucleus sampling mass (1: off)")->capture_default_str();
  generate->add_option("--seed", sampling.seed, "Sampling seed")->capture_default_str();
  generate->add_option("--device", gen_device, "cpu or cuda[:N]")->capture_default_str();
  generate->footer("Byte-level models (vocab 256) print text; others print token ids, one per line.");

  std::string logits_out;
  auto* logits_cmd = app.add_subcommand("logits", "Write a language model's logits for given tokens (for checks "
                                                  "against other implementations)");
  logits_cmd->add_option("checkpoint", checkpoint, "Run directory or checkpoint folder")->required();
  logits_cmd->add_option("--prompt-tokens", gen_prompt_tokens, "Token ids, e.g. \"1 2 3\"")->required();
  logits_cmd->add_option("--out", logits_out, "Output .safetensors file (tensor 'logits', (1, L, V) f32)")
      ->required();
  logits_cmd->add_option("--device", gen_device, "cpu or cuda[:N]")->capture_default_str();

  std::string exp_format = "hf", exp_out;
  auto* exporter = app.add_subcommand("export", "Write a Mamba LM checkpoint in Hugging Face or mamba_ssm format");
  exporter->add_option("checkpoint", checkpoint, "Run directory or checkpoint folder")->required();
  exporter->add_option("--format", exp_format, "hf (transformers MambaForCausalLM) or mamba_ssm")
      ->capture_default_str();
  exporter->add_option("--out", exp_out, "Output folder (model.safetensors + config.json)")->required();

  std::string imp_in, imp_out;
  auto* importer = app.add_subcommand("import", "Read a Hugging Face or mamba_ssm Mamba checkpoint into a run "
                                                "directory (OUT/checkpoints/step-0)");
  importer->add_option("folder", imp_in, "Folder with config.json and model.safetensors")->required();
  importer->add_option("--out", imp_out, "Run directory to create")->required();

  int64_t bench_warmup = 3, bench_steps = 10;
  auto* bench = app.add_subcommand("bench", "Training throughput of a recipe (tokens/s, MFU, peak memory) as JSON");
  bench->add_option("recipe", recipe, "Recipe YAML file, e.g. recipes/bench/mamba-130m.yaml")->required();
  bench->add_option("overrides", overrides, "Recipe overrides");
  bench->add_option("--warmup", bench_warmup, "Untimed steps first")->capture_default_str();
  bench->add_option("--steps", bench_steps, "Timed steps (the median is reported)")->capture_default_str();

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
  if (*launch) {
    std::vector<std::string> args = {"train", recipe};
    args.insert(args.end(), overrides.begin(), overrides.end());
    ssm::train::LaunchOptions lo;
    lo.grace_s = grace;
    return ssm::train::launch_local(nproc, args, lo);
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
  if (*pg) {
    for (const auto& sp : ssm::data::convert_pg19(pg_root, pg_out, std::cerr))
      std::cout << "wrote " << sp.path << " (" << sp.books << " books, " << sp.bytes << " bytes, " << sp.words
                << " words)\n";
    return 0;
  }
  if (*generate) return run_generate(checkpoint, gen_prompt, gen_prompt_tokens, gen_max_new, sampling, gen_device);
  if (*logits_cmd) {
    const ssm::Device dev = ssm::Device::parse(gen_device);
    auto loaded = ssm::train::load_model(checkpoint, dev);
    auto* lm = dynamic_cast<ssm::nn::LanguageModel*>(loaded.model.get());
    SSM_CHECK_INPUT(lm != nullptr, loaded.checkpoint.string(), ": model '", loaded.name, "' is not a language model");
    const std::vector<int64_t> ids = parse_token_ids(gen_prompt_tokens);
    SSM_CHECK_INPUT(!ids.empty(), "logits: --prompt-tokens is empty");
    ssm::ag::NoGradGuard no_grad;
    ssm::Tensor tokens = ssm::Tensor::from_vector(ids, {1, int64_t(ids.size())}).to(dev);
    ssm::Tensor out = lm->logits(tokens, ssm::Tensor()).data().to(ssm::Device::cpu()).to(ssm::DType::f32);
    ssm::train::save_safetensors(logits_out, std::vector<std::pair<std::string, ssm::Tensor>>{{"logits", out}});
    std::cout << "wrote " << logits_out << " (" << ssm::shape_str(out.shape()) << ")\n";
    return 0;
  }
  if (*exporter) {
    ssm::train::export_model(checkpoint, exp_format, exp_out, std::cout);
    return 0;
  }
  if (*importer) {
    ssm::train::import_model(imp_in, imp_out, std::cout);
    return 0;
  }
  if (*bench) {
    ssm::train::Config cfg = ssm::train::Config::load(recipe, overrides);
    std::cout << ssm::train::bench_training(cfg, bench_warmup, bench_steps, std::cerr).dump() << "\n";
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
