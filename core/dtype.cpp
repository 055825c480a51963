// Element types: sizes, names, and IEEE half <-> f32 conversion (round to nearest even).
#include "core/dtype.h"

#include "core/error.h"

namespace ssm {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::f16: return 2;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::u8: return 1;
  }
  throw_internal("dtype_size: unknown dtype");
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::f16: return "f16";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::u8: return "u8";
  }
  return "?";
}

DType dtype_from_name(const std::string& n) {
  if (n == "f32" || n == "float32" || n == "float") return DType::f32;
  if (n == "f64" || n == "float64" || n == "double") return DType::f64;
  if (n == "bf16" || n == "bfloat16") return DType::bf16;
  if (n == "f16" || n == "float16" || n == "half") return DType::f16;
  if (n == "i32" || n == "int32") return DType::i32;
  if (n == "i64" || n == "int64") return DType::i64;
  if (n == "u8" || n == "uint8" || n == "bool") return DType::u8;
  throw_input(cat("unknown dtype '", n, "' (expected one of f32, f64, bf16, f16, i32, i64, u8)"));
}

bool is_floating(DType t) { return t == DType::f32 || t == DType::f64 || t == DType::bf16 || t == DType::f16; }

// half: 1 sign, 5 exponent (bias 15), 10 mantissa bits. f32: 1, 8 (bias 127), 23.
float f16_to_f32(f16_t v) {
  const uint32_t sign = uint32_t(v.bits & 0x8000u) << 16;
  uint32_t exp = (v.bits >> 10) & 0x1fu;
  uint32_t mant = v.bits & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;  // +-0
    } else {     // subnormal: mant * 2^-24; normalize so the leading 1 reaches bit 10
      uint32_t e = 113;
      do {
        mant <<= 1;
        --e;
      } while (!(mant & 0x400u));
      u = sign | (e << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (mant << 13);  // inf / NaN (payload kept)
  } else {
    u = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

f16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000u);
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) {  // inf or NaN; NaN stays a (quiet) NaN
    if (x > 0x7f800000u) return f16_t{uint16_t(sign | 0x7e00u | ((x >> 13) & 0x3ffu))};
    return f16_t{uint16_t(sign | 0x7c00u)};
  }
  if (x >= 0x47800000u) return f16_t{uint16_t(sign | 0x7c00u)};  // >= 65536: overflow to inf
  if (x < 0x38800000u) {                                          // below 2^-14: half subnormal or 0
    if (x < 0x33000000u) return f16_t{sign};                      // <= 2^-25 rounds to 0 (tie to even)
    // value = m * 2^(e-150); in units of 2^-24 it is m >> (126 - e), rounded to nearest even.
    const uint32_t e = x >> 23;
    const uint32_t m = (x & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;
    uint32_t h = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (h & 1u))) ++h;
    return f16_t{uint16_t(sign | h)};
  }
  // Normal: rebias the exponent (127 -> 15) and round the 13 dropped mantissa bits to nearest even;
  // a carry moves into the exponent (and up to inf at 65520), which is what IEEE rounding wants.
  uint32_t h = (x >> 13) - (112u << 10);
  const uint32_t rem = x & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
  return f16_t{uint16_t(sign | h)};
}

}  // namespace ssm
