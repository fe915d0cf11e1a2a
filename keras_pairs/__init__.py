"""keras_pairs: is the first of two handwritten digits <= the second? Siamese Keras models."""

__version__ = "0.2.0"
