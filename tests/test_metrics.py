"""Metrics: known values, set-level accumulation, empty-class and HD95 conventions, DDP sync."""
from __future__ import annotations

import math
import os
import time
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchmetrics.functional.classification import multiclass_jaccard_index

from unetfamily.metrics import SegmentationMetrics, hd95, logits_to_labels, per_image_scores, scores_from_confusion

NAN = float("nan")


pytestmark = pytest.mark.usefixtures("single_thread")


def one_hot_logits(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return 10.0 * torch.nn.functional.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()


def assert_close_nan(actual: torch.Tensor, expected: list[float]):
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float64), equal_nan=True)


# ----------------------------------------------------------------------------- confusion-matrix scores

TARGET = torch.tensor([[[0, 0, 1], [2, 2, 255]]])
PRED = torch.tensor([[[0, 1, 1], [2, 0, 0]]])  # the last pixel is ignored; class 3 appears nowhere


@pytest.mark.parametrize("as_logits", [False, True])
def test_multiclass_known_values(as_logits):
    metric = SegmentationMetrics(num_classes=4)
    metric.update(one_hot_logits(PRED, 4) if as_logits else PRED, TARGET)
    out = metric.compute()
    assert out["confusion_matrix"].tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    assert_close_nan(out["per_class_iou"], [1 / 3, 1 / 2, 1 / 2, NAN])
    assert_close_nan(out["per_class_dice"], [2 / 4, 2 / 3, 2 / 3, NAN])
    assert_close_nan(out["per_class_precision"], [1 / 2, 1 / 2, 1, NAN])
    assert_close_nan(out["per_class_recall"], [1 / 2, 1, 1 / 2, NAN])
    # Class 3 (absent from prediction and target) is left out of every mean.
    assert out["iou"].item() == pytest.approx(1 / 2)  # foreground classes 1, 2
    assert out["miou"].item() == pytest.approx((1 / 3 + 1 / 2 + 1 / 2) / 3)  # background included
    assert out["dice"].item() == pytest.approx(2 / 3)
    assert out["mdice"].item() == pytest.approx((1 / 2 + 2 / 3 + 2 / 3) / 3)
    assert out["precision"].item() == pytest.approx(3 / 4)
    assert out["recall"].item() == pytest.approx(3 / 4)
    assert out["pixel_accuracy"].item() == pytest.approx(3 / 5)


def test_class_predicted_but_absent_from_target_counts_as_zero():
    out = scores_from_confusion(torch.tensor([[3, 1], [0, 0]]))  # class 1 predicted once, never true
    assert_close_nan(out["per_class_iou"], [3 / 4, 0.0])
    assert out["iou"].item() == 0.0 and math.isnan(out["recall"].item())
    assert math.isnan(scores_from_confusion(torch.zeros(3, 3, dtype=torch.long))["miou"].item())


def test_scores_accumulate_counts_not_batch_means():
    metric = SegmentationMetrics(num_classes=2)
    full = torch.ones(1, 10, 10, dtype=torch.long)
    metric.update(full, full)  # batch IoU 1
    miss = torch.zeros(1, 10, 10, dtype=torch.long)
    hit = miss.clone()
    hit[0, 0, 0] = 1
    metric.update(miss, hit)  # batch IoU 0
    assert metric.compute()["iou"].item() == pytest.approx(100 / 101)  # not (1 + 0) / 2
    metric.reset()
    metric.update(miss, hit)
    assert metric.compute()["iou"].item() == 0.0


def test_binary_logits_threshold_and_num_classes_one():
    logits = torch.full((1, 1, 2, 2), math.log(0.6 / 0.4))  # sigmoid = 0.6 everywhere
    target = torch.tensor([[[1, 1], [0, 0]]])
    assert logits_to_labels(logits, 2).sum() == 4
    assert logits_to_labels(logits, 2, threshold=0.7).sum() == 0
    metric = SegmentationMetrics(num_classes=1)  # the models' count for a binary sigmoid model
    metric.update(logits, target)
    out = metric.compute()
    assert out["confusion_matrix"].tolist() == [[0, 2], [0, 2]]
    assert out["iou"].item() == pytest.approx(0.5) and out["precision"].item() == pytest.approx(0.5)
    strict = SegmentationMetrics(num_classes=2, threshold=0.7)
    strict.update(logits, target)
    assert strict.compute()["recall"].item() == 0.0


def test_update_takes_the_final_output_of_any_raw_form():
    final, other = one_hot_logits(PRED, 4), one_hot_logits(TARGET.clamp(max=3), 4)
    expected = SegmentationMetrics(4)
    expected.update(final, TARGET)
    for raw in ([final, other], ([final, other], torch.zeros(1, 2)), (final, torch.zeros(1, 2))):
        metric = SegmentationMetrics(4)
        metric.update(raw, TARGET)
        assert torch.equal(metric.compute()["confusion_matrix"], expected.compute()["confusion_matrix"])


def test_ignore_index_and_input_errors():
    metric = SegmentationMetrics(num_classes=3, ignore_index=7)
    target = torch.tensor([[[0, 7], [2, 1]]])
    metric.update(torch.tensor([[[0, 2], [2, 1]]]), target)
    assert metric.compute()["confusion_matrix"].sum() == 3
    with pytest.raises(ValueError, match="outside"):
        metric.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 255))
    with pytest.raises(ValueError, match="channels"):
        metric.update(torch.zeros(1, 4, 2, 2), target)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        metric.update(torch.full((1, 2, 2), 3), target)
    with pytest.raises(ValueError, match="binary"):
        SegmentationMetrics(num_classes=3, hd95=True)
    with pytest.raises(ValueError, match="multi-label"):
        SegmentationMetrics(num_classes=2).update(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))


def test_matches_torchmetrics_jaccard_on_random_data():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 5, 16, 16, generator=g)
    target = torch.randint(0, 5, (4, 16, 16), generator=g)
    target[:, :3] = 255
    metric = SegmentationMetrics(5)
    for i in range(4):
        metric.update(logits[i : i + 1], target[i : i + 1])
    ref = multiclass_jaccard_index(logits.argmax(1), target, 5, average=None, ignore_index=255)
    torch.testing.assert_close(metric.compute()["per_class_iou"].float(), ref)


# ----------------------------------------------------------------------------- per-image scores


def test_per_image_scores_known_values():
    target = torch.tensor([[[1, 1], [0, 0]], [[0, 0], [0, 0]], [[1, 255], [0, 0]]])
    pred = torch.tensor([[[1, 0], [0, 0]], [[0, 0], [0, 0]], [[1, 1], [1, 0]]])
    out = per_image_scores(pred, target, num_classes=2, with_hd95=True)
    assert_close_nan(out["dice"], [2 / 3, NAN, 2 / 3])  # image 2 is empty in both: NaN
    assert_close_nan(out["iou"], [1 / 2, NAN, 1 / 2])
    assert_close_nan(out["per_class_iou"][:, 0], [2 / 3, 1.0, 1 / 2])
    # Image 0: target boundary {(0, 0), (0, 1)} at distances {0, 1} from the prediction's: P95 = 0.95
    # (linear interpolation). Image 2: the ignored pixel (0, 1) counts as background in both masks,
    # so the prediction's boundary {(0, 0), (1, 0)} is at {0, 1} from the target's: 0.95 again.
    assert_close_nan(out["hd95"], [0.95, 0.0, 0.95])


# ----------------------------------------------------------------------------- HD95


def brute_force_hd95(p: np.ndarray, t: np.ndarray) -> float:
    """All-pairs distances between boundary pixels (a pixel with a 4-neighbour outside, or on the border)."""

    def surface(m):
        padded = np.pad(m, 1)
        inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        return np.argwhere(m & ~inner)

    a, b = surface(p), surface(t)
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))


def test_hd95_known_values_and_conventions():
    a = np.zeros((8, 8), bool)
    b = np.zeros((8, 8), bool)
    a[2, 2], b[2, 5] = True, True
    assert hd95(a, b) == 3.0
    a[2:5, 2:5], b[:] = True, False
    b[2:5, 2:7] = True  # target 2 columns wider: boundary distances 0..2
    assert hd95(a, b) == pytest.approx(brute_force_hd95(a, b)) and hd95(a, b) == hd95(b, a)
    empty = np.zeros((8, 8), bool)
    assert hd95(empty, empty) == 0.0
    assert math.isnan(hd95(a, empty)) and math.isnan(hd95(empty, a))


def test_hd95_matches_brute_force_on_random_blobs():
    rng = np.random.default_rng(0)
    for _ in range(10):
        p = rng.random((24, 20)) < 0.15
        t = rng.random((24, 20)) < 0.15
        p[5:12, 4:15] = True
        assert hd95(p, t) == pytest.approx(brute_force_hd95(p, t))


def test_metric_hd95_aggregation():
    target = torch.zeros(3, 8, 8, dtype=torch.long)
    pred = torch.zeros(3, 8, 8, dtype=torch.long)
    target[1, 2, 2] = 1  # image 1: prediction empty, target not -> undefined, left out
    target[2, 2, 2], pred[2, 2, 5] = 1, 1  # image 2: distance 3; image 0: both empty -> 0, counted
    metric = SegmentationMetrics(num_classes=2, hd95=True)
    metric.update(pred[:2], target[:2])
    metric.update(pred[2:], target[2:])
    out = metric.compute()
    assert out["hd95"].item() == pytest.approx(1.5)
    assert out["hd95_images"].item() == 2 and out["hd95_undefined"].item() == 1


# ----------------------------------------------------------------------------- DDP


def make_rank_batches(seed: int, n_batches: int):
    g = torch.Generator().manual_seed(seed)
    multi = [
        (torch.randn(2, 3, 12, 12, generator=g), torch.randint(0, 3, (2, 12, 12), generator=g)) for _ in range(n_batches)
    ]
    binary = []
    for _ in range(n_batches):
        target = (torch.rand(2, 12, 12, generator=g) < 0.3).long()
        target[0] = 0  # some empty targets so the HD95 conventions are exercised
        binary.append((torch.randn(2, 1, 12, 12, generator=g) + 2 * target - 1, target))
    return multi, binary


def _ddp_worker(rank: int, world_size: int, init_file: str, batches, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size, timeout=timedelta(seconds=30)
    )
    try:
        multi, binary = batches[rank]
        m3 = SegmentationMetrics(num_classes=3)
        m2 = SegmentationMetrics(num_classes=2, hd95=True)
        for logits, target in multi:
            m3.update(logits, target)
        for logits, target in binary:
            m2.update(logits, target)
        torch.save({"multi": m3.compute(), "binary": m2.compute()}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ddp_gloo_two_processes_match_single_process(tmp_path):
    batches = [make_rank_batches(0, 2), make_rank_batches(1, 3)]  # different data and sizes per rank
    ctx = mp.start_processes(
        _ddp_worker, args=(2, str(tmp_path / "init"), batches, str(tmp_path)), nprocs=2, join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + 60
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail("DDP workers did not finish within 60 s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.kill()
    single = {"multi": SegmentationMetrics(3), "binary": SegmentationMetrics(2, hd95=True)}
    for multi, binary in batches:
        for logits, target in multi:
            single["multi"].update(logits, target)
        for logits, target in binary:
            single["binary"].update(logits, target)
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        for task, metric in single.items():
            expected = metric.compute()
            assert set(result[task]) == set(expected)
            for key, value in expected.items():
                torch.testing.assert_close(result[task][key], value, equal_nan=True, msg=f"{task} {key}")
    binary = single["binary"].compute()
    assert binary["hd95_undefined"] > 0 and binary["hd95_images"] > 0  # the one-empty case is exercised
