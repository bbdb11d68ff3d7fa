"""The dataset contract: every validation error, splits, balanced subsets, foreign datasets."""

from __future__ import annotations

import warnings
from collections import Counter

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from artseg.data import Dataset, DatasetError, balanced_subset, load_dataset, stratified_split
from artseg.io import write_mask

RNG = np.random.default_rng(0)


def build(root, specs, csv_text=None, size=(12, 16)):
    """specs: (filename, label, split or None, mask: None | 'empty' | 'art' | (h, w))."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    for name, _label, _split, mask in specs:
        tifffile.imwrite(root / "images" / name, RNG.integers(0, 4000, size, dtype=np.uint16))
        stem = name.rsplit(".", 1)[0]
        if mask is not None:
            shape = mask if isinstance(mask, tuple) else size
            m = np.zeros(shape, bool)
            if mask == "art":
                m[2:5, 3:6] = True
            write_mask(root / "masks" / f"{stem}.png", m)
    if csv_text is None:
        with_split = any(s[2] for s in specs)
        head = "filename,label,split" if with_split else "filename,label"
        rows = [f"{n},{lab},{sp}" if with_split else f"{n},{lab}" for n, lab, sp, _ in specs]
        csv_text = "\n".join([head, *rows]) + "\n"
    (root / "labels.csv").write_text(csv_text)
    return root


def good_specs():
    return [
        ("c0.tif", "clean", "train", "empty"),
        ("a0.tif", "artefact", "train", "art"),
        ("c1.tif", "clean", "val", None),
        ("a1.tif", "artefact", "test", "art"),
    ]


def test_valid_dataset_loads(tmp_path):
    ds = Dataset.load(build(tmp_path / "d", good_specs()))
    assert [(s.stem, s.label, s.split) for s in ds.samples] == [(n[:-4], lab, sp) for n, lab, sp, _ in good_specs()]
    by = {s.stem: s for s in ds.samples}
    assert by["c1"].mask_path is None and by["a0"].mask_path.name == "a0.png"
    assert by["a0"].read_mask().sum() == 9 and by["a0"].is_artefact and not by["c0"].is_artefact
    assert by["a0"].read_image().dtype == np.float32
    with pytest.raises(DatasetError, match="c1.tif: no pixel mask"):
        by["c1"].read_mask()
    assert [s.stem for s in ds.split("train")] == ["c0", "a0"]
    assert ds.summary()["train"] == {"clean": 1, "artefact": 1}
    with pytest.raises(DatasetError, match="unknown split 'dev'"):
        ds.split("dev")


def one_line_error(root, pattern):
    with pytest.raises(DatasetError, match=pattern) as info:
        load_dataset(root)
    assert "\n" not in str(info.value)


def test_missing_image(tmp_path):
    root = build(tmp_path / "d", good_specs())
    (root / "images" / "a1.tif").unlink()
    one_line_error(root, r"images/a1\.tif: missing image listed in labels.csv line 5")


def test_mask_size_differs(tmp_path):
    specs = good_specs()
    specs[1] = ("a0.tif", "artefact", "train", (12, 15))
    one_line_error(build(tmp_path / "d", specs), r"masks/a0\.png: mask size 15x12 differs from image size 16x12")


def test_unknown_label_and_split(tmp_path):
    specs = good_specs()
    specs[2] = ("c1.tif", "dirty", "val", None)
    one_line_error(build(tmp_path / "d", specs), r"labels\.csv:4: unknown label 'dirty' for c1\.tif")
    specs = good_specs()
    specs[2] = ("c1.tif", "clean", "holdout", None)
    one_line_error(build(tmp_path / "e", specs), r"labels\.csv:4: unknown split 'holdout' for c1\.tif")


def test_duplicate_stem(tmp_path):
    root = build(tmp_path / "d", good_specs())
    text = (root / "labels.csv").read_text() + "c0.png,clean,test\n"
    (root / "labels.csv").write_text(text)
    one_line_error(root, r"labels\.csv:6: duplicate stem 'c0' \(also on line 2\)")
    # Two image files with one stem are ambiguous too.
    root = build(tmp_path / "e", good_specs())
    iio.imwrite(root / "images" / "c0.png", np.zeros((12, 16), np.uint8))
    one_line_error(root, r"images/c0\.tif: duplicate stem 'c0' \(also c0\.png\)")


def test_no_images_and_missing_labels(tmp_path):
    root = build(tmp_path / "d", good_specs())
    for p in (root / "images").iterdir():
        p.unlink()
    one_line_error(root, r"d/images: no images found")
    root = build(tmp_path / "e", good_specs())
    (root / "labels.csv").unlink()
    one_line_error(root, r"e/labels\.csv: missing labels\.csv")
    root = build(tmp_path / "f", good_specs(), csv_text="filename,label\n")
    one_line_error(root, r"f/labels\.csv: no images listed")
    root = build(tmp_path / "g", good_specs(), csv_text="name,class\nc0.tif,clean\n")
    one_line_error(root, r"g/labels\.csv: needs columns filename,label\[,split\], found name,class")
    one_line_error(tmp_path / "nowhere", r"nowhere: dataset folder does not exist")


def test_clean_image_with_artefact_pixels_warns(tmp_path):
    specs = good_specs()
    specs[0] = ("c0.tif", "clean", "train", "art")
    root = build(tmp_path / "d", specs)
    with pytest.warns(UserWarning, match=r"masks/c0\.png: image is labelled clean but its mask has artefact pixels"):
        ds = load_dataset(root)
    assert len(ds.samples) == 4  # a warning, not an error
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset(build(tmp_path / "e", good_specs()))  # no warning for a consistent dataset


def test_stratified_split_without_split_column(tmp_path):
    specs = [(f"c{i:02d}.tif", "clean", None, None) for i in range(20)]
    specs += [(f"a{i:02d}.tif", "artefact", None, "art") for i in range(40)]
    root = build(tmp_path / "d", specs, size=(4, 4))
    ds = load_dataset(root, seed=3)
    counts = Counter((s.label, s.split) for s in ds.samples)
    assert counts == {("clean", "train"): 14, ("clean", "val"): 3, ("clean", "test"): 3,
                      ("artefact", "train"): 28, ("artefact", "val"): 6, ("artefact", "test"): 6}
    again = load_dataset(root, seed=3)
    assert [s.split for s in again.samples] == [s.split for s in ds.samples]  # deterministic
    other = load_dataset(root, seed=4)
    assert [s.split for s in other.samples] != [s.split for s in ds.samples]  # the seed matters
    assert Counter((s.label, s.split) for s in other.samples) == counts  # still stratified
    # The function itself, on labels alone.
    labels = ["clean"] * 7 + ["artefact"] * 13
    assert stratified_split(labels, seed=1) == stratified_split(labels, seed=1)


def test_explicit_split_column_is_honoured(tmp_path):
    specs = [(f"c{i}.tif", "clean", "test", None) for i in range(5)] + [("a0.tif", "artefact", "val", "art")]
    ds = load_dataset(build(tmp_path / "d", specs))
    assert [s.split for s in ds.samples] == ["test"] * 5 + ["val"]
    assert ds.split("train") == []


def test_balanced_subset(tmp_path):
    specs = [(f"c{i}.tif", "clean", "train", None) for i in range(6)]
    specs += [(f"a{i}.tif", "artefact", "train", "art") for i in range(4)]
    ds = load_dataset(build(tmp_path / "d", specs, size=(4, 4)))
    sub = balanced_subset(ds.samples, 3, seed=5)
    assert Counter(s.label for s in sub) == {"clean": 3, "artefact": 3}
    assert len({s.stem for s in sub}) == 6  # without replacement
    assert [s.stem for s in balanced_subset(ds.samples, 3, seed=5)] == [s.stem for s in sub]
    draws = {tuple(s.stem for s in balanced_subset(ds.samples, 3, seed=k)) for k in range(10)}
    assert len(draws) > 1  # seeded, not fixed
    assert {s.stem for s in balanced_subset(ds.samples, 4, seed=0) if s.is_artefact} == {f"a{i}" for i in range(4)}
    with pytest.raises(DatasetError, match="cannot draw 5 artefact images: only 4 available"):
        balanced_subset(ds.samples, 5)


def test_dataset_written_by_another_tool_is_read_unchanged(tmp_path):
    """Mixed formats, a spreadsheet BOM, padded cells, extra columns, CRLF, blank and ',,' lines."""
    root = tmp_path / "foreign"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    img16 = RNG.integers(0, 65535, (10, 14), dtype=np.uint16)
    img8 = RNG.integers(0, 255, (10, 14), dtype=np.uint8)
    rgb = RNG.integers(0, 255, (10, 14, 3), dtype=np.uint8)
    tifffile.imwrite(root / "images" / "well_A1.tiff", img16)
    iio.imwrite(root / "images" / "well_A2.jpg", rgb, quality=95)
    iio.imwrite(root / "images" / "well A3.png", img8)
    mask = np.zeros((10, 14), np.uint8)
    mask[1:4, 2:9] = 1  # nonzero = artefact, not necessarily 255
    tifffile.imwrite(root / "masks" / "well_A1.tif", mask)
    iio.imwrite(root / "masks" / "well A3.png", np.zeros((10, 14), np.uint8))
    (root / "images" / "notes.txt").write_text("ignored")
    (root / "labels.csv").write_bytes(
        "\ufeff filename , label ,split, operator\r\n"
        "well_A1.tiff, Artefact ,train, anna\r\n"
        "\r\n"
        " well_A2.jpg,clean, test ,bo\r\n"
        "well A3.png,clean,VAL,\r\n"
        ",,,\r\n".encode()
    )
    ds = load_dataset(root)
    got = [(s.stem, s.image_path.name, s.label, s.split, s.mask_path and s.mask_path.name) for s in ds.samples]
    assert got == [
        ("well_A1", "well_A1.tiff", "artefact", "train", "well_A1.tif"),
        ("well_A2", "well_A2.jpg", "clean", "test", None),
        ("well A3", "well A3.png", "clean", "val", "well A3.png"),
    ]
    a1 = ds.samples[0]
    assert np.array_equal(a1.read_mask(), mask != 0)
    assert a1.read_image().shape == (10, 14)
    # Error line numbers count the physical lines of the file, blank ones included.
    text = (root / "labels.csv").read_bytes().decode().replace("well A3.png,clean", "well A3.png,cloudy")
    (root / "labels.csv").write_text(text, newline="")
    one_line_error(root, r"labels\.csv:5: unknown label 'cloudy'")
