"""Instances: centre-heatmap and edge-distance targets, the instance head's channels, their decoding into
boxes and image objects (or connected components without a head), and the one COCO AP helper
(``centres``)."""
