"""A scikit-learn random forest as plain arrays (safetensors) and back, without pickle.

Saved per node, all trees concatenated, `offsets[i]:offsets[i+1]` being tree i (scikit-learn's own
arrays, node indices local to each tree): `children_left`, `children_right` (-1 at leaves),
`feature` (-2 at leaves), `threshold` (float64; a pixel goes left when feature <= threshold) and
`value` (the class fractions of the node's training pixels, N x 2), plus each tree's `max_depth`.

Loading validates what scikit-learn's compiled traversal would trust blindly: every child index
points forward inside its own tree (no cycle, no read outside the arrays), and every split uses a
feature the feature set has. Only then are the arrays handed to scikit-learn's `Tree` (the state
its own pickling restores), whose compiled `predict` is then used as is.
"""

from __future__ import annotations

import numpy as np

KEYS = ("offsets", "max_depth", "children_left", "children_right", "feature", "threshold", "value")
N_CLASSES = 2  # clean, artefact
LEAF = -1


class ForestArrayError(ValueError):
    """Forest arrays that do not describe a valid forest; the message says what is wrong."""


def empty_arrays(n_trees: int) -> dict[str, np.ndarray]:
    """The arrays of an untrained forest of `n_trees`: their shapes are what loading checks against."""
    return {
        "offsets": np.zeros(n_trees + 1, np.int64), "max_depth": np.zeros(n_trees, np.int64),
        "children_left": np.zeros(0, np.int64), "children_right": np.zeros(0, np.int64),
        "feature": np.zeros(0, np.int64), "threshold": np.zeros(0, np.float64),
        "value": np.zeros((0, N_CLASSES), np.float64),
    }


def forest_to_arrays(forest) -> dict[str, np.ndarray]:
    """Arrays of a fitted `sklearn.ensemble.RandomForestClassifier` with classes (0, 1)."""
    if list(forest.classes_) != [0, 1]:
        raise ForestArrayError(f"the forest must know classes 0 and 1, it knows {list(forest.classes_)}")
    trees = [est.tree_ for est in forest.estimators_]
    sizes = [t.node_count for t in trees]
    value = np.concatenate([t.value[:, 0, :] for t in trees])
    return {
        "offsets": np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        "max_depth": np.array([t.max_depth for t in trees], np.int64),
        "children_left": np.concatenate([t.children_left for t in trees]).astype(np.int64),
        "children_right": np.concatenate([t.children_right for t in trees]).astype(np.int64),
        "feature": np.concatenate([t.feature for t in trees]).astype(np.int64),
        "threshold": np.concatenate([t.threshold for t in trees]).astype(np.float64),
        "value": (value / np.maximum(value.sum(axis=1, keepdims=True), 1e-300)).astype(np.float64),
    }


def check_arrays(arrays: dict[str, np.ndarray], n_features: int) -> None:
    """Raise ForestArrayError unless `arrays` describe a forest a traversal can follow safely."""
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        raise ForestArrayError(f"missing forest arrays: {', '.join(missing)}")
    offsets = arrays["offsets"]
    n = len(arrays["threshold"])
    if any(len(arrays[k]) != n for k in ("children_left", "children_right", "feature", "value")):
        raise ForestArrayError("node arrays differ in length")
    if arrays["value"].ndim != 2 or arrays["value"].shape[1] != N_CLASSES:
        raise ForestArrayError(f"value must be N x {N_CLASSES}, got {tuple(arrays['value'].shape)}")
    if len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != n or np.any(np.diff(offsets) < 1):
        raise ForestArrayError("tree offsets must rise from 0 to the number of nodes, every tree non-empty")
    if len(arrays["max_depth"]) != len(offsets) - 1:
        raise ForestArrayError("one max_depth per tree needed")
    for i in range(len(offsets) - 1):
        start, stop = int(offsets[i]), int(offsets[i + 1])
        left, right = arrays["children_left"][start:stop], arrays["children_right"][start:stop]
        feature = arrays["feature"][start:stop]
        local = np.arange(stop - start)
        leaf = left == LEAF
        if np.any((right == LEAF) != leaf):
            raise ForestArrayError(f"tree {i}: a node has one child only")
        inner = ~leaf
        for child in (left[inner], right[inner]):
            if np.any(child <= local[inner]) or np.any(child >= stop - start):
                raise ForestArrayError(f"tree {i}: a child index points backwards or outside the tree")
        if np.any((feature[inner] < 0) | (feature[inner] >= n_features)):
            raise ForestArrayError(f"tree {i}: a split uses a feature outside 0..{n_features - 1}")


def arrays_to_trees(arrays: dict[str, np.ndarray], n_features: int) -> list:
    """scikit-learn `Tree` objects (compiled traversal) from checked arrays (see `check_arrays`)."""
    from sklearn.tree._tree import NODE_DTYPE, Tree

    check_arrays(arrays, n_features)
    offsets = arrays["offsets"]
    trees = []
    for i in range(len(offsets) - 1):
        sl = slice(int(offsets[i]), int(offsets[i + 1]))
        nodes = np.zeros(sl.stop - sl.start, dtype=NODE_DTYPE)  # impurity and sample counts: unused by predict
        nodes["left_child"], nodes["right_child"] = arrays["children_left"][sl], arrays["children_right"][sl]
        nodes["feature"], nodes["threshold"] = arrays["feature"][sl], arrays["threshold"][sl]
        tree = Tree(n_features, np.array([N_CLASSES], dtype=np.intp), 1)
        tree.__setstate__({"max_depth": int(arrays["max_depth"][i]), "node_count": len(nodes), "nodes": nodes,
                           "values": np.ascontiguousarray(arrays["value"][sl][:, None, :], dtype=np.float64)})
        trees.append(tree)
    return trees


def predict_artefact(trees: list, features: np.ndarray, workers: int | None = None) -> np.ndarray:
    """Mean artefact fraction of the trees' leaves for N x F float32 features -> float32 N.

    Each tree's compiled `predict` (N x classes for one output) releases the GIL, so threads run trees in parallel.
    """
    from concurrent.futures import ThreadPoolExecutor

    x = np.ascontiguousarray(features, dtype=np.float32)
    total = np.zeros(len(x), np.float64)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for part in pool.map(lambda t: t.predict(x)[:, 1], trees):
            total += part
    return (total / len(trees)).astype(np.float32)
