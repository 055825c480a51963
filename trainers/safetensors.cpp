#include "trainers/safetensors.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "trainers/atomic_file.h"

namespace ssm::train {

static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

using json = nlohmann::json;
constexpr uint64_t kMaxHeader = uint64_t(100) << 20;  // as the reference implementation

bool dtype_from_safetensors(const std::string& s, DType& out) {
  static const std::map<std::string, DType> m = {{"F32", DType::f32}, {"F64", DType::f64}, {"BF16", DType::bf16},
                                                 {"F16", DType::f16}, {"I32", DType::i32}, {"I64", DType::i64},
                                                 {"U8", DType::u8},   {"BOOL", DType::u8}};
  auto it = m.find(s);
  if (it == m.end()) return false;
  out = it->second;
  return true;
}

}  // namespace

const char* safetensors_dtype(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f64: return "F64";
    case DType::bf16: return "BF16";
    case DType::f16: return "F16";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
    case DType::u8: return "U8";
  }
  throw_internal("safetensors_dtype: unknown dtype");
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  // Host copies, in write order (widest element first, then as given).
  struct Item {
    std::string name;
    Tensor t;
  };
  std::vector<Item> items;
  std::set<std::string> names;
  for (const auto& [name, t] : tensors) {
    SSM_CHECK_INPUT(name != "__metadata__", "save_safetensors '", path, "': '__metadata__' is a reserved name");
    SSM_CHECK_INPUT(!name.empty(), "save_safetensors '", path, "': a tensor has an empty name");
    SSM_CHECK_INPUT(names.insert(name).second, "save_safetensors '", path, "': tensor '", name, "' appears twice");
    SSM_CHECK_INPUT(t.defined(), "save_safetensors '", path, "': tensor '", name, "' is undefined");
    items.push_back({name, t.to(Device::cpu()).contiguous()});
  }
  std::stable_sort(items.begin(), items.end(),
                   [](const Item& a, const Item& b) { return dtype_size(a.t.dtype()) > dtype_size(b.t.dtype()); });

  json header = json::object();
  uint64_t offset = 0;
  for (const Item& it : items) {
    uint64_t n = it.t.nbytes();
    header[it.name] = {{"dtype", safetensors_dtype(it.t.dtype())},
                       {"shape", it.t.shape()},
                       {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');
  uint64_t hlen = h.size();

  AtomicFile f(path);
  f.write(&hlen, 8);
  f.write(h);
  for (const Item& it : items)
    if (it.t.nbytes() > 0) f.write(it.t.data_ptr(), it.t.nbytes());
  f.commit();
}

void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  save_safetensors(path, std::vector<std::pair<std::string, Tensor>>(tensors.begin(), tensors.end()), metadata);
}

SafetensorsContents load_safetensors(const std::string& path) {
  const std::string ctx = cat("safetensors file '", path, "': ");
  std::error_code ec;
  uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) throw_input(cat("cannot read safetensors file '", path, "': ", ec.message()));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw_input(cat("cannot read safetensors file '", path, "': ", std::strerror(errno)));

  SSM_CHECK_INPUT(file_size >= 8, ctx, "file too short (", file_size,
                  " bytes; a safetensors file starts with an 8-byte header length)");
  uint64_t hlen = 0;
  in.read(reinterpret_cast<char*>(&hlen), 8);
  SSM_CHECK_INPUT(in.good(), ctx, "cannot read the header length");
  SSM_CHECK_INPUT(hlen <= file_size - 8, ctx, "header length ", hlen, " goes beyond the end of the file (",
                  file_size, " bytes)");
  SSM_CHECK_INPUT(hlen <= kMaxHeader, ctx, "header length ", hlen, " is larger than the limit of ", kMaxHeader,
                  " bytes");
  std::string hbytes(hlen, '\0');
  in.read(hbytes.data(), std::streamsize(hlen));
  SSM_CHECK_INPUT(in.good(), ctx, "cannot read the ", hlen, "-byte header");

  json header;
  try {
    header = json::parse(hbytes);
  } catch (const json::exception& e) {
    throw_input(cat(ctx, "bad JSON header: ", e.what()));
  }
  SSM_CHECK_INPUT(header.is_object(), ctx, "the JSON header must be an object, got ", header.type_name());

  const uint64_t data_start = 8 + hlen;
  const uint64_t data_size = file_size - data_start;
  SafetensorsContents out;

  struct Span {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& e = it.value();
    if (name == "__metadata__") {
      SSM_CHECK_INPUT(e.is_object(), ctx, "__metadata__ must be an object of strings");
      for (auto m = e.begin(); m != e.end(); ++m) {
        SSM_CHECK_INPUT(m.value().is_string(), ctx, "__metadata__ value '", m.key(), "' is not a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string tctx = cat(ctx, "tensor '", name, "': ");
    SSM_CHECK_INPUT(e.is_object(), tctx, "expected an object with dtype, shape and data_offsets");
    SSM_CHECK_INPUT(e.contains("dtype") && e["dtype"].is_string(), tctx, "missing or non-string dtype");
    SSM_CHECK_INPUT(e.contains("shape") && e["shape"].is_array(), tctx, "missing or non-list shape");
    SSM_CHECK_INPUT(e.contains("data_offsets") && e["data_offsets"].is_array() && e["data_offsets"].size() == 2 &&
                        e["data_offsets"][0].is_number_unsigned() && e["data_offsets"][1].is_number_unsigned(),
                    tctx, "data_offsets must be [begin, end] (two non-negative integers)");
    const std::string dts = e["dtype"].get<std::string>();
    DType dt;
    SSM_CHECK_INPUT(dtype_from_safetensors(dts, dt), tctx, "unsupported dtype '", dts,
                    "' (supported: F32 F64 BF16 F16 I32 I64 U8 BOOL)");
    Shape shape;
    uint64_t numel = 1;
    for (const json& d : e["shape"]) {
      SSM_CHECK_INPUT(d.is_number_unsigned(), tctx, "shape ", e["shape"].dump(),
                      " must hold non-negative integers");
      uint64_t v = d.get<uint64_t>();
      SSM_CHECK_INPUT(!__builtin_mul_overflow(numel, v, &numel) && v <= uint64_t(INT64_MAX), tctx, "shape ",
                      e["shape"].dump(), " is too large");
      shape.push_back(int64_t(v));
    }
    uint64_t nbytes;
    SSM_CHECK_INPUT(!__builtin_mul_overflow(numel, uint64_t(dtype_size(dt)), &nbytes), tctx, "shape ",
                    e["shape"].dump(), " is too large");
    uint64_t begin = e["data_offsets"][0].get<uint64_t>();
    uint64_t end = e["data_offsets"][1].get<uint64_t>();
    SSM_CHECK_INPUT(begin <= end && end <= data_size, tctx, "data_offsets [", begin, ", ", end,
                    "] out of range (the data section has ", data_size, " bytes)");
    SSM_CHECK_INPUT(end - begin == nbytes, tctx, dts, " ", shape_str(shape), " needs ", nbytes,
                    " bytes, but data_offsets [", begin, ", ", end, "] hold ", end - begin);
    spans.push_back({begin, end, name});

    Tensor t = Tensor::empty(shape, dt);
    if (nbytes > 0) {
      in.seekg(std::streamoff(data_start + begin));
      in.read(static_cast<char*>(t.data_ptr()), std::streamsize(nbytes));
      SSM_CHECK_INPUT(in.good(), tctx, "cannot read ", nbytes, " bytes at offset ", data_start + begin);
    }
    out.tensors.emplace(name, std::move(t));
  }
  // Sorted by begin, non-empty spans overlap exactly when one starts before the previous one ends.
  spans.erase(std::remove_if(spans.begin(), spans.end(), [](const Span& s) { return s.begin == s.end; }),
              spans.end());
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < spans.size(); ++i) {
    const Span& a = spans[i - 1];
    const Span& b = spans[i];
    SSM_CHECK_INPUT(b.begin >= a.end, ctx, "tensors '", a.name, "' [", a.begin, ", ", a.end, "] and '", b.name,
                    "' [", b.begin, ", ", b.end, "] overlap");
  }
  return out;
}

}  // namespace ssm::train
