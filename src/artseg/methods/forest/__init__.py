"""Pixel classifiers on hand-made filter features (ilastik's pixel classification): `pixel-forest`."""
