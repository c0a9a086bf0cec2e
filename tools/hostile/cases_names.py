"""Misspelled names and numbers that break the arithmetic: refused by name, or legal and working.

A misspelled model, loss, preset, device, split or metric is refused naming the key or flag
(and, by :func:`unetfamily.errors.unknown_choice`, the close matches). Sizes too small for a
network's downsampling or tiles of one pixel are either handled or refused by name, never a
traceback from inside a convolution.
"""
from __future__ import annotations

from .build import bench_argv, case, compare_argv, compare_data, config_with, folder_config, steps, tiny, trained, \
    with_images
from .checks import files_exist
from .model import either, refused
from .workspace import Ctx

K = "traceback_or_hang"
TRAIN = "train --config c.yaml"
PREDICT = "predict --checkpoint exp1 imgs --out pred"

#: (name, override, fragment the error must hold)
TRAIN_NAMES = [
    ("train_model_misspelled", "model.name=unett", "unett"),
    ("train_loss_misspelled", "loss.name=dicece", "dicece"),
    ("train_augment_misspelled", "data.augment=lite", "lite"),
    ("train_device_gpu", "train.device=gpu", "train.device"),
    ("train_device_missing_cuda_index", "train.device=cuda:7", "train.device"),
    ("train_data_type_misspelled", "data.type=folders", "folders"),
    ("train_schedule_misspelled", "schedule.name=cosin", "schedule.name"),
    ("train_optimizer_misspelled", "optim.name=adam", "optim.name"),
    ("train_monitor_misspelled", "train.monitor=dcie", "train.monitor"),
    ("train_amp_misspelled", "train.amp=fp8", "train.amp"),
    ("train_memory_saving_misspelled", "train.memory_saving=recompte", "train.memory_saving"),
    ("train_model_kwarg_misspelled", "model.kwargs.channel=[4,8]", "channel"),
    ("train_augment_key_misspelled", "data.augment.crop=16", "crop"),
]

CLI_NAMES = [
    ("eval_split_misspelled", "eval --checkpoint exp1 --split tset", "tset", trained),
    ("eval_device_tpu", "eval --checkpoint exp1 --device tpu", "--device", trained),
    ("predict_device_gpu", f"{PREDICT} --device gpu", "--device", steps(trained, with_images("imgs/a0.png"))),
    ("dataset_info_type_misspelled", "dataset info synthtic", "synthtic", None),
    ("dataset_info_split_misspelled", "dataset info synthetic --split tset", "tset", None),
]

COMPARE_NAMES = [
    ("compare_model_misspelled", ["--models", "unet,unett"], "unett"),
    ("compare_loss_misspelled", ["--loss", "dicece"], "dicece"),
    ("compare_augment_misspelled", ["--augment", "lite"], "lite"),
    ("compare_ablation_misspelled", ["--ablations", "unet_dept"], "unet_dept"),
    ("compare_primary_misspelled", ["--primary", "dicee"], "dicee"),
    ("compare_device_gpu", ["--device", "gpu"], "--device"),
    ("compare_data_missing_folder", ["--data", "./nothere/"], "nothere"),
]

BENCH_NAMES = [
    ("bench_model_misspelled", ["--models", "unett"], "unett"),
    ("bench_amp_misspelled", ["--amp", "fp8"], "fp8"),
    ("bench_device_gpu", ["--device", "gpu"], "--device"),
]


def _encoding(encoding: object, fragment: str, name: str):
    return case(name, K, "names", TRAIN, refused(fragment), folder_config(mask_encoding=encoding),
                owner="D")


NAMES = [
    *[case(n, K, "names", f"{TRAIN} {o}", refused(f), tiny, owner="C") for n, o, f in TRAIN_NAMES],
    *[case(n, K, "names", a, refused(f), s, owner="C") for n, a, f, s in CLI_NAMES],
    *[case(n, K, "names", compare_argv(*x), refused(f), compare_data, owner="C", timeout=180)
      for n, x, f in COMPARE_NAMES],
    *[case(n, K, "names", bench_argv(*x), refused(f), owner="C", timeout=180) for n, x, f in BENCH_NAMES],
    _encoding("binry", "binry", "mask_encoding_misspelled"),
    _encoding({"kind": "binary", "treshold": 127}, "treshold", "mask_encoding_key_misspelled"),
    _encoding({"kind": "rgb"}, "colors", "mask_encoding_rgb_without_colors"),
    case("folder_on_missing_misspelled", K, "names", TRAIN, refused("on_missing"), folder_config(on_missing="ignore"),
         owner="D"),
]


def _sizes(ctx: Ctx) -> None:
    data = ctx.folder_data(size=1)
    ctx.config(data=data)


NUMBERS = [
    case("train_odd_image_size", K, "numbers", f"{TRAIN} data.size=7", either("size"), tiny, timeout=180),
    case("train_one_pixel_images", K, "numbers", TRAIN, either("size"), _sizes, timeout=180),
    case("train_network_deeper_than_image", K, "numbers", f"{TRAIN} model.kwargs.channels=[4,8,16,32,64,128,256]",
         either(("size", "channels", "deep")), tiny, timeout=180, note="six poolings of a 32 px image"),
    case("predict_tile_size_1", K, "numbers", f"{PREDICT} --tile-size 1", either("--tile-size"),
         steps(trained, with_images("imgs/a0.png"))),
    case("predict_tiny_image", K, "numbers", f"{PREDICT}", either("a0.png"),
         steps(trained, lambda c: c.image("imgs/a0.png", 3))),
    case("predict_max_pixels_below_image", K, "numbers", f"{PREDICT} --max-pixels 10", refused("a0.png"),
         steps(trained, with_images("imgs/a0.png"))),
    case("export_size_1", K, "numbers", "export --checkpoint exp1 --out m.onnx --size 1 1", either("--size"), trained,
         timeout=240),
    case("export_odd_size", K, "numbers", "export --checkpoint exp1 --out m.onnx --size 33 31", either("--size"),
         trained, timeout=240),
    case("bench_size_3", K, "numbers", bench_argv("--size", "3"), either("--size"), timeout=240),
    case("compare_size_4", K, "numbers", compare_argv("--size", "4"), either("--size"), compare_data, timeout=300),
    case("train_crop_larger_than_image", K, "numbers", f"{TRAIN} data.augment.preset=light data.augment.crop_size=64",
         either("crop_size"), config_with(), timeout=180, note="a 64 px crop of 32 px images"),
    case("predict_rgb_image_on_gray_model", K, "numbers", PREDICT, either("c0.png", check=files_exist("pred/c0.png")),
         steps(trained, with_images("imgs/c0.png", channels=3)), note="converted to gray, or refused by name"),
    case("train_huge_batch", K, "numbers", f"{TRAIN} loader.batch_size=100000", either("loader.batch_size"),
         config_with(), timeout=180, note="more than the 4 samples there are"),
]

CASES = [*NAMES, *NUMBERS]
