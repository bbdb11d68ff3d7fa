"""bioimage.io model package (rdf format 0.5), built with bioimageio.spec's own model classes.

The package takes the *raw* image: its preprocessing is `scale_range` (the model's two percentiles over y
and x of each image), `scale_linear` (the model's gain and offset, only when they are not 1 and 0) and
`clip` to [0, 1], which is `artseg.io.Normalisation`. Two differences: bioimage.io divides by
(p_high - p_low + eps) with eps = 1e-6, artseg by (p_high - p_low) exactly, a relative 1e-6 / (p_high -
p_low): nothing for 8/16-bit data, ~1e-4 for an image already scaled to [0, 1] under the quartile
scaling; and where the two percentiles are equal (a flat image) artseg falls back to the image's min and
max, bioimage.io does not. The network outputs logits; `sigmoid` is the declared postprocessing step. Weights
come twice: `pytorch_state_dict` (architecture: `artseg.nn.unet.build_segmenter` with the model's
kwargs, so consumers need artseg installed) and `torchscript` (no artseg needed). The test tensors are a
deterministic synthetic brightfield image and artseg's own probabilities for it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from artseg import layout
from artseg.export.network import ExportableNetwork, ExportError, probability_net
from artseg.export.torchscript import script_network
from artseg.io import Normalisation, atomic_path

log = logging.getLogger("artseg")

STUDY = ("Exploring the Value of Weakly-Supervised Deep Learning Approaches for Artefact Segmentation in "
         "Brightfield Microscopy Images")
# bioimage.io requires a DOI or URL for every citation. The thesis has no DOI recorded in artseg, so the
# default is a scholarly search for its exact title (it resolves to the study, and invents nothing);
# `--cite-url` replaces it with the thesis' own address.
STUDY_URL = "https://scholar.google.com/scholar?q=%22" + STUDY.replace(" ", "+") + "%22"
INPUT_ID, OUTPUT_ID = "raw", "probability"


def test_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic 16-bit-like brightfield test image: textured background and two dark specks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    image = 30000 + 2500 * rng.standard_normal((height, width))
    for cy, cx, r in ((height / 3, width / 4, height / 10), (2 * height / 3, 3 * width / 4, height / 14)):
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] -= 12000
    return np.clip(image, 0, 65535).astype(np.float32)


def _check_normalisation(normalisation: Normalisation) -> None:
    if not normalisation.clip:
        raise ExportError("bioimage.io export needs clipped normalisation (the model was saved with clip=false)")


def _is_identity(normalisation: Normalisation) -> bool:
    """Whether the percentiles map straight to 0 / 1 (no `scale_linear` step needed)."""
    return normalisation.gain == 1 and normalisation.offset == 0


def _readme(method, found: ExportableNetwork) -> str:
    notes = "".join(f"- {n}\n" for n in found.notes) or "- none: the package computes what `artseg predict` computes\n"
    n = method.normalisation
    linear = "" if _is_identity(n) else f", `scale_linear` (gain {n.gain:g}, offset {n.offset:g})"
    return f"""# artseg {method.name}: artefact segmentation in brightfield microscopy

Segments artefacts (dust, fibres, debris, bubbles) in single-plane brightfield images.
Input: one raw brightfield plane (any bit depth) as float32 (1, 1, H, W), H and W multiples of {found.multiple}
(bioimage.io tools pad/tile to this). Preprocessing: `scale_range` ({n.low} / {n.high} percentiles over y, x){linear}
and `clip` [0, 1]. Output: artefact probability (sigmoid of the network's logits); artefact = probability >=
{method.threshold:.4f} (the model's threshold, also in `config.artseg.threshold`).

Trained with artseg (`artseg train {method.name}`); exported with
`artseg export MODEL --format bioimageio`.

Differences from `artseg predict`:
{notes}
Study: {STUDY}.
"""


def build_description(method, found: ExportableNetwork, folder: Path, cite_url: str = STUDY_URL):
    """The bioimage.io ModelDescr of `found`, its files written into `folder`.

    Parameters
    ----------
    method
        The loaded artseg Method (name, threshold, normalisation, config).
    found
        Its network (`artseg.export.network.exportable_network`).
    folder
        Working folder for the weights, test tensors and README the description points to.
    cite_url
        URL of the study (bioimage.io requires one per citation).

    Returns
    -------
    bioimageio.spec.model.v0_5.ModelDescr
    """
    from bioimageio.spec.model import v0_5 as spec

    n = method.normalisation
    _check_normalisation(n)
    m = found.multiple
    raw = test_image(3 * m, 4 * m)  # non-square, a valid size (multiples of m)
    x = torch.from_numpy(n.apply(raw))[None, None]
    with torch.inference_mode():
        prob = torch.sigmoid(found.net(x)).numpy().astype(np.float32)
    np.save(layout.bioimageio_path(folder, "test_input"), raw[None, None])
    np.save(layout.bioimageio_path(folder, "test_output"), prob)
    # bioimage.io's pytorch_state_dict format is torch.save of the state dict (artseg itself keeps safetensors).
    torch.save({k: v.detach().cpu() for k, v in found.net.state_dict().items()}, layout.bioimageio_path(folder, "state_dict"))
    script_network(found.net, m, probabilities=False).save(str(layout.bioimageio_path(folder, "torchscript")))
    (layout.bioimageio_path(folder, "readme")).write_text(_readme(method, found))

    axes_in = [spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier("brightfield")]),
               spec.SpaceInputAxis(id=spec.AxisId("y"), size=spec.ParameterizedSize(min=m, step=m)),
               spec.SpaceInputAxis(id=spec.AxisId("x"), size=spec.ParameterizedSize(min=m, step=m))]
    axes_out = [spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier("artefact")]),
                spec.SpaceOutputAxis(id=spec.AxisId("y"), size=spec.SizeReference(tensor_id=spec.TensorId(INPUT_ID), axis_id=spec.AxisId("y"))),
                spec.SpaceOutputAxis(id=spec.AxisId("x"), size=spec.SizeReference(tensor_id=spec.TensorId(INPUT_ID), axis_id=spec.AxisId("x")))]
    preprocessing = [
        spec.ScaleRangeDescr(kwargs=spec.ScaleRangeKwargs(axes=[spec.AxisId("y"), spec.AxisId("x")],
                                                          min_percentile=n.low, max_percentile=n.high)),
        *([] if _is_identity(n) else [spec.ScaleLinearDescr(kwargs=spec.ScaleLinearKwargs(gain=n.gain, offset=n.offset))]),
        spec.ClipDescr(kwargs=spec.ClipKwargs(min=0.0, max=1.0)),
    ]
    torch_version = spec.Version(torch.__version__.split("+")[0])
    from artseg import __version__

    return spec.ModelDescr(
        name=f"artseg {method.name} artefact segmentation",
        description=f"Artefact (dust, fibre, debris, bubble) probability in brightfield microscopy images; artseg "
                    f"{method.name}, {method.supervision} supervision.",
        authors=[spec.Author(name="artseg contributors")],
        cite=[spec.CiteEntry(text=STUDY, url=spec.HttpUrl(cite_url))],
        license=spec.LicenseId("MIT"),
        documentation=spec.FileDescr(source=layout.bioimageio_path(folder, "readme")),
        tags=["brightfield", "artefact", "segmentation", "unet", "2d", "pytorch"],
        inputs=[spec.InputTensorDescr(id=spec.TensorId(INPUT_ID), axes=axes_in, preprocessing=preprocessing,
                                      test_tensor=spec.FileDescr(source=layout.bioimageio_path(folder, "test_input")),
                                      description="raw brightfield plane, any bit depth, as float32")],
        outputs=[spec.OutputTensorDescr(id=spec.TensorId(OUTPUT_ID), axes=axes_out, postprocessing=[spec.SigmoidDescr()],
                                        test_tensor=spec.FileDescr(source=layout.bioimageio_path(folder, "test_output")),
                                        data=spec.IntervalOrRatioDataDescr(range=(0.0, 1.0)),
                                        description="artefact probability")],
        weights=spec.WeightsDescr(
            pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
                source=layout.bioimageio_path(folder, "state_dict"), pytorch_version=torch_version,
                architecture=spec.ArchitectureFromLibraryDescr(
                    callable=spec.Identifier("build_segmenter"), import_from="artseg.nn.unet",
                    kwargs=dict(found.architecture))),
            torchscript=spec.TorchscriptWeightsDescr(source=layout.bioimageio_path(folder, "torchscript"),
                                                     pytorch_version=torch_version, parent="pytorch_state_dict"),
        ),
        config={"artseg": {"method": method.name, "threshold": float(method.threshold), "artseg_version": __version__,
                           "notes": list(found.notes)}},
    )


def export_bioimageio(method, out: Path, cite_url: str = STUDY_URL) -> Path:
    """Write a bioimage.io model package for `method`: a .zip when `out` ends in .zip, else a folder.

    Parameters
    ----------
    method
        A loaded one-network `artseg.methods.Method`.
    out
        The package (.zip, written atomically) or a new folder (must not exist).
    cite_url
        URL (or https://doi.org/...) of the study, cited in the package.

    Returns
    -------
    pathlib.Path
        `out`.
    """
    from bioimageio.spec import save_bioimageio_package, save_bioimageio_package_as_folder

    _, found = probability_net(method)
    if not layout.is_bioimageio_zip(out) and out.exists():
        raise ExportError(f"{out}: already exists (give a new folder, or a .zip file)")
    with tempfile.TemporaryDirectory(prefix="artseg-bioimageio-") as work, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation: bioimage.io still loads TorchScript
        descr = build_description(method, found, Path(work), cite_url)
        if layout.is_bioimageio_zip(out):
            with atomic_path(out) as tmp:
                save_bioimageio_package(descr, output_path=tmp)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
            try:
                save_bioimageio_package_as_folder(descr, output_path=staging)
                os.replace(staging, out)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    log.info("exported %s as a bioimage.io package: %s", method.name, out)
    return out
