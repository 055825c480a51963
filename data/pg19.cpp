#include "data/pg19.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"
#include "data/lm_dataset.h"

namespace ssm::data {

namespace {

namespace fs = std::filesystem;

bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

// One CSV record (RFC 4180 quoting: "a, b" and "" for a quote inside quotes). Records do not span lines.
std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') out.back() += '"', ++i;
      else if (c == '"') quoted = false;
      else out.back() += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.emplace_back();
    } else if (c != '\r') {
      out.back() += c;
    }
  }
  return out;
}

// metadata.csv: book id -> short title (empty map when the file is absent).
std::map<std::string, std::string> read_titles(const fs::path& csv) {
  std::map<std::string, std::string> titles;
  std::error_code ec;
  if (!fs::exists(csv, ec)) return titles;
  std::ifstream in(csv, std::ios::binary);
  SSM_CHECK_INPUT(in.is_open(), csv.string(), ": cannot open");
  std::string line;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line == "\r") continue;
    auto f = csv_fields(line);
    if (lineno == 1 && f[0] == "id") continue;  // header
    SSM_CHECK_INPUT(f.size() >= 2, csv.string(), ":", lineno, ": expected id,short_book_title,publication_date,url");
    titles[f[0]] = f[1];
  }
  SSM_CHECK_INPUT(!in.bad(), csv.string(), ": read failed");
  return titles;
}

// The books of one split folder: <dir>/*.txt, sorted by file name.
std::vector<fs::path> list_books(const fs::path& dir) {
  std::vector<fs::path> books;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    if (p.extension() != ".txt") continue;
    std::error_code ec2;
    if (fs::is_directory(p, ec2)) continue;
    books.push_back(p);
  }
  SSM_CHECK_INPUT(!ec, dir.string(), ": cannot list folder: ", ec.message());
  std::sort(books.begin(), books.end(), [](const fs::path& a, const fs::path& b) { return a.filename() < b.filename(); });
  return books;
}

std::string human_bytes(int64_t b) {
  const char* unit[] = {"B", "KB", "MB", "GB", "TB"};
  double v = double(b);
  int u = 0;
  while (v >= 1000 && u < 4) v /= 1000, ++u;
  std::ostringstream os;
  os.precision(u == 0 ? 0 : 2);
  os << std::fixed << v << " " << unit[u];
  return os.str();
}

}  // namespace

int64_t count_words(std::string_view text, bool& in_word) {
  int64_t n = 0;
  for (unsigned char c : text) {
    const bool space = is_space(c);
    if (!space && !in_word) ++n;  // a word starts here
    in_word = !space;
  }
  return n;
}

std::vector<PG19SplitSummary> convert_pg19(const std::string& root, const std::string& out_dir, std::ostream& log,
                                           const PG19Options& opt) {
  std::error_code ec;
  SSM_CHECK_INPUT(fs::exists(root, ec), root, ": PG-19 root folder not found");
  SSM_CHECK_INPUT(fs::is_directory(root, ec), root, ": is not a folder (expected the PG-19 root holding train/, ",
                  "validation/, test/)");
  std::vector<std::string> present;
  for (const auto& s : opt.splits)
    if (fs::is_directory(fs::path(root) / s, ec)) present.push_back(s);
  std::string wanted;
  for (const auto& s : opt.splits) wanted += (wanted.empty() ? "" : ", ") + s + "/";
  SSM_CHECK_INPUT(!present.empty(), root, ": no split folders (expected ", wanted, " holding <book id>.txt files)");

  const auto titles = read_titles(fs::path(root) / "metadata.csv");
  const std::string source = opt.source.empty() ? cat("PG-19 layout book files from ", root) : opt.source;
  fs::create_directories(out_dir, ec);
  SSM_CHECK_INPUT(!ec, out_dir, ": cannot create folder: ", ec.message());

  // Check every split for books first, so that an empty split fails before hours of conversion.
  std::vector<std::vector<fs::path>> books;
  for (const auto& s : present) {
    const fs::path dir = fs::path(root) / s;
    books.push_back(list_books(dir));
    SSM_CHECK_INPUT(!books.back().empty(), dir.string(), ": split folder holds no <book id>.txt files");
  }

  std::vector<PG19SplitSummary> out;
  std::vector<char> buf(size_t(1) << 20);
  for (size_t si = 0; si < present.size(); ++si) {
    const auto t0 = std::chrono::steady_clock::now();
    PG19SplitSummary sum;
    sum.split = present[si];
    sum.path = (fs::path(out_dir) / (sum.split + ".h5")).string();
    LMWriter w(sum.path, LMTokenType::u8, opt.gzip_level);
    for (const fs::path& book : books[si]) {
      std::ifstream in(book, std::ios::binary);
      SSM_CHECK_INPUT(in.is_open(), book.string(), ": cannot open for reading");
      bool in_word = false;
      while (in) {
        in.read(buf.data(), std::streamsize(buf.size()));
        const std::streamsize got = in.gcount();
        SSM_CHECK_INPUT(!in.bad(), book.string(), ": read failed");
        if (got <= 0) break;
        w.append(buf.data(), got);
        sum.words += count_words(std::string_view(buf.data(), size_t(got)), in_word);
        sum.bytes += got;
      }
      SSM_CHECK_INPUT(!in.bad(), book.string(), ": read failed");
      const std::string id = book.stem().string();
      auto t = titles.find(id);
      w.end_document(id, t == titles.end() ? "" : t->second);
      ++sum.books;
    }
    SSM_CHECK_INPUT(sum.bytes >= 2, (fs::path(root) / sum.split).string(), ": the split's books hold ", sum.bytes,
                    " bytes of text, too few for language modelling");
    LMFileInfo info;
    info.vocab_size = 256;
    info.tokenizer = "bytes";
    info.n_words = sum.words;
    info.split = sum.split;
    info.source = source;
    w.commit(info);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log << "pg19 " << sum.split << ": " << sum.books << " books, " << sum.bytes << " bytes (" << human_bytes(sum.bytes)
        << "), " << sum.words << " words -> " << sum.path << " (" << int64_t(secs * 10) / 10.0 << " s)" << std::endl;
    out.push_back(sum);
  }
  return out;
}

bool pg19_ready(const std::string& out_dir, const std::vector<std::string>& splits) {
  std::error_code ec;
  for (const auto& s : splits)
    if (!fs::exists(fs::path(out_dir) / (s + ".h5"), ec)) return false;
  return !splits.empty();
}

}  // namespace ssm::data
