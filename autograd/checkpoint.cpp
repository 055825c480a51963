// Activation recompute (checkpointing).
//
// Forward: y = fn(inputs) is computed on detached copies of the inputs; only y's data is kept. The
// graph fn builds lives just long enough to find the parameters fn captures (leaves that require
// grad, reached without passing through the inputs); they become extra inputs of the checkpoint node,
// so the outer backward orders them after this node and runs their hooks once, with the full
// gradient, and the node requires grad even when no input does.
//
// Backward: rewind gen->offset to where the forward started, run fn again with grad mode on (and the
// forward's autocast state) on fresh leaves holding the inputs' data, back-propagate g through that
// graph (captured parameters accumulate directly), then pass each leaf's gradient to its input.
#include "autograd/functions.h"
#include "autograd/impl.h"

namespace ssm::ag {

namespace {
std::vector<Variable> detached(const std::vector<Variable>& xs) {
  std::vector<Variable> out;
  out.reserve(xs.size());
  for (const auto& x : xs) out.emplace_back(x.data(), x.requires_grad());
  return out;
}

// Sets gen->offset for a scope and puts the previous value back.
struct OffsetScope {
  Generator* gen;
  uint64_t saved;
  OffsetScope(Generator* g, uint64_t offset) : gen(g), saved(g ? g->offset : 0) {
    if (gen) gen->offset = offset;
  }
  ~OffsetScope() {
    if (gen) gen->offset = saved;
  }
};
}  // namespace

Variable checkpoint(const std::function<Variable(const std::vector<Variable>&)>& fn, const std::vector<Variable>& inputs,
                    Generator* gen) {
  if (!grad_enabled()) return fn(inputs);  // no backward will come: nothing to recompute

  const uint64_t offset0 = gen ? gen->offset : 0;
  const bool autocast = autocast_enabled();
  std::vector<Variable> node_inputs = inputs;
  Tensor out;
  {
    std::vector<Variable> leaves = detached(inputs);
    const uint64_t since = Engine::next_seq();
    Variable y = fn(leaves);
    SSM_CHECK_INPUT(y.defined(), "checkpoint: the function returned an undefined Variable");
    out = y.data();
    for (auto& p : Engine::captured_leaves(y, since, leaves)) node_inputs.push_back(p);
  }  // fn's graph (and its saved activations) is freed here
  const uint64_t offset1 = gen ? gen->offset : 0;
  const size_t n_in = inputs.size();

  auto f = fn;
  return Variable(out, node_inputs,
                  [f, n_in, gen, offset0, offset1, autocast](std::vector<Variable>& in, const Tensor& g) {
                    std::vector<Variable> leaves = detached({in.begin(), in.begin() + ptrdiff_t(n_in)});
                    Variable y;
                    {
                      GradModeGuard grad_on(true);
                      AutocastGuard ac(autocast);
                      OffsetScope rng(gen, offset0);
                      y = f(leaves);
                      SSM_CHECK(!gen || gen->offset == offset1, "checkpoint: the recompute drew ",
                                gen->offset - offset0, " random counters, the forward ", offset1 - offset0,
                                "; fn must draw the same random numbers each time");
                    }
                    SSM_CHECK(y.shape() == g.shape(), "checkpoint: the recompute gave shape ", shape_str(y.shape()),
                              ", the forward ", shape_str(g.shape()));
                    if (y.requires_grad()) y.backward(g);
                    for (size_t i = 0; i < n_in; ++i)
                      if (in[i].requires_grad() && leaves[i].has_grad()) in[i].add_grad(leaves[i].grad());
                  });
}

}  // namespace ssm::ag
