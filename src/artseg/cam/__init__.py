"""Class activation maps: our fast, documented Score-CAM (artseg.cam.scorecam) and Grad-CAM
(artseg.cam.gradcam, the cheap gate of the weak path's pseudo-labels)."""

from artseg.cam.gradcam import GradCAM, GradCAMResult
from artseg.cam.scorecam import ScoreCAM, ScoreCAMResult

__all__ = ["GradCAM", "GradCAMResult", "ScoreCAM", "ScoreCAMResult"]
