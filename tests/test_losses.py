"""Losses: known values, gradcheck, ignore_index, MS-SSIM stability, deep supervision, criterion."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import correlate2d

from unetfamily.losses import (
    MS_SSIM_WEIGHTS,
    DeepSupervisionLoss,
    SegmentationCriterion,
    build_loss,
    cgm_loss,
    cross_entropy,
    dice_loss,
    focal_loss,
    has_foreground,
    iou_loss,
    list_losses,
    ms_ssim,
    ms_ssim_loss,
    ms_ssim_plan,
    unpack_output,
)

MODES = ("binary", "multiclass", "multilabel")
# Small-image settings so every loss (MS-SSIM included) runs quickly and uses more than one scale.
SMALL = {"ms_ssim": {"win_size": 3}, "hybrid_unet3p": {"win_size": 3}}
LN2, LN3 = math.log(2), math.log(3)


pytestmark = pytest.mark.usefixtures("single_thread")


def make_case(mode: str, n: int = 2, c: int = 3, h: int = 12, w: int = 12, dtype=torch.float64, seed: int = 0):
    """Random logits and a target with a few ignored pixels (255)."""
    g = torch.Generator().manual_seed(seed)
    if mode == "binary":
        logits = torch.randn(n, 1, h, w, generator=g, dtype=dtype)
        target = torch.randint(0, 2, (n, h, w), generator=g)
    elif mode == "multiclass":
        logits = torch.randn(n, c, h, w, generator=g, dtype=dtype)
        target = torch.randint(0, c, (n, h, w), generator=g)
    else:
        logits = torch.randn(n, c, h, w, generator=g, dtype=dtype)
        target = torch.randint(0, 2, (n, c, h, w), generator=g).to(dtype)
    ignore = torch.rand(target.shape, generator=g) < 0.2
    target = target.masked_fill(ignore, 255)
    return logits, target, ignore


def ignored_elements(logits: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the logits' elements at ignored pixels."""
    return (ignore.unsqueeze(1) if ignore.ndim == 3 else ignore).expand_as(logits)


def logit(p):
    p = torch.as_tensor(p, dtype=torch.float64)
    return torch.log(p / (1 - p))


# ----------------------------------------------------------------------------- known values


def test_cross_entropy_known_values():
    logits = torch.tensor([[0.0, 0.0], [0.0, LN2], [0.0, 0.0]], dtype=torch.float64).view(1, 3, 1, 2)
    target = torch.tensor([[[0, 1]]])  # softmax at pixel 1 = [1/4, 1/2, 1/4]
    assert cross_entropy(logits, target).item() == pytest.approx((LN3 + LN2) / 2)
    weighted = cross_entropy(logits, target, weight=[1.0, 3.0, 1.0]).item()
    assert weighted == pytest.approx((LN3 + 3 * LN2) / 4)  # weighted mean, as torch.nn.CrossEntropyLoss
    assert cross_entropy(logits, torch.tensor([[[0, 255]]])).item() == pytest.approx(LN3)
    ref = torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 3.0, 1.0], dtype=torch.float64))(logits, target)
    assert weighted == pytest.approx(ref.item())


def test_binary_cross_entropy_known_values():
    logits = torch.tensor([0.0, LN3], dtype=torch.float64).view(1, 1, 1, 2)  # p = [0.5, 0.75]
    target = torch.tensor([[[1, 0]]])
    assert cross_entropy(logits, target).item() == pytest.approx((LN2 + 2 * LN2) / 2)
    assert cross_entropy(logits, target, pos_weight=2.0).item() == pytest.approx((2 * LN2 + 2 * LN2) / 2)
    with pytest.raises(ValueError, match="pos_weight"):
        cross_entropy(logits, target, weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="255"):  # 0/255 masks with another ignore_index
        cross_entropy(logits, torch.tensor([[[255, 0]]]), ignore_index=-1)


def test_dice_and_iou_binary_known_values():
    logits = logit([[0.8, 0.4], [0.6, 0.9]]).view(1, 1, 2, 2)
    target = torch.tensor([[[1, 0], [1, 255]]])
    inter, pred, true = 0.8 + 0.6, 0.8 + 0.4 + 0.6, 2.0  # the ignored 0.9 is left out
    assert dice_loss(logits, target, smooth=0).item() == pytest.approx(1 - 2 * inter / (pred + true))
    assert dice_loss(logits, target, smooth=1).item() == pytest.approx(1 - (2 * inter + 1) / (pred + true + 1))
    assert iou_loss(logits, target, smooth=0).item() == pytest.approx(1 - inter / (pred + true - inter))


def test_dice_multiclass_known_values_and_background():
    q = torch.tensor([0.1, 0.8, 0.5], dtype=torch.float64)
    logits = torch.stack([(1 - q).log(), q.log()]).view(1, 2, 1, 3)  # softmax gives [1 - q, q]
    target = torch.tensor([[[0, 1, 1]]])
    d0 = 2 * 0.9 / (1.6 + 1)
    d1 = 2 * 1.3 / (1.4 + 2)
    assert dice_loss(logits, target, smooth=0).item() == pytest.approx(1 - (d0 + d1) / 2)
    assert dice_loss(logits, target, smooth=0, include_background=False).item() == pytest.approx(1 - d1)


def test_dice_per_image_differs_from_batch():
    logits = logit([0.9, 0.1]).view(2, 1, 1, 1)
    target = torch.tensor([1, 1]).view(2, 1, 1)
    per_image = 1 - (2 * 0.9 / 1.9 + 2 * 0.1 / 1.1) / 2
    assert dice_loss(logits, target, smooth=0, per_image=True).item() == pytest.approx(per_image)
    assert dice_loss(logits, target, smooth=0).item() == pytest.approx(1 - 2 * 1.0 / 3.0)


def test_focal_known_values():
    logits = torch.zeros(1, 1, 1, 1, dtype=torch.float64)
    target = torch.ones(1, 1, 1, dtype=torch.long)
    assert focal_loss(logits, target, gamma=2).item() == pytest.approx(0.25 * LN2)
    assert focal_loss(logits, target, gamma=2, alpha=0.25).item() == pytest.approx(0.25 * 0.25 * LN2)
    assert focal_loss(logits, 1 - target, gamma=2, alpha=0.25).item() == pytest.approx(0.75 * 0.25 * LN2)
    uniform = torch.zeros(1, 4, 1, 1, dtype=torch.float64)
    assert focal_loss(uniform, target, gamma=2).item() == pytest.approx(0.75**2 * math.log(4))
    assert focal_loss(uniform, target, gamma=2, alpha=[1, 2, 1, 1]).item() == pytest.approx(2 * 0.75**2 * math.log(4))


@pytest.mark.parametrize("mode", MODES)
def test_focal_with_gamma_zero_is_cross_entropy(mode):
    logits, target, _ = make_case(mode)
    assert focal_loss(logits, target, gamma=0).item() == pytest.approx(cross_entropy(logits, target).item())


def test_recipes_are_the_papers_formulas():
    logits, target, _ = make_case("binary", h=24, w=24)
    unetpp = build_loss("bce_dice_unetpp")(logits, target)
    expected = 0.5 * cross_entropy(logits, target) + dice_loss(logits, target, smooth=1.0)
    assert unetpp.item() == pytest.approx(expected.item())
    assert unetpp.item() >= 0  # 0.5*BCE + (1 - Dice), not the authors' 0.5*BCE - Dice
    hybrid = build_loss("hybrid_unet3p")(logits, target)
    expected = focal_loss(logits, target) + ms_ssim_loss(logits, target) + iou_loss(logits, target, per_image=True)
    assert hybrid.item() == pytest.approx(expected.item())
    dice_ce = build_loss("dice_ce")(logits, target)
    assert dice_ce.item() == pytest.approx((cross_entropy(logits, target) + dice_loss(logits, target)).item())


def test_perfect_prediction_gives_near_zero_region_losses():
    target = torch.randint(0, 3, (2, 16, 16))
    logits = 30.0 * torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).double()
    for name in ("ce", "dice", "iou", "focal", "ms_ssim"):
        assert build_loss(name, **SMALL.get(name, {}))(logits, target).item() == pytest.approx(0, abs=1e-6), name


# ----------------------------------------------------------------------------- every loss x every mode


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list_losses())
def test_gradcheck(name, mode):
    logits, target, _ = make_case(mode, n=2, c=3, h=8, w=8)
    loss = build_loss(name, **SMALL.get(name, {}))
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: loss(x, target), (logits,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list_losses())
def test_ignored_pixels_change_nothing(name, mode):
    logits, target, ignore = make_case(mode, h=16, w=16)
    loss = build_loss(name, **SMALL.get(name, {}))
    where = ignored_elements(logits, ignore)
    other = logits.masked_scatter(where, 50 * torch.randn(int(where.sum()), dtype=logits.dtype)).requires_grad_(True)
    logits.requires_grad_(True)
    value = loss(logits, target)
    value.backward()
    assert loss(other, target).item() == pytest.approx(value.item(), abs=1e-12)
    assert logits.grad[where].abs().max() == 0
    assert logits.grad[~where].abs().max() > 0


@pytest.mark.parametrize("name", ["ce", "dice", "iou", "focal", "dice_ce", "bce_dice_unetpp"])
@pytest.mark.parametrize("mode", MODES)
def test_ignored_pixels_equal_cropping_them_out(name, mode):
    logits, target, _ = make_case(mode, h=8, w=8)
    kept = target.clone()
    kept[..., -2:] = 255
    loss = build_loss(name, smooth=0.0) if name in ("dice", "iou") else build_loss(name)
    cropped = loss(logits[..., :-2], target[..., :-2])
    assert loss(logits, kept).item() == pytest.approx(cropped.item())


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list_losses())
def test_all_pixels_ignored_is_finite(name, mode):
    logits, target, _ = make_case(mode, h=8, w=8)
    logits.requires_grad_(True)
    value = build_loss(name, **SMALL.get(name, {}))(logits, torch.full_like(target, 255))
    value.backward()
    assert torch.isfinite(value)
    assert logits.grad.abs().max() == 0


def test_half_precision_logits_are_upcast():
    logits, target, _ = make_case("multiclass", dtype=torch.float32, h=16, w=16)
    for name in list_losses():
        half = build_loss(name, **SMALL.get(name, {}))(logits.half(), target)
        assert half.dtype == torch.float32
        assert torch.isfinite(half), name


def test_losses_under_autocast_match_float32():
    # CPU autocast runs conv2d in bfloat16; MS-SSIM's variances would lose all precision there.
    logits, target, _ = make_case("multiclass", dtype=torch.float32, h=24, w=24)
    loss = build_loss("hybrid_unet3p", win_size=3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = loss(logits, target)
    assert mixed.dtype == torch.float32
    assert mixed.item() == pytest.approx(loss(logits, target).item(), rel=1e-6)


def test_cgm_loss_gradcheck():
    target = torch.randint(0, 2, (3, 4, 4))
    cls = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda c: cgm_loss(c, target), (cls,))


# ----------------------------------------------------------------------------- MS-SSIM


def reference_ms_ssim(x: np.ndarray, y: np.ndarray, win: int, scales: int, weights) -> float:
    """Independent 2-D MS-SSIM (scipy correlate2d, numpy) of one channel, sigma 1.5, L = 1."""
    c1, c2 = 0.01**2, 0.03**2
    g = np.exp(-((np.arange(win) - (win - 1) / 2) ** 2) / (2 * 1.5**2))
    kernel = np.outer(g, g) / g.sum() ** 2
    result = 1.0
    for j in range(scales):
        if j:
            h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
            x = x[:h, :w].reshape(h // 2, 2, w // 2, 2).mean((1, 3))
            y = y[:h, :w].reshape(h // 2, 2, w // 2, 2).mean((1, 3))
        f = lambda a: correlate2d(a, kernel, mode="valid")  # noqa: E731
        mx, my = f(x), f(y)
        vx, vy, cov = f(x * x) - mx**2, f(y * y) - my**2, f(x * y) - mx * my
        cs = (2 * cov + c2) / (vx + vy + c2)
        if j == scales - 1:
            result *= np.mean(cs * (2 * mx * my + c1) / (mx**2 + my**2 + c1)) ** weights[j]
        else:
            result *= np.mean(cs) ** weights[j]
    return result


def test_ms_ssim_matches_independent_reference():
    g = torch.Generator().manual_seed(1)
    base = torch.rand(1, 1, 40, 44, generator=g, dtype=torch.float64)
    x = base
    y = (0.7 * base + 0.3 * torch.rand(1, 1, 40, 44, generator=g, dtype=torch.float64)).clamp(0, 1)
    assert ms_ssim_plan(40, 44, 7) == (7, 3)  # 40 -> 20 -> 10 (>= 7) -> 5 (< 7)
    w = np.array(MS_SSIM_WEIGHTS[:3]) / sum(MS_SSIM_WEIGHTS[:3])
    expected = reference_ms_ssim(x[0, 0].numpy(), y[0, 0].numpy(), 7, 3, w)
    assert ms_ssim(x, y, win_size=7).item() == pytest.approx(expected, rel=1e-10)


def test_ms_ssim_luminance_only_at_last_scale_with_its_exponent():
    # Constant images: cs = 1 at every scale, so MS-SSIM = l ** w_5 (all five scales fit at 176).
    x = torch.full((1, 1, 176, 176), 0.25, dtype=torch.float64)
    y = torch.full((1, 1, 176, 176), 0.75, dtype=torch.float64)
    c1 = 0.01**2
    lum = (2 * 0.25 * 0.75 + c1) / (0.25**2 + 0.75**2 + c1)
    assert ms_ssim(x, y).item() == pytest.approx(lum**0.1333, rel=1e-12)
    assert ms_ssim(x, x).item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "size, plan", [((1, 1), (1, 1)), ((2, 3), (1, 1)), ((5, 9), (5, 1)), ((11, 11), (11, 1)), ((22, 30), (11, 2)),
                   ((175, 200), (11, 4)), ((176, 176), (11, 5))]
)
def test_ms_ssim_small_images(size, plan):
    assert ms_ssim_plan(*size) == plan
    x = torch.rand(2, 3, *size, dtype=torch.float64)
    assert torch.allclose(ms_ssim(x, x), torch.ones(2, 3, dtype=torch.float64))
    target = torch.randint(0, 3, (2, *size))
    logits = torch.randn(2, 3, *size, requires_grad=True)
    loss = ms_ssim_loss(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("scale", [1.0, 8.0, 40.0])
def test_ms_ssim_negative_correlation_is_finite(scale, capsys):
    # A checkerboard prediction against its complement: every window is anti-correlated (cs < 0).
    checker = (torch.arange(32).view(-1, 1) + torch.arange(32)) % 2
    target = checker.view(1, 32, 32).repeat(2, 1, 1)
    logits = (scale * (1 - 2 * target.float())).view(2, 1, 32, 32).requires_grad_(True)
    prob = logits.detach().sigmoid()
    assert torch.corrcoef(torch.stack([prob.flatten(), target.flatten().float()]))[0, 1] < 0
    loss = ms_ssim_loss(logits, target, win_size=3)
    loss.backward()
    # Finest scale: cs < 0, clamped to eps = 1e-4. Coarser scales see two identical 0.5 images (cs = l = 1).
    # 32 px with a 3-px window fits 4 scales, so the weights are renormalised over the first four.
    assert ms_ssim_plan(32, 32, 3) == (3, 4)
    expected = 1 - 1e-4 ** (MS_SSIM_WEIGHTS[0] / sum(MS_SSIM_WEIGHTS[:4]))
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    assert torch.isfinite(logits.grad).all()
    hybrid = build_loss("hybrid_unet3p", win_size=3)(logits, target)
    assert torch.isfinite(hybrid)
    assert capsys.readouterr().out == ""  # the authors' loss prints; ours must not


def test_ms_ssim_gradient_finite_near_the_clamp():
    # Random logits on many seeds: some scales sit near cs = 0 where x ** w is steep.
    for seed in range(20):
        logits, target, _ = make_case("multiclass", dtype=torch.float32, h=24, w=24, seed=seed)
        logits = (10 * logits).requires_grad_(True)
        ms_ssim_loss(logits, target, win_size=3).backward()
        assert torch.isfinite(logits.grad).all()


# ----------------------------------------------------------------------------- deep supervision and criterion


def test_unpack_output_forms():
    a, b, cls = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4), torch.zeros(1, 2)
    assert unpack_output(a) == ([a], None)
    seg, c = unpack_output([a, b])
    assert seg[0] is a and seg[1] is b and c is None
    seg, c = unpack_output(([a, b], cls))
    assert seg[0] is a and c is cls
    seg, c = unpack_output((a, b))  # a tuple of two 4-D heads is deep supervision, not CGM
    assert len(seg) == 2 and c is None
    with pytest.raises(TypeError):
        unpack_output("logits")
    with pytest.raises(ValueError, match="4-D"):
        unpack_output(torch.zeros(4, 4))


def test_deep_supervision_weights_and_terms():
    logits, target, _ = make_case("binary", h=8, w=8)
    heads = [logits, 2 * logits, -logits]
    base = build_loss("ce")
    ds = DeepSupervisionLoss(base, weights=[1.0, 0.5, 0.0])
    total = ds(heads, target)
    assert total.item() == pytest.approx(base(heads[0], target).item() + 0.5 * base(heads[1], target).item())
    assert set(ds.last_terms) == {"head0", "head1"}  # a head of weight 0 is not evaluated
    assert ds.last_terms["head1"].item() == pytest.approx(base(heads[1], target).item())
    total_all = DeepSupervisionLoss(base)(heads, target)  # default: every head weight 1, summed
    assert total_all.item() == pytest.approx(sum(base(h, target).item() for h in heads))
    with pytest.raises(ValueError, match="3 outputs"):
        DeepSupervisionLoss(base, weights=[1.0, 1.0])(heads, target)
    with pytest.raises(ValueError, match="input size"):
        DeepSupervisionLoss(base)([logits, logits[..., :4, :4]], target)


def test_deep_supervision_reports_compound_terms_per_head():
    logits, target, _ = make_case("multiclass", h=16, w=16)
    total, terms = DeepSupervisionLoss(build_loss("hybrid_unet3p", win_size=3))([logits, logits / 2], target, True)
    assert {"head0", "head0/focal", "head0/ms_ssim", "head0/iou", "head1", "head1/iou"} <= set(terms)
    parts = sum(terms[f"head1/{k}"] for k in ("focal", "ms_ssim", "iou"))
    assert terms["head1"].item() == pytest.approx(parts.item())
    assert total.item() == pytest.approx((terms["head0"] + terms["head1"]).item())


def test_criterion_on_all_three_output_forms():
    logits, target, _ = make_case("binary", h=16, w=16)
    criterion = SegmentationCriterion("bce_dice_unetpp", num_classes=1)
    single, terms = criterion(logits, target)
    assert single.item() == pytest.approx(build_loss("bce_dice_unetpp")(logits, target).item())
    assert set(terms) == {"total", "seg", "head0", "head0/bce", "head0/dice"}
    ds, terms = criterion([logits, logits], target)
    assert ds.item() == pytest.approx(2 * single.item())
    cls = torch.tensor([[2.0, -1.0], [0.0, 0.0]], dtype=torch.float64)
    with_cgm, terms = SegmentationCriterion("bce_dice_unetpp", cgm_weight=0.5)(([logits, logits], cls), target)
    assert terms["cgm"].item() == pytest.approx(cgm_loss(cls, target).item())
    assert with_cgm.item() == pytest.approx(ds.item() + 0.5 * terms["cgm"].item())
    assert terms["total"].item() == pytest.approx(with_cgm.item())


def test_criterion_gradients_reach_every_head_and_the_classifier():
    logits, target, _ = make_case("binary", h=16, w=16)
    heads = [logits.clone().requires_grad_(True) for _ in range(3)]
    cls = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    total, _ = SegmentationCriterion("hybrid_unet3p", win_size=3)((heads, cls), target)
    total.backward()
    assert all(h.grad.abs().sum() > 0 for h in heads) and cls.grad.abs().sum() > 0


def test_cgm_label_and_loss():
    target = torch.zeros(3, 4, 4, dtype=torch.long)
    target[1, 0, 0] = 1
    target[2] = 255  # only ignored pixels: no foreground, and left out of the CGM loss (nothing is known)
    assert has_foreground(target).tolist() == [False, True, False]
    assert cgm_loss(torch.zeros(3, 2), target).item() == pytest.approx(LN2)
    cls = torch.tensor([[0.0, LN3]] * 3)  # sigmoid -> [0.5, 0.75]
    # per image: absent (labels [1, 0]) -> ln2 + ln4; present (labels [0, 1]) -> ln2 + ln(4/3); image 2 left out
    expected = ((LN2 + math.log(4)) + (LN2 + math.log(4 / 3))) / 4
    assert cgm_loss(cls, target).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        cgm_loss(torch.zeros(3, 1), target)


def test_criterion_checks_channels_and_build_loss_names():
    logits, target, _ = make_case("multiclass", c=3, h=8, w=8)
    SegmentationCriterion("ce", num_classes=3)(logits, target)
    with pytest.raises(ValueError, match="num_classes=4"):
        SegmentationCriterion("ce", num_classes=4)(logits, target)
    SegmentationCriterion("ce", num_classes=2)(logits[:, :1], target.clamp(max=1))  # binary: 1 channel for 2 classes
    with pytest.raises(ValueError, match="loss.name: unknown value 'dice_bce'; did you mean 'dice_ce'"):
        build_loss("dice_bce")
    assert build_loss("focal", gamma=None).gamma == 2.0  # None kwargs are dropped
    with pytest.raises(ValueError, match="does not match logits"):
        cross_entropy(logits, target[:, :4])
