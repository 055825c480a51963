// Stands in for core/cuda/math.cuh in tests/emu: the exp the softmax rows use.
#pragma once
#include <cmath>

namespace ssm::cuda {

inline float m_exp(float x) { return std::exp(x); }
inline double m_exp(double x) { return std::exp(x); }

}  // namespace ssm::cuda
