"""artseg: artefact segmentation for brightfield microscopy.

``artseg.load_model(path).segment(image)`` is the Python API (artseg.api); it is imported on first
use so that ``import artseg`` stays light (no torch until a model is loaded).
"""

from artseg import _env  # noqa: F401  (must run before any third-party import)

__version__ = "0.1.0"

_LAZY = {"load_model": "artseg.api", "ArtefactModel": "artseg.api", "Result": "artseg.api"}
__all__ = ["ArtefactModel", "Result", "__version__", "load_model"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'artseg' has no attribute {name!r}")
