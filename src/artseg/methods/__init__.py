"""Methods behind one interface (`artseg.methods.base.Method`), one folder per family:
`segmenter/` (pixel masks), `weak/` (image labels), `clean/` (clean images), `forest/` (painted pixels:
scribbles or masks, into a random forest on filter features), and `ensemble.py`.

`get(name)` gives a method's class, `load_method(dir)` a trained model as its `Method` (see `registry.py`);
the user-facing `artseg.load_model(dir)` wraps that Method in an `artseg.api.ArtefactModel`.
"""

from artseg.methods.base import Method
from artseg.methods.registry import DESCRIPTIONS, UnknownMethodError, get, load_method, names

__all__ = ["DESCRIPTIONS", "Method", "UnknownMethodError", "get", "load_method", "names"]


def __getattr__(name: str):
    # The old name fails loudly rather than aliasing: `artseg.load_model` returns an ArtefactModel, and one
    # name for two return types is what the rename removed.
    if name == "load_model":
        raise AttributeError("artseg.methods.load_model is now artseg.methods.load_method (returns the Method); "
                             "artseg.load_model returns an ArtefactModel")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
