"""The rules that turn a dataset :class:`~unetfamily.data.fingerprint.Fingerprint` into a training recipe.

Each rule is a small pure function returning a :class:`Choice`: the value and the reason, in words, that
the plan file and the compare report show beside it. docs/plan.md states every rule, the constant it
uses, and where it follows nnU-Net (Isensee et al., Nature Methods 2021) or departs from it. The rules
that depend on the device (patch and batch size, the number of steps) are in :mod:`unetfamily.plan.fit`;
they use the measured cost of a training step, and these rules only for what the data alone decides.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from unetfamily.data.base import class0_is_background
from unetfamily.data.fingerprint import THIN_BOUNDARY, THIN_WIDTH, UP_ASYMMETRY, UP_SIGNIFICANCE, Fingerprint

__all__ = [
    "Choice", "DIVISOR", "FOREGROUND_OVERSAMPLING", "MAJOR_SHARE", "STEPS_PER_EPOCH",
    "THIN_BOUNDARY", "THIN_WIDTH", "UP_ASYMMETRY", "augmentation", "class_weights", "content_classes",
    "foreground_oversampling", "layer_norm", "major_classes", "normalization", "one_size", "optimizer", "round_patch",
    "scale",
]

#: Patch sides are multiples of this: five 2x down-samplings (every family's deepest level) divide them.
DIVISOR = 32
#: nnU-Net's "epoch": a fixed number of iterations, whatever the dataset size.
STEPS_PER_EPOCH = 250
#: nnU-Net forces a third of the patches to contain foreground.
FOREGROUND_OVERSAMPLING = 1 / 3
#: A content class holding this share of the content pixels is major: it sets the context the patch must hold.
MAJOR_SHARE = 0.1
#: Down-scaling keeps the typical object of every content class at least this many pixels (the object a
#: median pixel belongs to, not the smallest objects: a noisy mask's one-pixel specks would forbid any scaling).
MIN_OBJECT_AREA = 64.0
#: ... and the major classes' typical width at least this many pixels (structures must stay resolvable).
MIN_WIDTH = 4.0
#: A patch should hold a typical large object this many times over (the object and its surroundings).
CONTEXT = 2.0
#: A major class's object size following the image size this closely (rank correlation, the fingerprint's
#: ``size_follows``): the images were taken at several magnifications; resize them all to one size ...
SIZE_FOLLOWS = 0.5
#: ... when their sides vary by at least this factor (90th over 10th percentile of the size sample).
SIZE_SPREAD = 1.25
#: Percentile range narrower than this many standard deviations: heavy tails, clip before normalising.
HEAVY_TAIL_RANGE = 3.0
#: Classes rarer than this share of the labelled pixels get a larger cross-entropy weight.
RARE_FRACTION = 0.01
MAX_CLASS_WEIGHT = 10.0
#: Below this batch, normalisation layers use each sample's own statistics (instance normalisation).
SMALL_BATCH = 8


@dataclass(frozen=True)
class Choice:
    """One value of the recipe and why the rules chose it."""

    value: Any
    reason: str


def content_classes(fp: Fingerprint) -> list[str]:
    """The classes that are content, not background: all but index 0 when the data has a background there.

    Index 0 is a background as the data config declares (``background: true/false``), else when the task is
    binary or the class is named like one (``background``, ``bg``, ``_background_``, any case; see
    :func:`unetfamily.data.base.class0_is_background`); a scene's first class ("sky" in CamVid) is content.
    """
    return list(fp.classes[1:]) if class0_is_background(fp.classes, fp.background) else list(fp.classes)


def _share(fp: Fingerprint, classes: list[str]) -> dict[str, float]:
    fractions = {c: float(fp.class_fraction.get(c) or 0.0) for c in classes}
    total = sum(fractions.values())
    return {c: f / total if total > 0 else 0.0 for c, f in fractions.items()}


def major_classes(fp: Fingerprint) -> list[str]:
    """Content classes holding at least :data:`MAJOR_SHARE` of the content pixels."""
    return [c for c, s in _share(fp, content_classes(fp)).items() if s >= MAJOR_SHARE]


def round_patch(side: float, lo: int = DIVISOR) -> int:
    """``side`` rounded up to a multiple of :data:`DIVISOR`, at least ``lo``."""
    return max(lo, int(math.ceil(side / DIVISOR)) * DIVISOR)


def _typical(fp: Fingerprint, name: str, key: str) -> float | None:
    """A class's per-pixel object median ``pixel_<key>`` (``median_<key>`` in fingerprints without it)."""
    o = fp.objects.get(name) or {}
    return o.get(f"pixel_{key}") or o.get(f"median_{key}")


def scale(fp: Fingerprint, patch: int) -> Choice:
    """The factor images are resized by, given a patch side ``patch`` the budget affords at native size.

    The major content classes (:func:`major_classes`) set the context: the object a typical pixel of
    theirs belongs to should fit the patch :data:`CONTEXT` times over. Native resolution when it does,
    or when a major class is thin (down-scaling would erase it). Otherwise down-scale so it fits, but
    never past the point where the median image's shorter side fills the patch, nor so far that a
    content class's typical object falls under :data:`MIN_OBJECT_AREA` pixels or a major class's width
    under :data:`MIN_WIDTH` pixels. A minor thin class (a scene's poles) gives up its width: the
    context of the classes holding most pixels comes first.
    """
    major, content = major_classes(fp), content_classes(fp)
    thin = [c for c in major if fp.is_thin(c)]
    if thin:
        return Choice(1.0, f"native resolution: {', '.join(thin)} is drawn in thin lines (boundary fraction >= "
                           f"{THIN_BOUNDARY} or width <= {THIN_WIDTH:g} px) that down-scaling would erase")
    extents = {c: e for c in major if (e := _typical(fp, c, "extent"))}
    if not extents:
        return Choice(1.0, "native resolution: no foreground objects to size the patch by")
    widest = max(extents, key=extents.get)  # type: ignore[arg-type]
    extent = extents[widest]
    if CONTEXT * extent <= patch:
        return Choice(1.0, f"native resolution: a typical {widest} object ({extent:.0f} px across) fits a {patch} px "
                           f"patch {CONTEXT:g} times over")
    areas = [a for c in content if (a := _typical(fp, c, "area"))]
    widths = [w for c in major if (w := (fp.width or {}).get(c))]
    bounds = {"context": patch / (CONTEXT * extent), "image": patch / max(1, min(fp.size_median)),
              "smallest": math.sqrt(MIN_OBJECT_AREA / min(areas)) if areas else 0.0,
              "width": MIN_WIDTH / min(widths) if widths else 0.0}
    binding = max(bounds, key=bounds.get)  # type: ignore[arg-type]
    factor = math.ceil(min(1.0, bounds[binding]) * 20) / 20  # steps of 0.05: readable, never below the bound
    if factor >= 1.0:
        why = {"context": "the typical object nearly fits (within 5%)",
               "smallest": f"down-scaling would shrink a class's typical objects below {MIN_OBJECT_AREA:g} px",
               "width": f"down-scaling would make a major class narrower than {MIN_WIDTH:g} px",
               "image": "the median image is no larger than a patch"}[binding]
        return Choice(1.0, f"native resolution: {why}")
    held = {"context": "", "smallest": f" (as far as every class's typical objects keep {MIN_OBJECT_AREA:g} px)",
            "width": f" (as far as the major classes keep {MIN_WIDTH:g} px of width)",
            "image": " (as far as the median image's shorter side fills the patch)"}[binding]
    return Choice(factor, f"x{factor:g}: so that a typical {widest} object ({extent:.0f} px across) fits a {patch} px "
                          f"patch {CONTEXT:g} times over{held}")


def _side_spread(fp: Fingerprint) -> float:
    """The 90th over the 10th percentile of the image side ``sqrt(H W)`` (size sample; else largest/smallest)."""
    sample = fp.size_sample or [fp.size_min, fp.size_max]
    sides = sorted(math.sqrt(h * w) for h, w in sample)
    lo, hi = sides[round(0.1 * (len(sides) - 1))], sides[round(0.9 * (len(sides) - 1))]
    return hi / max(lo, 1e-9)


def _spread_words(fp: Fingerprint, spread: float) -> str:
    """Why the sizes do not call for one size, true of every size: most sides agree; say so if a few do not."""
    extremes = math.sqrt(fp.size_max[0] * fp.size_max[1]) / max(1e-9, math.sqrt(fp.size_min[0] * fp.size_min[1]))
    words = f"most image sides barely vary (90th over 10th percentile x{spread:.2f} < {SIZE_SPREAD:g})"
    if extremes >= SIZE_SPREAD:
        words += (f", although the largest image ({'x'.join(map(str, fp.size_max))}) has x{extremes:.3g} the side "
                  f"of the smallest ({'x'.join(map(str, fp.size_min))})")
    return f"every image is {'x'.join(map(str, fp.size_min))}" if list(fp.size_min) == list(fp.size_max) else words


def one_size(fp: Fingerprint, image: tuple[int, int]) -> Choice:
    """``[H, W]`` (``image``, the median image at the plan's scale) to resize every image to, or ``None``.

    One scale for all images keeps each object as large as its picture shows it. When the images were
    taken at several magnifications, a larger image shows larger objects (DSB2018: nuclei 2-3x wider in
    the 1024 px images than in the 256 px ones), so one scale trains the model on objects of every
    size. When every major class's objects grow with the image (``size_follows`` >= :data:`SIZE_FOLLOWS`)
    and the image sides vary by :data:`SIZE_SPREAD` or more, every image is resized to the median image's
    size: as nnU-Net resamples every case to the median voxel spacing, with the image size standing in
    for a spacing the files do not record (prediction resizes alike and resizes the output back).
    """
    follows = {c: r for c in major_classes(fp) if (r := (fp.size_follows or {}).get(c)) is not None}
    spread = _side_spread(fp)
    if not follows or spread < SIZE_SPREAD:
        return Choice(None, "one scale for every image: " + (_spread_words(fp, spread) if spread < SIZE_SPREAD
                            else "too few images of different sizes to tell whether object size follows image size"))
    weakest = min(follows, key=follows.get)  # type: ignore[arg-type]
    if follows[weakest] < SIZE_FOLLOWS:
        return Choice(None, f"one scale for every image: {weakest} objects do not grow with the image (rank "
                            f"correlation {follows[weakest]:.2f} < {SIZE_FOLLOWS}); a larger image shows more, not larger")
    return Choice([int(image[0]), int(image[1])],
                  f"every image resized to {image[0]}x{image[1]} (the median image): {', '.join(follows)} objects grow "
                  f"with the image (rank correlation {follows[weakest]:.2f} >= {SIZE_FOLLOWS}) and image sides vary "
                  f"{spread:.1f}x, so the images were taken at several magnifications; one size brings their "
                  f"objects to one size (nnU-Net resamples to the median spacing)")


def normalization(fp: Fingerprint) -> Choice:
    """Per-channel z-score with the dataset's mean and std; clipped to the 0.5-99.5 percentiles if heavy-tailed."""
    stats = fp.intensity
    mean = [float(s["mean"]) for s in stats]
    std = [max(float(s["std"]), 1e-6) for s in stats]
    heavy = [i for i, s in enumerate(stats) if (s["p99_5"] - s["p00_5"]) < HEAVY_TAIL_RANGE * std[i]]
    clip = None
    reason = "per-channel z-score with the training images' mean and std (nnU-Net's rule for non-CT images)"
    if heavy:
        clip = [min(float(stats[i]["p00_5"]) for i in range(len(stats))),
                max(float(stats[i]["p99_5"]) for i in range(len(stats)))]
        reason += (f"; clipped to the 0.5-99.5 percentiles first, because channel(s) {heavy} are heavy-tailed "
                   f"(percentile range < {HEAVY_TAIL_RANGE:g} std)")
    return Choice({"mean": mean, "std": std, "clip": clip}, reason)


def augmentation(fp: Fingerprint) -> Choice:
    """``natural`` when the images have an up (scenes: :meth:`Fingerprint.has_up`, halves that differ beyond what the
    images' own flips give), else ``medical`` (any orientation is plausible)."""
    asym, p = fp.vertical_asymmetry, fp.vertical_asymmetry_p
    tested = "" if p is None else f", flip test p {p:.2g} < {UP_SIGNIFICANCE}"
    if fp.has_up():
        return Choice("natural", f"natural (horizontal flips, scale, colour): the top and bottom halves hold different "
                                 f"classes (asymmetry {asym:.2f} > {UP_ASYMMETRY}{tested}), so the images have an up")
    if asym > UP_ASYMMETRY:  # p is not small: the images' own flips differ as much
        return Choice("medical", f"medical (flips, rotations, elastic, intensity): the top and bottom halves differ "
                                 f"(asymmetry {asym:.2f}), but as much as {fp.cases} image(s) turned upside down at "
                                 f"random would (flip test p {p:.2g} >= {UP_SIGNIFICANCE}); an up needs images laid "
                                 "out alike, at least 6")
    return Choice("medical", f"medical (flips, rotations, elastic, intensity): no up in the images (asymmetry "
                             f"{asym:.2f} <= {UP_ASYMMETRY}), as in microscopy and endoscopy")


def layer_norm(batch: int) -> Choice:
    """The models' normalisation layers at a fitted ``batch``: instance below SMALL_BATCH, else batch.

    BatchNorm trains on the statistics of the batch and evaluates with their running averages; a few
    patches of a dataset that mixes imaging modalities (dark fluorescence, bright histology) give
    batch statistics far from those averages, so a model validates unlike it trains. Instance
    normalisation uses each sample's own statistics in training and evaluation alike (nnU-Net's
    choice with its batch of 2).
    """
    if batch < SMALL_BATCH:
        return Choice("instance", f"instance normalisation: at batch {batch} (< {SMALL_BATCH}) batch statistics are "
                                  "too noisy for BatchNorm's running averages (nnU-Net)")
    return Choice("batch", f"BatchNorm: batch {batch} (>= {SMALL_BATCH}) gives stable batch statistics")


def foreground_oversampling(patch: tuple[int, int], image: tuple[int, int], preset: str | None = None) -> Choice:
    """A third of the patches forced to contain foreground when patches are smaller than the images.

    Also when a patch holds the whole median image under the ``natural`` ``preset``: without foreground crops
    that preset takes a random resized crop, which stretches a part of each image to the patch (an 8x8 image
    to a 64 px patch: objects 8x wider than validation shows them); with them each image is padded to the
    patch at its own scale (ignore-labelled), as the plan's scale rule assumes.
    """
    if patch[0] >= image[0] and patch[1] >= image[1]:
        if preset == "natural":
            stretch = max(p / max(s, 1) for p, s in zip(patch, image))
            return Choice(FOREGROUND_OVERSAMPLING, (
                f"a third of the patches contain foreground although a patch holds the whole median image: "
                f"natural augmentation without foreground crops stretches a random part of each image to the "
                f"{patch[0]}x{patch[1]} patch (the median {image[0]}x{image[1]} image's objects stretched "
                f"x{stretch:.2g} or more along one side, unlike validation); with them every image keeps the plan's "
                f"scale, padded to the patch"))
        return Choice(0.0, "none: a patch holds the whole median image")
    return Choice(FOREGROUND_OVERSAMPLING, "a third of the patches contain foreground (nnU-Net), so sparse classes "
                                           "are seen although random patches would often miss them")


def class_weights(fp: Fingerprint) -> Choice:
    """Cross-entropy weights for rare classes (Dice already balances the rest): ``{}`` when none is rare.

    Binary: ``{"pos_weight": w}``, or ``1 / w`` when class 0 is the rare one (the positives weigh less, so
    the negatives weigh w times more); multi-class: ``{"weight": [w_0, ..., w_K-1]}``; w = sqrt(RARE /
    fraction), between 1 and :data:`MAX_CLASS_WEIGHT`. A class with no training pixels gets none: the
    loss has no pixel of it to weigh, and the reason says it is absent rather than rare.
    """
    def weight(fraction: float) -> float:
        if fraction >= RARE_FRACTION or fraction <= 0:
            return 1.0
        return round(min(MAX_CLASS_WEIGHT, math.sqrt(RARE_FRACTION / fraction)), 3)

    fractions = [float(fp.class_fraction.get(c) or 0.0) for c in fp.classes]
    weights = [weight(f) for f in fractions]
    rare = [c for c, w in zip(fp.classes, weights) if w > 1.0]
    absent = [c for c, f in zip(fp.classes, fractions) if f <= 0]
    note = (f"; {', '.join(absent)} {'has' if len(absent) == 1 else 'have'} no pixels in the training masks, so no "
            f"weight" if absent else "")
    if not rare:
        return Choice({}, f"none: every class present covers >= {RARE_FRACTION:.0%} of the pixels, Dice balances "
                          f"the rest{note}")
    formula = f"cross-entropy weight sqrt({RARE_FRACTION:g} / fraction), at most {MAX_CLASS_WEIGHT:g}, for the rare"
    if len(fp.classes) == 2 and weights[0] > 1.0:  # binary logits weigh the positives only: weigh them down
        return Choice({"pos_weight": round(1 / weights[0], 4)},
                      f"{formula} class {fp.classes[0]} (binary: pos_weight 1/{weights[0]:g} weighs the other class "
                      f"down by as much){note}")
    kwargs = {"pos_weight": weights[1]} if len(fp.classes) == 2 else {"weight": weights}
    return Choice(kwargs, f"{formula} classes {', '.join(rare)}{note}")


def optimizer(total_steps: int) -> Choice:
    """AdamW with cosine decay after a 5% warm-up; the learning rate is higher for short schedules."""
    lr = 3e-3 if total_steps < 5000 else 1e-3
    warmup = max(1, round(0.05 * total_steps))
    return Choice({"name": "adamw", "lr": lr, "weight_decay": 1e-4, "warmup_steps": warmup},
                  f"AdamW lr {lr:g} (3e-3 below 5000 steps: short schedules need larger steps; 1e-3 otherwise), "
                  f"weight decay 1e-4, {warmup} warm-up steps (5%), cosine decay to 1% (departs from nnU-Net's SGD "
                  f"0.01 + poly, tuned for 250,000 steps)")
