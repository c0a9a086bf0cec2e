"""The folder one case runs in, and what a setup writes into it.

:class:`Ctx` is a fresh folder (the command's working directory) with small writers: 32 px
images and masks (PNG, JPEG, TIFF of any dtype), a folder dataset with split lists, a tiny
training config, FIFOs, sockets, symlinks, a real tmpfs "disk" of a few KiB (root only) and a
copy of a trained run folder. ``protect`` snapshots the user's files; ``changed`` says which
of them the run altered or removed.

:class:`Fixtures` trains the shared run folders once per session, through the same launcher as
the cases, and hands out copies.
"""
from __future__ import annotations

import copy
import hashlib
import os
import shutil
import stat
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

__all__ = ["Skip", "FixtureError", "Ctx", "Fixtures", "TINY", "SYNTHETIC", "tiny_config"]

#: Synthetic data of 4 training and 2 validation images of 32 px: a run is 2 steps and one validation.
SYNTHETIC = {"type": "synthetic", "num_samples": {"train": 4, "val": 2}, "size": 32}
TINY: dict[str, Any] = {
    "model": {"name": "unet", "kwargs": {"channels": [4, 8]}},
    "data": SYNTHETIC,
    "loader": {"batch_size": 2},
    "train": {"epochs": 1, "progress": False, "tensorboard": False},
    "output_dir": "exp1",
}


class Skip(Exception):
    """The case needs what this machine lacks (root for a tmpfs mount, ...)."""


class FixtureError(Exception):
    """A shared run folder could not be trained."""


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def tiny_config(data: Mapping[str, Any] | None = None, **sections: Any) -> dict[str, Any]:
    """:data:`TINY` with ``data`` replaced and ``sections`` merged in (``train={"epochs": 2}``)."""
    config = _merge(TINY, sections)
    if data is not None:
        config["data"] = copy.deepcopy(dict(data))
    return config


def pattern(size: int | tuple[int, int] = 32, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A smooth random uint8 picture, (H, W) or (H, W, C)."""
    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xx / 3.0 + seed) * np.cos(yy / 4.0) + rng.normal(0, 10, (h, w))
    img = np.clip(base, 0, 255).astype(np.uint8)
    return img if channels == 1 else np.stack([np.roll(img, c, axis=1) for c in range(channels)], axis=-1)


def mask_array(size: int | tuple[int, int] = 32, values: tuple[Any, ...] = (0, 255), seed: int = 0) -> np.ndarray:
    """values[0] everywhere, a disc of values[1], a small square of each further value; tuples make RGB."""
    h, w = (size, size) if isinstance(size, int) else size
    rgb = isinstance(values[0], (tuple, list))
    dtype = np.uint16 if not rgb and max(values) > 255 else np.uint8
    out = np.zeros((h, w, 3) if rgb else (h, w), dtype)
    out[...] = values[0]
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = h // 2 + seed % 3, w // 2 - seed % 4
    out[(yy - cy) ** 2 + (xx - cx) ** 2 <= (min(h, w) // 4) ** 2] = values[1]
    for k, value in enumerate(values[2:]):
        out[1 + 3 * k: 3 + 3 * k, 1:3] = value
    return out


class Ctx:
    """One case's folder: ``root`` is the working directory of the command, ``base`` holds its output files."""

    def __init__(self, base: Path, fixtures: Fixtures | None = None) -> None:
        self.base = base
        self.root = base / "work"
        self.root.mkdir(parents=True, exist_ok=True)
        self.fixtures = fixtures
        self.env: dict[str, str] = {}
        self._mounts: list[Path] = []
        self._protected: dict[str, str | None] = {}

    # -- paths and plain files ------------------------------------------------------------------
    def p(self, rel: str) -> Path:
        return self.root / rel

    def _new(self, rel: str) -> Path:
        path = self.p(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def text(self, rel: str, content: str) -> Path:
        path = self._new(rel)
        path.write_text(content, encoding="utf-8")
        return path

    def data(self, rel: str, content: bytes) -> Path:
        path = self._new(rel)
        path.write_bytes(content)
        return path

    def yaml(self, rel: str, obj: Any) -> Path:
        return self.text(rel, yaml.safe_dump(obj, sort_keys=False))

    def config(self, rel: str = "c.yaml", data: Mapping[str, Any] | None = None, **sections: Any) -> Path:
        """A tiny training config (:func:`tiny_config`) written as YAML."""
        return self.yaml(rel, tiny_config(data, **sections))

    # -- images --------------------------------------------------------------------------------
    def array(self, rel: str, array: np.ndarray) -> Path:
        """``array`` as an image file; the suffix picks the format (TIFF keeps any dtype)."""
        path = self._new(rel)
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(path, array)
        else:
            Image.fromarray(array).save(path)
        return path

    def image(self, rel: str, size: int | tuple[int, int] = 32, channels: int = 1, seed: int = 0) -> Path:
        return self.array(rel, pattern(size, channels, seed))

    def mask(self, rel: str, size: int | tuple[int, int] = 32, values: tuple[Any, ...] = (0, 255),
             seed: int = 0) -> Path:
        return self.array(rel, mask_array(size, values, seed))

    def folder_data(self, root: str = "data", train: int = 4, val: int = 2, test: int = 0, channels: int = 1,
                    mask_values: tuple[Any, ...] = (0, 255), size: int = 32, prefix: str = "s",
                    **options: Any) -> dict[str, Any]:
        """``root/images/sN.png``, ``root/masks/sN.png`` and ``root/lists/{split}.txt``; returns its config.

        Samples are numbered across the splits (train s0-s3, val s4-s5, test s6-s7 by default).
        """
        splits, start = {}, 0
        for split, count in (("train", train), ("val", val), ("test", test)):
            if not count:
                continue
            names = [f"{prefix}{i}" for i in range(start, start + count)]
            for i, name in enumerate(names, start):
                self.image(f"{root}/images/{name}.png", size, channels, seed=i)
                self.mask(f"{root}/masks/{name}.png", size, mask_values, seed=i)
            self.text(f"{root}/lists/{split}.txt", "".join(n + "\n" for n in names))
            splits[split] = f"lists/{split}.txt"
            start += count
        return {"type": "folder", "root": root, "splits": splits, **options}

    def tiff_stack(self, images: str = "vol.tif", labels: str = "lab.tif", slices: int = 6, size: int = 32,
                   label_values: tuple[int, ...] = (0, 255)) -> None:
        """A multi-page image volume and its label volume (the ISBI 2012 form)."""
        self.array(images, np.stack([pattern(size, 1, i) for i in range(slices)]))
        self.array(labels, np.stack([mask_array(size, label_values, i) for i in range(slices)]))

    # -- special files -------------------------------------------------------------------------
    def fifo(self, rel: str) -> Path:
        path = self._new(rel)
        os.mkfifo(path)
        return path

    def socket(self, rel: str) -> Path:
        path = self._new(rel)
        os.mknod(path, 0o644 | stat.S_IFSOCK)
        return path

    def symlink(self, rel: str, target: str) -> Path:
        path = self._new(rel)
        os.symlink(target, path)
        return path

    def small_disk(self, rel: str = "disk", kib: int = 64, fill: bool = False) -> Path:
        """A real tmpfs of ``kib`` KiB mounted at ``rel`` (root only); ``fill``: left with no free byte."""
        if os.geteuid() != 0:
            raise Skip("a real full disk needs a tmpfs mount, which needs root")
        path = self._new(rel)
        path.mkdir(exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise Skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
        self._mounts.append(path)
        if fill:
            fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                while os.write(fd, b"\0" * 4096):
                    pass
            except OSError:  # ENOSPC: the disk is full
                pass
            finally:
                os.close(fd)
        return path

    # -- trained runs --------------------------------------------------------------------------
    def trained(self, kind: str = "binary") -> Path:
        """A copy of the shared trained run: ``exp1/`` (config, log, checkpoints) and its ``c.yaml``."""
        if self.fixtures is None:
            raise FixtureError("this case needs a trained run but no fixtures were given")
        source = self.fixtures.get(kind)
        shutil.copytree(source / "exp1", self.p("exp1"), symlinks=True)
        shutil.copy2(source / "c.yaml", self.p("c.yaml"))
        return self.p("exp1")

    # -- what the user owns ----------------------------------------------------------------------
    def protect(self, *rels: str) -> None:
        """Snapshot the regular files at or under ``rels``; :meth:`changed` compares against it."""
        for rel in rels:
            for path in _files(self.p(rel)):
                self._protected[str(path.relative_to(self.root))] = _digest(path)

    def changed(self) -> list[str]:
        """Protected files now different or gone."""
        return [rel for rel, digest in self._protected.items() if _digest(self.p(rel)) != digest]

    def cleanup(self, keep: bool = False) -> None:
        for path in reversed(self._mounts):
            subprocess.run(["umount", "-l", str(path)], capture_output=True)
        self._mounts.clear()
        if not keep:
            shutil.rmtree(self.base, ignore_errors=True)


def _files(path: Path) -> list[Path]:
    if path.is_symlink() or not path.exists():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return [path] if path.is_file() else []


def _digest(path: Path) -> str | None:
    try:
        if path.is_symlink():
            return "link:" + os.readlink(path)
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


#: Trained run folders the cases copy: name -> config sections merged into TINY.
FIXTURES: dict[str, dict[str, Any]] = {
    "binary": {},
    "multiclass": {"data": {**SYNTHETIC, "num_classes": 4}},
}


class Fixtures:
    """Shared run folders, each trained once (on first use, thread-safe) with ``launcher``."""

    def __init__(self, base: Path, launcher: Any, env: Mapping[str, str]) -> None:
        self.base, self.launcher, self.env = base, launcher, dict(env)
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._done: dict[str, Path | FixtureError] = {}

    def get(self, kind: str) -> Path:
        with self._lock:
            lock = self._locks.setdefault(kind, threading.Lock())
        with lock:
            if kind not in self._done:
                self._done[kind] = self._build(kind)
        found = self._done[kind]
        if isinstance(found, FixtureError):
            raise found
        return found

    def _build(self, kind: str) -> Path | FixtureError:
        folder = self.base / kind
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "c.yaml").write_text(yaml.safe_dump(tiny_config(**FIXTURES[kind]), sort_keys=False))
        result = self.launcher.run(["train", "--config", "c.yaml"], folder, self.env, 600.0,
                                   folder / "stdout.txt", folder / "stderr.txt")
        if result.rc != 0 or not (folder / "exp1" / "checkpoints" / "last.safetensors").is_file():
            return FixtureError(f"training the {kind!r} fixture failed (exit {result.rc}): {result.last_line}")
        return folder
