"""Silently wrong numbers and options: out-of-range values, options ignored instead of honoured.

Each out-of-range value must be refused before anything runs, by a message that names the key
or flag. An option that cannot apply (``--level`` on a U-Net, ``--threshold`` on a multi-class
model, ``--opset`` for TorchScript) must be honoured or refused, never silently dropped.
"""
from __future__ import annotations

from .build import (
    bench_argv,
    case,
    compare_argv,
    compare_data,
    folder_config,
    labelme_folder,
    steps,
    tiny,
    trained,
    trained_multi,
    with_images,
)
from .checks import onnx_opset
from .model import either, refused

K = "silently_wrong"

#: train overrides that must be refused, naming the key: (override, key).
TRAIN_RANGES = [
    ("train.grad_clip=-1", "train.grad_clip"), ("train.grad_clip=.nan", "train.grad_clip"),
    ("loader.batch_size=0", "loader.batch_size"), ("loader.batch_size=-2", "loader.batch_size"),
    ("loader.val_batch_size=0", "loader.val_batch_size"), ("loader.num_workers=-1", "loader.num_workers"),
    ("optim.lr=-1", "optim.lr"), ("optim.lr=0", "optim.lr"),
    ("optim.lr=.nan", "optim.lr"), ("optim.lr=.inf", "optim.lr"),
    ("optim.weight_decay=-0.1", "optim.weight_decay"),
    ("train.epochs=0", "train.epochs"), ("train.epochs=-3", "train.epochs"),
    ("train.max_steps=0", "train.max_steps"), ("train.max_steps=-1", "train.max_steps"),
    ("train.max_seconds=0", "train.max_seconds"), ("train.max_seconds=.nan", "train.max_seconds"),
    ("train.eval_every=0", "train.eval_every"), ("train.log_every=0", "train.log_every"),
    ("train.checkpoint_every=-1", "train.checkpoint_every"), ("train.image_every=-1", "train.image_every"),
    ("train.early_stop_patience=-1", "train.early_stop_patience"),
    ("train.max_skipped_fraction=1.5", "train.max_skipped_fraction"),
    ("train.max_skipped_fraction=-0.1", "train.max_skipped_fraction"),
    ("train.seed=-1", "train.seed"),
    ("schedule.warmup_steps=-1", "schedule.warmup_steps"), ("schedule.min_lr_ratio=2", "schedule.min_lr_ratio"),
    ("loss.cgm_weight=-1", "loss.cgm_weight"), ("loss.cgm_weight=.nan", "loss.cgm_weight"),
    ("data.size=0", "size"), ("data.size=-32", "size"), ("data.num_samples=0", "num_samples"),
    ("data.num_classes=3", "num_classes"), ("data.in_channels=2", "in_channels"),
    ("model.kwargs.channels=[0,8]", "channels"), ("model.kwargs.channels=[]", "channels"),
    ("model.kwargs.channels=[-4,8]", "channels"),
]


def _slug(override: str) -> str:
    key, _, value = override.partition("=")
    value = {".nan": "nan", ".inf": "inf", "[]": "empty"}.get(value, value)
    value = value.replace("-", "minus").replace("[", "").replace("]", "").replace(",", "_").replace(".", "p")
    return f"train_{key.replace('.', '_')}_{value}"


def _train_range(override: str, key: str):
    return case(_slug(override), K, "ranges", f"train --config c.yaml {override}", refused(key), tiny,
                owner="C")


TRAINED_IMAGES = steps(trained, with_images("imgs/a0.png"))
PREDICT = "predict --checkpoint exp1 imgs --out pred"
EXPORT = "export --checkpoint exp1 --out m.onnx --size 32 32"

CLI_RANGES = [
    ("eval_threshold_5", "eval --checkpoint exp1 --threshold 5", "--threshold", trained),
    ("eval_threshold_negative", "eval --checkpoint exp1 --threshold -0.5", "--threshold", trained),
    ("eval_threshold_nan", "eval --checkpoint exp1 --threshold nan", "--threshold", trained),
    ("eval_batch_size_0", "eval --checkpoint exp1 --batch-size 0", "--batch-size", trained),
    ("predict_threshold_1p5", f"{PREDICT} --threshold 1.5", "--threshold", TRAINED_IMAGES),
    ("predict_threshold_nan", f"{PREDICT} --threshold nan", "--threshold", TRAINED_IMAGES),
    ("predict_overlap_1", f"{PREDICT} --overlap 1", "--overlap", TRAINED_IMAGES),
    ("predict_overlap_negative", f"{PREDICT} --overlap -0.2", "--overlap", TRAINED_IMAGES),
    ("predict_overlap_nan", f"{PREDICT} --overlap nan", "--overlap", TRAINED_IMAGES),
    ("predict_batch_size_0", f"{PREDICT} --batch-size 0", "--batch-size", TRAINED_IMAGES),
    ("predict_tile_size_negative", f"{PREDICT} --tile-size -8", "--tile-size", TRAINED_IMAGES),
    ("predict_max_pixels_0", f"{PREDICT} --max-pixels 0", "--max-pixels", TRAINED_IMAGES),
    ("export_size_negative", "export --checkpoint exp1 --out m.onnx --size -5 64", "--size", trained),
    ("export_size_zero", "export --checkpoint exp1 --out m.onnx --size 0 0", "--size", trained),
    ("export_opset_3", f"{EXPORT} --opset 3", "--opset", trained),
    ("dataset_info_samples_negative", "dataset info synthetic --samples -1", "--samples", None),
    ("labelme_ignore_index_negative", "dataset labelme ann --out conv --ignore-index -1", "--ignore-index",
     labelme_folder()),
    ("labelme_ignore_index_300", "dataset labelme ann --out conv --ignore-index 300", "--ignore-index",
     labelme_folder()),
    ("labelme_ignore_index_is_a_class", "dataset labelme ann --out conv --ignore-index 1", "--ignore-index",
     labelme_folder()),
]

#: compare flags that must be refused: (name, extra argv, flag, budget or None for the default one step).
COMPARE_RANGES = [
    ("compare_base_width_0", ["--base-width", "0"], "--base-width", None),
    ("compare_lr_negative", ["--lr", "-1"], "--lr", None),
    ("compare_lr_nan", ["--lr", "nan"], "--lr", None),
    ("compare_seeds_0", ["--seeds", "0"], "--seeds", None),
    ("compare_seeds_negative", ["--seeds", "-1"], "--seeds", None),
    ("compare_steps_0", [], "--steps", ["--steps", "0"]),
    ("compare_epochs_0", [], "--epochs", ["--epochs", "0"]),
    ("compare_minutes_0", [], "--minutes", ["--minutes", "0"]),
    ("compare_minutes_negative", [], "--minutes", ["--minutes", "-1"]),
    ("compare_models_empty", ["--models", ""], "--models", None),
    ("compare_batch_size_0", ["--batch-size", "0"], "--batch-size", None),
    ("compare_size_negative", ["--size", "-5"], "--size", None),
    ("compare_folds_0", ["--folds", "0"], "--folds", None),
    ("compare_folds_more_than_cases", ["--folds", "1000"], "--folds", None),
    ("compare_first_seed_negative", ["--first-seed", "-1"], "--first-seed", None),
    ("compare_nsd_tolerance_negative", ["--nsd-tolerance", "-1"], "--nsd-tolerance", None),
    ("compare_nsd_tolerance_nan", ["--nsd-tolerance", "nan"], "--nsd-tolerance", None),
    ("compare_lr_grid_negative", ["--lr-grid", "1e-3,-1"], "--lr-grid", None),
]

BENCH_RANGES = [
    ("bench_size_0", ["--size", "0"], "--size"), ("bench_batch_0", ["--batch", "0"], "--batch"),
    ("bench_repeats_0", ["--repeats", "0"], "--repeats"), ("bench_width_0", ["--width", "0"], "--width"),
    ("bench_in_channels_0", ["--in-channels", "0"], "--in-channels"),
    ("bench_num_classes_0", ["--num-classes", "0"], "--num-classes"),
]


def _compare_case(name: str, extra: list[str], flag: str, budget: list[str] | None):
    argv = compare_argv(*extra, budget=budget) if budget else compare_argv(*extra)
    return case(name, K, "ranges", argv, refused(flag, check=None), compare_data, owner="C", timeout=180)


RANGES = [
    *[_train_range(o, k) for o, k in TRAIN_RANGES],
    case("train_folder_resize_0", K, "ranges", "train --config c.yaml", refused("resize"), folder_config(resize=0),
         owner="C"),
    case("train_folder_resize_negative", K, "ranges", "train --config c.yaml", refused("resize"),
         folder_config(resize=[32, -1]), owner="C"),
    case("train_sgd_momentum_1p5", K, "ranges", "train --config c.yaml optim.name=sgd optim.momentum=1.5",
         refused("optim.momentum"), tiny, owner="C"),
    case("train_poly_power_negative", K, "ranges", "train --config c.yaml schedule.name=poly schedule.power=-1",
         refused("schedule.power"), tiny, owner="C"),
    *[case(n, K, "ranges", a, refused(f), s, owner="C", timeout=240 if n.startswith("export") else 120)
      for n, a, f, s in CLI_RANGES],
    *[_compare_case(*row) for row in COMPARE_RANGES],
    *[case(n, K, "ranges", bench_argv(*extra), refused(f), owner="C", timeout=180)
      for n, extra, f in BENCH_RANGES],
]

OPTIONS = [
    case("export_opset_11_honoured", K, "options", f"{EXPORT} --opset 11",
         either("--opset", check=onnx_opset("m.onnx", 11)), trained, owner="C", timeout=240,
         note="the file must have opset 11, or the command must say it cannot"),
    case("export_static_torchscript", K, "options",
         "export --checkpoint exp1 --format torchscript --static --out m.pt --size 32 32", refused("--static"), trained,
         owner="C", timeout=240),
    case("export_opset_torchscript", K, "options",
         "export --checkpoint exp1 --format torchscript --opset 13 --out m.pt --size 32 32", refused("--opset"),
         trained,
         owner="C", timeout=240),
    case("export_level_on_unet", K, "options", f"{EXPORT} --level 1", refused("--level"), trained, owner="C",
         timeout=240),
    case("predict_level_on_unet", K, "options", f"{PREDICT} --level 1", refused("--level"), TRAINED_IMAGES,
         owner="C"),
    case("predict_mode_on_unet", K, "options", f"{PREDICT} --mode fast", refused("--mode"), TRAINED_IMAGES,
         owner="C"),
    case("predict_threshold_multiclass", K, "options", f"{PREDICT} --threshold 0.7", refused("--threshold"),
         steps(trained_multi, with_images("imgs/a0.png")), owner="C"),
    case("predict_binary_255_multiclass", K, "options", f"{PREDICT} --binary-255", refused("--binary-255"),
         steps(trained_multi, with_images("imgs/a0.png")), owner="C"),
    case("eval_threshold_multiclass", K, "options", "eval --checkpoint exp1 --threshold 0.3", refused("--threshold"),
         trained_multi, owner="C"),
    case("eval_data_other_classes", K, "options", "eval --checkpoint exp1 --data d4.yaml", refused("class"),
         steps(trained, lambda c: c.yaml("d4.yaml", {"type": "synthetic", "num_samples": 2, "size": 32,
                                                     "num_classes": 4})),
         owner="C", note="a binary model scored on 4-class data"),
    case("eval_data_other_channels", K, "options", "eval --checkpoint exp1 --data rgb.yaml", refused("channel"),
         steps(trained, lambda c: c.yaml("rgb.yaml", {"type": "synthetic", "num_samples": 2, "size": 32,
                                                      "in_channels": 3})),
         owner="C"),
    case("train_ds_weights_on_unet", K, "options", "train --config c.yaml loss.ds_weights=[0.5,0.5]",
         refused("loss.ds_weights"), tiny, owner="C", note="U-Net has no deep supervision heads"),
    case("train_fp16_on_cpu", K, "options", "train --config c.yaml train.amp=fp16 train.device=cpu",
         refused("train.amp"), tiny, owner="C"),
    case("compare_base_width_with_paper_widths", K, "options",
         compare_argv("--widths", "paper", "--base-width", "8"), refused("--base-width"), compare_data, owner="C",
         timeout=300, note="paper widths ignore --base-width"),
    case("compare_lr_with_lr_grid", K, "options", compare_argv("--lr", "0.01", "--lr-grid", "1e-3,1e-2"),
         refused("--lr"), compare_data, owner="C", timeout=300, note="--lr-grid makes --lr unused"),
]

CASES = [*RANGES, *OPTIONS]
