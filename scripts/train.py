"""Train the LPYOLO face detector (float phase, then QAT); the same as ``fpgagen train``. See --help."""

import sys

from fpgagen.train.cli import main_train

if __name__ == "__main__":
    sys.exit(main_train())
