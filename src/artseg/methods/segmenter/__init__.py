"""Methods that train a pixel segmenter on masks: `unet` (whole images) and `detector-unet` (boxes + patches).

`base.py` holds the shared segmenter (network, training, tiled inference) and the `SegmenterMethod` base.
"""
