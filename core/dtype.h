// Element types. Floating point: f32, f64, bf16, f16; integers: i32, i64, u8 (also bool masks).
// bf16/f16 are storage types: arithmetic converts them to f32 (CPU) or accumulates in f32 (CUDA).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace ssm {

enum class DType : uint8_t { f32, f64, bf16, f16, i32, i64, u8 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // "f32", "bf16", ...
DType dtype_from_name(const std::string& name);  // throws BadInput naming the string
bool is_floating(DType t);

// bfloat16: the top 16 bits of an IEEE f32, rounded to nearest even.
struct bf16_t {
  uint16_t bits;
};
// IEEE half precision.
struct f16_t {
  uint16_t bits;
};

inline float bf16_to_f32(bf16_t v) {
  uint32_t u = uint32_t(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline bf16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return bf16_t{uint16_t((u >> 16) | 0x40)};  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16_t{uint16_t(u >> 16)};
}
float f16_to_f32(f16_t v);
f16_t f32_to_f16(float f);

}  // namespace ssm
