"""Is digit A <= digit B? Two digit pictures through a trained model.

The command lives in keras_pairs/commands/predict.py (also ``keras-pairs predict`` once installed).
"""

import sys

from keras_pairs.commands.predict import main

if __name__ == "__main__":
    sys.exit(main())
