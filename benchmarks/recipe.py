"""The training recipe of issues 32/33, epoch-bounded: the plateau rule vs the budget-aware schedule,
without and with foreground-aware crops, on three looks (two synthetic scenes and real Operetta
backgrounds with synthetic artefacts).

Command (a reduced U-Net on 64 px crops, a few CPU-minutes per look; epoch-bounded, so a busy
machine makes it slower, not different; one section per look, so looks can run one at a time):
    python benchmarks/recipe.py --looks 7cl
    python benchmarks/recipe.py --looks lncap
    python benchmarks/recipe.py --looks "" --background ../shared/data/operetta

Each variant is the U-Net `small` preset with `--set` overrides shared by all (`--common`) plus its
own; each trains through the public API on the same generated train/val split of each look, picks
its threshold on val, predicts the test split without TTA and is scored with that threshold.
Synthetic artefacts only: these numbers rank recipes, they are not accuracy on real artefacts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _record import markdown_table, record  # noqa: E402

from artseg import layout, methods  # noqa: E402
from artseg.data import load_dataset  # noqa: E402
from artseg.evaluation import evaluate_predictions  # noqa: E402
from artseg.predict import predict_files  # noqa: E402
from artseg.run import RunOptions  # noqa: E402
from artseg.synth import generate_dataset  # noqa: E402

VARIANTS = {
    "plateau (old small)": {"scheduler": "plateau"},
    "cosine": {"scheduler": "cosine"},  # the schedule alone (not in the default run: --variants)
    "cosine + fg 1/3": {"scheduler": "cosine", "fg_fraction": "0.333"},
}
COMMON = "input_size=64,base=8,depth=4,batch_size=4,crops_per_image=2,val_size=128,tta=none"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--background", type=Path, help="folder of real clean images: a third look (synth --background)")
    ap.add_argument("--looks", default="7cl,lncap")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--n-train", type=int, default=16)
    ap.add_argument("--n-val", type=int, default=8)
    ap.add_argument("--n-test", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--common", default=COMMON, help="KEY=VALUE,... set for every variant")
    ap.add_argument("--variants", default="plateau (old small),cosine + fg 1/3", help="names from VARIANTS, comma-separated")
    ap.add_argument("--out", type=Path, default=Path("runs/recipe"))
    ap.add_argument("--no-append", action="store_true")
    args = ap.parse_args()
    looks = [(look, None) for look in args.looks.split(",") if look]
    if args.background:
        looks.append((f"{args.background.name} background", args.background))
    common = dict(kv.split("=", 1) for kv in args.common.split(",") if kv)
    rows = []
    for look, background in looks:
        data = args.out / f"{look.replace(' ', '_')}_{args.size}_{args.n_train}_{args.n_val}_{args.n_test}_s{args.seed}"
        if not layout.labels_path(data).exists():
            generate_dataset(data, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, height=args.size,
                             width=args.size, seed=args.seed, look="7cl" if background else look, progress=False,
                             background=background)
        dataset = load_dataset(data)
        for name in args.variants.split(","):
            cls = methods.get("unet")
            config = cls.config_class.build("small", {**common, **VARIANTS[name], "max_epochs": str(args.epochs)})
            work = args.out / "models" / f"{data.name}_{name.replace(' ', '_').replace('/', '')}"
            run = RunOptions(device="cpu", seed=args.seed, work_dir=work, progress=False)
            wall, cpu = time.perf_counter(), time.process_time()
            model = cls.fit(dataset, config, run)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            pred = work / "pred"
            predict_files(model, [s.image_path for s in dataset.split("test")], pred, progress=False)
            res = evaluate_predictions(dataset, pred, split="test", threshold=model.threshold, progress=False)
            rows.append([look, name, res["pixel_iou"], res["object_iou"], res["pixel_f1"], model.threshold,
                         model.meta["threshold_choice"].get("iou"), round(wall), round(cpu)])
            print(rows[-1], flush=True)
    header = ["look", "variant", "test pixel IoU", "test object IoU", "test F1", "threshold", "val IoU",
              "train s (wall)", "train s (CPU)"]
    notes = (f"U-Net `small` preset + `{args.common}`, {args.epochs} epochs (epoch-bounded), seed {args.seed}; "
             f"{args.n_train}/{args.n_val}/{args.n_test} images of {args.size} px per look. Synthetic artefacts "
             "(on real Operetta cells for the background look): a ranking of recipes at a small size, one seed, "
             "not accuracy on real artefacts. The machine's 2 cores were shared with other sessions (wall seconds "
             "inflated; the epochs, hence the numbers, are not affected).")
    record(f"Training recipe, epoch-bounded ({', '.join(look for look, _ in looks)}): plateau vs budget-aware "
           "schedule + foreground crops",
           markdown_table(header, rows), notes, append=not args.no_append)


if __name__ == "__main__":
    main()
