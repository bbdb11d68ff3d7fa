"""Training augmentation (artseg.nn.datasets.study_augmentation): geometry moves image and mask together;
the intensity set changes grey values of the image only."""

import numpy as np

from artseg.methods.segmenter.base import SegmenterConfig
from artseg.nn.datasets import ArrayDataset


def _pair(seed: int = 0):
    rng = np.random.default_rng(seed)
    image = rng.random((64, 64), dtype=np.float32)
    mask = (image > 0.8).astype(np.float32)  # the mask is a function of the grey values
    return image, mask


def test_geometry_only_keeps_grey_values_and_moves_the_mask_with_the_image():
    image, mask = _pair()
    ds = ArrayDataset([image], [mask], augment=True, seed=0)
    for _ in range(10):
        x, y = ds[0]
        assert np.array_equal(np.sort(x.numpy().ravel()), np.sort(image.ravel()))
        assert np.array_equal(y.numpy()[0], (x.numpy()[0] > 0.8).astype(np.float32))


def test_intensity_changes_grey_values_but_not_the_mask():
    image, mask = _pair()
    ds = ArrayDataset([image], [mask], augment=True, seed=0, intensity=True)
    changed = 0
    for _ in range(40):
        x, y = ds[0]
        x, y = x.numpy()[0], y.numpy()[0]
        assert x.shape == y.shape == image.shape and x.dtype == np.float32
        assert 0 <= x.min() and x.max() <= 1
        assert y.sum() == mask.sum()  # geometry only on the mask
        changed += not np.allclose(np.sort(x.ravel()), np.sort(image.ravel()))
    assert 10 <= changed <= 39  # each grey transform fires with its probability, not always


def test_config_field_is_off_in_the_study_preset_and_parsed_from_set():
    assert not SegmenterConfig.build("study", {}).augment_intensity
    assert SegmenterConfig.build("small", {"augment_intensity": "true"}).augment_intensity
