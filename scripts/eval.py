"""Float vs quantized AP on the held-out synthetic set (or WIDER FACE); the same as ``fpgagen eval``. See --help."""

import sys

from fpgagen.train.cli import main_eval

if __name__ == "__main__":
    sys.exit(main_eval())
