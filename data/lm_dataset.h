// Language-model data (task = "lm", docs/data-format.md): one split file holds every document's tokens
// concatenated (`tokens` (T)), the document boundaries (`doc_offsets` (D + 1) i64: document d is
// tokens[doc_offsets[d] : doc_offsets[d+1]]) and optionally `doc_names` / `doc_titles` (D) strings.
//
// LMDataset cuts the token stream into non-overlapping windows of `context` tokens:
//   window i:  inputs[j]  = tokens[i*context + j]
//              targets[j] = tokens[i*context + j + 1]          (the next token)
//              seq_idx[j] = d such that doc_offsets[d] <= i*context + j < doc_offsets[d+1]
//   for j in [0, context). size() = (T - 1) / context: a window needs context + 1 tokens (its targets
//   reach one past its inputs), and the last partial window is dropped.
// Windows run across document boundaries (packing); seq_idx tells the model where a new document starts
// so that it can reset its state there. The one target per boundary that crosses it (the last input token
// of document d predicts the first token of d + 1) is kept, as in ordinary packed LM training.
//
// LMWriter writes the layout, streaming: documents are appended one at a time to an extendible chunked
// dataset, so a corpus larger than memory (PG19 train, ~11 GB) is converted in constant memory.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "data/dataset.h"
#include "data/hdf5_file.h"

namespace ssm::data {

struct LMOptions {
  // Token streams smaller than this (in their stored width: 1 byte for u8, 4 for u16/i32 here) are read
  // whole on open; larger ones are read per window with one hyperslab each (through HDF5's chunk cache).
  int64_t max_memory_bytes = int64_t(1) << 30;
};

// One split of a language-model dataset (task = "lm").
class LMDataset : public Dataset {
 public:
  LMDataset(const std::string& path, int64_t context, LMOptions opt = {});

  int64_t size() const override { return windows_; }  // (T - 1) / context
  // inputs i64 (B, context), targets i64 (B, context), seq_idx i32 (B, context); labels undefined.
  Batch get(const std::vector<int64_t>& indices) const override;
  const std::string& path() const override { return path_; }

  int64_t vocab_size() const { return vocab_size_; }
  int64_t context() const { return context_; }
  int64_t num_tokens() const { return num_tokens_; }  // T
  int64_t num_docs() const { return int64_t(doc_offsets_.size()) - 1; }  // D
  int64_t n_words() const { return n_words_; }  // whitespace-separated words of the split's text; -1 if unknown
  const std::string& tokenizer() const { return tokenizer_; }  // "bytes", or "" if the file does not say
  const std::string& stored_type() const { return stored_type_; }  // "u8", "u16" or "i32"
  const std::vector<int64_t>& doc_offsets() const { return doc_offsets_; }
  bool in_memory() const { return tokens_.defined(); }
  // The document holding token t (0 <= t < T): the d with doc_offsets[d] <= t < doc_offsets[d+1].
  int64_t doc_of(int64_t t) const;

 private:
  void read_window(int64_t start, int64_t count, int64_t* dst) const;  // tokens [start, start+count) as i64

  std::string path_;
  int64_t context_ = 0, windows_ = 0;
  int64_t vocab_size_ = 0, num_tokens_ = 0, n_words_ = -1;
  std::string tokenizer_, stored_type_;
  std::vector<int64_t> doc_offsets_;
  Tensor tokens_;                       // whole stream (u8, or i32 for u16/i32) when in memory
  std::optional<H5Dataset> tokens_ds_;  // otherwise read by hyperslab per window
};

// The optional `doc_names` or `doc_titles` string dataset of an LM file (empty if absent). Uses the HDF5
// C API directly (H5Dataset reads numbers only): call it from one thread, not while loaders read HDF5.
std::vector<std::string> read_lm_strings(const std::string& path, const std::string& dataset);

enum class LMTokenType { u8, u16, i32 };

struct LMFileInfo {
  int64_t vocab_size = 256;
  std::string tokenizer = "bytes";
  int64_t n_words = -1;  // written when >= 0
  std::string split, source;
};

// Writes one LM split file atomically, like H5Writer: everything goes to "<path>.tmp", which commit()
// renames to <path>; destroyed without commit() (an error part way) the temporary file is removed.
// Tokens are buffered and written in whole chunks of `chunk` tokens (gzip level `gzip`, 0 = none).
// It calls the HDF5 C API directly (H5Writer cannot append): use it from one thread, not while another
// thread reads HDF5 (conversion is a command of its own, so this holds).
class LMWriter {
 public:
  LMWriter(const std::string& path, LMTokenType type, int gzip = 1, int64_t chunk = int64_t(1) << 16);
  ~LMWriter();
  LMWriter(const LMWriter&) = delete;
  LMWriter& operator=(const LMWriter&) = delete;

  // Appends tokens to the current document (its type's width: uint8_t, uint16_t or int32_t values).
  void append(const void* tokens, int64_t count);
  // Ends the current document (possibly empty); name/title go to `doc_names` / `doc_titles`, which are
  // written when any document has a non-empty one.
  void end_document(const std::string& name = "", const std::string& title = "");
  void commit(const LMFileInfo& info);  // writes doc_offsets, names and attributes; closes; renames

  int64_t num_tokens() const { return written_ + int64_t(buffer_.size() / width_); }
  int64_t num_docs() const { return int64_t(offsets_.size()) - 1; }
  const std::string& path() const { return path_; }
  const std::string& tmp_path() const { return tmp_path_; }

 private:
  void flush(bool all);
  std::string path_, tmp_path_;
  LMTokenType type_;
  size_t width_;
  int64_t chunk_;
  int64_t file_ = -1, tokens_ = -1;  // HDF5 ids
  std::vector<char> buffer_;         // tokens not yet written
  int64_t written_ = 0;
  std::vector<int64_t> offsets_{0};
  std::vector<std::string> names_, titles_;
  bool committed_ = false;
};

}  // namespace ssm::data
