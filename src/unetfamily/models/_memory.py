"""Training-memory savers that keep results bit-identical: recomputation of cheap tensors, checkpointing.

Autograd keeps every tensor a backward formula needs. In the UNet family most of that memory
holds tensors that are CHEAP to recompute from others that are kept anyway:

- the output of BatchNorm + ReLU (kept for ReLU's backward and as the next conv's input) can be
  recomputed from the BatchNorm input, which BatchNorm's own backward keeps;
- an up-sampled or max-pooled feature fed to a conv (UNet3+ branches; the largest UNet3+ tensors
  are 1024-channel maps up-sampled 16x) can be recomputed from the small source;
- a channel concatenation fed to a conv (every decoder) can be recomputed from its parts.

``memory_saving="recompute"`` (:class:`SavedTensorRecipes`) stores a *recipe* instead of such a
tensor: ``torch.autograd.graph.saved_tensors_hooks`` swap the tensor for (function, arguments)
when autograd saves it and run the function when backward needs it. Recipes nest (a
concatenation of BN-ReLU outputs recomputes each part from its recipe), so the big tensors are
freed as soon as the forward pass moves on. The recomputation runs the very same kernels on the
very same inputs, so outputs and gradients are bit-identical to ``memory_saving="none"``; it
costs a few memory-bound passes (norm, resize, cat), no convolutions.

``memory_saving="checkpoint"`` goes further. UNet++ nested nodes go through
:func:`checkpoint_block`: only the node inputs are kept and the node, convolutions included,
is re-run in backward (``torch.utils.checkpoint``, non-reentrant). BatchNorm running statistics
are updated once: during the re-run, :func:`recomputing` is true and
:class:`~unetfamily.models._blocks.ConvNormAct` normalises without touching them. UNet3+
convolves each up-sampled source by groups of input channels so that no whole up-sampled map
ever exists (``unet_3plus._ResizeConv``; equal to rounding, not bit for bit, above 128 channels).

Both modes act only while gradients are recorded; inference is unaffected.
"""
from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

MemorySaving = Literal["none", "recompute", "checkpoint"]
MEMORY_SAVINGS = ("none", "recompute", "checkpoint")

_state = threading.local()


class _Recipe:
    """How to rebuild one tensor: ``fn(*args)`` under the autocast state of the forward pass.

    Several backward formulas may need the same tensor (ReLU's, the next conv's, a pooling's):
    ``uses`` counts the stored references and the rebuilt tensor is cached from the first
    :meth:`take` to the last, so it is computed once per backward pass.
    """

    __slots__ = ("fn", "args", "autocast", "uses", "cache", "__weakref__")

    def __init__(self, fn: Callable[..., Tensor], args: tuple, autocast: list[tuple[str, torch.dtype]]) -> None:
        self.fn, self.args, self.autocast = fn, args, autocast
        self.uses, self.cache = 0, None

    def get(self) -> Tensor:
        """The tensor, rebuilt (and cached while stored references remain) or from the cache."""
        if self.cache is not None:
            return self.cache
        out = self()
        if self.uses > 0:
            self.cache = out
        return out

    def take(self) -> Tensor:
        """The tensor for one stored reference; the cache is dropped after the last one."""
        out = self.get()
        self.uses -= 1
        if self.uses <= 0:
            self.cache = None
        return out

    def __call__(self) -> Tensor:
        args = tuple(a.get() if isinstance(a, _Recipe) else a for a in self.args)
        # Backward runs with gradients off, unless create_graph=True asked for a differentiable one.
        with contextlib.ExitStack() as stack:
            for device_type, dtype in self.autocast:
                stack.enter_context(torch.autocast(device_type, dtype=dtype))
            return self.fn(*args)


class _Saved:
    """What autograd stores for a packed tensor: the tensor itself, or (once known) its recipe."""

    __slots__ = ("tensor", "recipe")

    def __init__(self, tensor: Tensor) -> None:
        self.tensor: Tensor | None = tensor
        self.recipe: _Recipe | None = None

    def use(self, recipe: _Recipe) -> _Saved:
        """Drop the tensor and keep ``recipe`` instead (one more stored reference to it)."""
        self.tensor, self.recipe = None, recipe
        recipe.uses += 1
        return self


def _autocast_state() -> list[tuple[str, torch.dtype]]:
    return [(d, torch.get_autocast_dtype(d)) for d in ("cpu", "cuda") if torch.is_autocast_enabled(d)]


class SavedTensorRecipes:
    """Context for one forward pass: tensors given a recipe with :func:`remember` are not stored.

    A tensor may be saved by autograd before its recipe is known (an in-place ReLU saves its
    output while running); such saves are held as-is and switched to the recipe when it arrives.
    Tensors are matched by identity, checked through a weak reference, so a freed tensor's
    address reused by a new one never picks up a stale recipe.
    """

    def __init__(self) -> None:
        self._recipes: dict[int, tuple[weakref.ref, _Recipe]] = {}
        self._pending: dict[int, list[_Saved]] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def recipe_of(self, tensor: Tensor) -> _Recipe | None:
        entry = self._recipes.get(id(tensor))
        return entry[1] if entry is not None and entry[0]() is tensor else None

    def remember(self, tensor: Tensor, fn: Callable[..., Tensor], *args: Any) -> None:
        args = tuple(self.recipe_of(a) or a if isinstance(a, Tensor) else a for a in args)
        recipe = _Recipe(fn, args, _autocast_state())
        key = id(tensor)
        self._recipes[key] = (weakref.ref(tensor, lambda _ref, key=key: self._forget(key)), recipe)
        for saved in self._pending.pop(key, []):
            if saved.tensor is tensor:
                saved.use(recipe)

    def _forget(self, key: int) -> None:
        self._recipes.pop(key, None)
        self._pending.pop(key, None)

    def _pack(self, tensor: Tensor) -> _Saved | Tensor:
        recipe = self.recipe_of(tensor)
        if recipe is not None:
            return _Saved(tensor).use(recipe)
        if isinstance(tensor, torch.nn.Parameter) or tensor.grad_fn is None:
            return tensor  # weights and inputs: never given recipes
        saved = _Saved(tensor)
        self._pending.setdefault(id(tensor), []).append(saved)
        return saved

    @staticmethod
    def _unpack(saved: _Saved | Tensor) -> Tensor:
        if isinstance(saved, Tensor):
            return saved
        return saved.tensor if saved.recipe is None else saved.recipe.take()

    def __enter__(self) -> SavedTensorRecipes:
        self._previous = getattr(_state, "recipes", None)
        _state.recipes = self
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)
        _state.recipes = self._previous
        self._pending.clear()


def remember(tensor: Tensor, fn: Callable[..., Tensor], *args: Any) -> Tensor:
    """Declare ``tensor == fn(*args)`` (bit for bit) so that autograd may store the recipe instead.

    A no-op outside a ``memory_saving="recompute"`` forward pass. Returns ``tensor``.
    """
    recipes = getattr(_state, "recipes", None)
    if recipes is not None and not recomputing():
        recipes.remember(tensor, fn, *args)
    return tensor


def _cat(*parts: Tensor) -> Tensor:
    return torch.cat(parts, dim=1)


def cat_channels(parts: list[Tensor] | tuple[Tensor, ...]) -> Tensor:
    """``torch.cat(parts, dim=1)``, recomputed from the parts in backward under memory saving."""
    return remember(_cat(*parts), _cat, *parts)


def recomputing() -> bool:
    """True while a checkpointed block is being re-run in backward."""
    return getattr(_state, "recomputing", False)


@contextlib.contextmanager
def _recompute_flag() -> Iterator[None]:
    previous = recomputing()
    _state.recomputing = True
    try:
        yield
    finally:
        _state.recomputing = previous


def active_mode() -> MemorySaving:
    """The memory-saving mode of the forward pass being run ("none" when gradients are off)."""
    return getattr(_state, "saving", "none") if torch.is_grad_enabled() else "none"


def _rerun_in_backward(fn: Callable[..., Tensor], *args: Tensor) -> Tensor:
    """``fn(*args)`` keeping only ``args`` for backward, where it is re-run with :func:`recomputing` true."""
    return checkpoint(fn, *args, use_reentrant=False,
                      context_fn=lambda: (contextlib.nullcontext(), _recompute_flag()))


def checkpoint_block(fn: Callable[..., Tensor], *args: Tensor) -> Tensor:
    """``fn(*args)``, keeping only ``args`` for backward (re-run there) under "checkpoint"; else plain."""
    if active_mode() != "checkpoint":
        return fn(*args)
    return _rerun_in_backward(fn, *args)


def rerun_block(fn: Callable[..., Tensor], *args: Tensor) -> Tensor:
    """``fn(*args)``, re-run in backward (only ``args`` kept) under "recompute" and "checkpoint"; else plain.

    For blocks whose stored tensors cost more memory than their re-run costs time (wide maps, few
    channels): the re-run executes the same kernels on the same inputs, so results stay bit-identical.
    """
    if active_mode() == "none":
        return fn(*args)
    return _rerun_in_backward(fn, *args)


@contextlib.contextmanager
def memory_saving(mode: MemorySaving) -> Iterator[None]:
    """Run a forward pass under ``mode`` ("none", "recompute" or "checkpoint"; see the module docstring).

    "checkpoint" also applies the "recompute" recipes outside the checkpointed blocks.
    """
    previous = getattr(_state, "saving", "none")
    _state.saving = mode
    try:
        if torch.compiler.is_compiling():
            _state.saving = "none"
            yield
        elif mode == "none" or not torch.is_grad_enabled():
            yield
        else:
            with SavedTensorRecipes():
                yield
    finally:
        _state.saving = previous
