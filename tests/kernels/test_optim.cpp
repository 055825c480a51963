// adamw_step / sgd_step against scalar references over several steps (the textbook AdamW and
// PyTorch's update as torch/optim/adamw.py writes it), CUDA vs CPU (f32 and bf16 grads), input errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/optim/adamw.h"

using namespace ssm;

namespace {

std::vector<double> randv(size_t n, uint64_t seed, double scale = 1) {
  std::mt19937_64 g(seed);
  std::normal_distribution<double> d;
  std::vector<double> v(n);
  for (auto& x : v) x = scale * d(g);
  return v;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

struct Hyper {
  double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
};

// Textbook AdamW (Loshchilov & Hutter, decoupled decay), one element.
void adamw_textbook(double& p, double g, double& m, double& v, const Hyper& h, int64_t t) {
  p -= h.lr * h.wd * p;
  m = h.b1 * m + (1 - h.b1) * g;
  v = h.b2 * v + (1 - h.b2) * g * g;
  const double mhat = m / (1 - std::pow(h.b1, double(t))), vhat = v / (1 - std::pow(h.b2, double(t)));
  p -= h.lr * mhat / (std::sqrt(vhat) + h.eps);
}

// torch.optim.AdamW (_single_tensor_adamw, non-capturable, amsgrad=False), written out:
//   param.mul_(1 - lr * weight_decay)
//   exp_avg.lerp_(grad, 1 - beta1)
//   exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
//   bias_correction1 = 1 - beta1 ** step;  bias_correction2 = 1 - beta2 ** step
//   step_size = lr / bias_correction1
//   bias_correction2_sqrt = sqrt(bias_correction2)
//   denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
//   param.addcdiv_(exp_avg, denom, value=-step_size)
void adamw_pytorch(double& p, double g, double& m, double& v, const Hyper& h, int64_t step) {
  p *= 1 - h.lr * h.wd;
  m += (g - m) * (1 - h.b1);  // lerp
  v = v * h.b2 + (1 - h.b2) * g * g;
  const double bc1 = 1 - std::pow(h.b1, double(step)), bc2 = 1 - std::pow(h.b2, double(step));
  const double step_size = h.lr / bc1;
  const double denom = std::sqrt(v) / std::sqrt(bc2) + h.eps;
  p += -step_size * m / denom;
}

}  // namespace

TEST(AdamW, MatchesTextbookAndPytorchOverSteps) {
  const size_t n = 1037;  // odd: exercises any vector tail
  Hyper h;
  auto p0 = randv(n, 1);
  std::vector<double> pr = p0, mr(n, 0), vr(n, 0), pt = p0, mt(n, 0), vt(n, 0);
  Tensor p = Tensor::from_vector(p0, {int64_t(n)}), m = Tensor::zeros({int64_t(n)}, DType::f64),
         v = Tensor::zeros({int64_t(n)}, DType::f64);
  Tensor pf = p.to(DType::f32), mf = Tensor::zeros({int64_t(n)}), vf = Tensor::zeros({int64_t(n)});
  for (int64_t t = 1; t <= 6; ++t) {
    auto g = randv(n, 100 + uint64_t(t), 0.3);
    for (size_t i = 0; i < n; ++i) {
      adamw_textbook(pr[i], g[i], mr[i], vr[i], h, t);
      adamw_pytorch(pt[i], g[i], mt[i], vt[i], h, t);
    }
    Tensor gt = Tensor::from_vector(g, {int64_t(n)});
    kernels::adamw_step(p, gt, m, v, h.lr, h.b1, h.b2, h.eps, h.wd, t);
    Tensor gf = gt.to(DType::f32);
    kernels::adamw_step(pf, gf, mf, vf, h.lr, h.b1, h.b2, h.eps, h.wd, t);
  }
  EXPECT_LT(max_abs_diff(pr, pt), 1e-12);  // the two formulas agree
  EXPECT_LT(max_abs_diff(p.to_double_vector(), pt), 1e-12);
  EXPECT_LT(max_abs_diff(m.to_double_vector(), mt), 1e-12);
  EXPECT_LT(max_abs_diff(v.to_double_vector(), vt), 1e-12);
  EXPECT_LT(max_abs_diff(pf.to_double_vector(), pt), 1e-5);
  EXPECT_LT(max_abs_diff(mf.to_double_vector(), mt), 1e-6);
}

TEST(AdamW, FirstStepMovesEachWeightByLrTimesSign) {
  // Step 1, no decay: m_hat = g, v_hat = g^2, so the update is lr g / (|g| + eps) ~ lr sign(g).
  Tensor p = Tensor::zeros({4}), g = Tensor::from_vector(std::vector<float>{3.f, -0.5f, 1e-3f, -20.f}, {4});
  Tensor m = Tensor::zeros({4}), v = Tensor::zeros({4});
  kernels::adamw_step(p, g, m, v, 0.1, 0.9, 0.999, 1e-8, 0.0, 1);
  auto pv = p.to_double_vector();
  EXPECT_NEAR(pv[0], -0.1, 1e-6);
  EXPECT_NEAR(pv[1], 0.1, 1e-6);
  EXPECT_NEAR(pv[2], -0.1, 1e-5);
  EXPECT_NEAR(pv[3], 0.1, 1e-6);
}

TEST(Sgd, MatchesPytorchFormula) {
  const size_t n = 101;
  for (bool nesterov : {false, true}) {
    for (double mom : {0.0, 0.9}) {
      if (nesterov && mom == 0) continue;
      auto p0 = randv(n, 7);
      std::vector<double> pr = p0, br(n, 0);
      Tensor p = Tensor::from_vector(p0, {int64_t(n)}), buf = Tensor::zeros({int64_t(n)}, DType::f64);
      const double lr = 0.05, wd = 0.01;
      for (int t = 1; t <= 4; ++t) {
        auto g = randv(n, 50 + uint64_t(t));
        for (size_t i = 0; i < n; ++i) {  // torch.optim.SGD, dampening 0
          double d = g[i] + wd * pr[i];
          if (mom != 0) {
            br[i] = t == 1 ? d : mom * br[i] + d;
            d = nesterov ? d + mom * br[i] : br[i];
          }
          pr[i] -= lr * d;
        }
        Tensor gt = Tensor::from_vector(g, {int64_t(n)});
        Tensor none;
        kernels::sgd_step(p, gt, mom != 0 ? buf : none, lr, mom, wd, nesterov);
      }
      EXPECT_LT(max_abs_diff(p.to_double_vector(), pr), 1e-12) << "nesterov=" << nesterov << " momentum=" << mom;
    }
  }
}

TEST(AdamW, BadInputsNameTheTensors) {
  auto expect_bad = [](auto&& fn, const std::string& what) {
    try {
      fn();
      ADD_FAILURE() << "no error for " << what;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::BadInput);
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  Tensor p = Tensor::zeros({3, 4}), g = Tensor::zeros({3, 4}), m = Tensor::zeros({3, 4}), v = Tensor::zeros({4, 3});
  expect_bad([&] { kernels::adamw_step(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0, 1); },
             "adamw_step: exp_avg_sq [4, 3] must match param [3, 4]");
  Tensor v2 = Tensor::zeros({3, 4});
  expect_bad([&] { kernels::adamw_step(p, g, m, v2, 1e-3, 0.9, 0.999, 1e-8, 0, 0); }, "step must be >= 1");
  Tensor gd = Tensor::zeros({3, 4}, DType::f64);
  expect_bad([&] { kernels::adamw_step(p, gd, m, v2, 1e-3, 0.9, 0.999, 1e-8, 0, 1); }, "grad is f64");
  Tensor b = Tensor::zeros({5});
  expect_bad([&] { kernels::sgd_step(p, g, b, 0.1, 0.9, 0, false); }, "sgd_step: momentum_buf [5]");
}

// adamw_step_many over three parameters (own lr, decay and step each) on `dev`, against adamw_step one by one.
void check_many(Device dev) {
  std::vector<Tensor> p, g, m, v, pr, mr, vr;
  const std::vector<int64_t> sizes = {5, 4099, 1};
  for (size_t k = 0; k < sizes.size(); ++k) {
    const int64_t n = sizes[k];
    p.push_back(Tensor::from_vector(randv(size_t(n), 20 + k), {n}).to(DType::f32));
    g.push_back(Tensor::from_vector(randv(size_t(n), 30 + k), {n}).to(DType::f32));
    m.push_back(Tensor::zeros({n}));
    v.push_back(Tensor::zeros({n}));
    pr.push_back(p.back().clone());
    mr.push_back(m.back().clone());
    vr.push_back(v.back().clone());
  }
  std::vector<Tensor> pd, gd, md, vd;
  for (size_t k = 0; k < sizes.size(); ++k) {
    pd.push_back(p[k].to(dev));
    gd.push_back(g[k].to(dev));
    md.push_back(m[k].to(dev));
    vd.push_back(v[k].to(dev));
  }
  std::vector<kernels::AdamWParam> ps;
  for (size_t k = 0; k < sizes.size(); ++k) {
    const double lr = 1e-2 * double(k + 1), wd = k == 1 ? 0.0 : 0.1;
    const int64_t step = int64_t(k) + 1;
    ps.push_back({&pd[k], &gd[k], &md[k], &vd[k], lr, wd, step});
    kernels::adamw_step(pr[k], g[k], mr[k], vr[k], lr, 0.9, 0.99, 1e-8, wd, step);
  }
  kernels::adamw_step_many(ps, 0.9, 0.99, 1e-8);
  for (size_t k = 0; k < sizes.size(); ++k) {
    EXPECT_LT(max_abs_diff(pd[k].to(Device::cpu()).to_double_vector(), pr[k].to_double_vector()), 1e-6) << k;
    EXPECT_LT(max_abs_diff(md[k].to(Device::cpu()).to_double_vector(), mr[k].to_double_vector()), 1e-6) << k;
    EXPECT_LT(max_abs_diff(vd[k].to(Device::cpu()).to_double_vector(), vr[k].to_double_vector()), 1e-6) << k;
  }
}

TEST(AdamW, ManyIsEachInTurn) {
  check_many(Device::cpu());
  // A bad parameter anywhere in the list is named, and nothing is updated.
  Tensor p = Tensor::ones({3}), g = Tensor::ones({3}), m = Tensor::zeros({3}), v = Tensor::zeros({3});
  Tensor p2 = Tensor::ones({3}), g2 = Tensor::ones({4}), m2 = Tensor::zeros({3}), v2 = Tensor::zeros({3});
  std::vector<kernels::AdamWParam> ps = {{&p, &g, &m, &v, 0.1, 0.0, 1}, {&p2, &g2, &m2, &v2, 0.1, 0.0, 1}};
  try {
    kernels::adamw_step_many(ps, 0.9, 0.999, 1e-8);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_NE(std::string(e.what()).find("grad [4] must match param [3]"), std::string::npos) << e.what();
  }
  EXPECT_EQ(p.to_double_vector(), std::vector<double>(3, 1.0));
}

TEST(OptimCuda, ManyMatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  check_many(Device::cuda());
}

TEST(OptimCuda, MatchesCpu) {
  if (!ssm::cuda_available()) GTEST_SKIP() << "no CUDA device";
  for (int64_t n : {1, 3, 4, 1001, 65537}) {
    for (bool bf16_grad : {false, true}) {
      SCOPED_TRACE(cat("n=", n, " bf16_grad=", bf16_grad));
      auto p0 = randv(size_t(n), 3);
      Tensor pc = Tensor::from_vector(p0, {n}).to(DType::f32), mc = Tensor::zeros({n}), vc = Tensor::zeros({n});
      Tensor pg = pc.to(Device::cuda()), mg = mc.to(Device::cuda()), vg = vc.to(Device::cuda());
      Tensor sc = pc.clone(), bc = Tensor::zeros({n}), sg = sc.to(Device::cuda()), bg = bc.to(Device::cuda());
      for (int64_t t = 1; t <= 3; ++t) {
        Tensor g = Tensor::from_vector(randv(size_t(n), 10 + uint64_t(t)), {n}).to(DType::f32);
        if (bf16_grad) g = g.to(DType::bf16).to(DType::f32);  // CPU sees the same rounded values
        Tensor gg = bf16_grad ? g.to(Device::cuda(), DType::bf16) : g.to(Device::cuda());
        kernels::adamw_step(pc, g, mc, vc, 1e-2, 0.9, 0.99, 1e-8, 0.05, t);
        kernels::adamw_step(pg, gg, mg, vg, 1e-2, 0.9, 0.99, 1e-8, 0.05, t);
        kernels::sgd_step(sc, g, bc, 0.1, 0.9, 1e-3, true);
        kernels::sgd_step(sg, gg, bg, 0.1, 0.9, 1e-3, true);
      }
      EXPECT_LT(max_abs_diff(pg.to(Device::cpu()).to_double_vector(), pc.to_double_vector()), 1e-6);
      EXPECT_LT(max_abs_diff(vg.to(Device::cpu()).to_double_vector(), vc.to_double_vector()), 1e-6);
      EXPECT_LT(max_abs_diff(sg.to(Device::cpu()).to_double_vector(), sc.to_double_vector()), 1e-5);
    }
  }
}
