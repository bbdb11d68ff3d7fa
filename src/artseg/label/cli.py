"""`artseg label IMAGES... --out DATASET`: the argparse layer over artseg.label."""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "label", help="label images clean/artefact on a local, keyboard-driven web page",
        description="Serve a local web page showing one image at a time; keys A (artefact), C (clean), S (skip), "
                    "Z/Backspace (undo), arrows (move), M (model's mask). Every label is saved at once to "
                    "DATASET/labels.csv and DATASET/images/; run the same command again to resume.",
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGES", help="image files, folders or glob patterns")
    p.add_argument("--out", required=True, type=Path, metavar="DATASET", help="dataset folder to write (labels.csv, images/)")
    p.add_argument("--model", type=Path, metavar="MODEL_DIR", help="model directory: uncertain images first, suggestions, mask overlay (M)")
    p.add_argument("--port", type=int, default=8765, help="port to listen on (0: any free port); default 8765")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; default 127.0.0.1 (this machine only: the API has no login)")
    p.add_argument("--plane", type=int, metavar="K", help="focal plane of stacks (default: the middle one)")
    p.add_argument("--preview-size", type=int, default=1080, metavar="PX", help="longest side of the previews in pixels; default 1080")
    p.add_argument("--seed", type=int, default=0, help="seed of the stratified train/val/test split")
    p.add_argument("--device", default="auto", help="device of --model: auto | cpu | cuda")
    paint = p.add_mutually_exclusive_group()
    paint.add_argument("--masks", action="store_const", const="masks", dest="mask_mode",
                       help="paint dense masks (DATASET/masks/<stem>.png, 255 artefact): mouse brush, keys A artefact, "
                            "C / E clean, [ ] brush size, Z undo stroke, N next image")
    paint.add_argument("--scribbles", action="store_const", const="scribbles", dest="mask_mode",
                       help="paint scribbles (DATASET/scribbles/<stem>.png: 0 unknown, 1 clean, 2 artefact): "
                            "A artefact, C certainly clean, E eraser; unpainted pixels stay unknown")
    p.add_argument("--live", action="store_true",
                   help="with --masks/--scribbles: retrain a pixel forest after every stroke and show its mask (V)")
    p.set_defaults(handler=handle)


def handle(args) -> int:
    from artseg.errors import CLIError
    from artseg.io import find_images, read_raw
    from artseg.label.app import LabelSession
    from artseg.label.server import make_server, url_of
    from artseg.label.store import LabelError

    if not 0 <= args.port <= 65535:
        raise CLIError(f"--port must be in 0..65535, got {args.port}")
    if args.preview_size < 64:
        raise CLIError(f"--preview-size must be at least 64, got {args.preview_size}")
    paths = find_images(args.inputs)
    if not paths:
        raise CLIError(f"no images found in {' '.join(args.inputs)}")
    missing = next((p for p in paths if not p.is_file()), None)
    if missing is not None:
        raise CLIError(f"{missing}: no such file")
    if args.plane is not None:  # a wrong plane is one error now, not one per image on the page
        read_raw(paths[0], plane=args.plane)
    model = None
    if args.model is not None:
        from artseg.methods import load_method

        model = load_method(args.model, device=args.device)
    try:
        session = LabelSession(paths, args.out, model=model, plane=args.plane, preview_side=args.preview_size,
                               seed=args.seed, mask_mode=args.mask_mode, live=args.live)
    except LabelError as exc:
        raise CLIError(str(exc)) from None
    try:
        server = make_server(session, args.host, args.port)
    except OSError as exc:
        session.close()
        raise CLIError(f"--port {args.port}: cannot listen on {args.host} ({exc.strerror})") from None
    session.start()
    stats = session.stats()
    what = {"masks": "painting masks of", "scribbles": "scribbling on"}.get(args.mask_mode, "labelling")
    print(f"{what} {stats['total']} images into {args.out} ({stats['labelled']} already labelled)")
    print(f"open {url_of(server)}  (Ctrl-C to stop; every label is already saved)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        session.close()
    stats = session.stats()
    print(f"saved {stats['in_dataset']} labels to {args.out}", file=sys.stderr)
    return 0
