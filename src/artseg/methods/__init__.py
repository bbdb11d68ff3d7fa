"""Methods behind one interface (`artseg.methods.base.Method`), one folder per family:
`segmenter/` (pixel masks), `weak/` (image labels), `clean/` (clean images), `forest/` (painted pixels:
scribbles or masks, into a random forest on filter features), and `ensemble.py`.

`get(name)` gives a method's class, `load_model(dir)` a trained model (see `registry.py`).
"""

from artseg.methods.base import Method
from artseg.methods.registry import DESCRIPTIONS, UnknownMethodError, get, load_model, names

__all__ = ["DESCRIPTIONS", "Method", "UnknownMethodError", "get", "load_model", "names"]
