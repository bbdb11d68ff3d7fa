"""Experiment configs (TOML) -> jobs keyed by a hash of everything that makes their result.

A config is declarative: methods, data, sample sizes, seeds and hyper-parameters. The planners
here turn one into two kinds of job, deduplicated across experiments by key:

* a model job (train one method on one training set with one seed), stored in
  ``EXP_DIR/models/<method>-<hash>/``; the hash covers the method, its resolved hyper-parameters,
  the method preset, the training time limit, the dataset identity, the subset and the seed
  (ensembles: their members' keys), so e.g. exp1's U-Net is exp4's full-set U-Net;
* a prediction job (one model on one split of one dataset, one focal plane), stored in
  ``EXP_DIR/predictions/<model key>/<dataset id>-<split>-<plane>/`` with its evaluation.

Each planner also returns a record (rows naming those keys) that the report reads.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from artseg import layout
from artseg.config import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"
EXPERIMENTS = ("exp1", "exp2", "exp3", "exp4", "exp5", "exp6")
PRESETS = ("tiny", "small", "study")
KINDS = ("table", "learning_curve", "pairwise", "transfer")


class ExperimentError(ConfigError):
    """A bad experiment config or request; the message is one line naming the file or value."""


# --------------------------------------------------------------------------------------------
# Config files


def read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ExperimentError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{path}: invalid TOML ({exc})") from None


def merge(base: dict, over: dict) -> dict:
    """Deep merge: tables merge key by key, anything else in `over` replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def config_path(name: str, config_file: str | os.PathLike | None = None) -> Path:
    if config_file is not None:
        return Path(config_file)
    if name not in EXPERIMENTS:
        raise ExperimentError(f"unknown experiment {name!r} (use one of {', '.join(EXPERIMENTS)} or all)")
    return layout.exp_config_path(CONFIG_DIR, name)


def load_experiment(name: str, preset: str, config_file: str | os.PathLike | None = None) -> dict:
    """The experiment's config with the preset's overrides applied and its method settings resolved."""
    if preset not in PRESETS:
        raise ExperimentError(f"unknown preset {preset!r} (use one of {', '.join(PRESETS)})")
    path = config_path(name, config_file)
    raw = read_toml(path)
    cfg = merge({k: v for k, v in raw.items() if k != "preset"}, raw.get("preset", {}).get(preset, {}))
    kind = cfg.get("kind")
    if kind not in KINDS:
        raise ExperimentError(f"{path}: kind = {kind!r}, use one of {', '.join(KINDS)}")
    if not cfg.get("methods"):
        raise ExperimentError(f"{path}: no methods listed")
    methods_file = layout.exp_methods_config_path(path.parent)
    if not methods_file.is_file():
        methods_file = layout.exp_methods_config_path(CONFIG_DIR)
    all_methods = read_toml(methods_file)
    if preset not in all_methods:
        raise ExperimentError(f"{methods_file}: no [{preset}] table")
    settings = copy.deepcopy(all_methods[preset])
    # Per-experiment overrides: [hyperparameters.METHOD] (`methods` is already the list of methods).
    for method, over in cfg.get("hyperparameters", {}).items():
        settings[method] = merge(settings.get(method, {}), over)
    cfg.update(name=name, preset=preset, config_file=str(path), methods_file=str(methods_file), method_settings=settings)
    cfg.setdefault("seeds", [0])
    cfg.setdefault("split", "test")
    cfg.setdefault("study", {})
    return cfg


# --------------------------------------------------------------------------------------------
# Dataset identity


def dataset_id(root: str | os.PathLike) -> str:
    """Content identity of a dataset folder: labels.csv, synth.json and every file's name and size.

    Names and sizes, not pixel hashes: reading every image of a large dataset on each run would
    cost more than it protects against (an image edited in place keeping its byte size).
    """
    root = Path(root)
    h = hashlib.sha256()
    for name in (layout.LABELS_FILE, layout.SYNTH_RECORD):
        p = root / name
        if p.is_file():
            h.update(name.encode() + b"\0" + p.read_bytes() + b"\0")
    for sub in (layout.IMAGES_DIR, layout.MASKS_DIR):
        folder = root / sub
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                if not p.name.startswith("."):
                    h.update(f"{sub}/{p.name}:{p.stat().st_size}\n".encode())
    return h.hexdigest()[:12]


def short_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Jobs


@dataclass
class ModelJob:
    key: str
    method: str
    method_preset: str
    overrides: dict
    hyperparameters: dict
    data: str
    data_id: str
    subset: list[int] | None  # [n_per_class, draw] or None for the whole training split
    seed: int
    max_time: float | None
    members: list[str] = field(default_factory=list)  # keys of models this one needs (ensemble members, a shared classifier)
    dir: str = ""
    supervision: str = ""
    n_train: dict = field(default_factory=dict)  # {"artefact": n, "clean": n} training images

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PredictJob:
    key: str
    model_key: str
    model_dir: str
    data: str
    data_id: str
    split: str
    plane: int | None
    dir: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Context:
    """What every planner needs: the experiment folder, the preset and the datasets by role."""

    exp_dir: Path
    preset: str
    data: dict[str, Path]  # role -> dataset folder ("primary", "target")
    progress: bool = True
    _ids: dict[str, str] = field(default_factory=dict)
    _datasets: dict = field(default_factory=dict)

    def data_id(self, role: str) -> str:
        if role not in self._ids:
            self._ids[role] = dataset_id(self.data[role])
        return self._ids[role]

    def dataset(self, role: str):
        from artseg.data import load_dataset

        if role not in self._datasets:
            self._datasets[role] = load_dataset(self.data[role])
        return self._datasets[role]


class Planner:
    """Collects the jobs of one or more experiments, one per key."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.models: dict[str, ModelJob] = {}
        self.predictions: dict[str, PredictJob] = {}

    def model(self, cfg: dict, method: str, seed: int = 0, subset: tuple[int, int] | None = None,
              members: list[str] | tuple[str, ...] = ()) -> str:
        from artseg import methods

        settings = cfg["method_settings"]
        cls = methods.get(method)
        overrides = {k: v for k, v in settings.get(method, {}).items()}
        member_dirs = [self.models[k].dir for k in members]
        if members:
            overrides["members"] = ",".join(member_dirs)
        # Models this method can reuse (`Method.model_inputs`, e.g. scorecam-unet reusing a scorecam classifier:
        # the study's pipeline, one classifier for Score-CAM and the pseudo-labels, one training saved).
        shared = {}
        if settings.get("share_classifier", True):
            for field, source in cls.model_inputs.items():
                if not _skipped(cfg, source):
                    shared[field] = self.model(cfg, source, seed=seed, subset=subset)
                    overrides[field] = self.models[shared[field]].dir
        deps = [*members, *shared.values()]
        try:
            config = cls.config_class.build(settings["method_preset"], overrides)
        except ValueError as exc:
            raise ExperimentError(f"{cfg['methods_file']}: [{cfg['preset']}.{method}]: {exc}") from None
        hyper = config.to_dict()
        if members:
            hyper["members"] = list(members)  # keys, not paths: the same ensemble wherever EXP_DIR lies
        hyper.update(shared)  # keys, not paths (as for ensemble members)
        dataset = self.ctx.dataset("primary")
        train = dataset.split("train")
        if subset is not None:
            n_train = {"artefact": subset[0], "clean": subset[0]}
        else:
            n_train = {lab: sum(s.label == lab for s in train) for lab in ("artefact", "clean")}
        max_time = settings.get("max_time")
        identity = {
            "method": method, "method_preset": settings["method_preset"], "hyperparameters": hyper,
            "data_id": self.ctx.data_id("primary"), "subset": list(subset) if subset else None,
            "seed": int(seed), "max_time": max_time,
        }
        key = f"{method}-{short_hash(identity)}"
        if key not in self.models:
            self.models[key] = ModelJob(
                key=key, method=method, method_preset=settings["method_preset"], overrides=overrides,
                hyperparameters=hyper, data=str(self.ctx.data["primary"]), data_id=identity["data_id"],
                subset=identity["subset"], seed=int(seed), max_time=max_time, members=deps,
                dir=str(layout.exp_model_dir(self.ctx.exp_dir, key)), supervision=cls.supervision_for(config), n_train=n_train,
            )
        return key

    def predict(self, model_key: str, role: str = "primary", split: str = "test", plane: int | None = None) -> str:
        data_id = self.ctx.data_id(role)
        name = f"{data_id}-{split}-{'mid' if plane is None else f'p{plane}'}"
        key = f"{model_key}/{name}"
        if key not in self.predictions:
            self.predictions[key] = PredictJob(
                key=key, model_key=model_key, model_dir=self.models[model_key].dir, data=str(self.ctx.data[role]),
                data_id=data_id, split=split, plane=plane, dir=str(layout.exp_prediction_dir(self.ctx.exp_dir, key)),
            )
        return key


# --------------------------------------------------------------------------------------------
# Planners, one per kind; each returns the experiment's record.


def _skipped(cfg: dict, method: str) -> bool:
    return method in cfg["method_settings"].get("skip", [])


def _record(cfg: dict, ctx: Context) -> dict:
    return {
        "name": cfg["name"], "title": cfg.get("title", cfg["name"]), "section": cfg.get("section", ""),
        "kind": cfg["kind"], "preset": cfg["preset"], "config_file": cfg["config_file"],
        "methods_file": cfg["methods_file"], "config": {k: v for k, v in cfg.items() if k != "method_settings"},
        "method_settings": cfg["method_settings"], "study": cfg.get("study", {}),
        "data": {role: {"root": str(path), "id": ctx.data_id(role)} for role, path in ctx.data.items()
                 if role == "primary" or cfg["kind"] == "transfer"},
        "skipped": [m for m in _all_methods(cfg) if _skipped(cfg, m)], "notes": [], "rows": [],
    }


def _all_methods(cfg: dict) -> list[str]:
    out = list(cfg["methods"])
    for extra in (cfg.get("baseline"),):
        if extra and extra not in out:
            out.append(extra)
    if cfg["kind"] in ("pairwise", "transfer"):
        out.append(cfg.get("ensemble", "ensemble"))
    return out


def plan_table(cfg: dict, p: Planner) -> dict:
    rec = _record(cfg, p.ctx)
    for method in cfg["methods"]:
        if _skipped(cfg, method):
            continue
        for seed in cfg["seeds"]:
            mk = p.model(cfg, method, seed=seed)
            rec["rows"].append({"label": method, "method": method, "seed": seed, "model": mk,
                                "pred": p.predict(mk, "primary", cfg["split"])})
    return rec


def plan_learning_curve(cfg: dict, p: Planner) -> dict:
    rec = _record(cfg, p.ctx)
    train = p.ctx.dataset("primary").split("train")
    available = min(sum(s.label == lab for s in train) for lab in ("artefact", "clean"))
    sizes = [int(n) for n in cfg["sizes"]]
    for n in sizes:
        if n % 2 or n < 2:
            raise ExperimentError(f"{cfg['config_file']}: size {n} must be an even number >= 2 (half clean, half artefact)")
    too_big = [n for n in sizes if n // 2 > available]
    if too_big:
        rec["notes"].append(f"sizes {', '.join(map(str, too_big))} skipped: the training split has only "
                            f"{available} images of its smaller class")
    for method in cfg["methods"]:
        if _skipped(cfg, method):
            continue
        for n in sizes:
            if n in too_big:
                continue
            for draw in range(int(cfg.get("sets_per_size", 1))):
                mk = p.model(cfg, method, seed=draw, subset=(n // 2, draw))
                rec["rows"].append({"label": method, "method": method, "n_images": n, "draw": draw, "seed": draw,
                                    "model": mk, "pred": p.predict(mk, "primary", cfg["split"]), "full": False})
        if cfg.get("full", True):
            for seed in cfg["seeds"]:
                mk = p.model(cfg, method, seed=seed)
                n_full = sum(p.models[mk].n_train.values())
                rec["rows"].append({"label": method, "method": method, "n_images": n_full, "draw": None, "seed": seed,
                                    "model": mk, "pred": p.predict(mk, "primary", cfg["split"]), "full": True})
    rates = cfg.get("annotation", {})
    per_mask = float(rates.get("seconds_per_mask", SECONDS_PER_MASK))
    per_label = float(rates.get("seconds_per_label", SECONDS_PER_LABEL))
    rec["annotation"] = {"seconds_per_mask": per_mask, "seconds_per_label": per_label}
    for row in rec["rows"]:
        job = p.models[row["model"]]
        row["annotation_seconds"] = annotation_seconds(job.supervision, job.n_train, per_mask, per_label)
    return rec


# The study's annotation rates (exp4's config repeats them; a config may set others).
SECONDS_PER_MASK = 360.0  # one pixel mask of an artefact image
SECONDS_PER_LABEL = 4.0  # one image-level label


def annotation_seconds(supervision: str, n_train: dict, per_mask: float = SECONDS_PER_MASK,
                       per_label: float = SECONDS_PER_LABEL) -> float:
    """The study's annotation-cost model: the labelling time a model's training images cost.

    Full supervision masks every artefact image and labels the clean ones; every other supervision labels
    each image once.

    Parameters
    ----------
    supervision : str
        The model's `Method.supervision` ("full", "weak", "semi", "clean-only", "ensemble").
    n_train : dict
        Training images per label: ``{"artefact": n, "clean": n}`` (e.g. ``Dataset.summary()["train"]``).
    per_mask, per_label : float
        Seconds per pixel mask and per image label (default: the study's rates).

    Returns
    -------
    float
        Seconds of annotation.
    """
    if supervision == "full":
        return n_train["artefact"] * per_mask + n_train["clean"] * per_label
    return (n_train["artefact"] + n_train["clean"]) * per_label


def plan_pairwise(cfg: dict, p: Planner) -> dict:
    rec = _record(cfg, p.ctx)
    seed = cfg["seeds"][0]
    singles = {}
    for method in cfg["methods"]:
        if not _skipped(cfg, method):
            singles[method] = p.model(cfg, method, seed=seed)
            rec["rows"].append({"label": method, "method": method, "members": [method], "seed": seed,
                                "model": singles[method], "pred": p.predict(singles[method], "primary", cfg["split"])})
    ens = cfg.get("ensemble", "ensemble")
    names = list(singles)
    if not _skipped(cfg, ens):
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                mk = p.model(cfg, ens, seed=seed, members=[singles[a], singles[b]])
                rec["rows"].append({"label": f"{a}+{b}", "method": ens, "members": [a, b], "seed": seed,
                                    "model": mk, "pred": p.predict(mk, "primary", cfg["split"])})
    base = cfg.get("baseline")
    if base and not _skipped(cfg, base):
        mk = p.model(cfg, base, seed=seed)
        rec["baseline"] = {"label": base, "method": base, "seed": seed, "model": mk,
                           "pred": p.predict(mk, "primary", cfg["split"])}
    return rec


def parse_plane(value) -> int | None:
    if value is None or value == "middle":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ExperimentError(f"plane = {value!r}: use \"middle\" or a plane index") from None


def plan_transfer(cfg: dict, p: Planner) -> dict:
    rec = _record(cfg, p.ctx)
    target = cfg.get("target", {})
    plane = parse_plane(target.get("plane", "middle"))
    t_split = target.get("split", "test")
    rec["plane"] = "middle" if plane is None else plane
    rec["target_split"] = t_split
    seed = cfg["seeds"][0]
    models: dict[str, str] = {}
    for method in cfg["methods"]:
        if not _skipped(cfg, method):
            models[method] = p.model(cfg, method, seed=seed)
    ens = cfg.get("ensemble", "ensemble")
    rows = [{"label": m, "method": m, "members": [m], "model": k} for m, k in models.items()]
    for pair in cfg.get("ensembles", []):
        if _skipped(cfg, ens) or not all(m in models for m in pair):
            continue
        mk = p.model(cfg, ens, seed=seed, members=[models[m] for m in pair])
        rows.append({"label": "+".join(pair), "method": ens, "members": list(pair), "model": mk})
    for row in rows:
        row["seed"] = seed
        row["pred"] = p.predict(row["model"], "target", t_split, plane)
        row["pred_source"] = p.predict(row["model"], "primary", cfg["split"])
    rec["rows"] = rows
    return rec


PLANNERS = {"table": plan_table, "learning_curve": plan_learning_curve, "pairwise": plan_pairwise,
            "transfer": plan_transfer}


def target_data(cfg: dict, exp_dir: Path, primary: Path, progress: bool = True) -> Path:
    """The second dataset of a transfer experiment: generated once into EXP_DIR/data/<look>-<hash>."""
    from artseg.data import load_dataset
    from artseg.io import read_raw
    from artseg.synth import generate_dataset

    t = cfg.get("target", {})
    size = t.get("size", "same")
    if size == "same":
        first = load_dataset(primary, check_sizes=False).samples[0].image_path
        height, width = read_raw(first).shape[:2]
    else:
        height = width = int(size)
    params = {"n_train": 0, "n_val": 0, "n_test": int(t.get("n_test", 102)), "height": int(height),
              "width": int(width), "planes": int(t.get("planes", 1)), "seed": int(t.get("seed", 1)),
              "look": t.get("look", "lncap")}
    out = layout.exp_data_dir(exp_dir, f"{params['look']}-{short_hash(params)}")
    done = layout.synth_record_path(out)  # written last by generate_dataset
    if not done.is_file():
        generate_dataset(out, progress=progress, **params)
    return out
