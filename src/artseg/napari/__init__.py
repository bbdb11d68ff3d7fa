"""napari plugin (npe2 manifest `napari.yaml`): a dock widget that segments the selected image layer, a reader
for `artseg predict` folders and a synthetic sample image. Needs the `napari` extra."""
