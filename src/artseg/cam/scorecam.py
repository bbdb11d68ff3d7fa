"""Score-CAM (Wang et al., CVPR-W 2020, arXiv v2 Algorithm 1), written for speed.

Definition (every choice written down, because public implementations disagree):

1. `A = f_l(X)`: activations of `target_layer` for the input X (B, K, h, w), taken by a forward hook
   registered for this first pass only (the masked passes run hook-free: no activation copies).
2. Channels whose activation map is constant (`max == min`, exactly, at feature resolution) are
   skipped: their normalised mask is undefined (0/0). They are never forwarded and get weight 0
   (as in the authors' code; pytorch-grad-cam forwards them with an all-zero mask instead). A map
   that upsampling rounds to a constant is skipped the same way (never seen, but 0/0 otherwise).
3. Mask `M_k = s(Up(A_k))`: bilinear upsampling to the input size with `align_corners=False`
   (half-pixel centres: the convention of OpenCV, PIL and the authors' code, and the one used for the
   final map, so masks and map agree), *then* min-max normalisation `s` to [0, 1] (upsample first,
   as the paper and grad-cam do; torch-cam normalises first, which differs at the borders).
4. Score `S_k = f_c(X * M_k) - f_c(X_b)` with an all-zero baseline `X_b`. For a binary classifier with
   one logit, `f_c` is that (artefact) logit; for several outputs, the logit of `target_class` (default:
   the class predicted for the unmasked image). Raw logits, not probabilities.
5. `alpha = softmax_k(S_k)` over the non-skipped channels (v2 of the paper; v1 used a softmax over
   classes, which degenerates for a single logit). The baseline term is a per-image constant and
   cancels in the softmax, so it is not computed (one forward pass saved, identical result).
6. `L = ReLU(sum_k alpha_k A_k)` at feature resolution (paper, grad-cam, the study's Keras code), then
   bilinear upsampling (`align_corners=False`) to the input size, then min-max normalisation to [0, 1].
   A map that is constant after the ReLU (e.g. all channels skipped) is returned as all zeros.

Speed (pytorch-grad-cam syncs the host once per channel, copies activations in its hooks during every
masked pass and materialises all B*K masked inputs at once): masked inputs are built chunk by chunk
(`chunk_size` (image, channel) pairs per forward pass, channels of several images share a batch),
scores stay on the device, and there is one host sync per call (selecting the non-constant channels).
`dtype=torch.bfloat16` runs the masked passes under autocast (GPU speed; results then differ slightly).
`channels_last` (default: on CPU, and on GPU with a reduced `dtype`) stores the model's weights NHWC
for the duration of the call (restored afterwards): oneDNN's NHWC convolutions are faster on CPU
(docs/weak-supervision.md); logits change by ~1e-8.
`fold_bn` (default on) runs the masked passes through a copy of the model with each batch norm folded
into the convolution before it (torch.fx `fuse`; eval-mode batch norm is an affine map, so this is
the same function up to float rounding, ~1e-7 on the maps) and saves a memory pass per layer; a model
torch.fx cannot trace keeps its original modules. The first (hooked) pass always uses the model itself.
`compile` (default off) runs the masked passes through `torch.compile` (inductor, weights frozen as
constants, the batch dimension marked dynamic so that the last, shorter chunk does not recompile;
zero-padding it to a static shape was measured slower: wasted forwards). It needs a C++ compiler at
run time and costs seconds of compilation per input size (docs/weak-supervision.md), so it pays off
only over many images of one size (the `scorecam` pipeline's tiles); the compiled copy is kept between calls and rebuilt when the
model's weights change (speed-up over eager and identical maps: docs/weak-supervision.md). Without a working compiler
it warns once and runs eagerly.
`top_k` keeps only the k non-constant channels of largest activation variance ("Faster Score-CAM",
as in the Keras implementation the study used); the others get weight 0. Not exact: measured in
benchmarks/scorecam_speed.py.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ScoreFn = Callable[[Tensor], Tensor]  # model output for n masked images -> (n,) class scores


@dataclass
class ScoreCAMResult:
    """Maps and the quantities behind them (kept for diagnostics and tests)."""

    maps: Tensor  # (B, H, W) float32 in [0, 1]
    weights: Tensor  # (B, K) softmax weights; 0 for skipped channels
    scores: Tensor  # (B, K) masked-input scores; NaN for skipped channels
    logits: Tensor  # model output for the unmasked input (B, ...)
    activations: Tensor  # (B, K, h, w) target-layer activations


def upsample(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """(N, 1, h, w) -> (N, 1, H, W), bilinear with half-pixel centres (align_corners=False)."""
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def normalise_maps(maps: Tensor) -> Tensor:
    """(B, H, W) -> each map min-max normalised to [0, 1]; a constant map becomes all zeros."""
    lo = maps.amin(dim=(1, 2), keepdim=True)
    hi = maps.amax(dim=(1, 2), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (maps - lo) / torch.where(span > 0, span, 1.0), torch.zeros_like(maps))


@contextmanager
def _channels_last(model: nn.Module) -> Iterator[None]:
    """Temporarily store the model's 4-D weights channels-last (NHWC), restoring them afterwards.

    oneDNN's NHWC convolutions run faster on CPU (docs/weak-supervision.md), with logits equal up to
    float rounding. Done outside inference mode so that the restored parameters are
    ordinary tensors that can still be trained.
    """
    changed = []
    with torch.no_grad():
        for t in itertools.chain(model.parameters(), model.buffers()):
            if t.ndim == 4 and not t.is_contiguous(memory_format=torch.channels_last):
                changed.append((t, t.data))  # the original storage: restored as it was (same address)
                t.data = t.data.contiguous(memory_format=torch.channels_last)
    try:
        yield
    finally:
        with torch.no_grad():
            for t, original in changed:
                t.data = original


def _apply_masks(masks: Tensor, x: Tensor, images: Tensor) -> Tensor:
    """masks (n, 1, H, W) * their images, without gathering a copy of x per mask.

    Pairs come sorted by image, so a chunk holds contiguous runs of the same image; one-channel
    inputs are multiplied in place (the mask buffer becomes the masked batch).
    """
    out = masks if x.shape[1] == 1 else masks.new_empty((masks.shape[0], x.shape[1], *masks.shape[2:]))
    ids, counts = torch.unique_consecutive(images, return_counts=True)
    start = 0
    for i, n in zip(ids.tolist(), counts.tolist()):
        torch.mul(masks[start : start + n], x[i : i + 1], out=out[start : start + n])
        start += n
    return out


def _folded_copy(model: nn.Module, channels_last: bool) -> nn.Module:
    """An eval copy of `model` with batch norms folded into their convolutions (or `model` itself
    when torch.fx cannot trace it). Built per call, so later weight updates are always seen."""
    from torch.fx.experimental.optimization import fuse

    try:
        fast = fuse(model, inplace=False)
    except Exception:  # data-dependent control flow etc.: the unfused model computes the same maps
        return model
    return fast.to(memory_format=torch.channels_last) if channels_last else fast


class ScoreCAM:
    """Score-CAM saliency maps for `model` at `target_layer` (see the module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        target_layer: nn.Module,
        score_fn: ScoreFn | None = None,
        chunk_size: int = 64,
        top_k: int | None = None,
        dtype: torch.dtype | None = None,
        target_class: int | None = None,
        channels_last: bool | None = None,
        fold_bn: bool = True,
        compile: bool = False,
    ):
        if chunk_size < 1:
            raise ValueError(f"ScoreCAM: chunk_size must be >= 1, got {chunk_size}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"ScoreCAM: top_k must be >= 1 or None, got {top_k}")
        if dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"ScoreCAM: dtype must be None, float32, bfloat16 or float16, got {dtype}")
        self.model = model
        self.target_layer = target_layer
        self.score_fn = score_fn
        self.chunk_size = chunk_size
        self.top_k = top_k
        self.dtype = None if dtype == torch.float32 else dtype
        self.target_class = target_class
        self.channels_last = channels_last
        self.fold_bn = fold_bn
        self.compile = compile
        self._compiled: tuple[tuple, Callable] | None = None  # (weights key, compiled masked-pass network)

    def __call__(self, x: Tensor) -> Tensor:
        """(B, C, H, W) input -> (B, H, W) float32 saliency maps in [0, 1] on the input's device."""
        return self.explain(x).maps

    # --- internals ------------------------------------------------------------------------------
    def _first_pass(self, x: Tensor) -> tuple[Tensor, Tensor]:
        captured: list[Tensor] = []

        def hook(_module, _inputs, output):
            # Copy: a later in-place op (e.g. ReLU(inplace=True)) must not change the captured maps.
            captured.append(output.detach().to(torch.float32, copy=True) if isinstance(output, Tensor) else output)

        handle = self.target_layer.register_forward_hook(hook)
        try:
            logits = self.model(x)
        finally:
            handle.remove()  # the masked passes must not pay for activation copies
        if len(captured) != 1 or not isinstance(captured[0], Tensor) or captured[0].ndim != 4:
            raise ValueError("ScoreCAM: target_layer must run once per forward and output a (B, K, h, w) tensor")
        return captured[0], logits

    def _scorer(self, logits: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
        """(output of n masked images, their image indices) -> (n,) scores."""
        if self.score_fn is not None:
            fn = self.score_fn
            return lambda out, _b: fn(out).reshape(-1)
        flat = logits.reshape(logits.shape[0], -1)
        if flat.shape[1] == 1:
            return lambda out, _b: out.reshape(out.shape[0], -1)[:, 0]
        if self.target_class is not None:
            c = self.target_class
            return lambda out, _b: out.reshape(out.shape[0], -1)[:, c]
        classes = flat.argmax(dim=1)
        return lambda out, b: out.reshape(out.shape[0], -1).gather(1, classes[b][:, None])[:, 0]

    def _selected(self, acts: Tensor) -> Tensor:
        """(B, K) bool: channels to forward (non-constant, and among the top-k by variance)."""
        flat = acts.flatten(2)
        lo, hi = flat.aminmax(dim=2)
        keep = hi > lo
        if self.top_k is not None and self.top_k < acts.shape[1]:
            var = flat.var(dim=2).masked_fill(~keep, -float("inf"))
            top = var.topk(self.top_k, dim=1).indices
            in_top = torch.zeros_like(keep).scatter_(1, top, True)
            keep &= in_top
        return keep

    def explain(self, x: Tensor) -> ScoreCAMResult:
        """Maps plus weights, scores, logits and activations."""
        if x.ndim != 4:
            raise ValueError(f"ScoreCAM: expected a (B, C, H, W) input, got shape {tuple(x.shape)}")
        was_training = self.model.training
        self.model.eval()  # batch-norm statistics must not depend on the masked batch
        use_cl = self.channels_last if self.channels_last is not None else (x.device.type == "cpu" or self.dtype is not None)
        key = self._weights_key(use_cl) if self.compile else ()  # before the layout change moves the storage
        try:
            with _channels_last(self.model) if use_cl else nullcontext():
                with torch.inference_mode():
                    return self._explain(x, use_cl, key)
        finally:
            self.model.train(was_training)

    def _weights_key(self, use_cl: bool) -> tuple:
        """Changes whenever a weight is replaced or updated in place (the tensor version counter)."""
        tensors = itertools.chain(self.model.parameters(), self.model.buffers())
        return (use_cl, self.fold_bn, *((t.data_ptr(), t._version) for t in tensors))

    def _masked_net(self, use_cl: bool, key: tuple) -> Callable[[Tensor], Tensor]:
        """The network for the masked passes: eager (folded) copy, or its cached compiled version."""
        if not self.compile:
            return _folded_copy(self.model, use_cl) if self.fold_bn else self.model
        if self._compiled is None or self._compiled[0] != key:
            import copy

            fast = _folded_copy(self.model, use_cl) if self.fold_bn else copy.deepcopy(self.model)
            self._compiled = (key, torch.compile(fast, options={"freezing": True}))
        return self._compiled[1]

    def _forward_masked(self, net: Callable[[Tensor], Tensor], masked: Tensor) -> Tensor | None:
        """Outputs for the masked inputs; None when compilation failed (then `compile` is off)."""
        if not self.compile:
            return net(masked)
        torch._dynamo.mark_dynamic(masked, 0)  # one compiled graph for every chunk length
        try:
            return net(masked)
        except Exception as err:  # no C++ compiler, unsupported op...: the same maps, eagerly
            warnings.warn(f"ScoreCAM: torch.compile failed ({type(err).__name__}: {err}); running eagerly", stacklevel=3)
            self.compile, self._compiled = False, None
            return None

    def _explain(self, x: Tensor, use_cl: bool, key: tuple = ()) -> ScoreCAMResult:
        x = x.float()
        if use_cl:
            x = x.contiguous(memory_format=torch.channels_last)
        size = (x.shape[-2], x.shape[-1])
        acts, logits = self._first_pass(x)
        net = self._masked_net(use_cl, key)
        B, K = acts.shape[:2]
        scorer = self._scorer(logits)
        keep = self._selected(acts)
        pairs = keep.nonzero().cpu()  # the one host sync: which (image, channel) pairs to forward
        scores = torch.full((B, K), -float("inf"), device=x.device)
        autocast = (
            torch.autocast(device_type=x.device.type, dtype=self.dtype) if self.dtype is not None else nullcontext()
        )
        for chunk in pairs.split(self.chunk_size) if len(pairs) else ():
            b, k = chunk[:, 0].to(x.device), chunk[:, 1].to(x.device)
            masks = upsample(acts[b, k][:, None], size)  # (n, 1, H, W)
            lo = masks.amin(dim=(2, 3), keepdim=True)
            hi = masks.amax(dim=(2, 3), keepdim=True)
            span = hi - lo  # > 0 unless upsampling rounded a near-constant map flat: then skip it too
            masks.sub_(lo).div_(torch.where(span > 0, span, 1.0))
            masked = _apply_masks(masks, x, chunk[:, 0])  # (n, C, H, W), one chunk at a time
            del masks
            if use_cl:
                masked = masked.contiguous(memory_format=torch.channels_last)
            with autocast:
                out = self._forward_masked(net, masked)
                if out is None:
                    net = self._masked_net(use_cl, key)
                    out = net(masked)
            scores[b, k] = torch.where(span.reshape(-1) > 0, scorer(out, b).float(), -float("inf"))
        keep &= scores > -float("inf")
        any_kept = keep.any(dim=1, keepdim=True)
        weights = torch.where(any_kept, torch.softmax(scores, dim=1), torch.zeros_like(scores))
        cam = torch.relu(torch.einsum("bk,bkhw->bhw", weights, acts))
        maps = normalise_maps(upsample(cam[:, None], size)[:, 0])
        return ScoreCAMResult(
            maps=maps,
            weights=weights,
            scores=scores.masked_fill(~keep, float("nan")),
            logits=logits,
            activations=acts,
        )
