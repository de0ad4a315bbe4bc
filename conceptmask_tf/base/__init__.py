"""The bottom layer: helpers every other package may use and that import none of them.

`names` (concept-name normalisation), `progress` (progress bars), `metrics` (plain-numpy
attention and segmentation metrics).
"""
