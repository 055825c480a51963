// PG-19 conversion on a small synthetic tree (and on the King James Bible where the Debian package
// bible-kjv is installed): tokens are the books' bytes in file-name order, doc_offsets the book
// boundaries, n_words the whitespace-separated words; error cases name the path.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "data/hdf5_file.h"
#include "data/lm_dataset.h"
#include "data/pg19.h"

#include "tests/data/data_test_util.h"

namespace {

using namespace ssm;
using namespace ssm::data;
using namespace ssm_data_test;
namespace fs = std::filesystem;

class PG19Test : public TempDirTest {
 protected:
  void book(const std::string& rel, const std::string& text) {
    fs::create_directories(fs::path(p(rel)).parent_path());
    write_text(p(rel), text);
  }
};

std::string expect_bad_input(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput) << e.what();
    for (const auto& part : parts) EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what() << "\n  lacks: " << part;
    return e.what();
  }
  ADD_FAILURE() << "no ssm::Error thrown";
  return "";
}

std::vector<uint8_t> tokens_of(const std::string& path) {
  Tensor t = H5File(path).dataset("tokens").read_all();
  return std::vector<uint8_t>(t.data<uint8_t>(), t.data<uint8_t>() + t.numel());
}
std::vector<uint8_t> bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

TEST(PG19Words, CountWords) {
  EXPECT_EQ(count_words(""), 0);
  EXPECT_EQ(count_words("   \n\t "), 0);
  EXPECT_EQ(count_words("one"), 1);
  EXPECT_EQ(count_words("  one two\tthree\r\nfour  "), 4);
  EXPECT_EQ(count_words("don't stop-me now, \xc3\xa9t\xc3\xa9."), 4);  // punctuation and UTF-8 are part of words
  // Streaming: a word split across pieces counts once.
  bool in_word = false;
  EXPECT_EQ(count_words("hel", in_word), 1);
  EXPECT_EQ(count_words("lo wor", in_word), 1);
  EXPECT_EQ(count_words("ld ", in_word), 0);
  EXPECT_EQ(count_words("x", in_word), 1);
}

TEST_F(PG19Test, ConvertsBooksInNameOrder) {
  const std::string a = "The first book.\nIt has  seven words.\n";   // 7 words
  const std::string b = "Second\tbook, \"quoted\" \xc3\xa9\n\nend";    // 5 words
  const std::string c = "Validation text here";                        // 3 words
  const std::string e = "";                                            // an empty book is an empty document
  book("root/train/b.txt", b);
  book("root/train/a.txt", a);
  book("root/train/e.txt", e);
  book("root/train/notes.md", "not a book");
  book("root/validation/100.txt", c);
  book("root/metadata.csv", "id,short_book_title,publication_date,url\n"
                            "a,\"A Title, With Comma\",1900,http://x/a\n"
                            "b,\"B \"\"Title\"\"\",1901,http://x/b\n"
                            "100,C,1902,http://x/100\n");
  std::ostringstream log;
  auto sums = convert_pg19(p("root"), p("out"), log);
  ASSERT_EQ(sums.size(), 2u);  // no test/ folder: skipped
  EXPECT_EQ(sums[0].split, "train");
  EXPECT_EQ(sums[0].books, 3);
  EXPECT_EQ(sums[0].bytes, int64_t(a.size() + b.size()));
  EXPECT_EQ(sums[0].words, 12);
  EXPECT_EQ(sums[1].split, "validation");
  EXPECT_EQ(sums[1].path, p("out") + "/validation.h5");
  EXPECT_FALSE(fs::exists(p("out/test.h5")));
  EXPECT_FALSE(fs::exists(p("out/train.h5.tmp")));
  EXPECT_TRUE(pg19_ready(p("out"), {"train", "validation"}));
  EXPECT_FALSE(pg19_ready(p("out")));
  EXPECT_NE(log.str().find("train: 3 books, " + std::to_string(a.size() + b.size()) + " bytes"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("12 words"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("validation: 1 books"), std::string::npos) << log.str();

  // train.h5: a, b, e in name order.
  const std::string train = p("out/train.h5");
  EXPECT_EQ(tokens_of(train), bytes(a + b + e));
  H5File f(train);
  EXPECT_EQ(f.dataset("tokens").stored_type(), "u8");
  Tensor off = f.dataset("doc_offsets").read_all();
  EXPECT_EQ(std::vector<int64_t>(off.data<int64_t>(), off.data<int64_t>() + off.numel()),
            (std::vector<int64_t>{0, int64_t(a.size()), int64_t(a.size() + b.size()), int64_t(a.size() + b.size())}));
  EXPECT_EQ(f.attr_string("task"), "lm");
  EXPECT_EQ(f.attr_int("vocab_size"), 256);
  EXPECT_EQ(f.attr_string("tokenizer"), "bytes");
  EXPECT_EQ(f.attr_int("n_words"), 12);
  EXPECT_EQ(f.attr_string("split"), "train");
  EXPECT_NE(f.attr_string("source").find(p("root")), std::string::npos);
  EXPECT_EQ(read_lm_strings(train, "doc_names"), (std::vector<std::string>{"a", "b", "e"}));
  EXPECT_EQ(read_lm_strings(train, "doc_titles"), (std::vector<std::string>{"A Title, With Comma", "B \"Title\"", ""}));

  // The reader sees the same: document of every byte, n_words.
  LMDataset ds(train, 4);
  EXPECT_EQ(ds.num_tokens(), int64_t(a.size() + b.size()));
  EXPECT_EQ(ds.num_docs(), 3);
  EXPECT_EQ(ds.n_words(), 12);
  EXPECT_EQ(ds.size(), (ds.num_tokens() - 1) / 4);
  Batch batch = ds.get({0, 9});
  EXPECT_EQ(batch.inputs.data<int64_t>()[0], 'T');
  EXPECT_EQ(batch.targets.data<int64_t>()[0], 'h');
  EXPECT_EQ(batch.seq_idx.data<int32_t>()[4 + 3], int64_t(9 * 4 + 3) < int64_t(a.size()) ? 0 : 1);

  EXPECT_EQ(tokens_of(p("out/validation.h5")), bytes(c));
  EXPECT_EQ(LMDataset(p("out/validation.h5"), 2).n_words(), 3);
  EXPECT_EQ(read_lm_strings(p("out/validation.h5"), "doc_titles"), (std::vector<std::string>{"C"}));

  // Converting again (idempotent) gives the same file; without metadata.csv there are no titles.
  fs::remove(p("root/metadata.csv"));
  convert_pg19(p("root"), p("out"), log, PG19Options{{"train"}, 0, "my source"});
  EXPECT_EQ(tokens_of(train), bytes(a + b + e));
  EXPECT_TRUE(read_lm_strings(train, "doc_titles").empty());
  EXPECT_EQ(H5File(train).attr_string("source"), "my source");
}

TEST_F(PG19Test, Errors) {
  std::ostringstream log;
  expect_bad_input([&] { convert_pg19(p("nope"), p("out"), log); }, {p("nope"), "not found"});
  book("root/other/x.txt", "x y");
  expect_bad_input([&] { convert_pg19(p("root"), p("out"), log); },
                   {p("root"), "no split folders", "train/", "validation/", "test/"});
  fs::create_directories(p("root/train"));
  book("root/test/t.txt", "some words");
  book("root/train/readme.md", "not a book");
  expect_bad_input([&] { convert_pg19(p("root"), p("out"), log); }, {p("root") + "/train", "no <book id>.txt"});
  EXPECT_FALSE(fs::exists(p("out/test.h5")));  // checked before anything is written

  // An unreadable book (a dangling link): the error names it, nothing is left under out/.
  book("root/train/a.txt", "fine");
  fs::create_symlink(p("root/no-such-target"), p("root/train/b.txt"));
  expect_bad_input([&] { convert_pg19(p("root"), p("out"), log); }, {p("root") + "/train/b.txt", "cannot open"});
  EXPECT_FALSE(fs::exists(p("out/train.h5")));
  EXPECT_FALSE(fs::exists(p("out/train.h5.tmp")));
  fs::remove(p("root/train/b.txt"));

  // A split whose books are all empty holds no text to model.
  book("root/train/a.txt", "");
  expect_bad_input([&] { convert_pg19(p("root"), p("out"), log); }, {p("root") + "/train", "0 bytes"});
  EXPECT_FALSE(fs::exists(p("out/train.h5")));

  book("root/metadata.csv", "a\n");
  book("root/train/a.txt", "fine");
  expect_bad_input([&] { convert_pg19(p("root"), p("out"), log); }, {p("root") + "/metadata.csv:1", "short_book_title"});
}

// The King James Bible (scripts/kjv-to-pg19.sh) where the Debian package bible-kjv is installed.
TEST_F(PG19Test, KingJamesBible) {
  const std::string script = std::string(SSM_SOURCE_DIR) + "/scripts/kjv-to-pg19.sh";
  if (std::system("command -v bible >/dev/null 2>&1") != 0) GTEST_SKIP() << "bible missing (apt-get install bible-kjv)";
  ASSERT_EQ(std::system((script + " " + p("kjv") + " >/dev/null").c_str()), 0);
  std::ostringstream log;
  auto sums = convert_pg19(p("kjv"), p("out"), log);
  ASSERT_EQ(sums.size(), 3u);
  EXPECT_EQ(sums[0].books, 60);
  EXPECT_EQ(sums[1].books, 3);
  EXPECT_EQ(sums[2].books, 3);
  EXPECT_EQ(read_lm_strings(p("out/validation.h5"), "doc_names"),
            (std::vector<std::string>{"08-ruth", "32-jonah", "50-philippians"}));
  EXPECT_EQ(read_lm_strings(p("out/test.h5"), "doc_titles"), (std::vector<std::string>{"Esther", "Micah", "Colossians"}));
  int64_t total = 0;
  for (const auto& s : sums) total += s.bytes;
  EXPECT_GT(total, 4000000);  // about 4.3 MB
  EXPECT_LT(total, 5000000);
  LMDataset train(p("out/train.h5"), 1024);
  EXPECT_EQ(train.num_docs(), 60);
  EXPECT_EQ(train.get({0}).inputs.data<int64_t>()[0], 'G');  // "Genesis 1"
}

}  // namespace
