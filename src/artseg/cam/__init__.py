"""Class activation maps: our fast, documented Score-CAM (see artseg.cam.scorecam)."""

from artseg.cam.scorecam import ScoreCAM, ScoreCAMResult

__all__ = ["ScoreCAM", "ScoreCAMResult"]
