"""Methods that learn from image labels only: `scorecam` (classifier + Score-CAM maps) and `scorecam-unet`
(pseudo-labels -> U-Net). `base.py` holds the classifier core, `pseudo_labels.py` the public pseudo-label rules.
"""
