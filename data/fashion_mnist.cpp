#include "data/fashion_mnist.h"

#include <zlib.h>

#include <cmath>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "core/tensor.h"
#include "data/hdf5_file.h"

namespace ssm::data {

namespace {

namespace fs = std::filesystem;

constexpr uint32_t kImageMagic = 2051;  // 0x00000803: unsigned byte, 3 dimensions
constexpr uint32_t kLabelMagic = 2049;  // 0x00000801: unsigned byte, 1 dimension

// "<root>/<name>.gz" if present, else "<root>/<name>".
std::string find_idx(const std::string& root, const std::string& name) {
  const std::string gz = (fs::path(root) / (name + ".gz")).string();
  const std::string raw = (fs::path(root) / name).string();
  std::error_code ec;
  if (fs::exists(gz, ec)) return gz;
  if (fs::exists(raw, ec)) return raw;
  throw_input(cat(gz, ": file not found (nor ", name, "); install the Debian package dataset-fashion-mnist ",
                  "or point --root at the folder holding the IDX files"));
}

// A gzip (or plain: zlib reads those transparently) file, read sequentially.
class GzReader {
 public:
  explicit GzReader(std::string path) : path_(std::move(path)) {
    f_ = gzopen(path_.c_str(), "rb");
    SSM_CHECK_INPUT(f_ != nullptr, path_, ": cannot open");
  }
  ~GzReader() {
    if (f_) gzclose(f_);
  }
  GzReader(const GzReader&) = delete;
  GzReader& operator=(const GzReader&) = delete;

  // Reads exactly n bytes; `what` names them in the error ("header", "pixel data").
  void read(void* dst, size_t n, const char* what) {
    size_t got = 0;
    while (got < n) {
      unsigned chunk = unsigned(std::min<size_t>(n - got, size_t(1) << 30));
      int r = gzread(f_, static_cast<char*>(dst) + got, chunk);
      if (r < 0) throw_input(cat(path_, ": corrupt gzip data (", error(), ")"));
      if (r == 0) throw_input(cat(path_, ": truncated: ", what, " needs ", n, " bytes, the file ends after ", got));
      got += size_t(r);
    }
  }
  uint32_t read_be32(const char* what) {
    unsigned char b[4];
    read(b, 4, what);
    return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | uint32_t(b[3]);
  }
  // The file must end here (this also makes zlib check the gzip CRC).
  void expect_end(const std::string& after) {
    char c;
    int r = gzread(f_, &c, 1);
    if (r < 0) throw_input(cat(path_, ": corrupt gzip data (", error(), ")"));
    SSM_CHECK_INPUT(r == 0, path_, ": unexpected bytes after ", after);
  }
  const std::string& path() const { return path_; }

 private:
  std::string error() {
    int errnum = 0;
    const char* m = gzerror(f_, &errnum);
    return m && *m ? m : "unknown zlib error";
  }
  std::string path_;
  gzFile f_ = nullptr;
};

struct Images {
  int64_t n = 0, rows = 0, cols = 0;
  std::vector<uint8_t> pixels;
};

Images read_images(const std::string& path) {
  GzReader r(path);
  uint32_t magic = r.read_be32("header");
  SSM_CHECK_INPUT(magic == kImageMagic, path, ": bad magic ", magic, ", expected ", kImageMagic,
                  " (not an IDX image file?)");
  Images im;
  im.n = r.read_be32("header");
  im.rows = r.read_be32("header");
  im.cols = r.read_be32("header");
  SSM_CHECK_INPUT(im.n > 0 && im.n <= 100000000 && im.rows > 0 && im.rows <= 4096 && im.cols > 0 && im.cols <= 4096,
                  path, ": implausible header: ", im.n, " images of ", im.rows, "x", im.cols);
  im.pixels.resize(size_t(im.n * im.rows * im.cols));
  r.read(im.pixels.data(), im.pixels.size(), "pixel data");
  r.expect_end(cat(im.n, " images"));
  return im;
}

std::vector<uint8_t> read_labels(const std::string& path, int64_t num_classes) {
  GzReader r(path);
  uint32_t magic = r.read_be32("header");
  SSM_CHECK_INPUT(magic == kLabelMagic, path, ": bad magic ", magic, ", expected ", kLabelMagic,
                  " (not an IDX label file?)");
  int64_t n = r.read_be32("header");
  SSM_CHECK_INPUT(n > 0 && n <= 100000000, path, ": implausible header: ", n, " labels");
  std::vector<uint8_t> labels(static_cast<size_t>(n));
  r.read(labels.data(), labels.size(), "label data");
  r.expect_end(cat(n, " labels"));
  for (int64_t i = 0; i < n; ++i)
    SSM_CHECK_INPUT(labels[size_t(i)] < num_classes, path, ": label ", int(labels[size_t(i)]), " at index ", i,
                    " is out of range [0, ", num_classes, ")");
  return labels;
}

const std::vector<std::string> kClassNames = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                              "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

void write_split(const std::string& path, const std::string& split, const Images& im, const std::vector<uint8_t>& labels,
                 double mean, double stdv) {
  H5Writer w(path);
  w.set_attr("/", "ssm_format", "ssm-dataset");
  w.set_attr("/", "version", int64_t(1));
  w.set_attr("/", "task", "classification");
  w.set_attr("/", "num_classes", int64_t(kClassNames.size()));
  w.set_attr("/", "class_names", kClassNames);
  w.set_attr("/", "split", split);
  w.set_attr("/", "source", "Fashion-MNIST (Xiao, Rasul, Vollgraf 2017), converted from the IDX files by ssm");

  Tensor x = Tensor::from_vector(im.pixels, {im.n, im.rows, im.cols});
  w.write_dataset("inputs", x, H5WriteOptions{1, 0});
  w.set_attr("inputs", "layout", "image");
  w.set_attr("inputs", "scale", 1.0 / 255.0);
  w.set_attr("inputs", "shift", 0.0);
  w.set_attr("inputs", "mean", mean);
  w.set_attr("inputs", "std", stdv);

  std::vector<int64_t> lab(labels.begin(), labels.end());
  w.write_dataset("labels", Tensor::from_vector(lab, {int64_t(lab.size())}), H5WriteOptions{4, 0});
  w.commit();
}

}  // namespace

FashionMnistSummary convert_fashion_mnist(const std::string& root, const std::string& out_dir) {
  const int64_t num_classes = int64_t(kClassNames.size());
  struct Split {
    const char* name;
    const char* prefix;
    Images images;
    std::vector<uint8_t> labels;
  };
  Split splits[2] = {{"train", "train", {}, {}}, {"test", "t10k", {}, {}}};
  for (Split& s : splits) {
    const std::string img_path = find_idx(root, cat(s.prefix, "-images-idx3-ubyte"));
    const std::string lab_path = find_idx(root, cat(s.prefix, "-labels-idx1-ubyte"));
    s.images = read_images(img_path);
    s.labels = read_labels(lab_path, num_classes);
    SSM_CHECK_INPUT(int64_t(s.labels.size()) == s.images.n, img_path, " holds ", s.images.n, " images but ", lab_path,
                    " holds ", s.labels.size(), " labels");
  }
  const Images& tr = splits[0].images;
  const Images& te = splits[1].images;
  SSM_CHECK_INPUT(tr.rows == te.rows && tr.cols == te.cols, root, ": train images are ", tr.rows, "x", tr.cols,
                  " but test images are ", te.rows, "x", te.cols);

  // Normalisation statistics of the train pixels in [0, 1], used for both splits:
  // mean = sum(p) / (255 M), std = sqrt(sum(p^2) / (255^2 M) - mean^2), M = number of pixels.
  double s1 = 0, s2 = 0;
  for (uint8_t p : tr.pixels) {
    s1 += p;
    s2 += double(p) * p;
  }
  const double m = double(tr.pixels.size());
  const double mean = s1 / (255.0 * m);
  const double stdv = std::sqrt(std::max(0.0, s2 / (255.0 * 255.0 * m) - mean * mean));

  std::error_code ec;
  fs::create_directories(out_dir, ec);
  SSM_CHECK_INPUT(!ec, out_dir, ": cannot create folder: ", ec.message());
  FashionMnistSummary sum;
  sum.train_path = (fs::path(out_dir) / "train.h5").string();
  sum.test_path = (fs::path(out_dir) / "test.h5").string();
  write_split(sum.train_path, "train", tr, splits[0].labels, mean, stdv);
  write_split(sum.test_path, "test", te, splits[1].labels, mean, stdv);
  sum.train = tr.n;
  sum.test = te.n;
  sum.height = tr.rows;
  sum.width = tr.cols;
  sum.pixel_mean = mean;
  sum.pixel_std = stdv;
  return sum;
}

bool fashion_mnist_ready(const std::string& out_dir) {
  std::error_code ec;
  return fs::exists(fs::path(out_dir) / "train.h5", ec) && fs::exists(fs::path(out_dir) / "test.h5", ec);
}

}  // namespace ssm::data
