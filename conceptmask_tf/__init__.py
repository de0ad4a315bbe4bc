"""Concept Mask in Keras 3 / TensorFlow: segment an image given any semantic concept."""

__version__ = "0.1.0"
