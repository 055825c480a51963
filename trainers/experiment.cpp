#include "trainers/experiment.h"

#include <filesystem>

#include "data/fashion_mnist.h"
#include "data/lm_dataset.h"
#include "data/pg19.h"
#include "data/synthetic_lm.h"
#include "layers/registry.h"

namespace ssm::train {

namespace fs = std::filesystem;

namespace {

Device resolve_device(const Config& t, int local_rank) {
  const std::string name = t.get_string("device", "cpu");
  Device d;
  try {
    d = Device::parse(name);
  } catch (const Error& e) {
    throw_input(cat(t.source(), ": ", t.full_key("device"), ": ", e.what()));
  }
  if (d.is_cuda()) {
    SSM_CHECK_INPUT(cuda_available(), t.source(), ": ", t.full_key("device"), " is '", name,
                    "' but no CUDA device is available (this build ",
#ifdef SSM_WITH_CUDA
                    "has CUDA; is a GPU visible?)"
#else
                    "has no CUDA backend: rebuild with nvcc on the PATH)"
#endif
    );
    if (name == "cuda") d.index = local_rank;
    SSM_CHECK_INPUT(d.index < cuda_device_count(), t.source(), ": ", t.full_key("device"), " asks for cuda:", d.index,
                    " but only ", cuda_device_count(), " device(s) are visible");
  }
  return d;
}

// Train and test split files of a classification recipe; converts Fashion-MNIST on first use.
std::pair<std::string, std::string> classification_paths(const Config& d, std::ostream& log) {
  const std::string name = d.get_string("name");
  if (name == "fashion-mnist") {
    const std::string root = d.get_string("root", data::kFashionMnistDefaultRoot);
    const std::string path = d.get_string("path", "datasets/fashion-mnist");
    if (!data::fashion_mnist_ready(path)) {
      log << "data: converting Fashion-MNIST from " << root << " to " << path << " ...\n" << std::flush;
      auto s = data::convert_fashion_mnist(root, path);
      log << "data: wrote " << s.train << " train and " << s.test << " test images\n";
    }
    return {(fs::path(path) / "train.h5").string(), (fs::path(path) / "test.h5").string()};
  }
  if (name == "hdf5") return {d.get_string("train"), d.get_string("test")};
  throw_input(cat(d.source(), ": ", d.full_key("name"), ": unknown classification dataset '", name,
                  "' (known: fashion-mnist, hdf5; for language models: lm, pg19, synthetic)"));
}

void load_classification(Experiment& ex, const Config& recipe, const Config& d, std::ostream& log) {
  auto [train_path, test_path] = classification_paths(d, log);
  data::ClassificationOptions opt;
  opt.pool = d.get_int("pool", 1);
  SSM_CHECK_INPUT(opt.pool >= 1, recipe.source(), ": ", d.full_key("pool"), " must be >= 1");
  auto train = std::make_shared<data::ClassificationDataset>(train_path, opt);
  ex.train_set = train;
  ex.test_set = std::make_shared<data::ClassificationDataset>(test_path, opt);
  ex.seq_len = train->seq_len();
}

// Language-model data; returns the vocabulary size for the model's default.
int64_t load_lm(Experiment& ex, const Config& recipe, const Config& d, std::ostream& log) {
  const std::string name = d.get_string("name");
  const int64_t context = d.get_int("context", 1024);
  SSM_CHECK_INPUT(context >= 1, recipe.source(), ": ", d.full_key("context"), " must be >= 1");
  ex.seq_len = context;
  if (name == "synthetic") {
    const int64_t vocab = d.get_int("vocab_size", 256);
    const int64_t rows = d.get_int("rows", 4096);
    ex.train_set = std::make_shared<data::SyntheticLM>(rows, context, vocab, ex.seed);
    ex.test_set = std::make_shared<data::SyntheticLM>(std::max<int64_t>(1, rows / 16), context, vocab, ex.seed + 1);
    return vocab;
  }
  std::string train_path, test_path;
  if (name == "pg19") {
    const std::string path = d.get_string("path");
    if (!data::pg19_ready(path)) {
      const std::string root = d.get_string("root");
      log << "data: converting PG19-layout corpus " << root << " to " << path << " ...\n" << std::flush;
      data::convert_pg19(root, path, log);
    }
    train_path = (fs::path(path) / "train.h5").string();
    test_path = (fs::path(path) / (d.get_string("test", "validation") + ".h5")).string();
  } else if (name == "lm") {
    train_path = d.get_string("train");
    test_path = d.get_string("test");
  } else {
    throw_input(cat(d.source(), ": ", d.full_key("name"), ": unknown language-model dataset '", name,
                    "' (known: lm, pg19, synthetic; for classifiers: fashion-mnist, hdf5)"));
  }
  auto train = std::make_shared<data::LMDataset>(train_path, context);
  auto test = std::make_shared<data::LMDataset>(test_path, context);
  SSM_CHECK_INPUT(train->vocab_size() == test->vocab_size(), train_path, " has vocab_size ", train->vocab_size(),
                  " but ", test_path, " has ", test->vocab_size());
  ex.train_set = train;
  ex.test_set = test;
  return train->vocab_size();
}

}  // namespace

std::set<std::string> experiment_keys(const Config& recipe) {
  std::set<std::string> keys = {"data.name",       "data.root",       "data.path",          "data.train",
                                "data.test",       "data.pool",       "data.batch_size",    "data.eval_batch_size",
                                "data.prefetch",   "data.context",    "data.vocab_size",    "data.rows",
                                "trainer.device",  "trainer.precision", "trainer.seed",     "model.name"};
  if (recipe.has("model.name")) {
    const auto& spec = nn::model_spec(recipe.get_string("model.name"));
    for (const auto& k : spec.keys) keys.insert("model." + k.name);
  }
  return keys;
}

Experiment build_experiment(const Config& recipe, std::ostream& log, int local_rank) {
  Experiment ex;
  const Config t = recipe.sub("trainer");
  ex.device = resolve_device(t, local_rank);
  use_device(ex.device);  // every kernel of this process runs on its own GPU
  const std::string precision = t.get_string("precision", "f32");
  SSM_CHECK_INPUT(precision == "f32" || precision == "bf16", recipe.source(), ": ", t.full_key("precision"),
                  ": expected f32 or bf16, got '", precision, "'");
  ex.autocast = precision == "bf16";
  SSM_CHECK_INPUT(!ex.autocast || ex.device.is_cuda(), recipe.source(), ": ", t.full_key("precision"),
                  ": bf16 autocast needs trainer.device=cuda (the CPU runs f32)");
  const int64_t seed = t.get_int("seed", 0);
  SSM_CHECK_INPUT(seed >= 0, recipe.source(), ": ", t.full_key("seed"), " must be >= 0");
  ex.seed = uint64_t(seed);
  ex.gen = std::make_unique<Generator>(Generator{ex.seed, 0});

  // Model spec first: its task decides what the data section means.
  const Config m = recipe.sub("model");
  ex.model_name = m.get_string("name");
  const auto& spec = nn::model_spec(ex.model_name);
  ex.task = spec.task;

  // Data.
  const Config d = recipe.sub("data");
  int64_t vocab = 0;
  if (ex.task == "lm")
    vocab = load_lm(ex, recipe, d, log);
  else
    load_classification(ex, recipe, d, log);
  ex.batch_size = d.get_int("batch_size", 64);
  ex.eval_batch_size = d.get_int("eval_batch_size", std::max<int64_t>(ex.batch_size, 256));
  ex.prefetch = int(d.get_int("prefetch", 2));
  SSM_CHECK_INPUT(ex.batch_size >= 1 && ex.eval_batch_size >= 1, recipe.source(), ": ", d.full_key("batch_size"),
                  " must be >= 1");

  // Model: every key of the recipe's model section, plus the data's input width and class count.
  nn::ModelConfig mc("model");
  for (const auto& k : spec.keys) {
    if (m.has(k.name)) mc.set(k.name, m.get_string(k.name));
  }
  if (ex.task == "lm") {
    if (!mc.has("vocab_size")) mc.set("vocab_size", vocab);
  } else {
    const auto& train = dynamic_cast<const data::ClassificationDataset&>(*ex.train_set);
    if (!mc.has("d_input")) mc.set("d_input", train.channels());
    if (!mc.has("n_classes")) mc.set("n_classes", train.num_classes());
  }
  ex.model_config = nn::resolve_model_config(ex.model_name, mc).values();
  ex.model = nn::build_model(ex.model_name, mc, *ex.gen);
  ex.model->to(ex.device);
  return ex;
}

}  // namespace ssm::train
