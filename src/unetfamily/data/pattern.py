"""Which files of a folder dataset are its images, masks and regions of interest, and the sample id of each.

A :class:`FilePattern` says where one kind of file is and how a file's path gives its sample id;
:func:`pair_files` pairs the files of two or three patterns by id. A ``folder`` config gives each
pattern in one of three forms:

- a folder and a suffix: ``masks: masks`` with ``mask_suffix: _mask`` takes ``masks/NAME_mask.*``
  (any readable extension) as sample ``NAME``;
- a template, a path relative to ``root`` with placeholders: ``{id}`` (the sample id, exactly
  once), ``{split}`` (the split's name), any other ``{word}`` (some text inside one folder or file
  name) and ``*`` (any text, possibly none, inside one name). A template whose last segment does
  not end in a readable extension or ``.*`` gets ``.*``; extensions match in any case. ``{id}`` and
  the ``{word}`` wildcards are non-greedy: in ``{id}_{tag}``, ``7_a_b`` gives id ``7``;
- a folder and a regular expression with a named ``id`` group (``mask_regex``), searched in the
  path of every readable file below the folder, relative to it (``a/7_label.png``); compiled with
  ``re.DOTALL``, as the folder form's pattern: a name may hold a newline and is not dropped for it.

Any of the three may be a mapping ``{split: value}`` instead, one value per split.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from unetfamily.data import options
from unetfamily.data.base import SamplePaths
from unetfamily.data.errors import DataConfigError, DataError, UnknownSplitError, unknown_choice, unknown_split
from unetfamily.data.io import IMAGE_SUFFIXES, natural_key, regular_file

__all__ = [
    "UNREAD_SUFFIXES", "FilePattern", "config_pattern", "find_files", "folder_pattern", "list_images",
    "pair_files", "per_split_layout",
]  # fmt: skip

log = logging.getLogger(__name__)

#: Image formats a folder may hold that the folder readers skip (a WARNING counts them).
UNREAD_SUFFIXES = (".jp2", ".j2k", ".ppm", ".pgm", ".pbm", ".tga", ".heic", ".avif", ".dcm")
#: Any readable extension, in any case.
_ANY_EXT = "(?i:" + "|".join(re.escape(s) for s in IMAGE_SUFFIXES) + ")"
_FIELD = re.compile(r"\{([^{}]*)\}")
_WORD = re.compile(r"[A-Za-z_]\w*", re.ASCII)
_ONE_PART = "[^/]+?"
_SINGULAR = {"images": "image", "masks": "mask", "roi": "roi"}
_WHAT = {"images": "image", "masks": "mask", "roi": "region-of-interest mask"}
_KEY = {what: _SINGULAR[key] for key, what in _WHAT.items()}  # "region-of-interest mask" -> "roi"
#: Pairing warnings already logged (see :func:`_warn_once`).
_WARNED: set[str] = set()


@dataclass(frozen=True)
class FilePattern:
    """Where the files of one kind are, and how a file's path gives its sample id.

    A file below ``base`` is taken when its path relative to ``base`` (``/``-separated) matches
    ``regex`` and its extension is readable; the match's ``id`` group is the sample id. With
    ``segments`` (one regex per path segment below ``base``) the path must match ``regex`` whole and
    have exactly that many segments; without, ``regex`` is searched in the path of every file below.
    ``what`` ("mask") and ``keys`` (the config keys that set it) word the messages; ``shown`` is the
    pattern as messages show it.
    """

    what: str
    keys: str
    base: Path
    regex: re.Pattern[str]
    shown: str
    segments: tuple[re.Pattern[str], ...] = ()


def _warn_once(text: str, *args: object) -> None:
    """A WARNING, logged once per process: every split and fold built pairs the files again (30 times in a compare)."""
    message = text % args
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning("%s", message)


def list_images(folder: Path) -> list[Path]:
    """Image files (PNG/JPEG/TIFF/BMP/GIF/WebP, any case: ``IMAGE_SUFFIXES``) directly inside ``folder``.

    Hidden files are skipped. Every listed name must be a regular file (or a symlink to one): a
    directory, FIFO, socket or device named like an image is a DataError naming it, raised without
    opening it. Images of formats that are not read (JPEG 2000, PPM, DICOM, ...) are skipped with a
    WARNING that counts them.
    """
    files = [p for p in _entries(folder) if p.suffix.lower() in IMAGE_SUFFIXES]
    for p in files:
        regular_file(p, "image")
    return files


def _entries(folder: Path, keys: str = "", warn: bool = True) -> list[Path]:
    """The non-hidden entries of ``folder`` in natural order; unread image formats counted in a WARNING."""
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found" + (f"; check {keys}" if keys else ""))
    try:
        entries = sorted((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: natural_key(p.name))
    except OSError as e:
        raise DataError(f"{folder}: cannot list the folder ({e.strerror or e})") from e
    unread = [p.name for p in entries if p.suffix.lower() in UNREAD_SUFFIXES]
    if unread and warn:
        _warn_once("%d image(s) in %s are skipped: only %s files are read, e.g. %s; convert them to PNG",
                   len(unread), folder, ", ".join(IMAGE_SUFFIXES), unread[:3])
    return entries


def folder_pattern(folder: Path, suffix: str = "", what: str = "image", keys: str = "'images'/'image_suffix'"
                   ) -> FilePattern:
    """The files ``folder/ID{suffix}.EXT`` (EXT: any readable extension), sample id ``ID``."""
    one = re.compile("(?P<id>.+?)" + re.escape(suffix) + _ANY_EXT, re.DOTALL)  # a name may hold a newline
    return FilePattern(what, keys, folder, one, f"'{folder / ('{id}' + suffix)}.*'", (one,))


def _check_placeholders(key: str, value: str) -> None:
    """Refuse a brace outside ``{word}`` and a placeholder that is not a word (``{}``, ``{0}``, ``{id:>3}``)."""
    rest = _FIELD.sub("", value)
    if "{" in rest or "}" in rest:
        raise DataConfigError(f"{key}={value!r} is invalid; braces must enclose a placeholder such as {{id}} or "
                              "{split}")
    for name in _FIELD.findall(value):
        if not _WORD.fullmatch(name):
            raise DataConfigError(
                f"{key}={value!r} is invalid; {{{name}}} is not a placeholder: use {{id}}, {{split}} or a "
                "{word} of letters, digits and _ (any text within one folder or file name)"
            )


def _segment(segment: str, split: str) -> str:
    """The regex of one path segment of a checked template: ``*`` and ``{word}`` any text, ``{id}`` the id group."""
    out, pos = [], 0
    for field in _FIELD.finditer(segment):
        out.append("[^/]*".join(re.escape(part) for part in segment[pos : field.start()].split("*")))
        name = field.group(1)
        out.append(f"(?P<id>{_ONE_PART})" if name == "id" else re.escape(split) if name == "split" else _ONE_PART)
        pos = field.end()
    return "".join(out) + "[^/]*".join(re.escape(part) for part in segment[pos:].split("*"))


def _extension(key: str, value: str, last: str) -> tuple[str, str]:
    """The last segment without its extension, and the extension's regex (``.*`` if none is given)."""
    lower = last.lower()
    if lower.endswith(".*"):
        return last[:-2], _ANY_EXT
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return last[: -len(suffix)], f"(?i:{re.escape(suffix)})"
    unread = [s for s in UNREAD_SUFFIXES if lower.endswith(s)]
    if unread:
        raise DataConfigError(f"{key}={value!r} is invalid; {unread[0]} files are not read; readable: "
                              f"{', '.join(IMAGE_SUFFIXES)} (convert the files to PNG)")
    return last, _ANY_EXT


def template_pattern(key: str, template: str, root: Path, split: str) -> FilePattern:
    """The files a template (``"{split}/labels/{id}_label.gif"``, relative to ``root``) names, for ``split``."""
    if template.startswith(("/", "\\", "~")) or re.match(r"[A-Za-z]:", template) or "\\" in template:
        raise DataConfigError(f"{key}={template!r} is invalid; give a path relative to 'root' with / between "
                              "folders, e.g. 'train/images/{id}.png'")
    _check_placeholders(key, template)
    ids = template.count("{id}")
    if ids != 1:
        raise DataConfigError(f"{key}={template!r} is invalid; a template needs {{id}} exactly once, where the "
                              f"sample id is in the name (found {ids}), e.g. '{key}/{{id}}.png'")
    parts = [p for p in template.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DataConfigError(f"{key}={template!r} is invalid; '..' leads out of 'root'; set 'root' to the "
                              "folder that holds every file instead")
    stem, ext = _extension(key, template, parts[-1])
    regexes = [_segment(p, split) for p in parts[:-1]] + [_segment(stem, split) + ext]
    fixed = 0  # leading segments without wildcards form the folder searched
    while fixed < len(parts) - 1 and not _is_template(parts[fixed]):
        fixed += 1
    base = root.joinpath(*(p.replace("{split}", split) for p in parts[:fixed]))
    segments = tuple(re.compile(r) for r in regexes[fixed:])
    shown = f"'{root / template.replace('{split}', split)}'"
    return FilePattern(_WHAT[key], f"{key!r}", base, re.compile("/".join(regexes[fixed:])), shown, segments)


def regex_pattern(key: str, regex: str, folder: Path) -> FilePattern:
    """The files below ``folder`` whose relative path ``regex`` (with a named ``id`` group) is found in."""
    rx_key = f"{_SINGULAR[key]}_regex"
    try:
        compiled = re.compile(regex, re.DOTALL)  # '.' matches any character of a name, a newline too
    except re.error as e:
        raise DataConfigError(f"{rx_key}={regex!r} is not a valid regular expression ({e})") from e
    if "id" not in compiled.groupindex:
        raise DataConfigError(f"{rx_key}={regex!r} has no named group 'id'; mark the sample id with (?P<id>...), "
                              r"e.g. '(?P<id>\d+)_label'")
    return FilePattern(_WHAT[key], f"{key!r}/{rx_key!r}", folder, compiled, f"{rx_key} {regex!r} below {folder}")


def _for_split(key: str, value: Any, split: str) -> Any:
    """``value``, or its entry for ``split`` when it is a ``{split: value}`` mapping."""
    if not isinstance(value, Mapping):
        return value
    entries = {str(k): v for k, v in value.items()}
    if split not in entries:
        raise unknown_split(f"{key} split", split, list(entries), hint=f"add it to {key!r}")
    return entries[split]


def per_split_layout(*values: Any) -> bool:
    """Whether config values (``images``, ``masks``, ... and the regexes) choose files per split."""
    return any(isinstance(v, Mapping) or (isinstance(v, str) and "{split}" in v) for v in values)


def _is_template(value: str) -> bool:
    """Whether a config value is a template (a placeholder besides ``{split}``, or ``*``) rather than a folder."""
    return bool(set(_FIELD.findall(value)) - {"split"}) or "*" in value


def config_pattern(key: str, value: Any, root: Path, split: str, *, suffix: Any = "", regex: Any = None
                   ) -> FilePattern:
    """The :class:`FilePattern` of a ``folder`` config's ``images``, ``masks`` or ``roi`` (``key``), for ``split``.

    ``suffix`` and ``regex`` are the values of its ``*_suffix`` and ``*_regex`` keys. A DataConfigError
    names the key of a malformed value; an UnknownSplitError says that a per-split mapping lacks ``split``.
    """
    singular = _SINGULAR[key]
    suffix = options.text(f"{singular}_suffix", suffix)
    valid = "give a folder, a template such as 'images/{id}.png', or {split: folder or template, ...}"
    value = options.text(key, _for_split(key, value, split), valid)
    if regex is not None:
        regex = options.text(f"{singular}_regex", _for_split(f"{singular}_regex", regex, split))
    if "{split}" in value and (split in ("", ".", "..") or "/" in split or "\\" in split):
        raise UnknownSplitError(f"split {split!r} cannot name a folder in {key}={value!r}; give a plain split name")
    _check_placeholders(key, value)
    if _is_template(value):
        extra = f"{singular}_suffix" if suffix else f"{singular}_regex" if regex is not None else ""
        if extra:
            raise DataConfigError(f"{extra} applies only when {key!r} names a folder, and {key}={value!r} is a "
                                  "template; write the suffix into the template, or give a folder")
        return template_pattern(key, value, root, split)
    folder = root / value.replace("{split}", split)
    if regex is not None:
        if suffix:
            raise DataConfigError(f"give {singular}_suffix or {singular}_regex, not both (the regex sees the suffix)")
        return regex_pattern(key, regex, folder)
    if folder.suffix.lower() in IMAGE_SUFFIXES + UNREAD_SUFFIXES and not folder.is_dir():
        example = f"{Path(value).parent.as_posix()}/{{id}}{folder.suffix}"
        raise DataConfigError(f"{key}={value!r} is invalid; it names a file: to name files, write a template with "
                              f"{{id}} where the sample id is, e.g. {example!r}")
    return folder_pattern(folder, suffix, _WHAT[key], f"{key!r}/'{singular}_suffix'")


def _walk(pattern: FilePattern) -> list[Path]:
    """The files below ``pattern.base`` that may match: segment by segment, or every readable file below."""
    if pattern.segments:
        level = [pattern.base]
        for i, segment in enumerate(pattern.segments):
            last = i == len(pattern.segments) - 1
            level = [e for folder in level for e in _entries(folder, pattern.keys, warn=last)
                     if segment.fullmatch(e.name) and (last or e.is_dir())]
        return level
    _entries(pattern.base, pattern.keys)  # the folder exists; unread formats counted
    found = []
    for folder, dirs, files in os.walk(pattern.base):
        dirs[:] = sorted((d for d in dirs if not d.startswith(".")), key=natural_key)
        found += [Path(folder, f) for f in sorted(files, key=natural_key)
                  if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return found


def find_files(pattern: FilePattern) -> dict[str, Path]:
    """Sample id -> file, in natural order of the ids (``2`` before ``10``).

    Ids are in Unicode normal form C: a name written with a decomposed accent (``e`` + U+0301, as macOS
    file systems and archives made there store it) pairs with the same name written precomposed.

    DataErrors: the searched folder is missing, a matching name is not a regular file (checked
    without opening it), a regex gives an empty id, or two files give the same id (both named).
    """
    found: dict[str, Path] = {}
    for path in _walk(pattern):
        rel = path.relative_to(pattern.base).as_posix()
        match = pattern.regex.fullmatch(rel) if pattern.segments else pattern.regex.search(rel)
        if match is None:
            continue
        sample = unicodedata.normalize("NFC", match.group("id"))  # 'é' as one code point or as 'e' + accent
        if not sample:
            raise DataError(f"{path}: {pattern.shown} gives an empty id; make the 'id' group match the sample id")
        regular_file(path, pattern.what)
        if sample in found:
            first = found[sample].relative_to(pattern.base).as_posix()
            raise DataError(f"{pattern.base}: {first} and {rel} both give sample {sample!r}; keep one, or change "
                            f"{pattern.keys} so that their ids differ")
        found[sample] = path
    return dict(sorted(found.items(), key=lambda item: natural_key(item[0])))


def _example(folder: Path) -> str:
    """``"; e.g. 'a/b.png' is there"``: the first entry below ``folder`` (descending into folders), or ``""``."""
    rel: list[str] = []
    for _ in range(4):
        try:
            entry = min((p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: natural_key(p.name))
        except (OSError, ValueError):  # unreadable, or empty
            break
        rel.append(entry.name)
        if not entry.is_dir():
            break
        folder = entry
    return f"; e.g. {'/'.join(rel)!r} is there" if rel else "; the folder is empty"


def _found(pattern: FilePattern) -> dict[str, Path]:
    """:func:`find_files`, with a DataError showing an example file name when nothing matches."""
    found = find_files(pattern)
    if not found:
        raise DataError(f"{pattern.base}: no {pattern.what}s ({', '.join(IMAGE_SUFFIXES)}) matching {pattern.shown}"
                        f"{_example(pattern.base)}; check {pattern.keys}")
    return found


def _not_masks(images: FilePattern, image_files: dict[str, Path], others: dict[FilePattern, dict[str, Path]]
               ) -> dict[str, Path]:
    """``image_files`` without the files the mask (or ROI) pattern takes: masks kept beside their images
    (``x.png`` and ``x_mask.png`` in one folder) match the image pattern too, and a mask is never an image.

    A DataError when every image file is also a mask or ROI file (the patterns cannot tell them apart).
    """
    taken = {path: pattern for pattern, files in others.items() for path in files.values()}
    kept = {sample: path for sample, path in image_files.items() if path not in taken}
    if not kept:
        path = next(iter(image_files.values()))
        raise DataError(f"{images.base}: every image matching {images.shown} is also a {taken[path].what} matching "
                        f"{taken[path].shown} (e.g. {path.name}); give the {taken[path].what}s a suffix or their own "
                        f"folder, and set {taken[path].keys} to match only them")
    if len(kept) < len(image_files):
        log.info("%d file(s) matching %s are taken as masks, not images, e.g. %s", len(image_files) - len(kept),
                 images.shown, next(p.name for p in image_files.values() if p in taken))
    return kept


def _suffix_hint(sample: str, files: dict[str, Path], pattern: FilePattern) -> str:
    """`` The masks are named like 'x_mask.png': ...`` when an unpaired id is another file's id plus a suffix
    (``img_1`` and ``img_1_mask``, or ``img_1_img`` and ``img_1``): the suffix to declare, and where."""
    longer = [other for other in files if other != sample and other.startswith(sample)]
    shorter = [other for other in files if other != sample and sample.startswith(other)]
    if longer:
        key, suffix, example = f"{_KEY[pattern.what]}_suffix", longer[0][len(sample):], files[longer[0]].name
    elif shorter:
        key, suffix, example = "image_suffix", sample[len(shorter[-1]):], files[shorter[-1]].name
    else:
        return ""
    return (f" The {pattern.what}s are named like {example!r}: declare {key}: {suffix!r} in the data config (for a "
            f"folder given as the data, a data.yaml in it: type: folder, root: ., {key}: {suffix!r}).")


def pair_files(
    images: FilePattern,
    masks: FilePattern,
    roi: FilePattern | None = None,
    *,
    on_missing: Literal["error", "skip"] = "error",
) -> list[SamplePaths]:
    """Pair each image with the mask (and region-of-interest mask) of the same sample id.

    Samples come in natural order of id. An image without a mask (or ROI) is a DataError showing
    its id and the pattern searched, or with ``on_missing="skip"`` is left out and counted in a
    WARNING; files without an image are counted in a WARNING.
    """
    if on_missing not in ("error", "skip"):
        raise unknown_choice("on_missing", on_missing, ("error", "skip"))
    image_files, mask_files = _found(images), _found(masks)
    roi_files = _found(roi) if roi is not None else {}
    image_files = _not_masks(images, image_files, {masks: mask_files, **({roi: roi_files} if roi else {})})
    pairs, missing = [], []
    for sample, image in image_files.items():
        lacking = [p for p, files in ((masks, mask_files), (roi, roi_files)) if p is not None and sample not in files]
        if lacking:
            missing.append((sample, image, lacking[0]))
        else:
            pairs.append(SamplePaths(sample, image, mask_files[sample], roi_files.get(sample)))
    if missing and on_missing == "error":
        sample, image, pattern = missing[0]
        files = mask_files if pattern is masks else roi_files
        raise DataError(f"{image}: id {sample!r} has no {pattern.what} matching {pattern.shown} ({len(missing)} "
                        f"image(s) lack one).{_suffix_hint(sample, files, pattern)} Add the files, fix "
                        f"{pattern.keys}, or set on_missing: skip")
    if missing:
        _warn_once("skipped %d image(s) without a %s, e.g. %s", len(missing),
                   " or ".join(sorted({p.what for _, _, p in missing})), [str(i) for _, i, _ in missing[:5]])
    for pattern, files in ((masks, mask_files), (roi, roi_files)):
        orphans = [files[sample].name for sample in files if sample not in image_files]
        if pattern is not None and orphans:
            _warn_once("%d %s(s) matching %s have no image matching %s, e.g. %s", len(orphans), pattern.what,
                       pattern.shown, images.shown, orphans[:5])
    if not pairs:
        wanted = "a mask" if roi is None else "both a mask and a region-of-interest mask"
        raise DataError(f"{images.base}: no image has {wanted}; set on_missing: error to see the first that lacks one")
    return pairs
