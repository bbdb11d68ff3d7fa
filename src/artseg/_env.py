"""Offline guarantees, set before any third-party import can phone home.

albumentations checks for updates on import, ultralytics and the Hugging Face hub fetch weights:
artseg never needs the network at run time, so every such switch is turned off here.
"""

import os

for _key, _value in {
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "HF_HUB_OFFLINE": "1",
    "YOLO_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}.items():
    os.environ.setdefault(_key, _value)
