// The safetensors format (Hugging Face), read and written exactly:
//   [8 bytes: N, little-endian u64] [N bytes: JSON header, padded with spaces to a multiple of 8] [data]
//   header = {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
//             "__metadata__": {"<key>": "<string>", ...}}     (offsets relative to the start of data)
// dtypes: F32 F64 BF16 F16 I32 I64 U8 (our u8), and BOOL (read as u8). Data is little-endian, row-major.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace ssm::train {

struct SafetensorsContents {
  std::map<std::string, Tensor> tensors;  // CPU, contiguous
  std::map<std::string, std::string> metadata;
};

// Writes tensors (any device: copied to the CPU) atomically: "<path>.tmp", fsync, rename. Names must be
// unique and not "__metadata__". Data is laid out widest dtype first so that every tensor is aligned.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});
void save_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads and validates (BadInput naming the file and the tensor): file too short, header length beyond the
// file, bad JSON, unknown dtype, bad shape, offsets out of range or overlapping, byte count != numel * size.
SafetensorsContents load_safetensors(const std::string& path);

const char* safetensors_dtype(DType t);  // "F32", ...

}  // namespace ssm::train
