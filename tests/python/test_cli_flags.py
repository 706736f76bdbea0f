"""Every program parses its flags the same way (src/core/command_line.h): the
same --help layout, --version, and the same one-line error, with the nearest
known name, for a misspelt flag."""
import re
import unittest

from qj_paths import run, tool

PROGRAMS = ["qj-train", "qj-plan", "qj-prep", "qj-sample", "qj-ckpt", "qj-backend-test",
            "qj-make-corpus"]
# A real flag of each program, misspelt by one letter.
MISSPELT = {"qj-train": ("--confg", "--config"), "qj-plan": ("--wrld", "--world"),
            "qj-prep": ("--thread", "--threads"), "qj-sample": ("--top_k", "--top-k"),
            "qj-ckpt": ("--key-fil", "--key-file"), "qj-backend-test": ("--filtr", "--filter"),
            "qj-make-corpus": ("--seeds", "--seed")}


class CliFlags(unittest.TestCase):
    def test_help_has_one_layout(self):
        for program in PROGRAMS:
            with self.subTest(program=program):
                shown = run([tool(program), "--help"], timeout=30)
                self.assertEqual(shown.returncode, 0, msg=shown.stderr)
                self.assertEqual(shown.stderr, "")
                lines = shown.stdout.splitlines()
                self.assertTrue(lines[0].startswith("usage: " + program + " "), msg=lines[0])
                self.assertIn("  -h, --help              print this and exit", lines)
                self.assertIn("  --version               print the version and exit", lines)
                # -h is the same as --help.
                self.assertEqual(run([tool(program), "-h"], timeout=30).stdout, shown.stdout)

    def test_version(self):
        for program in PROGRAMS:
            with self.subTest(program=program):
                shown = run([tool(program), "--version"], timeout=30)
                self.assertEqual(shown.returncode, 0, msg=shown.stderr)
                self.assertRegex(shown.stdout, r"^" + re.escape(program) + r" \d+\.\d+\.\d+\n$")

    def assert_one_error(self, args, *needles):
        result = run(args, timeout=30)
        self.assertEqual(result.returncode, 2, msg=result.stdout + result.stderr)
        errors = [l for l in result.stderr.splitlines() if l.startswith("error: ")]
        self.assertEqual(len(errors), 1, msg=result.stderr)
        self.assertEqual(result.stderr.strip(), errors[0])
        for needle in needles:
            self.assertIn(needle, errors[0])

    def test_misspelt_flag_names_the_nearest(self):
        for program, (wrong, right) in MISSPELT.items():
            with self.subTest(program=program):
                self.assert_one_error([tool(program), wrong, "x"], "command line: unknown flag '" + wrong +
                                      "'", "did you mean '" + right + "'?", program + " --help")

    def test_far_flag_gets_no_suggestion(self):
        result = run([tool("qj-plan"), "--completely-different"], timeout=30)
        self.assertIn("unknown flag '--completely-different'", result.stderr)
        self.assertNotIn("did you mean", result.stderr)

    def test_missing_value_and_bad_number(self):
        self.assert_one_error([tool("qj-plan"), "--config"], "--config needs a value")
        self.assert_one_error([tool("qj-plan"), "--config", "c.json", "--world", "two"],
                              "--world needs an integer in [1, ", "'two'")
        self.assert_one_error([tool("qj-sample"), "--config", "c", "--weights", "w", "--prompt", "p",
                               "--temperature=-1"], "--temperature needs a number in [0, 100]", "'-1'")

    def test_required_flag(self):
        self.assert_one_error([tool("qj-plan")], "--config is required")
        self.assert_one_error([tool("qj-prep"), "--output", "p"], "--input is required")

    def test_switch_takes_no_value(self):
        self.assert_one_error([tool("qj-backend-test"), "--list=yes"], "--list takes no value")


if __name__ == "__main__":
    unittest.main()
