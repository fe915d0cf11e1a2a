"""Grid search with k-fold cross-validation on the training pairs.

The command lives in keras_pairs/commands/search.py (also ``keras-pairs search`` once installed).
"""

import sys

from keras_pairs.commands.search import main

if __name__ == "__main__":
    sys.exit(main())
