"""Foreground-aware crop sampling (artseg.nn.datasets.ArrayDataset's fg_fraction)."""

import numpy as np
import pytest

from artseg.config import ConfigError
from artseg.methods.segmenter.base import SegmenterConfig
from artseg.nn.datasets import ArrayDataset, crop_around, object_bank, paste_objects


def _data(n: int = 8, size: int = 128, spot: int = 5, seed: int = 0):
    """Half the images clean; the others hold one small square of foreground at a random place."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for i in range(n):
        mask = np.zeros((size, size), np.float32)
        if i % 2:
            y, x = rng.integers(0, size - spot, size=2)
            mask[y : y + spot, x : x + spot] = 1
        images.append(rng.random((size, size), dtype=np.float32))
        masks.append(mask)
    return images, masks


def _share_with_fg(fg_fraction: float, draws: int = 1200, crop: int = 32) -> float:
    images, masks = _data()
    ds = ArrayDataset(images, masks, crop, "random", augment=True, seed=1, fg_fraction=fg_fraction)
    hits = [bool((ds[k % len(ds)][1] > 0.5).any()) for k in range(draws)]
    assert all(ds[k][1].shape == (1, crop, crop) for k in range(4))
    return float(np.mean(hits))


def test_requested_share_of_crops_holds_foreground():
    chance = _share_with_fg(0.0)  # uniform crops: a 5 px square in half of the 128 px images
    assert chance < 0.15
    for p in (1 / 3, 0.6):
        expected = p + (1 - p) * chance  # forced crops always hold it, the others by chance
        sd = np.sqrt(expected * (1 - expected) / 1200)
        assert abs(_share_with_fg(p) - expected) < 4 * sd
    assert _share_with_fg(1.0, draws=300) == 1.0


def test_crop_around_holds_the_pixel_and_stays_inside():
    rng = np.random.default_rng(0)
    for y, x in [(0, 0), (99, 63), (50, 10)]:
        for _ in range(50):
            y0, x0 = crop_around((100, 64), 32, y, x, rng)
            assert 0 <= y0 <= 100 - 32 and 0 <= x0 <= 64 - 32
            assert y0 <= y < y0 + 32 and x0 <= x < x0 + 32


def test_no_foreground_anywhere_falls_back_to_uniform_crops():
    images, masks = _data()
    ds = ArrayDataset(images, [np.zeros_like(m) for m in masks], 32, "random", seed=0, fg_fraction=1.0)
    assert ds[0][0].shape == (1, 32, 32)


def test_fg_fraction_is_checked():
    with pytest.raises(ConfigError, match="train_crop=random"):
        SegmenterConfig.build("study", {"fg_fraction": "0.33"}).validate()
    with pytest.raises(ConfigError, match="fg_fraction"):
        SegmenterConfig.build("small", {"fg_fraction": "1.5"}).validate()
    SegmenterConfig.build("small", {"fg_fraction": "0.33"}).validate()


def test_unet_trains_with_foreground_sampling(blob_dataset, tmp_path):
    from artseg.data import load_dataset
    from artseg.methods import get
    from artseg.run import RunOptions

    cls = get("unet")
    cfg = cls.config_class.build("small", {"input_size": "16", "base": "4", "depth": "2", "max_epochs": "2",
                                           "batch_size": "4", "fg_fraction": "0.5", "tta": "none"})
    model = cls.fit(load_dataset(blob_dataset), cfg, RunOptions(device="cpu", work_dir=tmp_path, progress=False))
    assert model.config.fg_fraction == 0.5 and 0 <= model.threshold <= 1


def test_unet_trains_with_pasted_objects_and_keeps_the_setting(blob_dataset, tmp_path):
    from artseg.data import load_dataset
    from artseg.methods import get, load_method
    from artseg.run import RunOptions

    cls = get("unet")
    cfg = cls.config_class.build("small", {"input_size": "32", "base": "4", "depth": "2", "max_epochs": "1",
                                           "batch_size": "4", "copy_paste": "2", "tta": "none"})
    model = cls.fit(load_dataset(blob_dataset), cfg, RunOptions(device="cpu", work_dir=tmp_path, progress=False))
    model.save(tmp_path / "m")
    assert load_method(tmp_path / "m").config.copy_paste == 2


def _two_objects_share(fg_sampling: str, draws: int = 800) -> float:
    """Share of foreground crops that hold the small object of an image with a large and a small one."""
    mask = np.zeros((128, 128), np.float32)
    mask[8:48, 8:48] = 1  # 1,600 px
    mask[110:113, 110:113] = 1  # 9 px, too far from the large one for a 16 px crop to hold both
    image = np.zeros((128, 128), np.float32)
    image[110:113, 110:113] = 1  # marks the small object in the crop
    ds = ArrayDataset([image], [mask], 16, "random", seed=3, fg_fraction=1.0, fg_sampling=fg_sampling)
    return float(np.mean([ds[0][0].max().item() == 1 for _ in range(draws)]))


def test_object_sampling_shows_every_object_equally_often():
    assert _two_objects_share("pixel") < 0.03  # 9 of 1,609 foreground pixels
    share = _two_objects_share("object")
    assert abs(share - 0.5) < 4 * np.sqrt(0.25 / 800)
    with pytest.raises(ValueError, match="fg_sampling"):
        ArrayDataset([np.zeros((8, 8))], [np.zeros((8, 8))], 4, "random", fg_fraction=1.0, fg_sampling="blob")
    with pytest.raises(ConfigError, match="fg_sampling"):
        SegmenterConfig.build("small", {"fg_sampling": "blob"}).validate()


def _dusty_image(background: float = 0.6, size: int = 96):
    """A flat field with one dark 5 x 5 grain (transmission x0.5) and one 40 x 40 blob too large to bank."""
    image = np.full((size, size), background, np.float32)
    mask = np.zeros((size, size), np.float32)
    image[20:25, 30:35] *= 0.5
    mask[20:25, 30:35] = 1
    image[50:90, 50:90] *= 0.8
    mask[50:90, 50:90] = 1
    return image, mask


def test_object_bank_holds_each_small_objects_transmission_change():
    image, mask = _dusty_image()
    bank = object_bank([image] * 3, [mask] * 3, max_side=16)  # one (image, mask) pair repeated: banked once
    assert len(bank) == 1  # the 40 px blob does not fit 16 px
    factor, footprint = bank[0]
    assert footprint.sum() == 25 and footprint.shape == factor.shape == (17, 17)
    np.testing.assert_allclose(factor[footprint], 0.5, atol=1e-6)  # the grain halves whatever lies under it
    np.testing.assert_allclose(factor[0, :], 1.0, atol=1e-3)  # feathered to 1 at the patch's edge


def test_pasted_objects_dim_the_new_place_and_join_the_target():
    image, mask = _dusty_image()
    bank = object_bank([image], [mask], max_side=16)
    field, target = np.full((32, 32), 0.8, np.float32), np.zeros((32, 32), np.float32)
    paste_objects(field, target, bank, 1, np.random.default_rng(0))
    assert target.sum() == 25  # the grain's footprint, somewhere inside
    np.testing.assert_allclose(field[target > 0.5], 0.4, atol=1e-6)  # 0.8 x 0.5: the new background, dimmed
    assert np.all(field[target < 0.5] > 0.79)  # the halo is feathered, nothing else changes


def test_copy_paste_puts_objects_in_clean_crops_without_touching_the_training_arrays():
    image, mask = _dusty_image()
    clean, empty = np.full((96, 96), 0.7, np.float32), np.zeros((96, 96), np.float32)
    ds = ArrayDataset([image, clean], [mask, empty], 32, "random", seed=0, copy_paste=2)
    for _ in range(20):
        x, y = ds[1]
        assert 25 <= (y > 0.5).sum() <= 50 and (x < 0.36).sum() == (y > 0.5).sum()  # two grains, maybe overlapping
    assert np.all(clean == 0.7) and not empty.any()  # pasting works on copies of the crops
    off = ArrayDataset([image, clean], [mask, empty], 32, "center", copy_paste=2)  # centre crops: off
    assert not (off[1][1] > 0.5).any()
    with pytest.raises(ConfigError, match="train_crop=random"):
        SegmenterConfig.build("study", {"copy_paste": "2"}).validate()
    with pytest.raises(ConfigError, match="copy_paste"):
        SegmenterConfig.build("small", {"copy_paste": "-1"}).validate()
