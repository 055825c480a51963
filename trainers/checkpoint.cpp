#include "trainers/checkpoint.h"

#include <algorithm>
#include <fstream>
#include <regex>
#include <sstream>

#include "core/error.h"
#include "trainers/atomic_file.h"
#include "trainers/safetensors.h"

namespace ssm::train {

namespace fs = std::filesystem;

namespace {

// "step-123" -> 123; anything else (including "step-123.tmp") -> nullopt.
std::optional<int64_t> parse_step_dir(const std::string& name) {
  static const std::regex re("^step-([0-9]{1,18})$");
  std::smatch m;
  if (!std::regex_match(name, m, re)) return std::nullopt;
  return std::stoll(m[1].str());
}

bool is_complete(const fs::path& dir) {
  std::error_code ec;
  for (const char* f : {CheckpointFiles::model, CheckpointFiles::optimizer, CheckpointFiles::trainer_state})
    if (!fs::is_regular_file(dir / f, ec)) return false;
  return true;
}

void remove_all_or_throw(const fs::path& p) {
  std::error_code ec;
  fs::remove_all(p, ec);
  if (ec) throw_internal(cat("cannot remove '", p.string(), "': ", ec.message()));
}

}  // namespace

fs::path save_checkpoint(const fs::path& run_dir, int64_t step, const NamedTensors& model_tensors,
                         const NamedTensors& optimizer_tensors, const nlohmann::json& trainer_state, int keep_last,
                         const std::vector<fs::path>& extra_files) {
  SSM_CHECK_INPUT(step >= 0, "save_checkpoint: step must be >= 0, got ", step);
  const fs::path ckpt_dir = run_dir / "checkpoints";
  std::error_code ec;
  fs::create_directories(ckpt_dir, ec);
  if (ec) throw_input(cat("cannot create checkpoint folder '", ckpt_dir.string(), "': ", ec.message()));

  const fs::path final_dir = ckpt_dir / cat("step-", step);
  const fs::path tmp_dir = ckpt_dir / cat("step-", step, ".tmp");
  remove_all_or_throw(tmp_dir);  // a leftover from a crash
  fs::create_directory(tmp_dir, ec);
  if (ec) throw_input(cat("cannot create '", tmp_dir.string(), "': ", ec.message()));

  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"producer", "ssm"}, {"step", cat(step)}};
  save_safetensors((tmp_dir / CheckpointFiles::model).string(), model_tensors, meta);
  save_safetensors((tmp_dir / CheckpointFiles::optimizer).string(), optimizer_tensors, meta);
  write_file_atomic((tmp_dir / CheckpointFiles::trainer_state).string(), trainer_state.dump(2) + "\n");
  for (const auto& f : extra_files) {
    std::error_code mv;
    fs::rename(f, tmp_dir / f.filename(), mv);
    if (mv) throw_internal(cat("cannot move '", f.string(), "' into '", tmp_dir.string(), "': ", mv.message()));
  }
  fsync_dir(tmp_dir.string());

  remove_all_or_throw(final_dir);  // re-saving a step replaces it
  fs::rename(tmp_dir, final_dir, ec);
  if (ec) throw_internal(cat("cannot rename '", tmp_dir.string(), "' to '", final_dir.string(), "': ", ec.message()));
  fsync_dir(ckpt_dir.string());

  if (keep_last > 0) {
    auto all = list_checkpoints(run_dir);
    for (size_t i = 0; i + size_t(keep_last) < all.size(); ++i) remove_all_or_throw(all[i].second);
    for (const auto& e : fs::directory_iterator(ckpt_dir, ec)) {
      const std::string name = e.path().filename().string();
      if (e.is_directory() && name.size() > 4 && name.substr(name.size() - 4) == ".tmp") remove_all_or_throw(e.path());
    }
  }
  return final_dir;
}

std::vector<std::pair<int64_t, fs::path>> list_checkpoints(const fs::path& run_dir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  const fs::path ckpt_dir = run_dir / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(ckpt_dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(ckpt_dir, ec)) {
    if (!e.is_directory()) continue;
    auto step = parse_step_dir(e.path().filename().string());
    if (step && is_complete(e.path())) out.emplace_back(*step, e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<fs::path> latest_checkpoint(const fs::path& run_dir) {
  auto all = list_checkpoints(run_dir);
  if (all.empty()) return std::nullopt;
  return all.back().second;
}

Checkpoint load_checkpoint(const fs::path& path) {
  std::error_code ec;
  SSM_CHECK_INPUT(fs::is_directory(path, ec), "checkpoint '", path.string(), "' is not a folder",
                  fs::exists(path, ec) ? "" : " (it does not exist)");
  for (const char* f : {CheckpointFiles::model, CheckpointFiles::optimizer, CheckpointFiles::trainer_state})
    SSM_CHECK_INPUT(fs::is_regular_file(path / f, ec), "checkpoint '", path.string(), "' is incomplete: missing ",
                    f);
  Checkpoint c;
  c.path = path;
  c.model = load_safetensors((path / CheckpointFiles::model).string()).tensors;
  c.optimizer = load_safetensors((path / CheckpointFiles::optimizer).string()).tensors;
  const fs::path js = path / CheckpointFiles::trainer_state;
  std::ifstream in(js);
  SSM_CHECK_INPUT(in.good(), "cannot read '", js.string(), "'");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    c.trainer_state = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {
    throw_input(cat("checkpoint file '", js.string(), "': bad JSON: ", e.what()));
  }
  SSM_CHECK_INPUT(c.trainer_state.is_object(), "checkpoint file '", js.string(), "': expected a JSON object");
  fs::path name = path.filename().empty() ? path.parent_path().filename() : path.filename();  // "step-5/"
  auto step = parse_step_dir(name.string());
  if (c.trainer_state.contains("step") && c.trainer_state["step"].is_number_integer())
    c.step = c.trainer_state["step"].get<int64_t>();
  else
    c.step = step.value_or(0);
  return c;
}

}  // namespace ssm::train
