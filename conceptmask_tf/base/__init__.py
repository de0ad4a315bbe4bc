"""The bottom layer: helpers every other package may use and that import none of them.

`names` (concept-name normalisation), `progress` (progress bars), `metrics` (plain-numpy
attention and segmentation metrics), `files` (file access on any TensorFlow filesystem,
through tf.io.gfile: every reader and writer of data roots, concept files, model folders
and reports uses it).
"""
