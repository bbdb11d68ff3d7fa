"""napari dock widget: run an artseg model on the selected image layer, show its probability map and its
artefacts as a Labels layer, and re-cut the artefacts live with a threshold slider (the model's own
`PredictionSettings.mask` at the slider's threshold: its post-processing included, as `artseg predict`)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSlider, Label, PushButton

log = logging.getLogger("artseg")


class ArtsegWidget(Container):
    """Model folder, image layer, Segment button, threshold slider.

    Parameters
    ----------
    napari_viewer
        The viewer whose image layers are offered and which receives the result layers.
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.model = None
        self.prob: np.ndarray | None = None
        self._settings = None  # the PredictionSettings `prob` was cut with (the slider changes their threshold)
        self._labels_name: str | None = None
        self.model_dir = FileEdit(label="model", mode="d", tooltip="model directory written by `artseg train`")
        self.layer = ComboBox(label="image", choices=self._image_layers, tooltip="image layer to segment")
        self.run_button = PushButton(text="Segment")
        self.threshold = FloatSlider(label="threshold", min=0.0, max=1.0, step=0.01, value=0.5,
                                     tooltip="artefact = probability >= threshold (set to the model's on load)")
        self.status = Label(value="choose a model folder")
        self.extend([self.model_dir, self.layer, self.run_button, self.threshold, self.status])
        self.run_button.changed.connect(self.segment)
        self.threshold.changed.connect(self._update_labels)
        self.model_dir.changed.connect(self._forget_model)
        napari_viewer.layers.events.inserted.connect(self.layer.reset_choices)
        napari_viewer.layers.events.removed.connect(self.layer.reset_choices)

    def _image_layers(self, _widget=None) -> list:
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image) and not layer.name.endswith(" probability")]

    def _forget_model(self, _value=None) -> None:
        self.model = None

    def _load_model(self):
        import artseg

        if self.model is None:
            self.model = artseg.load_model(Path(self.model_dir.value))
            with self.threshold.changed.blocked():
                self.threshold.value = self.model.threshold
        return self.model

    def _plane(self, layer) -> np.ndarray:
        """The 2-D plane of `layer` that the viewer shows (RGB stays H x W x 3/4)."""
        data = np.asarray(layer.data)
        spatial = 3 if layer.rgb else 2
        if data.ndim > spatial:
            step = self.viewer.dims.current_step[-data.ndim:][: data.ndim - spatial]
            data = data[tuple(step)]
        return data

    def segment(self, _value=None):
        """Segment the chosen layer; add (or update) "<name> probability" and "<name> artefacts".

        Returns
        -------
        artseg.api.Result or None
            The result, or None (with the reason in the status line) when there is nothing to segment.
        """
        layer = self.layer.value
        if layer is None:
            self.status.value = "no image layer"
            return None
        try:
            model = self._load_model()
            result = model.segment(self._plane(layer), threshold=self.threshold.value)
        except ValueError as exc:  # artseg's user errors are one-line ValueErrors: show them, keep the viewer alive
            self.status.value = str(exc)
            log.warning("%s", exc)
            return None
        self.prob, self._settings = result.prob, model.settings
        scale = tuple(layer.scale[-2:])
        self._show(f"{layer.name} probability", result.prob, "image", colormap="magma", contrast_limits=(0.0, 1.0),
                   blending="additive", scale=scale)
        self._show(f"{layer.name} artefacts", result.objects, "labels", scale=scale)
        self._labels_name = f"{layer.name} artefacts"
        self.status.value = f"{model.name}: {result.artefact_fraction:.2%} artefact, {result.n_objects} objects"
        return result

    def _show(self, name: str, data: np.ndarray, kind: str, **kwargs) -> None:
        if name in self.viewer.layers:
            self.viewer.layers[name].data = data
        else:
            getattr(self.viewer, f"add_{kind}")(data, name=name, **kwargs)

    def _update_labels(self, value: float) -> None:
        from artseg.api import label_objects

        if self.prob is None or self._labels_name not in self.viewer.layers:
            return
        mask = self._settings.replace(threshold=float(value)).mask(self.prob)
        self.viewer.layers[self._labels_name].data = label_objects(mask)
