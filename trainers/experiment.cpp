#include "trainers/experiment.h"

#include <filesystem>

#include "data/fashion_mnist.h"
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

// Train and test split files for the recipe's data section; converts Fashion-MNIST on first use.
std::pair<std::string, std::string> split_paths(const Config& d, std::ostream& log) {
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
  throw_input(cat(d.source(), ": ", d.full_key("name"), ": unknown dataset '", name,
                  "' (known: fashion-mnist, hdf5)"));
}

}  // namespace

std::set<std::string> experiment_keys(const Config& recipe) {
  std::set<std::string> keys = {"data.name",   "data.root",       "data.path",     "data.train",
                                "data.test",   "data.pool",       "data.batch_size", "data.eval_batch_size",
                                "data.prefetch", "trainer.device", "trainer.precision", "trainer.seed",
                                "model.name"};
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

  // Data.
  const Config d = recipe.sub("data");
  auto [train_path, test_path] = split_paths(d, log);
  data::ClassificationOptions opt;
  opt.pool = d.get_int("pool", 1);
  SSM_CHECK_INPUT(opt.pool >= 1, recipe.source(), ": ", d.full_key("pool"), " must be >= 1");
  ex.train_set = std::make_shared<data::ClassificationDataset>(train_path, opt);
  ex.test_set = std::make_shared<data::ClassificationDataset>(test_path, opt);
  ex.batch_size = d.get_int("batch_size", 64);
  ex.eval_batch_size = d.get_int("eval_batch_size", std::max<int64_t>(ex.batch_size, 256));
  ex.prefetch = int(d.get_int("prefetch", 2));
  SSM_CHECK_INPUT(ex.batch_size >= 1 && ex.eval_batch_size >= 1, recipe.source(), ": ", d.full_key("batch_size"),
                  " must be >= 1");

  // Model: every key of the recipe's model section, plus the data's input width and class count.
  const Config m = recipe.sub("model");
  ex.model_name = m.get_string("name");
  const auto& spec = nn::model_spec(ex.model_name);
  nn::ModelConfig mc("model");
  for (const auto& k : spec.keys) {
    if (m.has(k.name)) mc.set(k.name, m.get_string(k.name));
  }
  if (!mc.has("d_input")) mc.set("d_input", ex.train_set->channels());
  if (!mc.has("n_classes")) mc.set("n_classes", ex.train_set->num_classes());
  ex.model = nn::build_model(ex.model_name, mc, *ex.gen);
  ex.model->to(ex.device);
  return ex;
}

}  // namespace ssm::train
