"""The study's six experiments (section 5) as declarative configs, cached runs and one report.

    artseg experiment exp4 --data DATA --out EXP_DIR --preset small

`spec` reads the TOML configs in `configs/` and plans jobs keyed by their settings, `runner` trains
and predicts what is not done yet (in-process or on Dask), `report` writes EXP_DIR/report.{md,html}.
"""

from artseg.experiments.spec import EXPERIMENTS, PRESETS, ExperimentError, annotation_seconds, load_experiment

__all__ = ["EXPERIMENTS", "PRESETS", "ExperimentError", "annotation_seconds", "load_experiment", "run_experiments", "write_report"]


def run_experiments(*args, **kwargs) -> int:
    from artseg.experiments.runner import run_experiments as run

    return run(*args, **kwargs)


def write_report(*args, **kwargs):
    from artseg.experiments.report import write_report as write

    return write(*args, **kwargs)
