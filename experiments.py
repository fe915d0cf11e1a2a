"""Reproduce the reports' experiments: every architecture x N rounds, tables and figures.

The command lives in keras_pairs/commands/experiments.py (also ``keras-pairs experiments`` once installed).
"""

import sys

from keras_pairs.commands.experiments import main

if __name__ == "__main__":
    sys.exit(main())
