// Fashion-MNIST (Xiao, Rasul, Vollgraf 2017) from its IDX files to the ssm HDF5 layout.
//
// Reads <root>/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (gzipped or not) and writes
// <out_dir>/train.h5 (60000 rows) and <out_dir>/test.h5 (10000 rows), each atomically:
// inputs (N, 28, 28) u8, layout "image", scale 1/255, mean/std of the train pixels; labels (N) i64.
// See docs/data-format.md. Prints nothing; errors are BadInput naming the file.
#pragma once
#include <cstdint>
#include <string>

namespace ssm::data {

inline constexpr const char* kFashionMnistDefaultRoot = "/usr/share/datasets/fashion-mnist";

struct FashionMnistSummary {
  int64_t train = 0, test = 0;    // rows written
  int64_t height = 0, width = 0;  // 28 x 28
  double pixel_mean = 0, pixel_std = 0;  // of the train pixels scaled to [0, 1]
  std::string train_path, test_path;
};

FashionMnistSummary convert_fashion_mnist(const std::string& root, const std::string& out_dir);

// True when <out_dir>/train.h5 and <out_dir>/test.h5 both exist (what a recipe checks before converting).
bool fashion_mnist_ready(const std::string& out_dir);

}  // namespace ssm::data
