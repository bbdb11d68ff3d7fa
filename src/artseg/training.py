"""The one training recipe: `train_model` builds a method's config, fits it (train, then the threshold for
the masks it will write), records what produced it and saves the model folder.

`artseg train`, the experiment runner and the benchmarks that train call it, so every model folder holds
the same records (``meta["preset"]``, ``meta["training"]``, ``meta["train_seconds"]``, provenance).

Example
-------
>>> from artseg.training import train_model
>>> model = train_model("unet", "data/synth", "models/unet", preset="small")   # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from artseg.data import Dataset, load_dataset
from artseg.methods import Method, get
from artseg.provenance import training_provenance
from artseg.run import RunOptions

__all__ = ["train_model"]


def train_model(method: str, data: Dataset | str | os.PathLike, out: str | os.PathLike | None = None, *,
                preset: str = "study", overrides: dict[str, Any] | None = None, run: RunOptions | None = None,
                postprocess: dict[str, Any] | None = None, meta: dict[str, Any] | None = None) -> Method:
    """Train `method` on `data` and save it to `out`.

    Parameters
    ----------
    method : str
        A registry name (`artseg.methods.names()`).
    data : Dataset or path
        The dataset, or its folder (loaded with `run.seed`'s split). Its folder is fingerprinted in the
        model's provenance.
    out : path, optional
        The model folder to write (weights.safetensors + config.json); None: not saved.
    preset : str
        The config preset ("study", "small", ...).
    overrides : dict, optional
        Hyper-parameters over the preset (strings are parsed by the field's type, as ``--set``).
    run : RunOptions, optional
        Device, seed, time limit, resume; default: `RunOptions()` working in `out`.
    postprocess : dict, optional
        Mask post-processing over the method's own (keyword arguments of `artseg.postprocess.PostProcess.replace`;
        None values keep the method's): the threshold is chosen for the masks it shapes.
    meta : dict, optional
        Extra records for the model's meta (e.g. the experiment job).

    Returns
    -------
    Method
        The trained model (also saved to `out` when given).

    Raises
    ------
    ConfigError
        A bad hyper-parameter, preset or post-processing value (before any work).
    """
    cls = get(method)
    config = cls.config_class.build(preset, overrides)
    run = run or RunOptions(work_dir=out)
    run.torch_device()  # an absent or unknown device fails before any work
    dataset = data if isinstance(data, Dataset) else load_dataset(data, seed=run.seed)
    chosen = None
    if postprocess:
        from artseg.postprocess import PostProcessError
        from artseg.prediction import SettingsError

        try:
            chosen = cls.default_settings(config).postprocess.replace(**postprocess)
        except PostProcessError as exc:
            raise SettingsError(str(exc)) from None
    start = time.perf_counter()
    model = cls.fit(dataset, config, run, postprocess=chosen)
    model.meta.setdefault("training_data", dataset.summary())
    model.meta.update({"preset": preset, "training": run.history, "train_seconds": round(time.perf_counter() - start, 2),
                       "stages": run.budget.report(), **(meta or {})})
    model.provenance = training_provenance(run, Path(dataset.root), max_epochs=getattr(config, "max_epochs", None))
    if out is not None:
        model.save(out)
    return model
