#include "trainers/bucket_reducer.h"

#include <cmath>

#include "core/error.h"

namespace ssm::train {

namespace {

struct Bucket {
  std::vector<size_t> params;    // indices into State::vars, in the order they are packed
  std::vector<int64_t> offsets;  // element offset of each parameter's gradient in `buffer`
  int64_t grad_numel = 0;        // gradients occupy [0, grad_numel); presence flags follow, one per parameter
  Tensor buffer;                 // [grad_numel + params.size()] in reduce_dtype, on the communicator's device
  std::vector<float> flags;      // the presence pattern held by flags_dev (usually all ones, step after step)
  Tensor flags_dev;              // [params.size()] in reduce_dtype: copied into the buffer device to device
  size_t ready = 0;              // parameters whose hook ran this step
  WorkPtr work;                  // set once launched this step
};

}  // namespace

struct BucketReducer::State {
  std::shared_ptr<Communicator> comm;
  BucketOptions opt;
  std::vector<ag::Variable> vars;
  std::vector<std::string> names;
  std::vector<int> bucket_of;  // -1: does not require grad (not reduced)
  std::vector<char> ready;
  std::vector<Bucket> buckets;
  std::vector<std::vector<size_t>> indices;
  size_t next = 0;  // the next bucket to launch this step
  bool sync = true;
  bool alive = true;

  // Packs bucket b (missing gradients as zeros, with a 0 flag) and starts its all-reduce.
  void launch(size_t b) {
    Bucket& k = buckets[b];
    std::vector<float> flags(k.params.size(), 0.0f);
    for (size_t j = 0; j < k.params.size(); ++j) {
      ag::Variable& v = vars[k.params[j]];
      Tensor dst = k.buffer.narrow(0, k.offsets[j], v.numel());
      if (v.has_grad()) {
        dst.view(v.shape()).copy_(v.grad());
        flags[j] = 1.0f;
      } else {
        dst.zero_();
      }
    }
    // A host-to-device copy waits for the compute stream; doing that per bucket would stall the backward
    // it should overlap with. So the pattern is uploaded only when it changes and copied on the device.
    if (flags != k.flags || !k.flags_dev.defined()) {
      k.flags = flags;
      k.flags_dev = Tensor::from_vector(flags, {int64_t(flags.size())}).to(k.buffer.dtype()).to(k.buffer.device());
    }
    k.buffer.narrow(0, k.grad_numel, int64_t(flags.size())).copy_(k.flags_dev);
    k.work = comm->all_reduce_async(k.buffer, ReduceOp::Avg, cat("all-reduce of bucket ", b));
  }

  void launch_ready() {
    while (next < buckets.size() && buckets[next].ready == buckets[next].params.size()) launch(next++);
  }

  void on_grad_ready(size_t i) {
    if (!sync) return;
    const int b = bucket_of[i];
    if (b < 0) return;
    if (ready[i]) {
      SSM_CHECK(size_t(b) >= next, "data parallel: the gradient of '", names[i], "' changed after its bucket ", b,
                " was all-reduced (two backward passes in one synchronised step? call set_sync(false) before "
                "every micro-step but the last)");
      return;
    }
    ready[i] = 1;
    ++buckets[size_t(b)].ready;
    launch_ready();
    // Drive progress of what is in flight (MPI progresses only inside MPI calls).
    for (size_t j = 0; j < next; ++j) buckets[j].work->done();
  }
};

DistConfig dist_config(const Config& d) {
  DistConfig c;
  c.bucket.bucket_mb = d.get_double("bucket_mb", 25.0);
  SSM_CHECK_INPUT(c.bucket.bucket_mb > 0, d.source(), ": ", d.full_key("bucket_mb"), " must be > 0 (got ",
                  c.bucket.bucket_mb, ")");
  const std::string rd = d.get_string("reduce_dtype", "f32");
  SSM_CHECK_INPUT(rd == "f32" || rd == "bf16", d.source(), ": ", d.full_key("reduce_dtype"), " must be f32 or bf16 (got '",
                  rd, "')");
  c.bucket.reduce_dtype = dtype_from_name(rd);
  c.timeout_s = d.get_double("timeout_s", 300.0);
  SSM_CHECK_INPUT(c.timeout_s > 0, d.source(), ": ", d.full_key("timeout_s"), " must be > 0 seconds (got ",
                  c.timeout_s, ")");
  c.zero = int(d.get_int("zero", 0));
  SSM_CHECK_INPUT(c.zero == 0 || c.zero == 1, d.source(), ": ", d.full_key("zero"), " must be 0 or 1 (got ", c.zero,
                  ")");
  return c;
}

std::vector<std::string> dist_config_keys() {
  return {"trainer.dist.bucket_mb", "trainer.dist.reduce_dtype", "trainer.dist.timeout_s", "trainer.dist.zero"};
}

std::vector<std::vector<size_t>> BucketReducer::assign_buckets(const std::vector<size_t>& bytes, size_t cap_bytes) {
  std::vector<std::vector<size_t>> out;
  std::vector<size_t> cur;
  size_t cur_bytes = 0;
  for (size_t k = bytes.size(); k-- > 0;) {
    if (!cur.empty() && cur_bytes + bytes[k] > cap_bytes) {
      out.push_back(std::move(cur));
      cur.clear();
      cur_bytes = 0;
    }
    cur.push_back(k);
    cur_bytes += bytes[k];
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

BucketReducer::BucketReducer(std::shared_ptr<Communicator> comm, const std::vector<nn::Parameter>& params,
                             BucketOptions options)
    : st_(std::make_shared<State>()) {
  SSM_CHECK_INPUT(comm != nullptr, "BucketReducer: no communicator");
  SSM_CHECK_INPUT(options.bucket_mb > 0, "trainer.dist.bucket_mb must be > 0 (got ", options.bucket_mb, ")");
  const DType rd = options.reduce_dtype;
  SSM_CHECK_INPUT(rd == DType::f32 || rd == DType::bf16 || rd == DType::f64, "trainer.dist.reduce_dtype must be f32 "
                  "or bf16 (got ", dtype_name(rd), ")");
  State& s = *st_;
  s.comm = std::move(comm);
  s.opt = options;
  const Device dev = s.comm->device();
  std::vector<size_t> reduced;  // indices of parameters that require grad
  std::vector<size_t> bytes;
  for (size_t i = 0; i < params.size(); ++i) {
    const nn::Parameter& p = params[i];
    SSM_CHECK_INPUT(p.var.defined(), "BucketReducer: parameter '", p.name, "' is undefined");
    s.vars.push_back(p.var);
    s.names.push_back(p.name);
    s.bucket_of.push_back(-1);
    if (!p.var.requires_grad()) continue;
    SSM_CHECK_INPUT(p.var.device() == dev, "data parallel: parameter '", p.name, "' is on ", p.var.device().str(),
                    " but the ", s.comm->backend(), " communicator works on ", dev.str());
    SSM_CHECK_INPUT(is_floating(p.var.dtype()), "data parallel: parameter '", p.name, "' has dtype ",
                    dtype_name(p.var.dtype()));
    reduced.push_back(i);
    bytes.push_back(size_t(p.var.numel()) * dtype_size(rd));
  }
  s.ready.assign(params.size(), 0);
  const size_t cap = size_t(std::max(1.0, options.bucket_mb * 1048576.0));
  for (const auto& group : assign_buckets(bytes, cap)) {
    Bucket k;
    std::vector<size_t> idx;
    for (size_t g : group) {
      const size_t i = reduced[g];
      s.bucket_of[i] = int(s.buckets.size());
      k.params.push_back(i);
      k.offsets.push_back(k.grad_numel);
      k.grad_numel += s.vars[i].numel();
      idx.push_back(i);
    }
    k.buffer = Tensor::zeros({k.grad_numel + int64_t(k.params.size())}, rd, dev);
    s.buckets.push_back(std::move(k));
    s.indices.push_back(std::move(idx));
  }
  // The hooks hold the state weakly: after the reducer is gone they do nothing.
  std::weak_ptr<State> weak = st_;
  for (size_t i = 0; i < s.vars.size(); ++i) {
    if (s.bucket_of[i] < 0) continue;
    s.vars[i].register_hook([weak, i](ag::Variable&) {
      if (auto st = weak.lock(); st && st->alive) st->on_grad_ready(i);
    });
  }
}

BucketReducer::~BucketReducer() {
  st_->alive = false;
  for (Bucket& k : st_->buckets) {
    if (k.work && !st_->comm->aborted()) {
      try {
        k.work->wait();  // buffers must outlive the collective
      } catch (...) {
      }
    }
  }
}

void BucketReducer::reduce(std::vector<nn::Parameter>& params) {
  State& s = *st_;
  SSM_CHECK(params.size() == s.vars.size(), "BucketReducer::reduce: ", params.size(),
            " parameters, but the reducer was built for ", s.vars.size());
  for (size_t i = 0; i < params.size(); ++i)
    SSM_CHECK(params[i].var.id() == s.vars[i].id(), "BucketReducer::reduce: parameter ", i, " ('", params[i].name,
              "') is not the one the reducer was built for ('", s.names[i], "')");
  // Buckets whose hooks did not all run (unused parameters, sync off, no backward): launch in order now.
  while (s.next < s.buckets.size()) s.launch(s.next++);
  for (size_t b = 0; b < s.buckets.size(); ++b) {
    Bucket& k = s.buckets[b];
    k.work->wait();
    std::vector<float> flags;  // read only when this rank lacks a gradient of the bucket
    for (size_t j = 0; j < k.params.size(); ++j) {
      ag::Variable& v = s.vars[k.params[j]];
      Tensor avg = k.buffer.narrow(0, k.offsets[j], v.numel()).view(v.shape());
      if (v.has_grad()) {
        v.grad().copy_(avg);
        continue;
      }
      if (flags.empty()) flags = k.buffer.narrow(0, k.grad_numel, int64_t(k.params.size())).to_float_vector();
      if (flags[j] > 0.0f) v.add_grad(avg);  // some rank used it: mean with our zeros; else stays undefined
    }
    k.work = nullptr;
    k.ready = 0;
  }
  std::fill(s.ready.begin(), s.ready.end(), 0);
  s.next = 0;
}

int BucketReducer::rank() const { return st_->comm->rank(); }
int BucketReducer::world_size() const { return st_->comm->size(); }
void BucketReducer::set_sync(bool on) { st_->sync = on; }
bool BucketReducer::sync() const { return st_->sync; }
const std::vector<std::vector<size_t>>& BucketReducer::buckets() const { return st_->indices; }
Communicator& BucketReducer::communicator() const { return *st_->comm; }

}  // namespace ssm::train
