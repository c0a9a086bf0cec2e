"""Ignored pixels (ROI masks, ignore labels) are ignored by every loss and every metric.

Parametrised over the registries, so a loss added to ``list_losses()`` or a metric added to
``unetfamily.metrics.__all__`` / the score dictionaries is covered without editing this file:

- a loss gives the same value and a zero gradient whatever the logits at ignored pixels
  (garbage, +-inf, NaN), alone, under deep supervision and with the UNet3+ CGM head;
- a metric gives the same value whatever the prediction at ignored pixels, and a prediction
  that is wrong only there scores perfectly;
- an image whose every pixel is ignored is scored like an empty image;
- ignoring a border frame (a field-of-view mask) equals cropping it away.
"""
from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch

import unetfamily.metrics as metrics_pkg
from unetfamily.engine.score_order import lower_is_better
from unetfamily.losses import SegmentationCriterion, build_loss, list_losses
from unetfamily.metrics import SegmentationMetrics, per_image_scores

pytestmark = pytest.mark.usefixtures("single_thread")

N, H, W = 2, 32, 32
TASKS = {"binary": (1, 2), "3-class": (3, 3), "multilabel": (3, None)}  # logit channels, metric classes
IGNORE_INDICES = (255, -100)
#: Public names of ``unetfamily.metrics`` that drive the metrics rather than score two masks.
DRIVERS = {"SegmentationMetrics", "logits_to_labels", "per_image_scores", "scores_from_confusion"}
#: Keys of the score dictionaries that are counts or matrices, not scores.
COUNTS = {"confusion_matrix", "hd95_images", "hd95_undefined"}


def roi(seed: int, frame: int = 3) -> torch.Tensor:
    """(N, H, W) bool: True where ignored: a border frame (a field-of-view mask) and random discs."""
    g = torch.Generator().manual_seed(seed)
    ignored = torch.ones(N, H, W, dtype=torch.bool)
    ignored[:, frame:-frame, frame:-frame] = False
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    for i in range(N):
        for _ in range(3):
            cy, cx = torch.randint(0, H, (2,), generator=g).tolist()
            ignored[i] |= (yy - cy) ** 2 + (xx - cx) ** 2 <= int(torch.randint(2, 5, (1,), generator=g)) ** 2
    return ignored


def blobs(seed: int, classes: int) -> torch.Tensor:
    """(N, H, W) long: background with filled rectangles of classes 1..classes-1 (some cross the frame)."""
    g = torch.Generator().manual_seed(seed)
    target = torch.zeros(N, H, W, dtype=torch.long)
    for i in range(N):
        for c in range(1, classes):
            for _ in range(2):
                y, x = torch.randint(0, H - 8, (2,), generator=g).tolist()
                h, w = torch.randint(4, 12, (2,), generator=g).tolist()
                target[i, y : y + h, x : x + w] = c
    target[0, 0:12, 10:20] = 1  # an object cut by the field-of-view edge
    return target


def make_case(task: str, ignore_index: int, seed: int = 0):
    """(logits (N, C, H, W) float64, target with ignored pixels, ignored-element mask like the logits)."""
    channels, classes = TASKS[task]
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, channels, H, W, generator=g, dtype=torch.float64)
    ignored = roi(seed)
    if task == "multilabel":
        target = torch.stack([blobs(seed + c, 2) for c in range(channels)], 1).double()
        target = target.masked_fill(ignored.unsqueeze(1), ignore_index)
    else:
        target = blobs(seed, classes).masked_fill(ignored, ignore_index)
    return logits, target, ignored.unsqueeze(1).expand_as(logits)


def garbage(logits: torch.Tensor, where: torch.Tensor, kind: str, seed: int = 1) -> torch.Tensor:
    """``logits`` with ``where`` overwritten by large random values, or by +-inf / NaN."""
    g = torch.Generator().manual_seed(seed)
    noise = 1e4 * torch.randn(logits.shape, generator=g, dtype=logits.dtype)
    if kind == "nonfinite":
        noise = torch.where(noise > 0, math.inf, -math.inf)
        noise[..., ::5, :] = math.nan
    return torch.where(where, noise, logits)


# ----------------------------------------------------------------------------- losses


def _criterion(name: str, ignore_index: int, wrapped: str, channels: int):
    """(loss callable on raw logits, the model output it expects) for ``name`` as the config builds it."""
    small = {"win_size": 7} if name in ("ms_ssim", "hybrid_unet3p") else {}
    if wrapped == "plain":
        loss = build_loss(name, ignore_index=ignore_index, **small)
        return lambda x, t: loss(x, t)
    crit = SegmentationCriterion(name, num_classes=channels, ds_weights=[1.0, 0.5, 0.25], ignore_index=ignore_index,
                                 **small)
    cls = torch.tensor([[0.3, -0.2], [1.0, 0.5]], dtype=torch.float64)
    # Three deep-supervision heads (derived from the same logits so that ignored pixels line up) and CGM logits.
    return lambda x, t: crit(([x, 0.5 * x + 1, x.flip(1)], cls[-len(x):]), t)[0]  # the last images' CGM logits


@pytest.mark.parametrize("ignore_index", IGNORE_INDICES)
@pytest.mark.parametrize("wrapped", ["plain", "deep_supervision_cgm"])
@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("name", list_losses())
@pytest.mark.parametrize("kind", ["finite", "nonfinite"])
def test_loss_ignores_logits_at_ignored_pixels(name, task, wrapped, ignore_index, kind):
    logits, target, where = make_case(task, ignore_index)
    loss = _criterion(name, ignore_index, wrapped, logits.shape[1])
    x = logits.clone().requires_grad_(True)
    y = garbage(logits, where, kind).requires_grad_(True)
    a, b = loss(x, target), loss(y, target)
    (a + b).backward()
    assert torch.isfinite(a) and torch.isfinite(b)
    assert b.item() == pytest.approx(a.item(), abs=1e-10, rel=1e-10)
    for grad in (x.grad, y.grad):
        assert torch.isfinite(grad).all()
        assert grad[where].abs().max() == 0
        assert grad[~where].abs().max() > 0


@pytest.mark.parametrize("wrapped", ["plain", "deep_supervision_cgm"])
@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("name", list_losses())
def test_loss_with_every_pixel_ignored_is_finite_with_zero_gradient(name, task, wrapped):
    logits, target, where = make_case(task, 255)
    loss = _criterion(name, 255, wrapped, logits.shape[1])
    x = garbage(logits, torch.ones_like(where), "nonfinite").requires_grad_(True)
    value = loss(x, torch.full_like(target, 255))
    value.backward()
    assert torch.isfinite(value)
    assert x.grad.abs().max() == 0


# ----------------------------------------------------------------------------- metrics


def _binary_metrics() -> list[str]:
    """Every mask-pair metric exported by unetfamily.metrics (everything but the drivers)."""
    return sorted(set(metrics_pkg.__all__) - DRIVERS)


def _scores(output, target, classes: int, ignore_index: int) -> dict[str, torch.Tensor]:
    """Every per-image score and every aggregated score (prefixed ``set/``), all options on."""
    out = per_image_scores(output, target, classes, ignore_index=ignore_index, with_hd95=classes == 2,
                           nsd_tolerance=1.0, with_cldice=True)
    metric = SegmentationMetrics(classes, ignore_index=ignore_index, hd95=classes == 2)
    metric.update(output, target)
    out.update({f"set/{k}": v for k, v in metric.compute().items()})
    return out


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key].double(), b[key].double(), equal_nan=True, atol=1e-12), key


def _perfect(key: str) -> float:
    """The value of a perfect prediction for a score key."""
    return 0.0 if lower_is_better(key.split("/")[-1]) else 1.0


CLASS_TASKS = ["binary", "3-class"]


@pytest.mark.parametrize("ignore_index", IGNORE_INDICES)
@pytest.mark.parametrize("task", CLASS_TASKS)
def test_metrics_ignore_the_prediction_at_ignored_pixels(task, ignore_index):
    logits, target, where = make_case(task, ignore_index)
    classes = TASKS[task][1]
    _same(_scores(logits, target, classes, ignore_index),
          _scores(garbage(logits, where, "finite"), target, classes, ignore_index))
    _same(_scores(logits, target, classes, ignore_index),
          _scores(garbage(logits, where, "nonfinite"), target, classes, ignore_index))


@pytest.mark.parametrize("label_garbage", ["in_range", "out_of_range"])
@pytest.mark.parametrize("ignore_index", IGNORE_INDICES)
@pytest.mark.parametrize("task", CLASS_TASKS)
def test_prediction_wrong_only_at_ignored_pixels_scores_perfectly(task, ignore_index, label_garbage):
    _, target, where = make_case(task, ignore_index)
    classes = TASKS[task][1]
    ignored = where[:, 0]
    noise = torch.randint(0, classes, target.shape, generator=torch.Generator().manual_seed(3))
    if label_garbage == "out_of_range":  # e.g. the target itself, ignore value included, used as the prediction
        noise = torch.full_like(target, ignore_index)
    pred = torch.where(ignored, noise, target)
    scores = _scores(pred, target, classes, ignore_index)
    for key, value in scores.items():
        if key.split("/")[-1] in COUNTS:
            continue
        defined = value[~value.isnan()].double()  # NaN: class 0 of boundary scores, classes absent from an image
        assert defined.numel() > 0, key
        assert torch.allclose(defined, torch.full_like(defined, _perfect(key))), key
    assert scores["set/confusion_matrix"].sum() == int((~ignored).sum())
    if classes == 2:
        assert scores["set/hd95_undefined"] == 0 and scores["set/hd95_images"] == N


@pytest.mark.parametrize("task", CLASS_TASKS)
def test_every_pixel_ignored_scores_like_an_empty_image(task):
    """Foreground scores as for an empty target and prediction; scores that count background are NaN."""
    logits, target, where = make_case(task, 255)
    classes = TASKS[task][1]
    ignored = _scores(garbage(logits, where, "finite").argmax(1), torch.full_like(target, 255), classes, 255)
    empty = _scores(torch.zeros_like(target), torch.zeros_like(target), classes, 255)
    with_background = {"set/miou", "set/mdice", "set/pixel_accuracy", "set/confusion_matrix"}
    assert ignored.keys() == empty.keys()
    for key in ignored.keys() - with_background:
        a, b = ignored[key].double(), empty[key].double()
        if "per_class" in key:  # the background class: no pixel at all vs. every pixel right
            assert a[..., 0].isnan().all(), key
            a, b = a[..., 1:], b[..., 1:]
        assert torch.allclose(a, b, equal_nan=True), key
    assert ignored["set/confusion_matrix"].sum() == 0
    assert all(ignored[k].isnan() for k in with_background - {"set/confusion_matrix"})


@pytest.mark.parametrize("task", CLASS_TASKS)
def test_ignoring_a_border_frame_equals_cropping_it(task):
    logits, target, _ = make_case(task, 255)
    classes = TASKS[task][1]
    framed = target  # make_case ignores a 3-pixel frame (and a few discs)
    assert (framed[:, :3] == 255).all() and (framed[:, :, -3:] == 255).all()
    inner = (slice(None), slice(3, -3), slice(3, -3))
    pred = logits.argmax(1) if classes > 2 else (logits[:, 0] > 0).long()
    cropped = _scores(pred[inner], framed[inner], classes, 255)
    full = _scores(pred, framed, classes, 255)
    _same(full, cropped)


@pytest.mark.parametrize("name", _binary_metrics())
def test_every_mask_metric_takes_a_valid_mask(name):
    fn = getattr(metrics_pkg, name)
    assert "valid" in inspect.signature(fn).parameters, f"unetfamily.metrics.{name} must accept valid= (ROI masks)"
    _, target, where = make_case("binary", 255)
    valid = ~where[0, 0].numpy()
    t = target[0].numpy() == 1
    rng = np.random.default_rng(0)
    wrong_outside = np.where(valid, t, rng.random(t.shape) < 0.5)
    assert fn(wrong_outside, t, valid=valid) == pytest.approx(_perfect(name))
    other = np.where(valid, rng.random(t.shape) < 0.3, True)
    a, b = fn(other, t, valid=valid), fn(np.where(valid, other, False), t, valid=valid)
    assert a == pytest.approx(b, nan_ok=True)
    assert fn(other, t, valid=valid) != pytest.approx(_perfect(name))  # the valid region is scored


@pytest.mark.parametrize("wrapped", ["plain", "deep_supervision_cgm"])
@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("name", list_losses())
def test_a_fully_ignored_image_is_left_out_of_the_loss(name, task, wrapped):
    """A batch plus an image whose every pixel is ignored has the loss of the batch alone."""
    logits, target, _ = make_case(task, 255)
    loss = _criterion(name, 255, wrapped, logits.shape[1])
    with_blank = target.clone()
    with_blank[0] = 255
    assert loss(logits, with_blank).item() == pytest.approx(loss(logits[1:], target[1:]).item(), abs=1e-10)
