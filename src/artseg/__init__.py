"""artseg: artefact segmentation for brightfield microscopy."""

from artseg import _env  # noqa: F401  (must run before any third-party import)

__version__ = "0.1.0"
