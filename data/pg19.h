// PG-19 (Rae et al. 2020, "Compressive Transformers") from its book files to the ssm LM layout, byte-level.
//
// Reads <root>/{train,validation,test}/<book id>.txt (PG-19's layout; <root>/metadata.csv, if present,
// gives the titles: rows "id,short_book_title,publication_date,url", with or without a header line) and
// writes <out_dir>/{train,validation,test}.h5 (task "lm", docs/data-format.md), each atomically:
//   tokens      (T) u8    the raw bytes of every book, books in file-name order
//   doc_offsets (D + 1)   book boundaries; doc_names = book ids (file stems); doc_titles from metadata.csv
//   attributes  vocab_size 256, tokenizer "bytes", n_words (whitespace-separated words, for word-level
//               perplexity as in MambaByte: ppl_word = exp(total NLL in nats / n_words)), split, source.
// Books are streamed one at a time: memory stays at one book plus the writer's buffer, whatever T is.
// A split folder that is absent is skipped (at least one must exist); an empty one is an error.
// Errors are BadInput naming the path. One progress line per split goes to `log`.
#pragma once
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace ssm::data {

struct PG19Options {
  std::vector<std::string> splits = {"train", "validation", "test"};
  int gzip_level = 1;  // deflate level of `tokens` (0 = none); 1 compresses English text about 2.6x
  std::string source;  // the `source` attribute; "" = "PG-19 layout book files from <root>"
};

struct PG19SplitSummary {
  std::string split, path;
  int64_t books = 0, bytes = 0, words = 0;
};

std::vector<PG19SplitSummary> convert_pg19(const std::string& root, const std::string& out_dir, std::ostream& log,
                                           const PG19Options& opt = {});

// Whitespace-separated words: maximal runs of bytes other than ' ', '\t', '\n', '\v', '\f', '\r'.
// Streaming: `in_word` carries the state across pieces of one text (start it false).
int64_t count_words(std::string_view text, bool& in_word);
inline int64_t count_words(std::string_view text) {
  bool in_word = false;
  return count_words(text, in_word);
}

// True when <out_dir>/<split>.h5 exists for each of the splits.
bool pg19_ready(const std::string& out_dir, const std::vector<std::string>& splits = {"train", "validation", "test"});

}  // namespace ssm::data
