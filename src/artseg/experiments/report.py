"""One report per experiment folder: EXP_DIR/report.md and report.html (figures embedded as base64).

Every number is read from an `evaluation.json` under EXP_DIR/predictions/<model key>/..., and every
table names the model key (the folder under EXP_DIR/models/ whose job.json and config.json hold
the method, hyper-parameters, data identity, subset and seed that made it). The study's numbers,
taken from the experiment configs' [study] tables, stand beside ours.
"""

from __future__ import annotations

import base64
import html
import json
import math
import statistics
import sys
from pathlib import Path

from artseg import layout
from artseg.experiments.budget import SKIPPED
from artseg.experiments.spec import EXPERIMENTS

METRICS = ("pixel_precision", "pixel_recall", "pixel_f1", "pixel_iou", "object_iou")
METRIC_NAMES = {"pixel_precision": "pixel precision", "pixel_recall": "pixel recall", "pixel_f1": "pixel F1",
                "pixel_iou": "pixel IoU", "object_iou": "object IoU"}
MISSING = "—"


def fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


class Doc:
    """Blocks rendered to both Markdown and HTML, so the two never disagree."""

    def __init__(self):
        self.blocks: list[tuple] = []

    def h(self, level: int, text: str):
        self.blocks.append(("h", level, text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list], note: str | None = None):
        if not rows:
            self.p("No models in this table (all its methods are skipped in this preset, or none is planned).")
            return
        self.blocks.append(("table", header, [[fmt(c) for c in r] for r in rows], note))

    def fig(self, path: Path, caption: str):
        self.blocks.append(("fig", path, caption))

    def markdown(self, base: Path) -> str:
        out = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "table":
                _, header, rows, note = b
                lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
                out.append("\n".join(lines) + (f"\n\n{note}" if note else ""))
            elif b[0] == "fig":
                out.append(f"![{b[2]}]({b[1].relative_to(base).as_posix()})\n\n*{b[2]}*")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
               "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
               "table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #bbb;"
               "padding:3px 7px;text-align:right}th{background:#eee}td:first-child{text-align:left}"
               "img{max-width:100%}code{background:#f4f4f4}.note{color:#444;font-size:90%}</style></head><body>"]
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"<h{b[1]}>{_inline(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                out.append(f"<p>{_inline(b[1])}</p>")
            elif b[0] == "table":
                _, header, rows, note = b
                out.append("<table><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in header) + "</tr>")
                out += ["<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in r) + "</tr>" for r in rows]
                out.append("</table>" + (f"<p class='note'>{_inline(note)}</p>" if note else ""))
            elif b[0] == "fig":
                data = base64.b64encode(b[1].read_bytes()).decode()
                out.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(b[2])}'>"
                           f"<figcaption>{_inline(b[2])}</figcaption></figure>")
        out.append("</body></html>")
        return "\n".join(out) + "\n"


def _inline(text: str) -> str:
    """Escape, then render `code` spans (the only Markdown the report's text uses)."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


# --------------------------------------------------------------------------------------------
# Reading results


class Results:
    def __init__(self, exp_dir: Path):
        self.exp_dir = exp_dir
        self._evals: dict[str, dict | None] = {}
        self._models: dict[str, dict | None] = {}
        path = layout.failures_path(exp_dir)
        self.failures = json.loads(path.read_text()) if path.is_file() else {}
        self.used_models: dict[str, str] = {}  # key -> experiment name (appendix)

    def eval(self, pred_key: str) -> dict | None:
        if pred_key not in self._evals:
            p = layout.evaluation_path(layout.exp_prediction_dir(self.exp_dir, pred_key))
            self._evals[pred_key] = json.loads(p.read_text()) if p.is_file() else None
        return self._evals[pred_key]

    def model(self, key: str) -> dict | None:
        if key not in self._models:
            p = layout.config_path(layout.exp_model_dir(self.exp_dir, key))
            self._models[key] = json.loads(p.read_text()) if p.is_file() else None
        return self._models[key]

    def metric(self, pred_key: str, metric: str):
        e = self.eval(pred_key)
        return None if e is None else e.get(metric)

    def status(self, pred_key: str, model_key: str) -> str:
        for key in (model_key, pred_key):
            if key in self.failures:
                reason = self.failures[key]
                return reason if reason.startswith(SKIPPED) else f"failed: {reason}"
        return "not run"


def _study(rec: dict, label: str, metric: str, where: str | None = None):
    table = rec.get("study", {})
    if where:
        table = table.get(where, {})
    value = table.get(label)
    if value is None and "+" in label:  # a pair is the same pair in either order
        members = sorted(label.split("+"))
        value = next((v for k, v in table.items() if sorted(k.split("+")) == members), None)
    return value.get(metric) if isinstance(value, dict) else None


def _metric_row(res: Results, row: dict, pred_key: str | None = None) -> list:
    pk = pred_key or row["pred"]
    e = res.eval(pk)
    res.used_models.setdefault(row["model"], "")
    if e is None:
        return [res.status(pk, row["model"])] + [None] * (len(METRICS) - 1) + [None]
    return [e[m] for m in METRICS] + [e.get("threshold")]


def _data_note(rec: dict, split: str, role: str = "primary") -> str:
    d = rec["data"][role]
    return (f"Scored on the `{split}` split of `{d['root']}` (dataset id `{d['id']}`), each model with its own "
            f"threshold (chosen when it was trained). Model key = folder under `models/`: its `job.json` and "
            f"`config.json` hold the method, hyper-parameters, data id, subset and seed.")


# --------------------------------------------------------------------------------------------
# Sections


def section_table(doc: Doc, rec: dict, res: Results) -> list[tuple[str, str, str, int | None]]:
    header = ["method", "seed", *(METRIC_NAMES[m] for m in METRICS), "threshold",
              "study IoU", "study F1", "study object IoU", "model key"]
    rows = []
    for row in rec["rows"]:
        rows.append([row["label"], row["seed"], *_metric_row(res, row),
                     _study(rec, row["label"], "pixel_iou"), _study(rec, row["label"], "pixel_f1"),
                     _study(rec, row["label"], "object_iou"), f"`{row['model']}`"])
    by_method: dict[str, list] = {}
    for row in rec["rows"]:
        by_method.setdefault(row["label"], []).append(row)
    for label, group in by_method.items():
        vals = [[res.metric(r["pred"], m) for r in group] for m in METRICS]
        if len(group) > 1 and all(v is not None for vs in vals for v in vs):
            rows.append([f"{label} (mean of {len(group)} seeds)", MISSING, *(statistics.mean(v) for v in vals),
                         None, None, None, None, MISSING])
    doc.table(header, rows, _data_note(rec, rec["config"]["split"]))
    return [(row["label"], row["pred"], "primary", None) for row in rec["rows"] if row["seed"] == rec["rows"][0]["seed"]]


def section_learning_curve(doc: Doc, rec: dict, res: Results, fig_dir: Path) -> list:
    rows = rec["rows"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for r in rows:
        r["iou"] = res.metric(r["pred"], "pixel_iou")
        res.used_models.setdefault(r["model"], "")
    rates = rec["annotation"]
    doc.p(f"Balanced training sets (half clean, half artefact), drawn without replacement from the training "
          f"split; set d of each size is drawn and trained with seed d. Every model is validated on the full "
          f"validation split and scored on the full `{rec['config']['split']}` split. Annotation time uses the "
          f"study's rates: {rates['seconds_per_mask'] / 60:g} min per pixel mask (artefact images of fully "
          f"supervised models), {rates['seconds_per_label']:g} s per image label, over the training images.")
    f1 = _scatter(layout.exp_figure_path(fig_dir, rec["name"], "iou_vs_images"), rows, methods, "n_images",
                  "training images (log scale)", base=2)
    if f1:
        doc.fig(f1, f"Pixel IoU vs number of training images, one dot per model (study Figure 26). {rec['name']}.")
    for r in rows:
        r["annotation_hours"] = r["annotation_seconds"] / 3600
    f2 = _scatter(layout.exp_figure_path(fig_dir, rec["name"], "iou_vs_annotation"), rows, methods, "annotation_hours",
                  "annotation time, hours (log scale)", base=10)
    if f2:
        doc.fig(f2, "Pixel IoU vs expert annotation time of the training set, one dot per model: what an hour "
                    "of annotation buys with each method.")
    header = ["method", "images", "models", "median pixel IoU", "min", "max", "annotation (min)"]
    table, medians = [], {}
    for m in methods:
        for n in sorted({r["n_images"] for r in rows if r["method"] == m}):
            group = [r for r in rows if r["method"] == m and r["n_images"] == n]
            vals = [r["iou"] for r in group if r["iou"] is not None]
            med = statistics.median(vals) if vals else None
            medians[(m, n)] = med
            table.append([m + (" (full)" if group[0]["full"] else ""), n, f"{len(vals)}/{len(group)}", med,
                          min(vals) if vals else None, max(vals) if vals else None,
                          f"{group[0]['annotation_seconds'] / 60:.1f}"])
    doc.table(header, table, "Models per row: scored / planned. The keys of every model are in the list below.")
    # The study's Table 4: best instance of each method.
    header = ["best of", "images", "seed", *(METRIC_NAMES[m] for m in METRICS), "annotation (min)",
              "study IoU (full set)", "model key"]
    best_rows, best = [], {}
    for m in methods:
        scored = [r for r in rows if r["method"] == m and r["iou"] is not None]
        if not scored:
            continue
        b = max(scored, key=lambda r: r["iou"])
        best[m] = b
        e = res.eval(b["pred"])
        best_rows.append([m, b["n_images"], b["seed"], *(e[k] for k in METRICS), f"{b['annotation_seconds'] / 60:.1f}",
                          _study(rec, m, "pixel_iou"), f"`{b['model']}`"])
    if best_rows:
        doc.table(header, best_rows, "Best model instance of each method (study Table 4).")
    weak = [m for m in best if _supervision(res, best[m]["model"]) != "full"]
    fulls = [m for m in best if _supervision(res, best[m]["model"]) == "full"]
    if weak and fulls:
        m_weak = max(weak, key=lambda m: best[m]["iou"])
        target = best[m_weak]["iou"]
        m_full = fulls[0]
        sizes = sorted(n for (m, n), v in medians.items() if m == m_full and v is not None and v >= target)
        if sizes:
            n = sizes[0]
            hours = next(r["annotation_hours"] for r in rows if r["method"] == m_full and r["n_images"] == n)
            doc.p(f"The median {m_full} reaches the best weakly supervised pixel IoU ({m_weak}, {target:.4f}, "
                  f"{best[m_weak]['annotation_seconds'] / 60:.1f} min of labels) with {n} training images "
                  f"({hours * 60:.1f} min of annotation). Study: the best Score-CAM / Score-CAM + U-Net (510 images, "
                  f"34 min) were on par with the median U-Net trained on 32 images (~97 min); the best U-Net "
                  f"took 25 h 47 min.")
        else:
            doc.p(f"No {m_full} training-set size reaches, at its median, the best weakly supervised pixel IoU "
                  f"({m_weak}, {target:.4f}).")
    header = ["method", "images", "draw", "seed", "pixel IoU", "pixel F1", "annotation (min)", "model key"]
    doc.table(header, [[r["method"], r["n_images"], r["draw"] if r["draw"] is not None else "full", r["seed"],
                        r["iou"] if r["iou"] is not None else res.status(r["pred"], r["model"]),
                        res.metric(r["pred"], "pixel_f1"), f"{r['annotation_seconds'] / 60:.1f}", f"`{r['model']}`"]
                       for r in rows], "Every model of the learning curve.")
    return [(r["label"], r["pred"], "primary", None) for r in rows if r["full"] and r["seed"] == rec["config"]["seeds"][0]]


def _supervision(res: Results, key: str) -> str | None:
    m = res.model(key) if key else None
    return m.get("supervision") if m else None


def section_pairwise(doc: Doc, rec: dict, res: Results) -> list:
    singles = [r for r in rec["rows"] if len(r["members"]) == 1]
    names = [r["label"] for r in singles]
    if not names:
        doc.p("No single methods in this preset: no ensemble matrix.")
    cell = {}
    for r in rec["rows"]:
        res.used_models.setdefault(r["model"], "")
        m = r["members"]
        cell[(m[0], m[-1])] = r
    for metric, table_name in (("pixel_iou", "Table 5"), ("pixel_f1", "Table 6")) if names else ():
        rows = []
        for i, a in enumerate(names):
            line = [a]
            for j, b in enumerate(names):
                if j < i:
                    line.append("")
                    continue
                r = cell.get((a, b)) or cell.get((b, a))
                if r is None:
                    line.append(MISSING)
                    continue
                v = res.metric(r["pred"], metric)
                study = _study(rec, r["label"], metric)
                text = fmt(v) if v is not None else res.status(r["pred"], r["model"])
                line.append(text + (f" (study {study:.4f})" if study is not None else ""))
            rows.append(line)
        doc.table(["", *names], rows, f"{METRIC_NAMES[metric]} of the single methods (diagonal) and of the mean of "
                                      f"each pair's probability maps (study {table_name}; study values in "
                                      f"parentheses where its text quotes them). {_data_note(rec, rec['config']['split'])}")
    doc.table(["model", "model key"], [[r["label"], f"`{r['model']}`"] for r in rec["rows"]], "Keys of the models above.")
    pairs = [r for r in rec["rows"] if len(r["members"]) == 2 and res.metric(r["pred"], "pixel_iou") is not None]
    figs = [(r["label"], r["pred"], "primary", None) for r in singles]
    base = rec.get("baseline")
    if pairs:
        best = max(pairs, key=lambda r: res.metric(r["pred"], "pixel_iou"))
        lines = [best] + ([base] if base else [])
        header = ["model", *(METRIC_NAMES[m] for m in METRICS), "threshold", "study IoU", "study F1", "model key"]
        doc.table(header, [[r["label"], *_metric_row(res, r), _study(rec, r["label"], "pixel_iou"),
                            _study(rec, r["label"], "pixel_f1"), f"`{r['model']}`"] for r in lines],
                  "Best pair by pixel IoU vs the fully supervised baseline (study Table 7).")
        figs.append((best["label"], best["pred"], "primary", None))
    if base:
        res.used_models.setdefault(base["model"], "")
        figs.append((base["label"], base["pred"], "primary", None))
    return figs


def section_transfer(doc: Doc, rec: dict, res: Results) -> list:
    t = rec["data"]["target"]
    doc.p(f"Models trained on `{rec['data']['primary']['root']}` applied unchanged to `{t['root']}` (dataset id "
          f"`{t['id']}`, `{rec['target_split']}` split, focal plane: {rec['plane']}).")
    header = ["model", *(METRIC_NAMES[m] for m in METRICS), "threshold", "study IoU", "study F1", "model key"]
    doc.table(header, [[r["label"], *_metric_row(res, r), _study(rec, r["label"], "pixel_iou", "target"),
                        _study(rec, r["label"], "pixel_f1", "target"), f"`{r['model']}`"] for r in rec["rows"]],
              "On the second dataset (study Table 8).")
    header = ["model", "source IoU", "source F1", "target IoU", "target F1", "study source IoU/F1",
              "study target IoU/F1", "model key"]
    rows = []
    for r in rec["rows"]:
        s_iou, s_f1 = _study(rec, r["label"], "pixel_iou", "source"), _study(rec, r["label"], "pixel_f1", "source")
        t_iou, t_f1 = _study(rec, r["label"], "pixel_iou", "target"), _study(rec, r["label"], "pixel_f1", "target")
        rows.append([r["label"], res.metric(r["pred_source"], "pixel_iou"), res.metric(r["pred_source"], "pixel_f1"),
                     res.metric(r["pred"], "pixel_iou"), res.metric(r["pred"], "pixel_f1"),
                     f"{fmt(s_iou)} / {fmt(s_f1)}", f"{fmt(t_iou)} / {fmt(t_f1)}", f"`{r['model']}`"])
    doc.table(header, rows, f"Source = the primary dataset's `{rec['config']['split']}` split, target = the second "
                            f"dataset (study Table 9, which reports Score-CAM + U-Net only).")
    return [(r["label"], r["pred"], "target", rec["plane"]) for r in rec["rows"]]


# --------------------------------------------------------------------------------------------
# Figures


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # figures are optional; tables never are
        print("artseg experiment: matplotlib not installed, figures skipped", file=sys.stderr)
        return None
    return plt


def _scatter(path: Path, rows: list[dict], methods: list[str], x_key: str, xlabel: str, base: int) -> Path | None:
    plt = _plt()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    offsets = {m: (i - (len(methods) - 1) / 2) * 0.04 for i, m in enumerate(methods)}
    for m in methods:
        pts = [(r[x_key], r["iou"]) for r in rows if r["method"] == m and r["iou"] is not None and r[x_key] > 0]
        if pts:
            xs = [x * (1 + offsets[m]) for x, _ in pts]  # small multiplicative jitter keeps methods apart
            ax.scatter(xs, [y for _, y in pts], label=m, alpha=0.75, s=28)
    ax.set_xscale("log", base=base)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("pixel IoU (test)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def choose_stems(samples: list, n: int) -> list:
    """The first n-1 artefact images and the first clean one (sorted by stem): found, missed, invented."""
    arte = sorted((s for s in samples if s.is_artefact), key=lambda s: s.stem)
    clean = sorted((s for s in samples if not s.is_artefact), key=lambda s: s.stem)
    n_art = max(1, n - 1) if clean else n
    return arte[:n_art] + clean[: max(0, n - n_art)]


def overlay_figure(exp_dir: Path, rec: dict, res: Results, panels: list, fig_dir: Path) -> Path | None:
    """One row per chosen test image, one column per model: TP green, FP red, FN blue (study Figures 22-29)."""
    from artseg.data import load_dataset
    from artseg.io import read_mask
    from artseg.overlays import overlay, write_overlay

    panels = [p for p in panels if res.eval(p[1]) is not None]
    n = int(rec["config"].get("overlay_images", 3))
    if not panels or n <= 0:
        return None
    plt = _plt()
    by_role: dict[str, list] = {}
    for role in {p[2] for p in panels}:
        ds = load_dataset(rec["data"][role]["root"])
        split = rec.get("target_split", "test") if role == "target" else rec["config"]["split"]
        by_role[role] = choose_stems(ds.split(split), n)
    stems = max(len(v) for v in by_role.values())
    if plt is None or stems == 0:
        return None
    fig, axes = plt.subplots(stems, len(panels), figsize=(2.6 * len(panels), 2.6 * stems), squeeze=False)
    for j, (label, pred_key, role, plane) in enumerate(panels):
        plane = None if plane in (None, "middle") else int(plane)
        for i, sample in enumerate(by_role[role]):
            ax = axes[i][j]
            ax.axis("off")
            mask_path = layout.mask_path(layout.exp_prediction_dir(exp_dir, pred_key), sample.stem)
            if not mask_path.is_file():
                continue
            image = sample.read_image(plane=plane)
            pred = read_mask(mask_path)
            truth = sample.read_truth(pred.shape, "cannot draw its overlay")
            write_overlay(layout.exp_overlay_path(exp_dir, rec["name"], label, sample.stem), image, pred, truth)
            ax.imshow(overlay(image, pred, truth))
            if i == 0:
                ax.set_title(label, fontsize=9)
            if j == 0:
                ax.text(0, -0.02, sample.stem, transform=ax.transAxes, fontsize=7, va="top")
    fig.tight_layout()
    path = layout.exp_figure_path(fig_dir, rec["name"], "overlays")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------


def load_records(exp_dir: Path) -> list[dict]:
    paths = sorted(layout.exp_plan_paths(exp_dir),
                   key=lambda p: (EXPERIMENTS.index(p.stem) if p.stem in EXPERIMENTS else 99, p.stem))
    return [json.loads(p.read_text()) for p in paths]


def build_report(exp_dir: Path) -> Doc:
    exp_dir = Path(exp_dir)
    res = Results(exp_dir)
    fig_dir = layout.exp_figures_dir(exp_dir)
    doc = Doc()
    records = load_records(exp_dir)
    doc.h(1, f"artseg experiments: {exp_dir.name}")
    doc.p("Reproduction of the study's section 5 (experiments 5.1-5.6) on our own runs. Study numbers are those "
          "quoted in the study's text (its tables are images); `—` = not reported / not available. Presets: "
          + ", ".join(sorted({f"`{r['name']}`: `{r['preset']}`" for r in records})) + ".")
    for rec in records:
        doc.h(2, f"{rec['name']}: {rec['title']} (study {rec['section']})")
        doc.p(f"Config: `{rec['config_file']}` (preset `{rec['preset']}`), method settings: `{rec['methods_file']}` "
              f"[{rec['preset']}].")
        if rec["skipped"]:
            doc.p(f"Skipped in this preset: {', '.join(rec['skipped'])}.")
        for note in rec["notes"]:
            doc.p(note)
        section = {"table": section_table, "pairwise": section_pairwise, "transfer": section_transfer}.get(rec["kind"])
        panels = section(doc, rec, res) if section else section_learning_curve(doc, rec, res, fig_dir)
        path = overlay_figure(exp_dir, rec, res, panels, fig_dir)
        if path:
            doc.fig(path, f"{rec['name']}: thresholded predictions on chosen test images; green = true positive, "
                          "red = false positive, blue = false negative.")
    doc.h(2, "Models")
    rows, cut = [], 0
    for key in sorted(res.used_models):
        m = res.model(key) or {}
        job_path = layout.job_path(layout.exp_model_dir(exp_dir, key))
        job = json.loads(job_path.read_text()) if job_path.is_file() else {}
        subset = job.get("subset")
        # The limit it trained under: its configured max_time, or less under a whole-command --max-time.
        limit = job.get("time_limit", job.get("max_time"))
        cut += bool(m) and limit is not None and (job.get("max_time") is None or limit < job["max_time"])
        rows.append([f"`{key}`", m.get("method", job.get("method", MISSING)), job.get("method_preset", MISSING),
                     job.get("data_id", MISSING), "full" if subset is None else f"{2 * subset[0]} (draw {subset[1]})",
                     job.get("seed", MISSING), m.get("threshold"), fmt((m.get("meta") or {}).get("train_seconds"), 1),
                     fmt(limit, 2), "done" if m else res.status("", key)])
    note = "Each key is a folder under `models/`; `job.json` there lists the hyper-parameter overrides."
    if cut:
        note += (f" {cut} of these models trained under less than their configured limit (a whole-command "
                 "`--max-time`); a later run reuses them as they are (docs/experiments.md, 'Time budget').")
    doc.table(["model key", "method", "method preset", "data id", "training images", "seed", "threshold",
               "train s", "limit min", "status"], rows, note)
    return doc


def write_report(exp_dir: str | Path, progress: bool = True) -> Path:
    from artseg.io import atomic_path

    exp_dir = Path(exp_dir)
    doc = build_report(exp_dir)
    md = layout.exp_report_md_path(exp_dir)
    with atomic_path(md) as tmp:
        tmp.write_text(doc.markdown(exp_dir))
    with atomic_path(layout.report_html_path(exp_dir)) as tmp:
        tmp.write_text(doc.html(f"artseg experiments: {exp_dir.name}"))
    return md
