"""`artseg label`: a keyboard-driven local web page that writes image-level labels into a dataset folder.

store (labels.csv, images/, session file) · previews (rendering, cache, prefetch) · queue (order,
active learning) · app (the session the API calls) · server (HTTP) · cli · static/ (the page).
"""
