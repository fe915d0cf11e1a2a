"""Serve the model: a page to draw two digits (the model runs in the browser) and TF Serving's REST API.

The command lives in keras_pairs/commands/serve.py (also ``keras-pairs serve`` once installed).
"""

import sys

from keras_pairs.commands.serve import main

if __name__ == "__main__":
    sys.exit(main())
