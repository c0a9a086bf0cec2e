"""Which files ``unetfamily predict`` reads and writes, checked before anything is predicted.

Inputs are image files or folders of images (regular files only); outputs are named after the
input's stem (:func:`output_files`). Two inputs that would write one
file, an output over an input, and (unless asked) an output over an existing file are refused.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from unetfamily.errors import ConfigError, regular_file

__all__ = ["collect_inputs", "output_files", "output_stems", "refuse_collisions", "refuse_existing"]


def output_files(out_dir: Path, stem: str, num_classes: int, probabilities: Literal["npy", "png"] | None = None,
                 with_overlay: bool = False) -> list[Path]:
    """The files :func:`write_outputs` writes for one image, the mask first."""
    probs = {None: [], "npy": ["_prob.npy"], "png": ["_prob.png"] if num_classes == 1 else
             [f"_prob_{k}.png" for k in range(num_classes)]}[probabilities]
    return [out_dir / f"{stem}{suffix}" for suffix in [".png", *probs, *(["_overlay.png"] if with_overlay else [])]]


def collect_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files from file and folder arguments (folders: their images, not recursive, natural order)."""
    from unetfamily.data.errors import DataError
    from unetfamily.data.formats import list_images
    from unetfamily.data.io import IMAGE_SUFFIXES

    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = list_images(item)
            if not found:
                raise DataError(f"{item}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif os.path.lexists(item):  # a FIFO, socket or device: opening it could block or never end
            files.append(regular_file(item, "input (an image file or a folder of images)", DataError))
        else:
            raise DataError(f"{item}: input not found; pass image files or folders of images")
    return files


def output_stems(files: Sequence[Path], out_dir: Path) -> list[str]:
    """Output stems, refusing two inputs that would write the same file or an output over an input."""
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen:
            raise ConfigError(
                f"{seen[path.stem]} and {path} would both write {out_dir / (path.stem + '.png')}; "
                f"predict them into separate output folders"
            )
        seen[path.stem] = path
        if (out_dir / f"{path.stem}.png").resolve() == path.resolve():
            raise ConfigError(f"{path}: its mask would overwrite it; choose another output folder")
    return list(seen)


def refuse_collisions(files: Sequence[Path], outputs: Sequence[list[Path]]) -> None:
    """Refuse when one input's output is another input's output (``a`` overlay vs ``a_overlay``) or an input."""
    owner: dict[Path, Path] = {path.resolve(): path for path in files}
    for path, paths in zip(files, outputs):
        for target in paths:
            other = owner.setdefault(target.resolve(), path)
            if other is not path:
                raise ConfigError(f"{path} and {other} would both write {target} (or it is an input); predict them "
                                  "into separate output folders or rename one")


def refuse_existing(out_dir: Path, stems: Sequence[str], num_classes: int,
                     probabilities: Literal["npy", "png"] | None, with_overlay: bool) -> None:
    """A ConfigError when any file the prediction would write already exists in ``out_dir``."""
    targets = [p for stem in stems for p in output_files(out_dir, stem, num_classes, probabilities, with_overlay)]
    existing = [p for p in targets if os.path.lexists(p)]
    if existing:
        raise ConfigError(
            f"{out_dir} already holds {len(existing)} of the {len(targets)} files this prediction would write "
            f"(e.g. {existing[0]}); nothing was predicted. Add --overwrite to replace them, or choose another --out"
        )
