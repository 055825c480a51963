// LMDataset and LMWriter on small synthetic files: windows, next-token targets, seq_idx at document
// boundaries (empty documents too), u8 / u16 / i32 tokens, in-memory and hyperslab reads agree, and
// bad files are BadInput naming the file and the dataset or attribute.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "data/hdf5_file.h"
#include "data/lm_dataset.h"

#include "tests/data/data_test_util.h"

namespace {

using namespace ssm;
using namespace ssm::data;
using namespace ssm_data_test;
namespace fs = std::filesystem;

class LMDatasetTest : public TempDirTest {};


// Documents of lengths 5, 0 (empty), 7, 4: T = 16, doc_offsets = {0, 5, 5, 12, 16}.
const std::vector<int64_t> kLens = {5, 0, 7, 4};
const std::vector<int64_t> kOffsets = {0, 5, 5, 12, 16};
int64_t tok(int64_t t, int64_t vocab) { return (7919 * t + 3) % vocab; }
int64_t doc_of_ref(int64_t t) {  // the reference: the d with offsets[d] <= t < offsets[d+1]
  for (size_t d = 0; d + 1 < kOffsets.size(); ++d)
    if (kOffsets[d] <= t && t < kOffsets[d + 1]) return int64_t(d);
  return -1;
}

template <typename T>
void write_lm(const std::string& path, LMTokenType type, int64_t vocab, int64_t chunk = 4, int gzip = 1) {
  LMWriter w(path, type, gzip, chunk);
  int64_t t = 0;
  for (size_t d = 0; d < kLens.size(); ++d) {
    std::vector<T> v;
    for (int64_t j = 0; j < kLens[d]; ++j) v.push_back(T(tok(t++, vocab)));
    w.append(v.data(), int64_t(v.size()));
    w.end_document(cat("doc", d), d == 2 ? "Title, two" : "");
  }
  LMFileInfo info;
  info.vocab_size = vocab;
  info.tokenizer = type == LMTokenType::u8 ? "bytes" : "test-tokenizer";
  info.n_words = 42;
  info.split = "train";
  info.source = "test";
  w.commit(info);
}

void check_batch(const LMDataset& ds, const std::vector<int64_t>& idx, int64_t vocab) {
  const int64_t L = ds.context();
  Batch b = ds.get(idx);
  ASSERT_EQ(b.inputs.shape(), (Shape{int64_t(idx.size()), L}));
  ASSERT_EQ(b.targets.shape(), (Shape{int64_t(idx.size()), L}));
  ASSERT_EQ(b.seq_idx.shape(), (Shape{int64_t(idx.size()), L}));
  EXPECT_EQ(b.inputs.dtype(), DType::i64);
  EXPECT_EQ(b.targets.dtype(), DType::i64);
  EXPECT_EQ(b.seq_idx.dtype(), DType::i32);
  EXPECT_FALSE(b.labels.defined());
  EXPECT_EQ(b.indices, idx);
  for (size_t r = 0; r < idx.size(); ++r)
    for (int64_t j = 0; j < L; ++j) {
      const int64_t t = idx[r] * L + j;
      EXPECT_EQ(b.inputs.data<int64_t>()[r * L + j], tok(t, vocab)) << "window " << idx[r] << " j " << j;
      EXPECT_EQ(b.targets.data<int64_t>()[r * L + j], tok(t + 1, vocab)) << "window " << idx[r] << " j " << j;
      EXPECT_EQ(b.seq_idx.data<int32_t>()[r * L + j], doc_of_ref(t)) << "window " << idx[r] << " j " << j;
    }
}

TEST_F(LMDatasetTest, BytesWindowsTargetsAndSeqIdx) {
  write_lm<uint8_t>(p("a.h5"), LMTokenType::u8, 256);
  EXPECT_FALSE(fs::exists(p("a.h5.tmp")));
  LMDataset ds(p("a.h5"), 3);
  EXPECT_EQ(ds.num_tokens(), 16);
  EXPECT_EQ(ds.num_docs(), 4);
  EXPECT_EQ(ds.size(), 5);  // (16 - 1) / 3
  EXPECT_EQ(ds.context(), 3);
  EXPECT_EQ(ds.vocab_size(), 256);
  EXPECT_EQ(ds.n_words(), 42);
  EXPECT_EQ(ds.tokenizer(), "bytes");
  EXPECT_EQ(ds.stored_type(), "u8");
  EXPECT_EQ(ds.path(), p("a.h5"));
  EXPECT_EQ(ds.doc_offsets(), kOffsets);
  EXPECT_TRUE(ds.in_memory());
  for (int64_t t = 0; t < 16; ++t) EXPECT_EQ(ds.doc_of(t), doc_of_ref(t)) << t;
  check_batch(ds, {0, 1, 2, 3, 4}, 256);
  check_batch(ds, {4, 1, 1}, 256);  // any order, repeats allowed

  // Window 1 = tokens 3, 4, 5: crosses from document 0 into document 2 (document 1 is empty).
  Batch b = ds.get({1});
  EXPECT_EQ(b.seq_idx.data<int32_t>()[0], 0);
  EXPECT_EQ(b.seq_idx.data<int32_t>()[1], 0);
  EXPECT_EQ(b.seq_idx.data<int32_t>()[2], 2);
  // seq_idx changes exactly where a document starts, in every window.
  Batch all = ds.get({0, 1, 2, 3, 4});
  for (int64_t t = 1; t < 15; ++t) {
    const bool boundary = t == 5 || t == 12;
    const int32_t a = all.seq_idx.data<int32_t>()[t - 1], c = all.seq_idx.data<int32_t>()[t];
    EXPECT_EQ(a != c, boundary) << "token " << t;
  }

  // context 15: one window, the longest possible; context 16 needs 17 tokens.
  EXPECT_EQ(LMDataset(p("a.h5"), 15).size(), 1);
  check_batch(LMDataset(p("a.h5"), 15), {0}, 256);
  expect_bad_input([&] { LMDataset(p("a.h5"), 16); }, {p("a.h5"), "tokens", "16 tokens", "17"});
  expect_bad_input([&] { LMDataset(p("a.h5"), 0); }, {p("a.h5"), "context"});
  expect_bad_input([&] { ds.get({5}); }, {p("a.h5"), "window index 5", "[0, 5)"});
  expect_bad_input([&] { ds.get({-1}); }, {p("a.h5"), "window index -1"});
}

TEST_F(LMDatasetTest, U16AndI32TokensAndHyperslabReads) {
  write_lm<uint16_t>(p("u16.h5"), LMTokenType::u16, 50000);
  write_lm<int32_t>(p("i32.h5"), LMTokenType::i32, 100003);
  for (const char* name : {"u16.h5", "i32.h5"}) {
    const int64_t vocab = std::string(name) == "u16.h5" ? 50000 : 100003;
    LMDataset mem(p(name), 2);
    EXPECT_EQ(mem.stored_type(), std::string(name).substr(0, 3));
    EXPECT_EQ(mem.vocab_size(), vocab);
    EXPECT_EQ(mem.tokenizer(), "test-tokenizer");
    EXPECT_EQ(mem.size(), 7);  // (16 - 1) / 2
    EXPECT_TRUE(mem.in_memory());
    check_batch(mem, {0, 6, 3, 2}, vocab);
    LMDataset slab(p(name), 2, LMOptions{0});  // read per window
    EXPECT_FALSE(slab.in_memory());
    check_batch(slab, {0, 6, 3, 2}, vocab);
  }
  // The files really hold u16 / i32 and ids above 255 / 65535 (which a narrower type would have cut).
  EXPECT_EQ(H5File(p("u16.h5")).dataset("tokens").stored_type(), "u16");
  EXPECT_EQ(H5File(p("i32.h5")).dataset("tokens").stored_type(), "i32");
  auto max_id = [&](const std::string& path) {
    Batch b = LMDataset(path, 15).get({0});
    int64_t m = b.targets.data<int64_t>()[14];
    for (int64_t j = 0; j < 15; ++j) m = std::max(m, b.inputs.data<int64_t>()[j]);
    return m;
  };
  EXPECT_GT(max_id(p("u16.h5")), 255);
  EXPECT_GT(max_id(p("i32.h5")), 65535);
}

TEST_F(LMDatasetTest, WriterChunkingAndNames) {
  // Chunk sizes that do and do not divide T, without compression too: the same stream.
  for (int64_t chunk : {1, 3, 16, 1000})
    for (int gzip : {0, 4}) {
      write_lm<uint8_t>(p("c.h5"), LMTokenType::u8, 256, chunk, gzip);
      check_batch(LMDataset(p("c.h5"), 5), {0, 1, 2}, 256);
    }
  EXPECT_EQ(read_lm_strings(p("c.h5"), "doc_names"), (std::vector<std::string>{"doc0", "doc1", "doc2", "doc3"}));
  EXPECT_EQ(read_lm_strings(p("c.h5"), "doc_titles"), (std::vector<std::string>{"", "", "Title, two", ""}));
  EXPECT_TRUE(read_lm_strings(p("c.h5"), "no_such").empty());
  H5File f(p("c.h5"));
  EXPECT_EQ(f.attr_string("ssm_format"), "ssm-dataset");
  EXPECT_EQ(f.attr_int("version"), 1);
  EXPECT_EQ(f.attr_string("task"), "lm");
  EXPECT_EQ(f.attr_string("split"), "train");
  EXPECT_EQ(f.attr_string("source"), "test");

  // A writer destroyed without commit leaves nothing, not even the temporary file.
  {
    LMWriter w(p("gone.h5"), LMTokenType::u8);
    uint8_t x[3] = {1, 2, 3};
    w.append(x, 3);
    w.end_document("x");
    EXPECT_TRUE(fs::exists(p("gone.h5.tmp")));
  }
  EXPECT_FALSE(fs::exists(p("gone.h5")));
  EXPECT_FALSE(fs::exists(p("gone.h5.tmp")));
}

// A file written with H5Writer, whose parts the caller spoils.
struct Spec {
  std::string task = "lm";
  int64_t version = 1;
  bool vocab = true, tokens = true, offsets = true, float_tokens = false;
  std::vector<int32_t> toks = {1, 2, 3, 4, 5, 6};
  std::vector<int64_t> offs = {0, 2, 6};
};
void write_spec(const std::string& path, const Spec& s) {
  H5Writer w(path);
  w.set_attr("/", "ssm_format", "ssm-dataset");
  w.set_attr("/", "version", s.version);
  w.set_attr("/", "task", s.task);
  if (s.vocab) w.set_attr("/", "vocab_size", int64_t(10));
  if (s.tokens && s.float_tokens)
    w.write_dataset("tokens", Tensor::from_vector(std::vector<double>(s.toks.begin(), s.toks.end()), {int64_t(s.toks.size())}));
  else if (s.tokens)
    w.write_dataset("tokens", Tensor::from_vector(s.toks, {int64_t(s.toks.size())}));
  if (s.offsets) w.write_dataset("doc_offsets", Tensor::from_vector(s.offs, {int64_t(s.offs.size())}));
  w.commit();
}

TEST_F(LMDatasetTest, BadFiles) {
  write_spec(p("ok.h5"), {});
  EXPECT_EQ(LMDataset(p("ok.h5"), 2).size(), 2);
  EXPECT_EQ(LMDataset(p("ok.h5"), 2).n_words(), -1);  // not written: unknown
  EXPECT_EQ(LMDataset(p("ok.h5"), 2).tokenizer(), "");

  Spec s;
  s.task = "classification";
  write_spec(p("task.h5"), s);
  expect_bad_input([&] { LMDataset(p("task.h5"), 2); }, {p("task.h5"), "task is 'classification'", "'lm'"});
  s = {};
  s.version = 2;
  write_spec(p("ver.h5"), s);
  expect_bad_input([&] { LMDataset(p("ver.h5"), 2); }, {p("ver.h5"), "version 2"});
  s = {};
  s.tokens = false;
  write_spec(p("notok.h5"), s);
  expect_bad_input([&] { LMDataset(p("notok.h5"), 2); }, {p("notok.h5"), "dataset 'tokens' missing"});
  s = {};
  s.float_tokens = true;
  write_spec(p("f64.h5"), s);
  expect_bad_input([&] { LMDataset(p("f64.h5"), 2); }, {p("f64.h5"), "dataset 'tokens'", "element type f64", "u8, u16 or i32"});
  s = {};
  s.offsets = false;
  write_spec(p("nooff.h5"), s);
  expect_bad_input([&] { LMDataset(p("nooff.h5"), 2); }, {p("nooff.h5"), "dataset 'doc_offsets' missing"});
  s = {};
  s.vocab = false;
  write_spec(p("novocab.h5"), s);
  expect_bad_input([&] { LMDataset(p("novocab.h5"), 2); }, {p("novocab.h5"), "attribute 'vocab_size' missing"});
  s = {};
  s.offs = {0, 2, 5};
  write_spec(p("end.h5"), s);
  expect_bad_input([&] { LMDataset(p("end.h5"), 2); }, {p("end.h5"), "doc_offsets", "ends at 5", "T = 6"});
  s = {};
  s.offs = {0, 4, 3, 6};
  write_spec(p("dec.h5"), s);
  expect_bad_input([&] { LMDataset(p("dec.h5"), 2); }, {p("dec.h5"), "doc_offsets", "decreases"});
  s = {};
  s.toks = {1, 2, 10, 4, 5, 6};
  write_spec(p("range.h5"), s);
  expect_bad_input([&] { LMDataset(p("range.h5"), 2); }, {p("range.h5"), "tokens", "token 10 at position 2", "vocab_size = 10"});
  // Per window on the hyperslab path.
  LMDataset slab(p("range.h5"), 2, LMOptions{0});
  expect_bad_input([&] { slab.get({0, 1}); }, {p("range.h5"), "tokens", "token 10 at position 2"});
  expect_bad_input([&] { LMDataset(p("missing.h5"), 2); }, {p("missing.h5"), "not found"});
}

}  // namespace
