"""Start-up cost of the CLI: CPU seconds (user + system) of ``fpgagen --help`` and ``fpgagen <cmd> --help``, the
median of a few runs each, in fresh interpreters. The goal (issue 10) is under 0.3 s each."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_S = 0.3


def cpu_seconds(args: list[str]) -> float:
    """CPU time of one child process running ``python -m fpgagen.cli ARGS``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-m", "fpgagen.cli", *args], env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(runs: int = 5) -> int:
    baseline = statistics.median(_python_only() for _ in range(runs))
    print(f"fpgagen start-up, CPU seconds (median of {runs}; a bare 'python -c pass' takes {baseline:.3f} s):")
    worst = 0.0
    for args in (["--help"], *([cmd, "--help"] for cmd in ("build", "csim", "report", "train", "eval", "bitstream"))):
        t = statistics.median(cpu_seconds(args) for _ in range(runs))
        worst = max(worst, t)
        print(f"  fpgagen {' '.join(args):16s} {t:.3f} s")
    print(f"worst {worst:.3f} s: {'within' if worst < GOAL_S else 'OVER'} the {GOAL_S} s goal")
    return 0 if worst < GOAL_S else 1


def _python_only() -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


if __name__ == "__main__":
    sys.exit(main())
