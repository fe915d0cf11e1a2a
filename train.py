"""Train one architecture for N rounds and write its run folder.

The command lives in keras_pairs/commands/train.py (also ``keras-pairs train`` once installed).
"""

import sys

from keras_pairs.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
