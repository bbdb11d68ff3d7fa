"""Pseudo-label CAMs of `scorecam-unet` (`CamClassifier.label_maps`): the cheap views agree with the study's
tiled Score-CAM where they compute the same thing, and every CAM gates the anomaly blobs the way it should."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from artseg.config import ConfigError
from artseg.methods.weak.base import LABEL_CAMS, CamClassifier, ScoreCAMConfig
from artseg.methods.weak.pseudo_labels import combine_pseudo_labels
from artseg.methods.weak.scorecam_unet import ScoreCAMUNetConfig


def _tiny_core(input_size: int = 32) -> CamClassifier:
    torch.manual_seed(0)
    return CamClassifier(ScoreCAMConfig(backbone="tiny", input_size=input_size, cam_chunk=16)).to("cpu")


@pytest.mark.parametrize("cam", LABEL_CAMS)
def test_resized_view_equals_tiles_on_images_of_the_classifier_size(cam):
    """One tile, no resizing: the batched one-pass view must give the study's tiled maps, and so the same labels."""
    core = _tiny_core()
    rng = np.random.default_rng(1)
    images = [rng.normal(0, 1, (32, 32)).astype(np.float32) for _ in range(3)]
    tiled = core.label_maps(images, cam, "tiles")
    for batch in (1, 2):
        resized = core.label_maps(images, cam, "resized", batch=batch)
        assert all(np.abs(r - t).max() <= 1e-5 for r, t in zip(resized, tiled))
    assert any(t.max() > 0 for t in tiled)  # non-trivial maps
    anomalies = [(np.abs(im) > 1.5).astype(np.float32) for im in images]
    same, _ = combine_pseudo_labels("cam+anomaly", resized, anomalies, 0.5)
    want, _ = combine_pseudo_labels("cam+anomaly", tiled, anomalies, 0.5)
    assert all(np.array_equal(a, b) for a, b in zip(same, want))


class _DarkDetector(nn.Module):
    """Two feature channels (dark and bright evidence, 4x pooled), pooled linear head: artefact = dark."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 2, 5, padding=2), nn.ReLU(), nn.AvgPool2d(4))
        self.head = nn.Linear(2, 1)
        with torch.no_grad():
            self.features[0].weight[0].fill_(-1 / 25)  # high where the image is dark
            self.features[0].weight[1].fill_(1 / 25)  # high where it is bright
            self.features[0].bias.fill_(0.5)
            self.head.weight.copy_(torch.tensor([[20.0, -20.0]]))  # logits far apart: a confident classifier
            self.head.bias.zero_()

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


# not ("gradcam-signed", "tiles"): each tile's map is min-max normalised on its own, so in a tile holding only the
# decoy the clean background around it is the maximum and the decoy's rim touches the gate region (it keeps both)
@pytest.mark.parametrize(("cam", "view"), [("scorecam", "tiles"), ("scorecam", "resized"), ("gradcam", "resized"),
                                           ("gradcam", "tiles"), ("gradcam-signed", "resized")])
def test_cam_keeps_the_blob_the_classifier_calls_artefact_and_drops_the_decoy(cam, view):
    """An anomaly map with two blobs, a dark artefact and a bright decoy; a classifier that calls dark 'artefact':
    the old (tiled Score-CAM) and the cheap paths all keep the artefact's blob alone."""
    core = CamClassifier(ScoreCAMConfig(backbone="tiny", input_size=32, cam_layer="features", cam_chunk=16))
    core.net = _DarkDetector()
    core.to("cpu")
    rng = np.random.default_rng(0)
    image = rng.normal(0, 0.1, (64, 64)).astype(np.float32)
    dark, bright = np.zeros((64, 64), bool), np.zeros((64, 64), bool)
    dark[8:24, 10:26], bright[40:56, 36:52] = True, True
    image[dark], image[bright] = -3.0, 3.0
    anomaly = np.zeros((64, 64), np.float32)
    anomaly[dark | bright] = 0.9
    (cams,) = [core.label_maps([image], cam, view)]
    assert cams[0][dark].mean() > cams[0][bright].mean()
    (label,), info = combine_pseudo_labels("cam+anomaly", cams, [anomaly], 0.5)
    assert np.array_equal(label, dark), info


def test_pseudo_cam_settings_are_validated():
    with pytest.raises(ConfigError, match="pseudo_cam='eigencam'"):
        ScoreCAMUNetConfig.build("small", {"pseudo_cam": "eigencam"}).validate()
    with pytest.raises(ConfigError, match="pseudo_cam_view='crop'"):
        ScoreCAMUNetConfig.build("small", {"pseudo_cam_view": "crop"}).validate()
    with pytest.raises(ConfigError, match="label maps"):
        _tiny_core().label_maps([np.zeros((8, 8), np.float32)], "scorecam", "crop")


def test_small_preset_cuts_its_pseudo_labels_with_the_configured_cam():
    """The method's pseudo-label step uses `pseudo_cam` / `pseudo_cam_view` (the `small` preset: signed Grad-CAM
    on tiles), leaves clean-labelled images empty and names the CAM in the recorded rule."""
    from artseg.methods.weak.scorecam_unet import ScoreCAMUNetMethod
    from artseg.run import RunOptions

    class DarkTeacher:  # stand-in anomaly teacher: probability 0.9 on dark and bright pixels alike
        def predict_proba(self, image):
            return np.where(np.abs(image) > 1, 0.9, 0.0).astype(np.float32)

    config = ScoreCAMUNetConfig.build("small", {"cls_backbone": "tiny", "cls_input_size": 32})
    assert (config.pseudo_cam, config.pseudo_cam_view) == ("gradcam-signed", "tiles")
    core = _tiny_core()
    rng = np.random.default_rng(2)
    images = [rng.normal(0, 0.5, (48, 48)).astype(np.float32) for _ in range(3)]
    images[0][5:15, 5:15], images[0][30:40, 30:40] = -3.0, 3.0
    images[2][20:30, 8:18] = -3.0
    model = ScoreCAMUNetMethod(config)
    masks = model._pseudo_labels(core, DarkTeacher(), images, [True, False, True], RunOptions(device="cpu", progress=False))
    cams = core.label_maps([images[0], images[2]], "gradcam-signed", "tiles")
    want, _ = combine_pseudo_labels("cam+anomaly", cams, [DarkTeacher().predict_proba(images[i]) for i in (0, 2)], 0.4)
    assert np.array_equal(masks[0], want[0]) and np.array_equal(masks[2], want[1]) and not masks[1].any()
    assert masks[0].any() and "blobs touching gradcam-signed (tiles)" in model.meta["pseudo_labels"]["rule"]
