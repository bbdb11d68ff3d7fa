"""Methods that learn from images labelled clean only: `padim`, `patch-svdd`, `ae-ssim`.

`base.py` holds what they share: the `CleanOnlyMethod` base, clean splits and score calibration.
"""
