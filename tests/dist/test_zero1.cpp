// ZeRO-1 (trainers/zero1.h): sharded AdamW must equal plain data parallelism (BucketReducer + AdamW).
//
// Zero1Local.* and Zero1Reshard.* run in-process (a one-rank communicator defined here; resharding is pure).
// Zero1Dist.* (the parent) runs this binary under
//   mpirun --allow-run-as-root --oversubscribe -np 2 -x SSM_DIST_WORKER=mpi -x SSM_ZERO1_DIR=<tmp> <test_dist>
//          --gtest_filter=Zero1Worker.*
// and checks the exit status; Zero1Worker.* skip unless SSM_DIST_WORKER=mpi. Skipped without mpirun / MPI.
#include <unistd.h>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>

#include "core/error.h"
#include "tests/dist/tiny_model.h"
#include "trainers/bucket_reducer.h"
#include "trainers/comm.h"
#include "trainers/optim.h"
#include "trainers/safetensors.h"
#include "trainers/zero1.h"

using namespace ssm;
using namespace ssm::train;
using ssm::testing_dist::Tiny;

namespace {

bool zero_worker() {
  const char* w = std::getenv("SSM_DIST_WORKER");
  return w && std::string(w) == "mpi";
}

std::string exe_path() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, size_t(n)) : std::string();
}

// One process: every collective is the identity.
class LocalComm : public Communicator {
 public:
  LocalComm() : Communicator(10.0) {}
  int rank() const override { return 0; }
  int size() const override { return 1; }
  Device device() const override { return Device::cpu(); }
  const char* backend() const override { return "local-test"; }
  struct Done : Work {
    void wait() override {}
    bool done() override { return true; }
  };
  WorkPtr all_reduce_async(Tensor&, ReduceOp, const std::string&) override { return std::make_shared<Done>(); }
  WorkPtr reduce_scatter_async(const Tensor& in, Tensor& out, ReduceOp, const std::string&) override {
    check_comm_sizes(*this, in, out, "reduce-scatter", true);
    out.copy_(in);
    return std::make_shared<Done>();
  }
  WorkPtr all_gather_async(const Tensor& in, Tensor& out, const std::string&) override {
    check_comm_sizes(*this, in, out, "all-gather", false);
    out.copy_(in);
    return std::make_shared<Done>();
  }
  WorkPtr broadcast_async(Tensor&, int, const std::string&) override { return std::make_shared<Done>(); }
  void barrier(const std::string&) override {}
  void abort(const std::string&) override { aborted_ = true; }
  bool aborted() const override { return aborted_; }

 private:
  bool aborted_ = false;
};

// The settings both sides use: three groups (b1 without decay, w2 with its own lr), decay elsewhere.
Zero1Options options() {
  Zero1Options o;
  o.lr = 0.05;
  o.beta1 = 0.8;
  o.beta2 = 0.95;
  o.eps = 1e-6;
  o.weight_decay = 0.1;
  o.groups["ssm"] = GroupSettings{0.02, 0.0};
  return o;
}
std::vector<nn::Parameter> grouped(const Tiny& m) {
  std::vector<nn::Parameter> ps = m.named_parameters();
  for (auto& p : ps) {
    if (p.name == "b1") p.group = "no_decay";
    if (p.name == "w2") p.group = "ssm";
  }
  return ps;
}
std::unique_ptr<AdamW> reference_adamw(const std::vector<nn::Parameter>& ps) {
  const Zero1Options o = options();
  return std::make_unique<AdamW>(ps, o.lr, std::make_pair(o.beta1, o.beta2), o.eps, o.weight_decay, o.groups);
}

constexpr double kClip = 0.05;  // small enough to clip on every step
double lr_factor(int k) { return 1.0 - 0.1 * k; }
// Rank r's data at step k: rank 0 always uses `extra`, rank 1 on odd steps; nobody uses `never`.
bool uses_extra(int r, int k) { return r == 0 || k % 2 == 1; }

std::vector<double> weights(const Tiny& m) {
  std::vector<double> out;
  for (const auto& p : m.named_parameters())
    for (double x : p.var.data().to_double_vector()) out.push_back(x);
  return out;
}
void expect_rel(const std::vector<double>& got, const std::vector<double>& want, double rel, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], rel * (std::abs(want[i]) + 1e-6)) << what << "[" << i << "]";
}

// One step of each side on the same data. Returns {reference grad norm, zero1 grad norm}.
std::pair<double, double> step_both(Tiny& ref, GradReducer& red, AdamW& opt, Tiny& z, Zero1& zero, int r, int k) {
  auto rp = grouped(ref);
  ref.loss(testing_dist::input(r, k), uses_extra(r, k)).backward();
  red.reduce(rp);
  const double n_ref = clip_grad_norm(rp, kClip);
  opt.step(lr_factor(k));
  opt.zero_grad();
  auto zp = grouped(z);
  z.loss(testing_dist::input(r, k), uses_extra(r, k)).backward();
  zero.reduce(zp);
  const double n_zero = zero.clip_grad_norm(kClip);
  zero.step(lr_factor(k));
  zero.zero_grad();
  return {n_ref, n_zero};
}

std::map<std::string, Tensor> as_map(const std::vector<std::pair<std::string, Tensor>>& v) {
  return std::map<std::string, Tensor>(v.begin(), v.end());
}

// The full flat m (or v) of a reference AdamW, in parameter order.
std::vector<double> flat_state(const AdamW& opt, const std::string& suffix) {
  std::map<std::string, Tensor> st = as_map(opt.state_tensors());
  std::vector<double> out;
  for (const auto& p : opt.params())
    for (double x : st.at(p.name + "." + suffix).to_double_vector()) out.push_back(x);
  return out;
}
std::vector<int64_t> param_steps(const AdamW& opt) {
  std::map<std::string, Tensor> st = as_map(opt.state_tensors());
  std::vector<int64_t> out;
  for (const auto& p : opt.params()) out.push_back(int64_t(st.at(p.name + ".step").item()));
  return out;
}

}  // namespace

// ---------------- in-process ----------------

TEST(Zero1Local, OneRankEqualsAdamW) {
  auto comm = std::make_shared<LocalComm>();
  Tiny ref, z;
  LocalReducer local;
  auto opt = reference_adamw(grouped(ref));
  Zero1 zero(comm, grouped(z), options());
  EXPECT_EQ(zero.numel(), 2 + 32 + 8 + 24 + 3);
  EXPECT_EQ(zero.shard_numel(), zero.numel());
  EXPECT_EQ(zero.groups().size(), 3u);
  const std::vector<double> never0 = z.never->data().to_double_vector();
  for (int k = 0; k < 4; ++k) {
    auto [a, b] = step_both(ref, local, *opt, z, zero, 0, k);
    EXPECT_NEAR(b, a, 1e-6 * a);
    EXPECT_GT(a, kClip);  // clipping was exercised
  }
  expect_rel(weights(z), weights(ref), 1e-6, "weights");
  EXPECT_EQ(z.never->data().to_double_vector(), never0);  // no gradient ever: no decay, no step
  EXPECT_EQ(zero.step_count(), 4);
  // The state equals the reference's.
  auto st = as_map(zero.state_tensors());
  expect_rel(st.at("zero1.exp_avg").to_double_vector(), flat_state(*opt, "exp_avg"), 1e-6, "m");
  expect_rel(st.at("zero1.exp_avg_sq").to_double_vector(), flat_state(*opt, "exp_avg_sq"), 1e-6, "v");
  EXPECT_EQ(st.at("zero1.param_steps").to_int_vector(), param_steps(*opt));
  EXPECT_EQ(st.at("zero1.param_steps").to_int_vector(), (std::vector<int64_t>{0, 4, 4, 4, 4}));

  // Switching ZeRO off and on at resume: zero1 -> AdamW state loads into an AdamW and continues exactly.
  Zero1FullState full = zero1_gather({st});
  Tiny z2;
  z2.load_state_dict(as_map(z.state_dict()));
  auto opt2 = reference_adamw(grouped(z2));
  opt2->load_state_tensors(adamw_state_from_zero1(full, grouped(z2)), "converted");
  Zero1FullState back = zero1_from_adamw_state(as_map(opt2->state_tensors()), grouped(z2));
  EXPECT_EQ(back.exp_avg.to_double_vector(), full.exp_avg.to_double_vector());
  EXPECT_EQ(back.master.to_double_vector(), full.master.to_double_vector());
  EXPECT_EQ(back.param_steps, full.param_steps);
  EXPECT_EQ(back.step, full.step);
  for (int k = 4; k < 6; ++k) {
    auto p2 = grouped(z2);
    z2.loss(testing_dist::input(0, k), uses_extra(0, k)).backward();
    clip_grad_norm(p2, kClip);
    opt2->step(lr_factor(k));
    opt2->zero_grad();
    auto zp = grouped(z);
    z.loss(testing_dist::input(0, k), uses_extra(0, k)).backward();
    zero.reduce(zp);
    zero.clip_grad_norm(kClip);
    zero.step(lr_factor(k));
    zero.zero_grad();
  }
  expect_rel(weights(z2), weights(z), 1e-6, "after switching to adamw");
}

TEST(Zero1Local, SaveAndResumeEqualsUninterrupted) {
  auto comm = std::make_shared<LocalComm>();
  Tiny a, b;
  LocalReducer local;
  Zero1 za(comm, grouped(a), options());
  auto one_step = [&](Tiny& m, Zero1& z, int k) {
    auto ps = grouped(m);
    m.loss(testing_dist::input(0, k), uses_extra(1, k)).backward();
    z.reduce(ps);
    z.clip_grad_norm(kClip);
    z.step(lr_factor(k));
    z.zero_grad();
  };
  for (int k = 0; k < 2; ++k) one_step(a, za, k);
  // "Checkpoint": model weights and the shard, through a safetensors file.
  const std::string file = (std::filesystem::temp_directory_path() / cat("ssm-zero1-", ::getpid(), ".safetensors")).string();
  save_safetensors(file, za.state_tensors());
  b.load_state_dict(as_map(a.state_dict()));
  Zero1 zb(comm, grouped(b), options());
  zb.load_state_tensors(load_safetensors(file).tensors, file);
  std::filesystem::remove(file);
  EXPECT_EQ(zb.step_count(), 2);
  for (int k = 2; k < 4; ++k) {
    one_step(a, za, k);
    one_step(b, zb, k);
  }
  EXPECT_EQ(weights(b), weights(a));  // bit for bit
  // A shard of another layout is refused with a message naming the file.
  auto st = as_map(za.state_tensors());
  st["zero1.layout"] = Tensor::from_vector(std::vector<int64_t>{69, 2, 0, 35}, {4});
  try {
    zb.load_state_tensors(st, "ck/optimizer-rank0.safetensors");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ck/optimizer-rank0.safetensors: zero1 shard of rank 0 of 2"),
              std::string::npos)
        << e.what();
  }
  auto plain = as_map(za.state_tensors());
  plain["w1.exp_avg"] = Tensor::zeros({4, 8});
  EXPECT_THROW(zb.load_state_tensors(plain, "x"), Error);
}

TEST(Zero1Local, RefusesNonF32Parameters) {
  auto comm = std::make_shared<LocalComm>();
  Tiny m64(DType::f64);
  EXPECT_THROW(Zero1(comm, m64.named_parameters(), options()), Error);
}

// Full state of P = 69 elements cut into W = 2 shards; W -> 1 and W -> 3 must give back the same full state.
TEST(Zero1Reshard, TwoShardsToOneAndThree) {
  Zero1FullState full;
  full.step = 7;
  full.param_numel = {2, 32, 8, 24, 3};
  full.param_steps = {0, 7, 7, 6, 5};
  std::vector<float> a(69), b(69), c(69);
  for (int i = 0; i < 69; ++i) {
    a[size_t(i)] = 0.5f * float(i) - 3;
    b[size_t(i)] = std::sin(float(i));
    c[size_t(i)] = 1e-3f * float(i * i);
  }
  full.master = Tensor::from_vector(a, {69});
  full.exp_avg = Tensor::from_vector(b, {69});
  full.exp_avg_sq = Tensor::from_vector(c, {69});

  std::vector<std::map<std::string, Tensor>> two;
  for (int r = 0; r < 2; ++r) two.push_back(as_map(zero1_shard(full, r, 2)));
  EXPECT_EQ(two[1].at("zero1.layout").to_int_vector(), (std::vector<int64_t>{69, 2, 1, 35}));
  EXPECT_EQ(two[1].at("zero1.master").numel(), 35);
  EXPECT_EQ(two[1].at("zero1.master").to_double_vector()[34], 0.0);  // padding
  EXPECT_EQ(two[1].at("zero1.master").to_double_vector()[0], double(a[35]));

  auto same = [&](const Zero1FullState& g) {
    EXPECT_EQ(g.step, 7);
    EXPECT_EQ(g.param_numel, full.param_numel);
    EXPECT_EQ(g.param_steps, full.param_steps);
    EXPECT_EQ(g.master.to_double_vector(), full.master.to_double_vector());
    EXPECT_EQ(g.exp_avg.to_double_vector(), full.exp_avg.to_double_vector());
    EXPECT_EQ(g.exp_avg_sq.to_double_vector(), full.exp_avg_sq.to_double_vector());
  };
  same(zero1_gather(two));
  // W = 2 -> W = 1: one shard, the whole vector.
  auto one = as_map(reshard_zero1_state(two, 0, 1));
  EXPECT_EQ(one.at("zero1.layout").to_int_vector(), (std::vector<int64_t>{69, 1, 0, 69}));
  same(zero1_gather({one}));
  // W = 2 -> W = 3: shards of 23.
  std::vector<std::map<std::string, Tensor>> three;
  for (int r = 0; r < 3; ++r) three.push_back(as_map(reshard_zero1_state(two, r, 3)));
  EXPECT_EQ(three[2].at("zero1.layout").to_int_vector(), (std::vector<int64_t>{69, 3, 2, 23}));
  same(zero1_gather(three));
  // Three -> two again gives the original shards.
  for (int r = 0; r < 2; ++r)
    EXPECT_EQ(as_map(reshard_zero1_state(three, r, 2)).at("zero1.exp_avg").to_double_vector(),
              two[size_t(r)].at("zero1.exp_avg").to_double_vector());

  // Bad inputs: files out of order, a missing rank, shards of different steps.
  EXPECT_THROW(zero1_gather({two[1], two[0]}), Error);
  EXPECT_THROW(zero1_gather({two[0]}), Error);
  auto late = two;
  late[1]["step"] = Tensor::scalar(8, DType::i64);
  try {
    zero1_gather(late, {"a.safetensors", "b.safetensors"});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("b.safetensors"), std::string::npos) << e.what();
  }
}

// ---------------- the parent side of the 2-rank tests ----------------

TEST(Zero1Dist, TwoRanksEqualDataParallel) {
  if (!mpi_built()) GTEST_SKIP() << "this build has no MPI";
  if (std::system("command -v mpirun > /dev/null 2>&1") != 0) GTEST_SKIP() << "no mpirun";
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / cat("ssm-zero1-dist-", ::getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string cmd = "timeout 120 mpirun --allow-run-as-root --oversubscribe -np 2 -x SSM_DIST_WORKER=mpi "
                          "-x OMP_NUM_THREADS=1 -x SSM_ZERO1_DIR=" + dir.string() + " " + exe_path() +
                          " --gtest_color=no --gtest_filter=Zero1Worker.* 2>&1";
  std::string output;
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[4096];
  size_t k;
  while ((k = std::fread(buf, 1, sizeof buf, p)) > 0) output.append(buf, k);
  const int status = ::pclose(p);
  std::filesystem::remove_all(dir);
  EXPECT_EQ(status, 0) << output;
  EXPECT_NE(output.find("[  PASSED  ] 1 test"), std::string::npos) << output;
  EXPECT_EQ(output.find("SKIPPED"), std::string::npos) << output;
}

// ---------------- the ranks ----------------

TEST(Zero1Worker, EqualsBucketReducerAndAdamW) {
  if (!zero_worker()) GTEST_SKIP() << "runs as a rank under mpirun (see Zero1Dist.*)";
  const char* dir_env = std::getenv("SSM_ZERO1_DIR");
  ASSERT_NE(dir_env, nullptr);
  const std::filesystem::path dir(dir_env);
  auto c = make_communicator(parse_launch_env(), Device::cpu(), 30);
  const int r = c->rank();
  ASSERT_EQ(c->size(), 2);

  Tiny ref, z;
  BucketReducer red(c, ref.named_parameters(), {64.0 / 1048576.0, DType::f32});
  auto opt = reference_adamw(grouped(ref));
  Zero1 zero(c, grouped(z), options());
  // Memory: P = 69 padded to 70, 35 elements per rank; 12 bytes each (master, m, v).
  EXPECT_EQ(zero.numel(), 69);
  EXPECT_EQ(zero.shard_numel(), 35);
  EXPECT_EQ(zero.shard_offset(), 35 * r);
  EXPECT_EQ(zero.state_bytes(), 8u * 35u);
  EXPECT_EQ(zero.unsharded_state_bytes(), 8u * 69u);

  const std::vector<double> never0 = z.never->data().to_double_vector();
  for (int k = 0; k < 4; ++k) {
    auto [a, b] = step_both(ref, red, *opt, z, zero, r, k);
    EXPECT_NEAR(b, a, 1e-6 * a) << "step " << k;
    EXPECT_GT(a, kClip);
  }
  expect_rel(weights(z), weights(ref), 1e-6, "weights after 4 steps");
  EXPECT_EQ(z.never->data().to_double_vector(), never0);
  // Both ranks hold the same weights.
  for (double w : weights(z)) {
    Tensor t = Tensor::full({1}, w, DType::f64);
    c->broadcast(t, 0);
    ASSERT_EQ(t.item(), w);
  }

  // Checkpoint: one file per rank; W = 2 -> 1 gives the reference optimizer's full state.
  save_safetensors((dir / zero1_shard_file(r)).string(), zero.state_tensors());
  c->barrier();
  std::vector<std::map<std::string, Tensor>> files;
  std::vector<std::string> names;
  for (int q = 0; q < 2; ++q) {
    names.push_back((dir / zero1_shard_file(q)).string());
    files.push_back(load_safetensors(names.back()).tensors);
  }
  Zero1FullState full = zero1_gather(files, names);
  expect_rel(full.master.to_double_vector(), weights(ref), 1e-6, "full master");
  expect_rel(full.exp_avg.to_double_vector(), flat_state(*opt, "exp_avg"), 1e-6, "full m");
  expect_rel(full.exp_avg_sq.to_double_vector(), flat_state(*opt, "exp_avg_sq"), 1e-6, "full v");
  EXPECT_EQ(full.param_steps, param_steps(*opt));
  EXPECT_EQ(full.step, 4);
  auto one = as_map(reshard_zero1_state(files, 0, 1, names));
  EXPECT_EQ(one.at("zero1.master").to_double_vector(), full.master.to_double_vector());

  // Resume: a fresh model + Zero1 loaded from the files continues exactly like the uninterrupted run.
  Tiny z2;
  z2.load_state_dict(as_map(z.state_dict()));
  Zero1 zero2(c, grouped(z2), options());
  zero2.load_state_tensors(as_map(reshard_zero1_state(files, r, 2, names)), names[size_t(r)]);
  for (int k = 4; k < 6; ++k) {
    step_both(ref, red, *opt, z, zero, r, k);
    auto p2 = grouped(z2);
    z2.loss(testing_dist::input(r, k), uses_extra(r, k)).backward();
    zero2.reduce(p2);
    zero2.clip_grad_norm(kClip);
    zero2.step(lr_factor(k));
    zero2.zero_grad();
  }
  EXPECT_EQ(weights(z2), weights(z));  // bit for bit
  expect_rel(weights(z), weights(ref), 1e-6, "weights after 6 steps");
  c->barrier();
}
