"""Synthetic benchmark: determinism, dataset layout, mask/label consistency, focal stacks, looks."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy import ndimage as ndi

from artseg.data import LABELS, SPLITS, load_dataset
from artseg.io import read_mask, read_raw
from artseg.synth import KINDS, LOOKS, generate_dataset, synth_image


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ds"
    return generate_dataset(out, n_train=6, n_val=4, n_test=4, height=64, width=64, seed=3, progress=False)


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_dataset(small_dataset, tmp_path):
    again = generate_dataset(
        tmp_path / "again", n_train=6, n_val=4, n_test=4, height=64, width=64, seed=3, progress=False
    )
    a, b = _files(small_dataset), _files(again)
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a)


def test_different_seed_differs():
    a = synth_image(1, 64, 64, artefacts=False).image
    b = synth_image(2, 64, 64, artefacts=False).image
    assert not np.array_equal(a, b)
    assert np.array_equal(a, synth_image(1, 64, 64, artefacts=False).image)


def test_images_do_not_depend_on_split_sizes(tmp_path):
    small = generate_dataset(tmp_path / "a", 2, 0, 0, 48, 48, seed=5, progress=False)
    large = generate_dataset(tmp_path / "b", 4, 2, 0, 48, 48, seed=5, progress=False)
    for stem in ("train_0000", "train_0001"):
        assert (small / "images" / f"{stem}.tif").read_bytes() == (
            large / "images" / f"{stem}.tif"
        ).read_bytes()


def test_layout_loads_balanced_with_consistent_masks(small_dataset):
    ds = load_dataset(small_dataset)
    assert len(ds.samples) == 14
    for split in SPLITS:
        part = ds.split(split)
        counts = {lab: sum(s.label == lab for s in part) for lab in LABELS}
        assert counts["clean"] == counts["artefact"] == len(part) // 2
    for s in ds.samples:
        raw = read_raw(s.image_path)
        assert raw.dtype == np.uint16 and raw.shape == (64, 64)
        assert raw.std() > 0
        mask = s.read_mask()
        assert mask.shape == raw.shape
        assert mask.any() == s.is_artefact, s.stem
        png = read_raw(s.mask_path)
        assert png.dtype == np.uint8 and set(np.unique(png)) <= {0, 255}


def test_sidecar_records_kinds_and_areas(small_dataset):
    with open(small_dataset / "artefacts.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 14
    for row in rows:
        kinds = [k for k in row["kinds"].split(";") if k]
        mask = read_mask(small_dataset / "masks" / row["filename"].replace(".tif", ".png"))
        assert int(row["mask_area"]) == int(mask.sum())
        if row["label"] == "clean":
            assert kinds == [] and int(row["n_objects"]) == 0
            continue
        assert 1 <= len(kinds) <= 4 and int(row["n_objects"]) == len(kinds)
        assert set(kinds) <= set(KINDS)
        areas = [int(a) for a in row["areas"].split(";")]
        contrasts = [float(c) for c in row["contrasts"].split(";")]
        assert len(areas) == len(contrasts) == len(kinds)
        assert all(a > 0 for a in areas) and all(c > 0 for c in contrasts)
        assert sum(areas) >= mask.sum()  # objects may overlap; their union is the mask


@pytest.mark.parametrize("look", sorted(LOOKS))
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_visible_exactly_where_its_mask_is(kind, look):
    """Artefact image vs its clean twin (same seed: same cells and noise) differ only under the mask."""
    seed = 11 + KINDS.index(kind)
    art = synth_image(seed, 64, 80, look=look, artefacts=[kind])
    clean = synth_image(seed, 64, 80, look=look, artefacts=False)
    assert art.mask.shape == (64, 80) and art.mask.any()
    assert [o.kind for o in art.objects] == [kind]
    c = art.objects[0].contrast
    rel = np.abs(art.image.astype(np.float64) - clean.image) / np.maximum(clean.image.astype(np.float64), 1)
    outside = ~ndi.binary_dilation(art.mask, iterations=2)
    # Outside the (slightly dilated, for the optics blur) mask the image is essentially unchanged...
    assert (rel[outside] > 0.2 * c).mean() < 0.002
    # ...and most mask pixels are visibly altered.
    assert (rel[art.mask] > 0.05 * c).mean() > 0.6


def test_focal_stack_middle_plane_is_sharpest(tmp_path):
    root = generate_dataset(tmp_path / "stack", 2, 0, 0, 96, 96, planes=3, seed=1, progress=False)
    for stem in ("train_0000", "train_0001"):
        import tifffile

        stack = tifffile.imread(root / "images" / f"{stem}.tif")
        assert stack.shape == (3, 96, 96) and stack.dtype == np.uint16
        sharp = [ndi.laplace(ndi.gaussian_filter(p.astype(np.float64) / p.mean(), 1.0)).var() for p in stack]
        assert np.argmax(sharp) == 1
        # The dataset reader picks the middle plane by default; the mask matches its size.
        assert np.array_equal(read_raw(root / "images" / f"{stem}.tif"), stack[1])
        assert read_mask(root / "masks" / f"{stem}.png").shape == (96, 96)


def test_non_square_and_looks_differ():
    a = synth_image(4, 48, 100, look="7cl", artefacts=True)
    b = synth_image(4, 48, 100, look="lncap", artefacts=True)
    assert a.image.shape == b.image.shape == a.mask.shape == (48, 100)
    assert a.mask.any() and b.mask.any()
    assert not np.array_equal(a.image, b.image)


def test_cells_defeat_a_global_dark_threshold():
    """Clean images have dark nuclei/halos as dark as typical artefacts: a threshold cannot be clean."""
    img = synth_image(0, 256, 256, artefacts=False).image.astype(np.float64)
    residual = img / ndi.gaussian_filter(img, 20) - 1
    assert (residual < -0.05).mean() > 0.005  # cell structure darker than a 5 % contrast artefact


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown look"):
        generate_dataset(tmp_path / "x", 2, 0, 0, 64, 64, look="nope", progress=False)
    with pytest.raises(ValueError, match="too small"):
        generate_dataset(tmp_path / "x", 2, 0, 0, 16, 64, progress=False)


def test_cell_truth_files_agree_with_images(small_dataset):
    """cells/<stem>.tif labels 1..n and cells.csv's count, area and intensity are those of the images."""
    import tifffile

    from artseg import layout
    from artseg.synth import cell_truth

    with open(layout.cells_table_path(small_dataset), newline="") as fh:
        rows = list(csv.DictReader(fh))
    with open(layout.labels_path(small_dataset), newline="") as fh:
        assert [r["filename"] for r in csv.DictReader(fh)] == [r["filename"] for r in rows]
    for row in rows:
        stem = row["filename"].removesuffix(".tif")
        cells = tifffile.imread(layout.cell_labels_path(small_dataset, stem))
        assert cells.dtype == np.uint16 and cells.shape == (64, 64)
        ids = np.unique(cells[cells > 0])
        assert len(ids) == int(row["n_cells"]) > 0 and np.array_equal(ids, np.arange(1, len(ids) + 1))
        assert float(row["mean_cell_area"]) == pytest.approx((cells > 0).sum() / len(ids), abs=0.01)
        if row["label"] == "clean":  # the image is its own clean twin
            truth = cell_truth(cells, read_raw(small_dataset / "images" / row["filename"]))
            assert float(row["mean_cell_intensity"]) == pytest.approx(truth.mean_cell_intensity, abs=0.01)


@pytest.mark.parametrize("look", sorted(LOOKS))
def test_a_cells_pixels_are_where_its_label_says(look):
    """Labels are the drawn cell bodies: every label pixel has the cell's optical thickness, nothing
    is drawn far from a label, artefacts do not move cells, and the clean twin is the artefact-free image."""
    from artseg.synth import CELL_LEVEL, _cells

    phase, _, _, cells = _cells(np.random.default_rng(5), LOOKS[look], 96, 112, 0.7)
    n = int(cells.max())
    assert n >= 3 and np.array_equal(np.unique(cells), np.arange(n + 1))
    assert phase[cells > 0].min() > 0  # every label pixel is inside a drawn body (>= CELL_LEVEL of its edge)
    assert (phase[cells > 0] > 0.3 * CELL_LEVEL).mean() > 0.95  # most of it well inside
    far = ndi.distance_transform_edt(cells == 0) > 3  # beyond the soft edge (1.5 px) and outline rounding
    assert far.any() and phase[far].max() < 1e-6
    art = synth_image(21, 128, 128, look=look, artefacts=["debris", "bubble"])
    clean = synth_image(21, 128, 128, look=look, artefacts=False)
    assert np.array_equal(art.cells, clean.cells)
    assert np.array_equal(art.clean, clean.image) and not np.array_equal(art.image, clean.image)
    assert np.array_equal(clean.clean, clean.image)


def test_labelled_cells_carry_the_image_structure():
    """In the image itself (7cl: visible cells): every label shows more flat-field structure than the
    background far from all labels, which is flat noise."""
    clean = synth_image(21, 128, 128, look="7cl", artefacts=False)
    img = ndi.gaussian_filter(clean.image.astype(np.float64), 1.0)
    detail = np.abs(img / ndi.gaussian_filter(img, 12) - 1)
    far = ndi.distance_transform_edt(clean.cells == 0) > 6  # beyond the halo and the blur
    n = int(clean.cells.max())
    per_cell = ndi.mean(detail, clean.cells, np.arange(1, n + 1))
    assert far.mean() > 0.05 and n >= 3
    assert np.all(per_cell > 1.2 * detail[far].mean()), (per_cell.min(), detail[far].mean())
