"""Is digit A <= digit B? `python predict.py a.png b.png [--arch NAME | --run DIR] [--json]`.

Flags only: the work is done by keras_pairs.predict.
"""

import sys

if __name__ == "__main__":
    from keras_pairs.predict import main

    sys.exit(main())
