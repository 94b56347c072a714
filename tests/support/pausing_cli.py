"""``fpgagen`` CLI with a pause at one build step, for the interrupt and race tests (tests/test_robustness.py):
``python pausing_cli.py STEP SECONDS build ...`` sleeps SECONDS after build step STEP (0, 1, ...: each step the
build logs as ``[fpgagen  t s] ...``) or at "swapped" (between the build directory's exchange and the removal of
the old one), after printing "pausing at STEP" on stderr. The hook lives here, not in fpgagen.build."""

from __future__ import annotations

import re
import sys
import time

from fpgagen import accelerator, builddir, cli

STEP = re.compile(r"\[fpgagen +[\d.]+s\] ")


def main() -> int:
    pause_at, seconds, argv = sys.argv[1], float(sys.argv[2]), sys.argv[3:]

    def pause(where: str) -> None:
        if where == pause_at:
            print(f"[fpgagen] pausing at {where}", file=sys.stderr, flush=True)
            time.sleep(seconds)

    build, swap_in = accelerator.build, builddir.swap_in

    def pausing_build(*args, log=accelerator.log_stderr, **kwargs):
        steps = [0]

        def log_and_pause(msg: str) -> None:
            log(msg)
            if STEP.match(msg):
                pause(str(steps[0]))
                steps[0] += 1

        return build(*args, log=log_and_pause, **kwargs)

    accelerator.build = pausing_build
    builddir.swap_in = lambda tmp, out_dir, pause_=None, log=lambda msg: None: swap_in(tmp, out_dir, pause, log)
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
