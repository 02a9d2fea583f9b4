"""Per-update overhead of this tree against another revision, each in its own process.

    python benchmarks/against.py --base main --rounds 5

Runs case 2 of ``run.py`` (the overhead on the 2-D Rosenbrock function:
``opt.iterate`` with its defaults, ``iterate`` with many updates per
iteration, the raw compiled step; ``workers.py overhead``) for two source
trees: ``--base`` (a git revision, extracted into a temporary folder with
``git archive``) and the working tree. Every sample comes from a fresh
process running that tree's own ``workers.py``, the two trees taking turns
for ``--rounds`` rounds, so that load from other processes falls on both
alike. Prints the median per update of every row and the ratio
working tree / base.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def extract(revision, folder):
    """The tree of a git revision, extracted into ``folder``."""
    archive = subprocess.run(["git", "archive", revision], cwd=ROOT, capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    return folder


def sample(tree, mode, quick):
    """One process of ``tree``'s overhead worker; its result."""
    env = dict(os.environ, PYTHONPATH=tree, OPENBLAS_NUM_THREADS="1")
    argv = [sys.executable, os.path.join(tree, "benchmarks", "workers.py"), "overhead",
            f"downhill[{mode}]"] + (["--quick"] if quick else [])
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1200,
                          cwd=os.path.join(tree, "benchmarks"))
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{tree}: the worker failed:\n{proc.stderr[-3000:]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="main", help="git revision to compare with")
    parser.add_argument("--rounds", type=int, default=5, help="processes per tree")
    parser.add_argument("--mode", default="NUMBA", help="PyTensor compile mode")
    parser.add_argument("--quick", action="store_true", help="fewer updates per sample")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        trees = {args.base: extract(args.base, folder), "working tree": ROOT}
        samples = {name: {} for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                for row, values in sample(tree, args.mode, args.quick).items():
                    samples[name].setdefault(row.split("] ", 1)[1], []).extend(values)
    print(f"median microseconds per update, {args.rounds} processes per tree, "
          f"load average {os.getloadavg()[0]:.1f}")
    base, work = samples[args.base], samples["working tree"]
    for row in base:
        a, b = np.median(base[row]) * 1e6, np.median(work[row]) * 1e6
        print(f"  {row:55s} {args.base}: {a:7.2f}   working tree: {b:7.2f}   "
              f"ratio {b / a:.3f}")


if __name__ == "__main__":
    main()
