"""Screenshot of the artseg napari dock widget at work, for docs/napari.md.

    xvfb-run -a python scripts/napari_screenshot.py MODEL_DIR IMAGE.tif docs/images/napari-widget.png

Needs the `napari` extra and an X server with OpenGL (Xvfb + Mesa): napari's canvas does not render on
Qt's offscreen platform.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(model_dir: str, image_path: str, out: str) -> None:
    import napari

    from artseg.io import read_raw
    from artseg.napari.widget import ArtsegWidget

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1200, 760)
    viewer.add_image(read_raw(image_path), name=Path(image_path).stem, colormap="gray")
    widget = ArtsegWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment artefacts (artseg)", area="right")
    widget.model_dir.value = model_dir
    widget.layer.value = viewer.layers[Path(image_path).stem]
    widget.segment()
    viewer.layers[-2].opacity = 0.35  # the probability map, under the artefact labels
    napari.qt.get_qapp().processEvents()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(out, canvas_only=False, flash=False)
    viewer.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
