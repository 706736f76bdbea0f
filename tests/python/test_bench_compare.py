"""benchmarks/bench_compare.py (run_all.sh --compare) flags a ratio that fell by
more than its noise band and nothing else; fabricated JSON, no benchmark runs."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

from qj_paths import SOURCE_DIR

COMPARE = os.path.join(SOURCE_DIR, "benchmarks", "bench_compare.py")


def doc(commit, **ratios):
    return {"commit": commit, "date": "2026-01-01 00:00:00",
            "figures": {name: {"ratio": r, "noise_band": 0.10} for name, r in ratios.items()}}


class BenchCompare(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="qj_bench_compare_")

    def tearDown(self):
        self.tmp.cleanup()

    def compare(self, old, new):
        paths = []
        for name, content in (("old.json", old), ("new.json", new)):
            paths.append(os.path.join(self.tmp.name, name))
            with open(paths[-1], "w") as f:
                f.write(content if isinstance(content, str) else json.dumps(content))
        return subprocess.run([sys.executable, COMPARE, *paths], capture_output=True, text=True)

    def row(self, out, name):
        return next(line for line in out.splitlines() if line.startswith(name + " "))

    def verdict(self, out, name):
        return self.row(out, name).split()[-1]

    def test_changes_inside_the_band_pass(self):
        r = self.compare(doc("a" * 40, cpu=2.0, tok=50.0), doc("b" * 40, cpu=1.85, tok=54.0))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("-7.5%", self.row(r.stdout, "cpu"))
        self.assertEqual(self.verdict(r.stdout, "cpu"), "ok")

    def test_a_fall_beyond_the_band_fails_and_names_the_figure(self):
        r = self.compare(doc("a" * 40, cpu=2.0, tok=50.0), doc("b" * 40, cpu=1.7, tok=50.0))
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(self.verdict(r.stdout, "cpu"), "REGRESSED")
        self.assertEqual(self.verdict(r.stdout, "tok"), "ok")

    def test_a_rise_beyond_the_band_is_better_not_a_failure(self):
        r = self.compare(doc("a" * 40, cpu=2.0), doc("b" * 40, cpu=3.0))
        self.assertEqual(r.returncode, 0)
        self.assertEqual(self.verdict(r.stdout, "cpu"), "better")

    def test_each_figure_uses_its_own_band(self):
        new = doc("b" * 40, cpu=1.7)
        new["figures"]["cpu"]["noise_band"] = 0.20
        self.assertEqual(self.compare(doc("a" * 40, cpu=2.0), new).returncode, 0)

    def test_added_and_dropped_figures_are_listed_not_judged(self):
        r = self.compare(doc("a" * 40, cpu=2.0, old_only=1.0), doc("b" * 40, cpu=2.0, new_only=1.0))
        self.assertEqual(r.returncode, 0)
        self.assertEqual(self.verdict(r.stdout, "old_only"), "gone")
        self.assertEqual(self.verdict(r.stdout, "new_only"), "new")

    def test_input_that_is_not_a_run_all_file_exits_2(self):
        self.assertEqual(self.compare("{not json", doc("b" * 40, cpu=1.0)).returncode, 2)
        self.assertEqual(self.compare({"rows": []}, doc("b" * 40, cpu=1.0)).returncode, 2)


if __name__ == "__main__":
    unittest.main()
