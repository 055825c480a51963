#include "trainers/trainer.h"

#include <chrono>
#include <csignal>
#include <optional>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <limits>
#include <sstream>

#include <nlohmann/json.hpp>

#include "autograd/functions.h"
#include "data/loader.h"
#include "trainers/atomic_file.h"
#include "trainers/bucket_reducer.h"
#include "trainers/comm.h"
#include "trainers/checkpoint.h"
#include "trainers/experiment.h"
#include "trainers/format.h"
#include "trainers/metrics.h"
#include "trainers/optim.h"
#include "trainers/progress.h"
#include "trainers/reducer.h"
#include "trainers/safetensors.h"
#include "trainers/schedule.h"
#include "trainers/signals.h"
#include "trainers/watchdog.h"
#include "trainers/zero1.h"

namespace ssm::train {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

std::set<std::string> trainer_keys(const Config& recipe) {
  std::set<std::string> keys = experiment_keys(recipe);
  for (const char* k : {"steps", "epochs", "accumulate", "grad_clip", "log_every", "eval_every", "checkpoint_every",
                        "keep_checkpoints", "out_dir", "resume"})
    keys.insert(std::string("trainer.") + k);
  for (const auto& k : dist_config_keys()) keys.insert(k);
  // optimizer.* and schedule.* are checked by make_optimizer / schedule_from_config.
  keys.insert("optimizer");
  keys.insert("schedule");
  return keys;
}

// Moves the parameters' gradients out (undefined where there is none), leaving none behind.
std::vector<Tensor> take_grads(std::vector<nn::Parameter>& params) {
  std::vector<Tensor> out;
  for (auto& p : params) {
    out.push_back(p.var.has_grad() ? p.var.grad() : Tensor());
    p.var.zero_grad();
  }
  return out;
}

// grad_i = earlier_i + grad_i (in that order: the association bit-exact equality with data parallelism needs).
void add_grads_before(std::vector<nn::Parameter>& params, const std::vector<Tensor>& earlier) {
  for (size_t i = 0; i < params.size(); ++i) {
    if (!earlier[i].defined()) continue;
    ag::Variable v = params[i].var;
    const Tensor fresh = v.has_grad() ? v.grad() : Tensor();
    v.zero_grad();
    v.add_grad(earlier[i]);
    if (fresh.defined()) v.add_grad(fresh);
  }
}

// Optimizer state of a checkpoint that does not match this run's layout: ZeRO-1 shards of any world size
// (resharded for this run, or gathered into AdamW's state without ZeRO), or AdamW's state sharded for ZeRO.
void load_sharded_optimizer_state(const fs::path& dir, const std::vector<nn::Parameter>& params,
                                  const ProcessGroupEnv& env, Zero1* zero, Optimizer* optimizer) {
  Checkpoint ck = load_checkpoint(dir);
  if (ck.optimizer.count("zero1.shards")) {
    const int W = int(ck.optimizer.at("zero1.shards").item());
    std::vector<std::map<std::string, Tensor>> files;
    std::vector<std::string> names;
    for (int r = 0; r < W; ++r) {
      names.push_back((dir / zero1_shard_file(r)).string());
      files.push_back(load_safetensors(names.back()).tensors);
    }
    if (zero) {
      auto shard = reshard_zero1_state(files, env.rank, env.world_size, names);
      zero->load_state_tensors(std::map<std::string, Tensor>(shard.begin(), shard.end()), names[0]);
    } else {
      auto full = adamw_state_from_zero1(zero1_gather(files, names), params);
      optimizer->load_state_tensors(std::map<std::string, Tensor>(full.begin(), full.end()), names[0]);
    }
  } else {
    const std::string source = (dir / CheckpointFiles::optimizer).string();
    auto shard = zero1_shard(zero1_from_adamw_state(ck.optimizer, params, source), env.rank, env.world_size);
    zero->load_state_tensors(std::map<std::string, Tensor>(shard.begin(), shard.end()), source);
  }
}

}  // namespace

TrainSummary train(const Config& recipe, std::ostream& out) {
  install_stop_handlers();
  const ProcessGroupEnv env = parse_launch_env();
  recipe.check_unknown_keys(trainer_keys(recipe));
  const DistConfig dist = dist_config(recipe.sub("trainer.dist"));
  // Rank 0 speaks and writes (run directory, metrics, checkpoints); the other ranks train silently.
  const bool rank0 = env.rank == 0;
  std::ostringstream quiet;
  std::ostream& log = rank0 ? out : quiet;

  Experiment ex = build_experiment(recipe, log, env.local_rank);
  std::unique_ptr<Task> task = make_task(ex.task);
  const Config t = recipe.sub("trainer");
  const fs::path run_dir = t.get_string("out_dir", "runs/" + ex.model_name);
  if (rank0) {
    fs::create_directories(run_dir);
    write_file_atomic((run_dir / "recipe.yaml").string(), recipe.resolved_yaml());
    std::string ov;
    for (const auto& o : recipe.overrides()) ov += o + "\n";
    write_file_atomic((run_dir / "overrides.txt").string(), ov);
  }

  const int64_t accumulate = t.get_int("accumulate", 1);
  SSM_CHECK_INPUT(accumulate >= 1, recipe.source(), ": ", t.full_key("accumulate"), " must be >= 1");
  data::Sampler sampler(ex.train_set->size(), ex.batch_size, /*shuffle=*/true, ex.seed, env.rank, env.world_size,
                        /*drop_last=*/true);
  SSM_CHECK_INPUT(sampler.batches_per_epoch() >= 1, recipe.source(), ": data.batch_size ", ex.batch_size,
                  " is larger than the ", ex.train_set->size(), " training rows");
  int64_t total_steps;
  if (t.has("steps")) {
    SSM_CHECK_INPUT(!t.has("epochs"), recipe.source(), ": give trainer.steps or trainer.epochs, not both");
    total_steps = t.get_int("steps");
  } else {
    const double epochs = t.get_double("epochs", 1.0);
    total_steps = int64_t(std::ceil(epochs * double(sampler.batches_per_epoch()) / double(accumulate)));
  }
  SSM_CHECK_INPUT(total_steps >= 1, recipe.source(), ": the run has no steps (trainer.steps / trainer.epochs)");
  const double grad_clip = t.get_double("grad_clip", 0.0);
  const int64_t log_every = std::max<int64_t>(1, t.get_int("log_every", 50));
  const int64_t eval_every = t.get_int("eval_every", 0);
  const int64_t checkpoint_every = t.get_int("checkpoint_every", 0);
  const int keep_checkpoints = int(t.get_int("keep_checkpoints", 2));

  std::vector<nn::Parameter> params = ex.model->named_parameters();
  // ZeRO-1 (trainer.dist.zero: 1, several processes): AdamW's state and update sharded over ranks
  // (trainers/zero1.h) in place of `optimizer`, which is then never built (its state would be a full copy).
  const bool use_zero = dist.zero == 1 && env.world_size > 1;
  std::unique_ptr<Optimizer> optimizer = use_zero ? nullptr : make_optimizer(recipe.sub("optimizer"), params);
  std::optional<fs::path> zero_resume;
  const Schedule schedule = schedule_from_config(recipe.sub("schedule"), total_steps);

  int64_t step = 0;
  // trainer.resume: auto / true (default) continues from the newest valid checkpoint of out_dir; false starts
  // over. A checkpoint whose files are truncated or corrupt is reported and skipped for the one before it; a
  // valid checkpoint that does not fit the recipe (other model, other world size) is an error.
  const std::string resume = t.has("resume") ? t.get_string("resume") : "auto";
  SSM_CHECK_INPUT(resume == "auto" || resume == "true" || resume == "false", recipe.source(), ": ",
                  t.full_key("resume"), ": expected auto, true or false, got '", resume, "'");
  if (resume != "false") {
    std::optional<Checkpoint> found;
    auto all = list_checkpoints(run_dir);
    for (auto it = all.rbegin(); it != all.rend() && !found; ++it) {
      try {
        found = load_checkpoint(it->second);
      } catch (const Error& e) {
        if (e.kind() != ErrorKind::BadInput) throw;
        log << "warning: skipping checkpoint " << it->second.string() << ": " << e.what() << "\n";
      }
    }
    if (found) {
      const Checkpoint& ck = *found;
      const fs::path* path = &ck.path;  // the checkpoint folder
      ex.model->load_state_dict(ck.model, (*path / CheckpointFiles::model).string());
      if (ck.optimizer.count("zero1.shards")) {
        zero_resume = *path;  // sharded optimizer state: loaded below (as shards or converted to AdamW's)
      } else if (use_zero) {
        zero_resume = *path;  // a plain AdamW checkpoint continued with ZeRO-1: sharded below
      } else {
        optimizer->load_state_tensors(ck.optimizer, (*path / CheckpointFiles::optimizer).string());
      }
      const json& st = ck.trainer_state;
      try {
        step = st.at("step").get<int64_t>();
        SSM_CHECK_INPUT(st.at("world_size").get<int>() == env.world_size, path->string(),
                        ": checkpoint was written by ", st.at("world_size").get<int>(),
                        " processes; this run has ", env.world_size, " (the sampler's shards would differ)");
        sampler.set_state({st.at("sampler").at("epoch").get<int64_t>(), st.at("sampler").at("position").get<int64_t>()});
        ex.gen->offset = st.at("generator").at("offset").get<uint64_t>();
      } catch (const json::exception& e) {
        throw_input(cat((*path / CheckpointFiles::trainer_state).string(), ": ", e.what()));
      }
      log << "resuming from " << path->string() << " (step " << step << ")\n";
    }
  }
  SSM_CHECK_INPUT(step <= total_steps, run_dir.string(), ": the latest checkpoint is at step ", step,
                  " but the recipe asks for ", total_steps, " steps");

  // Data parallelism: one communicator (NCCL on GPUs, MPI on CPUs), identical starting weights on every
  // rank, and the bucketed reducer that all-reduces gradients from the autograd hooks during backward.
  std::shared_ptr<Communicator> comm;
  std::unique_ptr<GradReducer> reducer_ptr = std::make_unique<LocalReducer>();
  BucketReducer* ddp = nullptr;
  Zero1* zero = nullptr;
  if (env.world_size > 1) {
    comm = make_communicator(env, ex.device, dist.timeout_s);
    std::vector<Tensor> state;
    for (auto& kv : ex.model->state_dict()) state.push_back(kv.second);
    broadcast_tensors(*comm, state, 0);
    if (use_zero) {
      auto z = std::make_unique<Zero1>(comm, params, zero1_options(recipe.sub("optimizer")));
      zero = z.get();
      reducer_ptr = std::move(z);
      log << "ZeRO-1: optimizer state " << zero->state_bytes() << " bytes on each rank instead of "
          << zero->unsharded_state_bytes() << "\n";
    } else {
      auto br = std::make_unique<BucketReducer>(comm, params, dist.bucket);
      ddp = br.get();
      reducer_ptr = std::move(br);
    }
  }
  GradReducer& reducer = *reducer_ptr;
  if (zero_resume) load_sharded_optimizer_state(*zero_resume, params, env, zero, optimizer.get());
  // Bounded steps: a rank stuck in a collective or a GPU sync is ended (the others then fail fast).
  std::unique_ptr<Watchdog> watchdog;
  if (comm) watchdog = std::make_unique<Watchdog>(comm, dist.timeout_s);

  std::optional<MetricsLogger> metrics;
  if (rank0) metrics.emplace(run_dir.string());
  data::Loader loader(ex.train_set, sampler, ex.prefetch);

  auto save = [&](int64_t at_step) {
    json st;
    st["step"] = at_step;
    const auto s = loader.state();
    st["sampler"] = {{"epoch", s.epoch}, {"position", s.position}};
    st["generator"] = {{"seed", ex.gen->seed}, {"offset", ex.gen->offset}};
    st["world_size"] = reducer.world_size();
    st["model"] = ex.model_name;
    st["model_config"] = ex.model_config;
    st["recipe"] = recipe.resolved_yaml();
    std::vector<std::pair<std::string, Tensor>> model_tensors = ex.model->state_dict();
    if (zero) {  // every rank writes its optimizer shard; rank 0 moves them into the checkpoint folder
      const fs::path stage = run_dir / "checkpoints" / cat("step-", at_step, ".zero.tmp");
      if (rank0) {
        fs::remove_all(stage);
        fs::create_directories(stage);
      }
      comm->barrier("checkpoint staging");
      save_safetensors((stage / zero1_shard_file(env.rank)).string(), zero->state_tensors());
      comm->barrier("optimizer shards written");
      std::vector<fs::path> shards;
      for (int r = 0; r < env.world_size; ++r) shards.push_back(stage / zero1_shard_file(r));
      st["optimizer_shards"] = env.world_size;
      const NamedTensors marker = {{"zero1.shards", Tensor::scalar(double(env.world_size), DType::i64)}};
      if (rank0) {
        save_checkpoint(run_dir, at_step, model_tensors, marker, st, keep_checkpoints, shards);
        fs::remove_all(stage);
      }
    } else if (rank0) {
      save_checkpoint(run_dir, at_step, model_tensors, optimizer->state_tensors(), st, keep_checkpoints);
    }
    if (comm) comm->barrier("checkpoint barrier");
  };

  log << "training " << ex.model_name << " (" << ex.model->num_parameters() << " parameters) on "
      << ex.device.str() << ": " << total_steps << " steps of " << ex.batch_size * accumulate * reducer.world_size()
      << " samples (" << env.world_size << " process" << (env.world_size > 1 ? "es, " : ", ")
      << (comm ? comm->backend() : "local") << "), " << ex.seq_len << " steps per sequence; run directory "
      << run_dir.string() << "\n";

  TrainSummary summary;
  summary.run_dir = run_dir.string();
  ProgressOptions popt;
  popt.total = total_steps;
  popt.start_step = step;
  std::ostringstream no_progress;
  auto progress = rank0 ? ProgressBar::to_stderr(popt) : std::make_unique<ProgressBar>(no_progress, false, popt);
  ex.model->train();
  const double t0 = now_seconds();
  double window_loss = 0, window_start = t0, smoothed_loss = -1;
  int64_t window_steps = 0, last_saved = -1;
  StepCounts window_counts;
  const double clip = grad_clip > 0 ? grad_clip : std::numeric_limits<double>::infinity();

  while (step < total_steps) {
    if (watchdog) watchdog->arm(step + 1);
    int sig = stop_signal();
    // Every rank must stop at the same step: a signal seen by any rank stops all of them.
    if (comm && all_reduce_scalar(*comm, sig ? double(sig) : 0.0, ReduceOp::Sum, "stop-signal check") > 0 && !sig)
      sig = SIGTERM;
    if (sig) {
      progress->print(cat("signal ", sig, ": writing a checkpoint at step ", step, " and stopping"));
      save(step);
      summary.stopped_early = true;
      summary.stop_signal = sig;
      break;
    }
    double step_loss = 0;
    int64_t step_samples = 0;
    for (int64_t micro = 0; micro < accumulate; ++micro) {
      data::Batch batch = loader.next();
      const int64_t before = window_counts.samples;
      ag::Variable loss = task->loss(*ex.model, batch, ex.device, ex.autocast, &window_counts);
      const Tensor loss_value = loss.data();
      if (accumulate > 1) loss = ag::mul(loss, 1.0 / double(accumulate));
      if (ddp) ddp->set_sync(micro == accumulate - 1);  // only the last micro-step all-reduces
      // One process: each micro-step's gradients are summed on their own, then added to the earlier ones,
      // the association of data parallelism (rank 0's sum + rank 1's sum), so accumulation over k micro-steps
      // equals k ranks bit for bit. Costs one more set of gradients during the backward. (Under data
      // parallelism the reducer's hooks must see the whole gradient, so there they accumulate in place.)
      std::vector<Tensor> earlier;
      if (micro > 0 && !comm) earlier = take_grads(params);
      loss.backward();
      if (!earlier.empty()) add_grads_before(params, earlier);
      // Read after queueing the backward: reading the loss waits for the GPU, and doing it before would
      // leave the GPU idle while the host queues the backward's first kernels.
      const double l = loss_value.item();
      SSM_CHECK(std::isfinite(l), "the loss became ", l, " at step ", step + 1,
                " (try a lower optimizer.lr or trainer.grad_clip)");
      step_loss += l / double(accumulate);
      step_samples += window_counts.samples - before;
    }
    reducer.reduce(params);
    const double grad_norm = zero ? zero->clip_grad_norm(clip) : clip_grad_norm(params, clip);
    const double factor = schedule.factor(step);
    if (zero) {
      zero->step(factor);
      zero->zero_grad();
    } else {
      optimizer->step(factor);
      optimizer->zero_grad();
    }
    ++step;
    if (watchdog) watchdog->disarm();

    window_loss += step_loss;
    ++window_steps;
    smoothed_loss = smoothed_loss < 0 ? step_loss : 0.9 * smoothed_loss + 0.1 * step_loss;
    progress->update(step, {{"loss", smoothed_loss}}, step_samples);

    if (step % log_every == 0 || step == total_steps) {
      const double now = now_seconds();
      double mean_loss = window_loss / double(window_steps);
      if (comm) mean_loss = all_reduce_scalar(*comm, mean_loss, ReduceOp::Avg, "loss average");
      const auto& groups = zero ? zero->groups() : optimizer->groups();
      std::vector<std::pair<std::string, double>> m = {
          {"loss", mean_loss},
          {"lr", factor * (groups.empty() ? 0.0 : groups[0].lr)},
          {"lr_factor", factor},
          {"grad_norm", grad_norm}};
      // Rates are global: every rank processes the same number of samples per step.
      StepCounts global = window_counts;
      global.samples *= env.world_size;
      global.tokens *= env.world_size;
      global.correct *= env.world_size;  // rank 0's accuracy stands for all
      for (const auto& kv : task->window_metrics(global, now - window_start)) m.push_back(kv);
      m.emplace_back("peak_memory_mb", double(allocator_stats(ex.device).peak_bytes) / 1048576.0);
      m.emplace_back("epoch", double(loader.state().epoch) +
                                  double(loader.state().position) / double(sampler.batches_per_epoch()));
      if (metrics) metrics->log_pairs(step, m);
      window_loss = 0;
      window_steps = 0;
      window_counts = {};
      window_start = now;
    }
    if (eval_every > 0 && step % eval_every == 0 && step < total_steps) {
      EvalStats e = task->evaluate(*ex.model, *ex.test_set, ex.eval_batch_size, ex.device, ex.autocast);
      std::vector<std::pair<std::string, double>> m = {{"eval/loss", e.loss}};
      for (const auto& [k, v] : e.metrics) m.emplace_back("eval/" + k, v);
      if (metrics) metrics->log_pairs(step, m);
      progress->print(cat("step ", step, ": ", task->describe(e, "test")));
    }
    if (checkpoint_every > 0 && step % checkpoint_every == 0) {
      save(step);
      last_saved = step;
    }
  }
  progress->finish();
  summary.steps = step;
  summary.train_seconds = now_seconds() - t0;
  if (summary.stopped_early) {
    log << "stopped at step " << step << " of " << total_steps << "; run the same command to resume\n";
    return summary;
  }
  if (last_saved != step) save(step);
  summary.test = task->evaluate(*ex.model, *ex.test_set, ex.eval_batch_size, ex.device, ex.autocast);
  {
    std::vector<std::pair<std::string, double>> m = {{"test/loss", summary.test.loss}};
    for (const auto& [k, v] : summary.test.metrics) m.emplace_back("test/" + k, v);
    if (metrics) metrics->log_pairs(step, m);
  }
  log << "trained " << step << " steps in " << fixed(summary.train_seconds, 1) << " s\n";
  log << task->describe(summary.test, "test") << "\n";
  return summary;
}

EvalStats evaluate_checkpoint(const std::string& checkpoint_dir, const std::vector<std::string>& overrides,
                              std::ostream& out) {
  Checkpoint ck = load_checkpoint(checkpoint_dir);
  const fs::path state_file = fs::path(checkpoint_dir) / CheckpointFiles::trainer_state;
  SSM_CHECK_INPUT(ck.trainer_state.contains("recipe") && ck.trainer_state["recipe"].is_string(), state_file.string(),
                  ": no recipe stored in the trainer state");
  Config recipe = Config::from_string(ck.trainer_state["recipe"].get<std::string>(), state_file.string(), overrides);
  recipe.check_unknown_keys(trainer_keys(recipe));
  Experiment ex = build_experiment(recipe, out);
  ex.model->load_state_dict(ck.model, (fs::path(checkpoint_dir) / CheckpointFiles::model).string());
  std::unique_ptr<Task> task = make_task(ex.task);
  EvalStats e = task->evaluate(*ex.model, *ex.test_set, ex.eval_batch_size, ex.device, ex.autocast);
  out << task->describe(e, "test") << "\n";
  return e;
}

}  // namespace ssm::train
