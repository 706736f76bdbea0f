"""qj-plan sizes every shipped config without allocating it, and its total is
the sum of the arenas the trainer would allocate."""
import glob
import os
import re
import unittest

from qj_paths import SOURCE_DIR, run, tool

UNITS = {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def to_bytes(number, unit):
    return float(number) * UNITS[unit]


class Plan(unittest.TestCase):
    def test_every_config_has_a_plan(self):
        configs = sorted(glob.glob(os.path.join(SOURCE_DIR, "configs", "*.json")))
        self.assertGreaterEqual(len(configs), 7)
        for config in configs:
            with self.subTest(config=os.path.basename(config)):
                result = run([tool("qj-plan"), "--config", config], timeout=60)
                self.assertEqual(result.returncode, 0, msg=result.stderr)
                arenas = re.findall(r"^(parameters|gradients|optimizer|activations|workspace)\s+"
                                    r"([\d.]+) (B|KiB|MiB|GiB)", result.stdout, re.M)
                total = re.search(r"^total\s+([\d.]+) (B|KiB|MiB|GiB)", result.stdout, re.M)
                self.assertEqual(len(arenas), 5, msg=result.stdout)
                parts = sum(to_bytes(n, u) for _, n, u in arenas)
                self.assertAlmostEqual(parts / to_bytes(*total.groups()), 1.0, delta=0.01)
                # Adam keeps two fp32 moments per fp32 parameter.
                sizes = {name: to_bytes(n, u) for name, n, u in arenas}
                self.assertAlmostEqual(sizes["optimizer"] / sizes["parameters"], 2.0, delta=0.02)


if __name__ == "__main__":
    unittest.main()
