"""Export a trained model: a SavedModel for other apps and, with --tflite, verified TFLite files.

The command lives in keras_pairs/commands/export.py (also ``keras-pairs export`` once installed).
"""

import sys

from keras_pairs.commands.export import main

if __name__ == "__main__":
    sys.exit(main())
