"""Sliding-window inference, the Predictor and the ``predict`` command."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from tests.engine.conftest import TINY, tiny_model
from unetfamily.cli import main
from unetfamily.engine.inference import sliding_window_strips, tile_starts, window_weights
from unetfamily.engine.predict import Predictor
from unetfamily.overlay import overlay


class Pointwise(nn.Module):
    """A 1x1 conv 'segmentation model': its output at a pixel depends only on that pixel."""

    def __init__(self, in_channels: int = 3, num_classes: int = 2) -> None:
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        torch.manual_seed(0)
        self.conv = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


def naive_blend(fn, image: Tensor, roi: tuple[int, int], overlap: float, mode: str) -> Tensor:
    """Reference: MONAI-style full-size output and count maps, one tile at a time (no padding case)."""
    n, _, h, w = image.shape
    wy, wx = window_weights(roi, mode)
    weight = wy[:, None] * wx[None, :]
    out, count = None, torch.zeros(h, w)
    for y in tile_starts(h, roi[0], overlap):
        for x in tile_starts(w, roi[1], overlap):
            tile = fn(image[:, :, y : y + roi[0], x : x + roi[1]])
            out = torch.zeros(n, tile.shape[1], h, w) if out is None else out
            out[:, :, y : y + roi[0], x : x + roi[1]] += tile * weight
            count[y : y + roi[0], x : x + roi[1]] += weight
    return out / count


def blended(fn, image: Tensor, roi: tuple[int, int], overlap: float = 0.25, **kwargs) -> Tensor:
    """The whole (N, K, H, W) output: the strips of sliding_window_strips concatenated in order."""
    return torch.cat([block for _, block in sliding_window_strips(fn, image, roi, overlap, **kwargs)], dim=2)


# ----------------------------------------------------------------------------- sliding window


def test_tile_starts_follow_monai() -> None:
    assert tile_starts(100, 32, 0.25) == [0, 24, 48, 68]  # stride int(32 * 0.75) = 24, last snapped to 100 - 32
    assert tile_starts(64, 32, 0.5) == [0, 16, 32]
    assert tile_starts(10, 4, 0.0) == [0, 4, 6]
    assert tile_starts(30, 64, 0.25) == [0]  # ROI bigger than the image: one (padded) tile
    for size, roi, overlap in [(257, 64, 0.25), (1000, 96, 0.5), (97, 13, 0.9)]:
        starts = tile_starts(size, roi, overlap)
        assert starts[0] == 0 and starts[-1] == size - roi
        assert all(0 < b - a <= roi for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("size", [(16, 16), (15, 20), (1, 7)])
def test_gaussian_weights_symmetric_positive_peak_one(size: tuple[int, int]) -> None:
    wy, wx = window_weights(size, "gaussian", 0.125)
    for w in (wy, wx):
        torch.testing.assert_close(w, w.flip(0))
        assert w.min() >= 1e-3 and w.max() == 1.0
    assert (window_weights(size, "constant")[0] == 1).all()


@pytest.mark.parametrize(
    "shape, roi, overlap, mode, pad_mode",
    [
        ((2, 3, 37, 53), (16, 16), 0.5, "gaussian", "constant"),
        ((1, 3, 37, 53), (16, 12), 0.0, "constant", "constant"),
        ((1, 3, 33, 31), (16, 16), 0.25, "gaussian", "constant"),
        ((2, 3, 20, 30), (64, 48), 0.25, "gaussian", "constant"),  # ROI bigger than the image
        ((1, 3, 20, 30), (32, 40), 0.5, "gaussian", "reflect"),
        ((1, 3, 40, 9), (16, 16), 0.5, "constant", "replicate"),  # one axis padded, one tiled
    ],
)
def test_tiled_equals_untiled_for_pointwise_model(shape, roi, overlap, mode, pad_mode) -> None:
    model = Pointwise().eval()
    image = torch.rand(shape)
    seen = []

    def fn(tiles: Tensor) -> Tensor:
        seen.append(tuple(tiles.shape[-2:]))
        return model(tiles)

    with torch.no_grad():
        tiled = blended(fn, image, roi, overlap, sw_batch_size=3, mode=mode, pad_mode=pad_mode)
        torch.testing.assert_close(tiled, model(image), atol=1e-5, rtol=1e-5)
    assert set(seen) == {roi}  # every tile, padded or not, has the ROI's size


@pytest.mark.parametrize("overlap, mode", [(0.25, "gaussian"), (0.5, "constant"), (0.0, "gaussian")])
def test_blending_matches_full_canvas_reference(overlap: float, mode: str) -> None:
    """A 3x3 conv sees different borders in each tile, so this checks the weighted average itself."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 2, 3, padding=1)
    image = torch.rand(2, 3, 45, 38)
    with torch.no_grad():
        expected = naive_blend(conv, image, (16, 12), overlap, mode)
        actual = blended(conv, image, (16, 12), overlap, sw_batch_size=5, mode=mode)
        assert not torch.allclose(actual, conv(image), atol=1e-3)  # tiling does change a 3x3 conv's output
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_tile_count_batches_and_strips() -> None:
    image = torch.rand(2, 3, 100, 70)
    calls = []

    def fn(tiles: Tensor) -> Tensor:
        calls.append(tiles.shape[0])
        return tiles[:, :1]

    strips = list(sliding_window_strips(fn, image, (32, 32), 0.25, sw_batch_size=5))
    # 4 tile rows x 3 tile columns x 2 images = 24 tiles; per row 6 tiles -> batches of 5 and 1
    assert sum(calls) == 24 and calls == [5, 1] * 4
    rows = [row for row, _ in strips]
    assert rows == [0, 24, 48, 68]
    assert all(block.shape[2] <= 32 for _, block in strips)  # accumulator never taller than the ROI
    assert sum(block.shape[2] for _, block in strips) == 100
    torch.testing.assert_close(torch.cat([b for _, b in strips], dim=2), image[:, :1])


def test_sliding_window_rejects_bad_arguments() -> None:
    image = torch.rand(1, 3, 20, 20)
    with pytest.raises(ValueError, match="overlap"):
        blended(lambda t: t, image, (8, 8), overlap=1.0)
    with pytest.raises(ValueError, match="model_fn must map"):
        blended(lambda t: t[..., :4, :4], image, (8, 8))
    with pytest.raises(ValueError, match="reflect"):
        blended(lambda t: t, torch.rand(1, 3, 4, 4), (16, 16), pad_mode="reflect")


# ----------------------------------------------------------------------------- Predictor


def test_predictor_tiled_equals_whole_for_pointwise_model() -> None:
    model = Pointwise(num_classes=3)
    image = torch.rand(3, 67, 45)
    whole = Predictor(model, tile_size=None).predict(image)
    tiled = Predictor(model, tile_size=16, overlap=0.5, batch_size=7).predict(image)
    torch.testing.assert_close(tiled.probabilities, whole.probabilities, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(whole.probabilities.sum(0), torch.ones(67, 45))
    assert torch.equal(whole.mask, whole.probabilities.argmax(0).to(torch.uint8))
    assert Predictor(model, tile_size=16, overlap=0.5).num_tiles(67, 45) == 8 * 5


@pytest.mark.parametrize("name", list(TINY))
def test_every_family_predicts_odd_size_tiled(name: str) -> None:
    num_classes = 3 if name == "fcn8s" else 1
    predictor = Predictor(tiny_model(name, num_classes), tile_size=24, overlap=0.25)
    pred = predictor.predict(torch.rand(3, 41, 29))
    assert pred.probabilities.shape == (num_classes, 41, 29) and pred.mask.shape == (41, 29)
    assert 0 <= pred.probabilities.min() and pred.probabilities.max() <= 1
    if num_classes == 1:
        assert torch.equal(pred.mask, (pred.probabilities[0] > 0.5).to(torch.uint8))


def test_binary_threshold_uint8_images_and_mask_only() -> None:
    model = tiny_model("unet")
    image = torch.randint(0, 256, (3, 30, 22), dtype=torch.uint8)
    low = Predictor(model, tile_size=16, threshold=0.2).predict(image)
    high = Predictor(model, tile_size=16, threshold=0.8).predict(image)
    assert torch.equal(low.mask, (low.probabilities[0] > 0.2).to(torch.uint8))
    assert (high.mask <= low.mask).all()
    as_float = Predictor(model, tile_size=16, threshold=0.2).predict(image.float() / 255)
    torch.testing.assert_close(as_float.probabilities, low.probabilities)
    mask_only = Predictor(model, tile_size=16, threshold=0.2).predict(image, keep_probabilities=False)
    assert mask_only.probabilities is None and torch.equal(mask_only.mask, low.mask)


def test_tta_averages_unflipped_predictions() -> None:
    model = tiny_model("unet", num_classes=3)
    image = torch.rand(3, 21, 18)
    pred = Predictor(model, tile_size=None, tta=True).predict(image)
    x = image[None]
    with torch.no_grad():
        expected = torch.softmax(model(x), 1)
        for dims in [(-1,), (-2,), (-2, -1)]:
            expected += torch.softmax(model(x.flip(dims)), 1).flip(dims)
        expected /= 4
    torch.testing.assert_close(pred.probabilities, expected[0], atol=1e-5, rtol=1e-5)
    # a flip-equivariant (pointwise) model is unchanged by TTA
    pw = Pointwise()
    torch.testing.assert_close(
        Predictor(pw, tile_size=8, tta=True).predict(image).probabilities, Predictor(pw, tile_size=8).predict(image).probabilities
    )


def test_unet_plusplus_level_and_modes() -> None:
    model = tiny_model("unet_plusplus")
    image = torch.rand(3, 19, 26)
    x = image[None]
    with torch.no_grad():
        level1 = torch.sigmoid(model.forward_level(x, 1))[0]
        accurate = torch.sigmoid(model.predict(x, "accurate"))[0]
        final = torch.sigmoid(model(x)[0])[0]
    torch.testing.assert_close(Predictor(model, tile_size=None, level=1).predict(image).probabilities, level1)
    torch.testing.assert_close(Predictor(model, tile_size=None, mode="fast", level=1).predict(image).probabilities, level1)
    torch.testing.assert_close(Predictor(model, tile_size=None, mode="accurate").predict(image).probabilities, accurate)
    torch.testing.assert_close(Predictor(model, tile_size=None).predict(image).probabilities, final)
    with pytest.raises(ValueError, match="level=3"):
        Predictor(model, level=3)
    with pytest.raises(ValueError, match="UNet\\+\\+"):
        Predictor(tiny_model("unet"), level=1)


def test_bf16_autocast_close_to_float32() -> None:
    model = tiny_model("unet", num_classes=2)
    image = torch.rand(3, 20, 20)
    ref = Predictor(model, tile_size=None).predict(image).probabilities
    bf16 = Predictor(model, tile_size=None, amp=True).predict(image).probabilities
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, ref, atol=0.05, rtol=0.0)


def test_predictor_rejects_wrong_channels() -> None:
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        Predictor(tiny_model("unet")).predict(torch.rand(1, 8, 8))


# ----------------------------------------------------------------------------- command line


def _save(path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


def test_cli_predict_writes_masks_probabilities_and_overlays(tmp_path, make_checkpoint, capsys) -> None:
    ckpt = make_checkpoint("unet")
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    _save(folder / "a.png", rng.integers(0, 256, (40, 35, 3), dtype=np.uint8))
    _save(folder / "b.png", rng.integers(0, 256, (20, 24), dtype=np.uint8))  # gray -> RGB model
    _save(tmp_path / "c.jpg", rng.integers(0, 256, (17, 19, 3), dtype=np.uint8))
    out = tmp_path / "out"
    argv = ["predict", "--checkpoint", str(ckpt.parent.parent), str(folder), str(tmp_path / "c.jpg"), "--out", str(out),
            "--tile-size", "16", "--probabilities", "--overlay", "--binary-255"]
    assert main(argv) == 0
    assert "predicted 3/3" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s}{suffix}" for s in "abc" for suffix in (".png", "_prob.npy", "_overlay.png")
    )  # no temporary files left behind
    mask = np.asarray(Image.open(out / "a.png"))
    probs = np.load(out / "a_prob.npy")
    assert mask.shape == (40, 35) and set(np.unique(mask)) <= {0, 255}
    assert probs.shape == (1, 40, 35) and probs.dtype == np.float32
    assert np.array_equal(mask == 255, probs[0] > 0.5)
    assert np.asarray(Image.open(out / "b_overlay.png").convert("RGB")).shape == (20, 24, 3)


def test_cli_predict_multiclass_png_probabilities(tmp_path, make_checkpoint) -> None:
    ckpt = make_checkpoint("unet", num_classes=3, in_channels=1)
    _save(tmp_path / "x.png", np.random.default_rng(1).integers(0, 256, (18, 21, 3), dtype=np.uint8))  # RGB -> gray
    out = tmp_path / "out"
    assert main(["predict", "--checkpoint", str(ckpt), str(tmp_path / "x.png"), "--out", str(out),
                 "--probabilities", "png", "--tta"]) == 0
    planes = [np.asarray(Image.open(out / f"x_prob_{k}.png")).astype(np.int64) for k in range(3)]
    assert all(p.shape == (18, 21) for p in planes)
    assert np.abs(sum(planes) - 65535).max() <= 3  # 16-bit probabilities still sum to one
    assert np.array_equal(np.asarray(Image.open(out / "x.png")), np.argmax(planes, axis=0))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # the --max-pixels case
def test_cli_predict_errors(tmp_path, make_checkpoint, capsys) -> None:
    img = tmp_path / "x.png"
    _save(img, np.zeros((8, 8, 3), dtype=np.uint8))
    assert main(["predict", "--checkpoint", str(tmp_path / "nope.safetensors"), str(img), "--out", str(tmp_path / "o")]) == 2
    assert "error: " in (err := capsys.readouterr().err) and "nope.safetensors" in err
    ckpt = make_checkpoint("unet", num_classes=2)
    assert main(["predict", "--checkpoint", str(ckpt), str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")]) == 2
    assert "missing.png" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(ckpt), str(img), "--out", str(tmp_path / "o"), "--binary-255"]) == 2
    assert "binary" in capsys.readouterr().err
    assert main(["predict", "--checkpoint", str(ckpt), str(img), "--out", str(tmp_path / "o"), "--overlap", "1"]) == 2
    assert "error: --overlap must be in [0, 1), got 1" in capsys.readouterr().err
    (tmp_path / "bad.png").write_bytes(b"not a png")
    out = tmp_path / "o"
    assert main(["predict", "--checkpoint", str(ckpt), str(tmp_path / "bad.png"), str(img), "--out", str(out)]) == 2
    printed = capsys.readouterr()
    assert "1 failed" in printed.out and "error: " in printed.err and "bad.png" in printed.err
    assert "Traceback" not in printed.err
    assert sorted(p.name for p in out.iterdir()) == ["x.png"]  # the good image is still predicted
    limit = Image.MAX_IMAGE_PIXELS
    assert main(["predict", "--checkpoint", str(ckpt), str(img), "--out", str(out), "--max-pixels", "50"]) == 2
    assert Image.MAX_IMAGE_PIXELS == limit  # restored after the command


def test_cli_predict_unet_plusplus_level(tmp_path, make_checkpoint) -> None:
    ckpt = make_checkpoint("unet_plusplus")
    rgb = np.random.default_rng(2).integers(0, 256, (23, 30, 3), dtype=np.uint8)
    _save(tmp_path / "x.png", rgb)
    assert main(["predict", "--checkpoint", str(ckpt), str(tmp_path / "x.png"), "--out", str(tmp_path / "o"),
                 "--level", "1", "--tile-size", "0"]) == 0
    expected = Predictor(tiny_model("unet_plusplus"), tile_size=None, level=1).predict(torch.from_numpy(rgb).permute(2, 0, 1))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o" / "x.png")), expected.mask.numpy())


def test_overlay_file_uses_the_shared_colours(tmp_path, make_checkpoint) -> None:
    ckpt = make_checkpoint("unet", num_classes=3)
    rgb = np.random.default_rng(3).integers(0, 256, (20, 17, 3), dtype=np.uint8)
    _save(tmp_path / "x.png", rgb)
    assert main(["predict", "--checkpoint", str(ckpt), str(tmp_path / "x.png"), "--out", str(tmp_path / "o"),
                 "--overlay"]) == 0
    mask = np.asarray(Image.open(tmp_path / "o" / "x.png"))
    expected = overlay(rgb.transpose(2, 0, 1), mask, ignore_index=None)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o" / "x_overlay.png")), expected)


def test_overlay_paints_class_0_when_the_checkpoint_says_it_is_content(tmp_path, make_checkpoint) -> None:
    from unetfamily.engine.checkpoint import load_checkpoint, save_checkpoint

    old = make_checkpoint("unet", num_classes=3)  # written before the key: class 0 a background
    ckpt = load_checkpoint(old)
    content = save_checkpoint(tmp_path / "sky" / "checkpoints" / "last.safetensors", tiny_model("unet", 3), ckpt.config,
                              extra={**ckpt.extra, "classes": ["sky", "road", "car"], "background": False})
    assert Predictor.from_checkpoint(old).background is True and Predictor.from_checkpoint(content).background is False
    rgb = np.random.default_rng(3).integers(0, 256, (20, 17, 3), dtype=np.uint8)
    _save(tmp_path / "x.png", rgb)
    assert main(["predict", "--checkpoint", str(content), str(tmp_path / "x.png"), "--out", str(tmp_path / "o"),
                 "--overlay"]) == 0
    mask = np.asarray(Image.open(tmp_path / "o" / "x.png"))
    drawn = np.asarray(Image.open(tmp_path / "o" / "x_overlay.png"))
    assert (mask == 0).any() and (drawn[mask == 0] != rgb[mask == 0]).any()  # class 0 painted
    assert np.array_equal(drawn, overlay(rgb.transpose(2, 0, 1), mask, ignore_index=None, background=False))
