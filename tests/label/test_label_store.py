"""The dataset `artseg label` writes: labels.csv, images/, splits, undo history, resume, locking."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from label_helpers import write_images

from artseg import layout
from artseg.data import load_dataset
from artseg.label.store import MIN_LABELS_FOR_SPLIT, LabelError, LabelStore


def label_all(store: LabelStore, names: list[str], pattern=("artefact", "clean", "clean")) -> dict[str, str]:
    labels = {name: pattern[i % len(pattern)] for i, name in enumerate(names)}
    for name, label in labels.items():
        store.label(name, label)
    return labels


def test_dataset_loads_with_the_right_labels_and_stratified_splits(tmp_path):
    images = write_images(tmp_path / "plate", 30, shape=(16, 16))
    store = LabelStore(tmp_path / "ds", images)
    few = label_all(store, [p.name for p in images[: MIN_LABELS_FOR_SPLIT - 1]])
    assert layout.labels_path(tmp_path / "ds").read_text().splitlines()[0] == "filename,label"
    assert {s.image_path.name: s.label for s in load_dataset(tmp_path / "ds").samples} == few  # loader splits

    labels = label_all(store, [p.name for p in images])
    store.close()
    dataset = load_dataset(tmp_path / "ds")
    assert {s.image_path.name: s.label for s in dataset.samples} == labels
    assert {s.image_path.name: s.split for s in dataset.samples} == {n: st.split for n, st in store.labels.items()}
    per_class = {lab: Counter(s.split for s in dataset.samples if s.label == lab) for lab in ("clean", "artefact")}
    assert per_class == {"clean": {"train": 14, "val": 3, "test": 3}, "artefact": {"train": 7, "val": 2, "test": 1}}
    assert all(os.path.samefile(s.image_path, tmp_path / "plate" / s.image_path.name) for s in dataset.samples)
    assert all(s.image_path.is_symlink() for s in dataset.samples) and store.link_mode == "symlink"


def test_splits_never_move_once_assigned(tmp_path):
    images = write_images(tmp_path / "plate", 30, shape=(8, 8))
    store = LabelStore(tmp_path / "ds", images)
    label_all(store, [p.name for p in images[:MIN_LABELS_FOR_SPLIT]])
    first = {n: s.split for n, s in store.labels.items()}
    assert set(first.values()) == {"train", "val", "test"}
    label_all(store, [p.name for p in images[MIN_LABELS_FOR_SPLIT:]])
    store.label(images[0].name, "clean")  # a relabel keeps its split
    store.undo()
    store.undo()  # the last new label leaves; nobody else moves
    assert {n: store.labels[n].split for n in first} == first


def test_undo_history_and_skips_survive_a_restart(tmp_path):
    images = write_images(tmp_path / "plate", 4, shape=(8, 8))
    store = LabelStore(tmp_path / "ds", images)
    store.label("im00.tif", "artefact")
    store.label("im01.tif", "skip")
    store.label("im00.tif", "clean")
    store.close()
    store = LabelStore(tmp_path / "ds", images)
    assert store.state("im01.tif").label == "skip" and store.state("im00.tif").label == "clean"
    assert store.undo() == "im00.tif" and store.state("im00.tif").label == "artefact"
    assert store.undo() == "im01.tif" and store.state("im01.tif") is None
    assert store.undo() == "im00.tif" and store.state("im00.tif") is None
    assert store.undo() is None


def test_a_hand_edit_of_labels_csv_wins_over_the_history(tmp_path):
    images = write_images(tmp_path / "plate", 3, shape=(8, 8))
    store = LabelStore(tmp_path / "ds", images)
    store.label("im00.tif", "artefact")
    store.close()
    path = layout.labels_path(tmp_path / "ds")
    path.write_text(path.read_text().replace("artefact", "clean"))
    store = LabelStore(tmp_path / "ds", images)
    assert store.state("im00.tif").label == "clean"
    assert store.undo() is None  # the history no longer leads to what the file says: not replayed


def test_second_writer_is_refused_until_the_first_closes(tmp_path):
    images = write_images(tmp_path / "plate", 2, shape=(8, 8))
    store = LabelStore(tmp_path / "ds", images)
    with pytest.raises(LabelError, match="another `artseg label`"):
        LabelStore(tmp_path / "ds", images)
    store.close()
    LabelStore(tmp_path / "ds", images).close()


def test_images_are_copied_where_links_fail(tmp_path, monkeypatch):
    images = write_images(tmp_path / "plate", 2, shape=(8, 8))

    def no_links(*args, **kwargs):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", no_links)  # what a FAT or SMB share answers
    store = LabelStore(tmp_path / "ds", images)
    store.label("im01.tif", "clean")
    copy = layout.images_dir(tmp_path / "ds") / "im01.tif"
    assert store.link_mode == "copy" and not copy.is_symlink()
    assert copy.read_bytes() == images[1].read_bytes()
    assert sorted(p.name for p in copy.parent.iterdir()) == ["im01.tif"]  # no temporary left behind


def test_colliding_names_and_broken_files_are_one_line_errors(tmp_path):
    a = write_images(tmp_path / "a", 1, shape=(8, 8))
    b = write_images(tmp_path / "b", 1, shape=(8, 8))
    (tmp_path / "b" / "im00.png").write_bytes(b"")
    with pytest.raises(LabelError, match="own dataset"):
        LabelStore(tmp_path / "ds", a + b)
    with pytest.raises(LabelError, match="stem 'im00'"):
        LabelStore(tmp_path / "ds2", [b[0], tmp_path / "b" / "im00.png"])
    (tmp_path / "ds3").mkdir()
    layout.labels_path(tmp_path / "ds3").write_text("filename,label\nim00.tif,maybe\n")
    with pytest.raises(LabelError, match=r"labels.csv:2: unknown label"):
        LabelStore(tmp_path / "ds3", a)
    layout.label_session_path(tmp_path / "ds3").write_text("{")
    layout.labels_path(tmp_path / "ds3").unlink()
    with pytest.raises(LabelError, match="unreadable session file"):
        LabelStore(tmp_path / "ds3", a)


def test_unknown_images_and_labels_are_refused(tmp_path: Path):
    store = LabelStore(tmp_path / "ds", write_images(tmp_path / "plate", 1, shape=(8, 8)))
    for filename, label in (("../labels.csv", "clean"), ("im00.tif", "Clean"), ("im00.tif", None)):
        with pytest.raises(LabelError):
            store.label(filename, label)
    assert not layout.labels_path(tmp_path / "ds").exists() and store.history == []


def test_a_zero_label_dataset_is_labelled_without_losing_its_unlabelled_rows(tmp_path):
    """labels.csv of a zero-label dataset (every row `unlabelled`, splits given): `artseg label` offers those
    images, labelled ones keep the split they had, and the rest stay in labels.csv as `unlabelled`."""
    images = write_images(tmp_path / "plate", 6, shape=(8, 8))
    ds = tmp_path / "ds"
    layout.images_dir(ds).mkdir(parents=True)
    splits = ["train", "train", "train", "val", "test", "train"]
    rows = [f"{p.name},unlabelled,{sp}" for p, sp in zip(images, splits)]
    layout.labels_path(ds).write_text("filename,label,split\n" + "\n".join(rows) + "\n")
    for p in images:
        os.symlink(p, layout.images_dir(ds) / p.name)
    store = LabelStore(ds, images)
    assert store.state(images[3].name) is None  # offered like a new image
    assert store.label(images[3].name, "artefact").split == "val"
    store.label(images[4].name, "clean")
    store.undo()  # back to unlabelled, not gone
    store.close()
    dataset = load_dataset(ds)
    assert {s.image_path.name: (s.label, s.split) for s in dataset.samples} == {
        p.name: ("artefact" if i == 3 else "unlabelled", sp) for i, (p, sp) in enumerate(zip(images, splits))}


def test_unlabelled_rows_without_split_get_one_once_the_labels_have_splits(tmp_path):
    images = write_images(tmp_path / "plate", MIN_LABELS_FOR_SPLIT + 3, shape=(8, 8))
    ds = tmp_path / "ds"
    layout.images_dir(ds).mkdir(parents=True)
    extra = images[MIN_LABELS_FOR_SPLIT:]
    layout.labels_path(ds).write_text("filename,label\n" + "".join(f"{p.name},unlabelled\n" for p in extra))
    for p in extra:
        os.symlink(p, layout.images_dir(ds) / p.name)
    store = LabelStore(ds, images)
    label_all(store, [p.name for p in images[:MIN_LABELS_FOR_SPLIT]])
    store.close()
    dataset = load_dataset(ds)  # every row has a split: the file is valid with its split column
    assert layout.labels_path(ds).read_text().splitlines()[0] == "filename,label,split"
    assert {s.image_path.name for s in dataset.samples if s.label == "unlabelled"} == {p.name for p in extra}
    assert all(s.split in ("train", "val", "test") for s in dataset.samples)
