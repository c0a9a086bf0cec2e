"""Tracebacks and hangs: full disks, special files, malformed configs and checkpoints.

Every case must end in one ``error:`` line that names the file or key (or, where the input is
legal, a success), within the time limit. The full disks are real: a tmpfs of a few KiB
mounted in the case folder (root only; skipped elsewhere), filled up when ``fill`` is set.
"""
from __future__ import annotations

import json

from .build import bench_argv, case, compare_argv, compare_data, config_with, labelme_doc, labelme_folder, steps, \
    tiny, trained, with_images
from .model import refused
from .workspace import Ctx

K = "traceback_or_hang"
FULL = ("space", "full")  # "No space left on device", "disk is full"
#: What a message about a FIFO or device must say instead of "not found" (the path exists).
NOT_A_FILE = ("regular file", "fifo", "named pipe", "device", "not a file")


def disk(kib: int = 64, fill: bool = False):
    return lambda ctx: ctx.small_disk("disk", kib, fill)


def _folder_with(kind: str, rel: str, target: str = ""):
    """A folder dataset and tiny config where ``rel`` (under data/) is a FIFO, socket, dir or link."""
    def run(ctx: Ctx) -> None:
        data = ctx.folder_data()
        path = ctx.p(f"data/{rel}")
        path.unlink()
        if kind == "fifo":
            ctx.fifo(f"data/{rel}")
        elif kind == "socket":
            ctx.socket(f"data/{rel}")
        elif kind == "dir":
            path.mkdir()
        else:
            ctx.symlink(f"data/{rel}", target)
        ctx.config(data=data)
    return run


def _special(kind: str, rel: str):
    def run(ctx: Ctx) -> None:
        {"fifo": ctx.fifo, "socket": ctx.socket}[kind](rel)
    return run


def _truncate(rel: str, size: int):
    def run(ctx: Ctx) -> None:
        path = ctx.p(rel)
        path.write_bytes(path.read_bytes()[:size])
    return run


def _tiff_fifo(ctx: Ctx) -> None:
    ctx.tiff_stack()
    ctx.p("vol.tif").unlink()
    ctx.fifo("vol.tif")
    ctx.config(data={"type": "tiff_stack", "images": "vol.tif", "labels": "lab.tif",
                     "slices": {"train": [0, 4], "val": [4, 6]}})


TRAIN = "train --config c.yaml"
HALF = {"fractions": {"train": 0.5, "val": 0.5}}
PREDICT = "predict --checkpoint exp1 imgs --out"

DISK = [
    case("train_disk_full_before_start", K, "disk", f"{TRAIN} output_dir=disk/run", refused(FULL, "disk"),
         steps(tiny, disk(fill=True)), note="no byte free for config.yaml"),
    case("train_disk_full_at_checkpoint", K, "disk", f"{TRAIN} output_dir=disk/run", refused(FULL, "disk"),
         steps(tiny, disk(40)), timeout=180, note="config.yaml and train.log fit, a checkpoint does not"),
    case("train_disk_full_tensorboard", K, "disk", f"{TRAIN} output_dir=disk/run train.tensorboard=true",
         refused(FULL, "disk"), steps(tiny, disk(40)), timeout=180),
    case("predict_disk_full", K, "disk", f"{PREDICT} disk/pred", refused(FULL, "disk"),
         steps(trained, with_images("imgs/a0.png", "imgs/a1.png", "imgs/a2.png"), disk(fill=True)),
         note="three images, no byte free: one error, not one per image"),
    case("eval_disk_full", K, "disk", "eval --checkpoint exp1 --out disk/e.json", refused(FULL, "disk"),
         steps(trained, disk(fill=True))),
    case("export_disk_full", K, "disk", "export --checkpoint exp1 --out disk/m.onnx --size 32 32",
         refused(FULL, "disk"), steps(trained, disk(fill=True)), timeout=240),
    case("export_torchscript_disk_full", K, "disk",
         "export --checkpoint exp1 --format torchscript --out disk/m.pt --size 32 32", refused(FULL, "disk"),
         steps(trained, disk(fill=True)), timeout=240),
    case("labelme_disk_full", K, "disk", "dataset labelme ann --out disk/conv", refused(FULL, "disk"),
         steps(labelme_folder(), disk(fill=True))),
    case("compare_disk_full", K, "disk", compare_argv(out="disk/rep"), refused(FULL, "disk"),
         steps(compare_data, disk(fill=True)), timeout=240),
    case("bench_json_disk_full", K, "disk", bench_argv("--json", "disk/b.json"), refused(FULL, "disk"),
         disk(fill=True), timeout=240),
]

SPECIAL = [
    case("config_is_a_fifo", K, "special", "train --config pipe.yaml", refused("pipe.yaml"),
         _special("fifo", "pipe.yaml"), timeout=30, note="a FIFO nobody writes to: open() blocks"),
    case("config_is_a_directory", K, "special", "train --config confdir", refused("confdir"),
         lambda c: c.p("confdir").mkdir()),
    case("train_image_is_a_fifo", K, "special", TRAIN, refused("s0"), _folder_with("fifo", "images/s0.png"),
         timeout=30, owner="D", note="a FIFO named s0.png among the images"),
    case("train_mask_is_a_fifo", K, "special", TRAIN, refused("s1"), _folder_with("fifo", "masks/s1.png"),
         timeout=30, owner="D"),
    case("train_list_is_a_fifo", K, "special", TRAIN, refused("train.txt"), _folder_with("fifo", "lists/train.txt"),
         timeout=30, owner="D"),
    case("train_image_is_a_socket", K, "special", TRAIN, refused("s0"), _folder_with("socket", "images/s0.png"),
         timeout=30, owner="D"),
    case("train_image_is_a_directory", K, "special", TRAIN, refused("s0"), _folder_with("dir", "images/s0.png"),
         owner="D", note="its mask exists, so it cannot just be skipped"),
    case("train_image_broken_symlink", K, "special", TRAIN, refused("s0"),
         _folder_with("link", "images/s0.png", "/nonexistent/s0.png"), owner="D"),
    case("train_image_symlink_loop", K, "special", TRAIN, refused("s0"),
         _folder_with("link", "images/s0.png", "s0.png"), owner="D"),
    case("train_tiff_stack_is_a_fifo", K, "special", TRAIN, refused("vol.tif"), _tiff_fifo, timeout=30,
         owner="D"),
    case("predict_fifo_among_images", K, "special", f"{PREDICT} pred", refused("x.png"),
         steps(trained, with_images("imgs/a0.png"), _special("fifo", "imgs/x.png")), timeout=30,
         owner="D", note="the other image is still predicted; the FIFO is one error line"),
    case("predict_fifo_input", K, "special", "predict --checkpoint exp1 pipe.png --out pred",
         refused("pipe.png", NOT_A_FILE),
         steps(trained, _special("fifo", "pipe.png")), timeout=30, owner="D"),
    case("predict_char_device_input", K, "special", "predict --checkpoint exp1 /dev/null --out pred",
         refused("/dev/null", NOT_A_FILE), trained),
    case("labelme_json_is_a_fifo", K, "special", "dataset labelme ann --out conv", refused("b.json"),
         steps(labelme_folder(), _special("fifo", "ann/b.json")), timeout=30, owner="D"),
    case("checkpoint_is_a_fifo", K, "special", "eval --checkpoint pipe.safetensors",
         refused("pipe.safetensors", NOT_A_FILE),
         _special("fifo", "pipe.safetensors"), timeout=30),
    case("checkpoint_is_dev_null", K, "special", "eval --checkpoint /dev/null", refused("/dev/null", NOT_A_FILE)),
    case("checkpoint_folder_without_checkpoints", K, "special", "eval --checkpoint emptyrun", refused("emptyrun"),
         lambda c: c.p("emptyrun").mkdir()),
    case("data_root_is_a_file", K, "special", TRAIN, refused("notadir"),
         steps(lambda c: c.text("notadir", "x"), config_with(data={"type": "folder", "root": "notadir",
                                                                   "splits": HALF})), owner="D"),
]

MALFORMED = [
    case("config_yaml_syntax_error", K, "malformed", TRAIN, refused("c.yaml"),
         lambda c: c.text("c.yaml", "model: {name: unet\ntrain: [1\n")),
    case("config_yaml_tab_indent", K, "malformed", TRAIN, refused("c.yaml"),
         lambda c: c.text("c.yaml", "train:\n\tepochs: 1\n")),
    case("config_top_level_list", K, "malformed", TRAIN, refused("c.yaml"), lambda c: c.text("c.yaml", "- 1\n- 2\n")),
    case("config_section_is_scalar", K, "malformed", TRAIN, refused("train"),
         lambda c: c.text("c.yaml", "train: 5\n")),
    case("config_model_kwargs_is_list", K, "malformed", TRAIN, refused("model.kwargs"),
         lambda c: c.text("c.yaml", "model: {name: unet, kwargs: [4, 8]}\n")),
    case("config_data_is_list", K, "malformed", TRAIN, refused("data"), lambda c: c.text("c.yaml", "data: [1, 2]\n")),
    case("config_data_without_type", K, "malformed", TRAIN, refused("type"),
         lambda c: c.text("c.yaml", "data: {size: 32}\n")),
    case("config_data_is_number", K, "malformed", TRAIN, refused("data"), lambda c: c.text("c.yaml", "data: 5\n")),
    case("config_toml_syntax_error", K, "malformed", "train --config c.toml", refused("c.toml"),
         lambda c: c.text("c.toml", "[train\nepochs = 1\n")),
    case("config_toml_wrong_type", K, "malformed", "train --config c.toml", refused("train.epochs"),
         lambda c: c.text("c.toml", '[train]\nepochs = "three"\n')),
    case("config_duplicate_key", "silently_wrong", "malformed", TRAIN, refused("output_dir"),
         lambda c: c.text("c.yaml", c.config().read_text() + "output_dir: exp2\n"),
         note="YAML parsers keep the last of two equal keys without a word"),
    case("config_latin1_bytes", K, "malformed", TRAIN, refused("c.yaml"),
         lambda c: c.data("c.yaml", "output_dir: caf\xe9\n".encode("latin-1"))),
    case("config_bom_and_unknown_key", K, "malformed", TRAIN, refused("epochz"),
         lambda c: c.text("c.yaml", "\ufefftrain: {epochz: 1}\n"),
         note="a UTF-8 BOM must not hide the real mistake"),
    case("override_without_equals", K, "malformed", f"{TRAIN} train.epochs", refused("train.epochs"), tiny),
    case("override_empty_key", K, "malformed", f"{TRAIN} =3", refused("=3"), tiny),
    case("override_section_with_scalar", K, "malformed", f"{TRAIN} train=3", refused("train"), tiny),
    case("override_into_a_number", K, "malformed", f"{TRAIN} train.epochs.x=1", refused("train.epochs"), tiny),
    case("override_float_for_int", K, "malformed", f"{TRAIN} train.epochs=1.5", refused("train.epochs"), tiny),
    case("override_bool_for_int", K, "malformed", f"{TRAIN} loader.batch_size=true", refused("loader.batch_size"),
         tiny),
    case("override_text_for_float", K, "malformed", f"{TRAIN} optim.lr=fast", refused("optim.lr"), tiny),
    case("override_exponent_for_int", K, "malformed", f"{TRAIN} train.epochs=1e3", refused("train.epochs"), tiny,
         note="YAML 1.1 reads 1e3 as a string"),
    case("override_list_for_int", K, "malformed", f"{TRAIN} train.epochs=[1,2]", refused("train.epochs"), tiny),
    case("override_empty_value", K, "malformed", f"{TRAIN} loader.batch_size=", refused("loader.batch_size"), tiny),
    case("override_output_dir_null", K, "malformed", f"{TRAIN} output_dir=null", refused("output_dir"), tiny),
    case("checkpoint_truncated", K, "malformed", "eval --checkpoint exp1/checkpoints/best.safetensors",
         refused("best.safetensors"), steps(trained, _truncate("exp1/checkpoints/best.safetensors", 1000))),
    case("checkpoint_empty_file", K, "malformed", "eval --checkpoint exp1/checkpoints/best.safetensors",
         refused("best.safetensors"), steps(trained, _truncate("exp1/checkpoints/best.safetensors", 0))),
    case("checkpoint_text_file", K, "malformed", "eval --checkpoint notes.safetensors", refused("notes.safetensors"),
         lambda c: c.text("notes.safetensors", "not a checkpoint\n")),
    case("resume_last_truncated", K, "malformed", "train --config c.yaml --resume train.epochs=2",
         refused("last.safetensors"),
         steps(trained, _truncate("exp1/checkpoints/last.safetensors", 1000),
               lambda c: c.protect("exp1/checkpoints/best.safetensors"))),
    case("labelme_not_an_object", K, "malformed", "dataset labelme ann --out conv", refused("b.json"),
         steps(labelme_folder(), lambda c: c.text("ann/b.json", "[1, 2, 3]"))),
    case("labelme_bad_image_data", K, "malformed", "dataset labelme ann --out conv", refused("b.json"),
         steps(labelme_folder(), lambda c: c.text("ann/b.json", json.dumps(
             {**labelme_doc(), "imageData": "bm90IGFuIGltYWdl"}))), note="imageData: base64 of 'not an image'"),
    case("labelme_shape_without_points", K, "malformed", "dataset labelme ann --out conv", refused("b.json"),
         steps(labelme_folder(), lambda c: c.text("ann/b.json", json.dumps(
             {"imagePath": "a.png", "imageData": None, "shapes": [{"label": "cell", "shape_type": "polygon"}]})))),
]

CASES = [*DISK, *SPECIAL, *MALFORMED]
