#!/usr/bin/env bash
# kjv-to-pg19.sh OUT_DIR: the King James Bible as a small corpus in PG-19's layout, for LM smoke tests
# and quick byte-level runs (`ssm data pg19 --root OUT_DIR` then converts it like PG-19 itself).
#
# Source: the Debian/Ubuntu program `bible` (packages bible-kjv and bible-kjv-text:
#   apt-get install -y bible-kjv), text of the Authorized (King James) Version, public domain.
# Output (one book of the Bible = one PG-19 "book"):
#   OUT_DIR/{train,validation,test}/<NN-name>.txt   NN = canonical order 01..66, e.g. 01-genesis, 66-revelation
#   OUT_DIR/metadata.csv   id,short_book_title,publication_date,url (PG-19's columns; no header line);
#                          publication_date 1611, url of Project Gutenberg's KJV (ebook 10)
# Each book is `bible`'s pretty-printed text (chapter headings "Genesis 1", numbered verses, lines wrapped
# at 70 columns, like Gutenberg's plain text), printed by the range "<Book>1:1-<Book>999:999" (bible clamps
# chapter and verse to the book's last). The split is checked: the 66 books hold all 31102 verses of the
# whole-Bible range Gen1:1-Rev22:21, each book starts at its chapter 1 verse 1 and holds one book only.
# Held out: small books from both testaments and several genres (validation 32 KB, test 59 KB, train 4.2 MB):
#   validation: Ruth (08), Jonah (32), Philippians (50)
#   test:       Esther (17), Micah (33), Colossians (51)
#   train:      the other 60 books.
# Idempotent: the corpus is built in a temporary folder beside OUT_DIR and then replaces OUT_DIR's
# train/, validation/, test/ and metadata.csv; running it again gives byte-identical files.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
OUT=$1
if ! command -v bible >/dev/null 2>&1; then
  echo "$0: the program 'bible' is missing; install it with: apt-get install -y bible-kjv bible-kjv-text" >&2
  exit 1
fi

# Canonical order; the names are what `bible` parses (checked below) and, lower-cased, the file ids.
BOOKS=(Genesis Exodus Leviticus Numbers Deuteronomy Joshua Judges Ruth 1Samuel 2Samuel 1Kings 2Kings
  1Chronicles 2Chronicles Ezra Nehemiah Esther Job Psalms Proverbs Ecclesiastes SongofSolomon Isaiah Jeremiah
  Lamentations Ezekiel Daniel Hosea Joel Amos Obadiah Jonah Micah Nahum Habakkuk Zephaniah Haggai Zechariah
  Malachi Matthew Mark Luke John Acts Romans 1Corinthians 2Corinthians Galatians Ephesians Philippians
  Colossians 1Thessalonians 2Thessalonians 1Timothy 2Timothy Titus Philemon Hebrews James 1Peter 2Peter 1John
  2John 3John Jude Revelation)
# Titles for metadata.csv (PG-19's short_book_title).
TITLES=("Genesis" "Exodus" "Leviticus" "Numbers" "Deuteronomy" "Joshua" "Judges" "Ruth" "1 Samuel" "2 Samuel"
  "1 Kings" "2 Kings" "1 Chronicles" "2 Chronicles" "Ezra" "Nehemiah" "Esther" "Job" "Psalms" "Proverbs"
  "Ecclesiastes" "Song of Solomon" "Isaiah" "Jeremiah" "Lamentations" "Ezekiel" "Daniel" "Hosea" "Joel" "Amos"
  "Obadiah" "Jonah" "Micah" "Nahum" "Habakkuk" "Zephaniah" "Haggai" "Zechariah" "Malachi" "Matthew" "Mark"
  "Luke" "John" "Acts" "Romans" "1 Corinthians" "2 Corinthians" "Galatians" "Ephesians" "Philippians"
  "Colossians" "1 Thessalonians" "2 Thessalonians" "1 Timothy" "2 Timothy" "Titus" "Philemon" "Hebrews" "James"
  "1 Peter" "2 Peter" "1 John" "2 John" "3 John" "Jude" "Revelation")
VALIDATION=" Ruth Jonah Philippians "
TEST=" Esther Micah Colossians "
[[ ${#BOOKS[@]} -eq 66 && ${#TITLES[@]} -eq 66 ]] || { echo "$0: internal error: book list" >&2; exit 1; }

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STAGE=$(mktemp -d "$OUT/.kjv-stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
trap 'echo "$0: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
mkdir -p "$STAGE/train" "$STAGE/validation" "$STAGE/test"
export LC_ALL=C

total=0
for i in "${!BOOKS[@]}"; do
  b=${BOOKS[$i]}
  id=$(printf '%02d-%s' $((i + 1)) "$(echo "$b" | tr 'A-Z' 'a-z')")
  range="${b}1:1-${b}999:999"
  # Check with the unformatted listing (one "<abbr><chapter>:<verse> text" line per verse): the book
  # starts at 1:1 and every verse carries the same book abbreviation.
  refs=$(bible -f "$range" | awk '{print $1}')
  n=$(wc -l <<<"$refs")
  first=${refs%%$'\n'*}
  abbr=${first%1:1}
  if [[ "$first" != *[A-Za-z]1:1 || -z "$abbr" ]]; then
    echo "$0: bible did not resolve '$b' to a book starting at 1:1 (first reference '$first')" >&2
    exit 1
  fi
  if grep -qv "^${abbr}[0-9]*:[0-9]*\$" <<<"$refs"; then
    echo "$0: the range $range printed verses of more than one book" >&2
    exit 1
  fi
  total=$((total + n))
  split=train
  [[ "$VALIDATION" == *" $b "* ]] && split=validation
  [[ "$TEST" == *" $b "* ]] && split=test
  # Pretty-printed text, wrapped at 70 columns; the leading blank line is dropped.
  bible -l70 "$range" | sed '1{/^$/d}' > "$STAGE/$split/$id.txt"
  printf '%s,%s,1611,http://www.gutenberg.org/ebooks/10\n' "$id" "${TITLES[$i]}" >> "$STAGE/metadata.csv"
done
all=$(bible -f Gen1:1-Rev22:21 | wc -l)
if [[ $total -ne $all || $all -ne 31102 ]]; then
  echo "$0: the 66 books hold $total verses, the whole Bible $all (expected 31102)" >&2
  exit 1
fi

rm -rf "$OUT/train" "$OUT/validation" "$OUT/test" "$OUT/metadata.csv"
mv "$STAGE/train" "$STAGE/validation" "$STAGE/test" "$STAGE/metadata.csv" "$OUT/"
for s in train validation test; do
  printf 'kjv %-10s %2d books %9d bytes\n' "$s" "$(ls "$OUT/$s" | wc -l)" "$(cat "$OUT/$s"/*.txt | wc -c)"
done
