"""``download_dataset``: get a named dataset from its public source, verify it, and put it in place.

``download_dataset("isbi2012_em", "~/data")`` downloads the archive(s) of the dataset's source
(:mod:`unetfamily.data.sources`) into ``~/data/.downloads/`` (resumable, :mod:`~unetfamily.data.fetch`),
extracts only the members the dataset needs (:mod:`~unetfamily.data.archive`, checked against
traversal, links and bombs) into the hidden staging folder ``~/data/.isbi2012_em.partial``, lays
them out as ``$UNETFAMILY_DATA_ROOT/<name>/`` is read (:mod:`~unetfamily.data.arrange`), checks
every file against the checksums the project ships, and only then renames the folder to
``~/data/isbi2012_em``. Any failure leaves no dataset folder (and removes the staging folder);
an existing ``~/data/<name>`` is refused unless ``overwrite=True``, and even then replaced only
by a complete, verified copy. Afterwards ``UNETFAMILY_DATA_ROOT=~/data`` makes the ready configs
(``configs/data/<name>.yaml``) read it.

``base_url`` (or ``$UNETFAMILY_DOWNLOAD_BASE_URL``) replaces the scheme and host of every URL: a
mirror serving the same paths, or a test server on 127.0.0.1.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from filelock import FileLock, Timeout

from unetfamily.data.archive import ArchiveError, Limits, SafeArchive, check_relative
from unetfamily.data.arrange import PLANNERS
from unetfamily.data.errors import DataConfigError, DataError, unknown_choice
from unetfamily.data.fetch import DownloadError, FetchOptions, Progress, fetch, with_base_url
from unetfamily.data.io import regular_file
from unetfamily.data.sources import Checksums, Source, find_source, load_checksums, pixel_digest
from unetfamily.errors import file_sha256
from unetfamily.files import WriteError, atomic_write_bytes

__all__ = ["BASE_URL_ENV", "ChecksumError", "download_dataset", "archive_paths"]

log = logging.getLogger(__name__)

BASE_URL_ENV = "UNETFAMILY_DOWNLOAD_BASE_URL"


class ChecksumError(DownloadError):
    """An arranged file does not match the shipped checksums; ``roles`` names the archives it came from."""

    def __init__(self, message: str, roles: set[str]) -> None:
        super().__init__(message)
        self.roles = roles


def archive_paths(source: Source, archives: Mapping[str, str | Path] | Sequence[str | Path] | None) -> dict[str, Path]:
    """The archives the user handed over, by role: ``{"data": PATH}``, or ``["PATH", "splits=PATH"]``.

    A plain path is the source's first archive (``data``); ``ROLE=PATH`` names another one.
    """
    roles = [a.role for a in source.archives]
    if isinstance(archives, (str, Path)):
        archives = [archives]
    if isinstance(archives, Mapping):
        items = list(archives.items())
    else:
        items = []
        for value in archives or ():
            role, sep, rest = str(value).partition("=")
            named = sep and re.fullmatch(r"[a-z]+", role) and not Path(str(value)).exists()
            items.append((role, rest) if named else (roles[0], str(value)))
    chosen: dict[str, Path] = {}
    for role, path in items:
        if role not in roles:
            raise unknown_choice(f"archive role of source {source.name!r}", role, roles,
                                 hint="give ROLE=PATH, or a plain PATH for the first")
        if role in chosen:
            raise DataConfigError(f"two archives given for role {role!r} ({chosen[role]} and {path}); give one")
        chosen[role] = Path(path).expanduser()
    return chosen


def _manual_steps(name: str, source: Source, given: Mapping[str, Path]) -> None:
    for archive in source.archives:
        if archive.url is None and archive.role not in given:
            raise DownloadError(f"{name}: source {source.name!r} cannot be downloaded automatically (it needs a "
                                f"login or a form); get {archive.filename} by hand: {archive.steps}")


def _get_archives(name: str, source: Source, given: Mapping[str, Path], downloads: Path, base_url: str | None,
                  options: FetchOptions | None, progress: Progress | None) -> dict[str, tuple[Path, bool]]:
    """``{role: (path, downloaded_here)}``: the given archives, and the others downloaded into ``downloads``."""
    found = {}
    for archive in source.archives:
        if archive.role in given:
            path, ours = regular_file(given[archive.role], f"{archive.role} archive"), False
        else:
            assert archive.url is not None  # _manual_steps ran first
            url = with_base_url(archive.url, base_url)
            log.info("%s: downloading %s", name, url)
            path, ours = fetch(url, downloads / archive.filename, options=options, progress=progress), True
        if archive.sha256 and (got := file_sha256(path)) != archive.sha256:
            if ours:
                path.unlink(missing_ok=True)
            todo = "it was removed: run the same command again" if ours else "get the file again"
            raise DownloadError(f"{path}: sha256 mismatch for the {archive.role} archive of {name}: expected "
                                f"{archive.sha256}, got {got}; the file is damaged or not the one the source names "
                                f"({todo})")
        found[archive.role] = (path, ours)
    return found


def _arrange(name: str, source: Source, paths: Mapping[str, Path], staging: Path, sums: Checksums,
             limits: Limits | None) -> dict[str, str]:
    """Lay the dataset out in ``staging``; returns ``{target: role of the archive it came from}``."""
    known = set(sums.files) | set(sums.pixels)
    accept = (lambda target: target in known) if source.verified else (lambda target: True)
    produced: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        opened = {a.role: (stack.enter_context(SafeArchive(paths[a.role], limits)), a.prefix) for a in source.archives}
        plan = PLANNERS[name](opened, accept)
        if plan.skipped:
            log.warning("%s: %d file(s) of the archives are not part of the dataset (not in its checksums): skipped",
                        name, plan.skipped)
        for role, copies in plan.copies.items():
            opened[role][0].extract(copies, staging)
            produced.update(dict.fromkeys(copies, role))
        for target, data in plan.texts.items():
            atomic_write_bytes(staging / check_relative(target, "target"), data)
            produced[target] = "data"
        if plan.derive is not None:
            produced.update(dict.fromkeys(plan.derive(staging), "data"))
    if not produced:
        raise DownloadError(f"{name}: the archive(s) {', '.join(map(str, paths.values()))} hold none of the dataset's "
                            "files; are they the ones the source names?")
    return produced


def _verify(name: str, source: Source, staging: Path, produced: Mapping[str, str], sums: Checksums) -> dict[str, str]:
    """Check ``produced`` against ``sums`` (pixels for derived files); returns every file's sha256."""
    digests = {target: file_sha256(staging / target) for target in produced}
    checked = {a.role for a in source.archives if a.verified}
    bad = []
    for target, role in produced.items():
        if role not in checked:
            continue
        if target in sums.pixels:
            expected, got, kind = sums.pixels[target], pixel_digest(staging / target), "pixel sha256"
        else:
            expected, got, kind = sums.files.get(target), digests[target], "sha256"
        if got != expected:
            bad.append((target, kind, expected, got, role))
    if bad:
        target, kind, expected, got, _ = bad[0]
        more = f" ({len(bad) - 1} more file(s) differ)" if len(bad) > 1 else ""
        raise ChecksumError(f"{name}/{target}: {kind} mismatch: expected {expected}, got {got}{more}",
                            {item[4] for item in bad})
    missing = sorted(set(sums.files) - set(produced)) if source.verified else []
    if missing:
        raise DownloadError(f"{name}: {len(missing)} file(s) of the dataset are not in the archive(s), e.g. "
                            f"{', '.join(missing[:3])}; the archive is not the one the source names")
    return digests


def _write_sums(staging: Path, digests: Mapping[str, str], sums: Checksums) -> None:
    order = [t for t in sums.files if t in digests] + sorted(set(digests) - set(sums.files))
    atomic_write_bytes(staging / "SHA256SUMS", "".join(f"{digests[t]}  ./{t}\n" for t in order).encode())


def _remove(path: Path) -> None:
    """Remove a folder of ours (a link or file is unlinked, never followed)."""
    try:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
    except OSError as e:
        raise WriteError(path, e) from e


def _place(staging: Path, dest: Path, overwrite: bool) -> None:
    """Rename the complete ``staging`` to ``dest``; an existing ``dest`` is replaced only with ``overwrite``."""
    if os.path.lexists(dest):
        if not overwrite:
            raise DataError(f"{dest}: appeared while downloading; nothing was replaced (pass --overwrite to replace it)")
        old = dest.with_name(f".{dest.name}.old")
        _remove(old)
        try:
            os.replace(dest, old)
            try:
                os.replace(staging, dest)
            except OSError:
                os.replace(old, dest)
                raise
        except OSError as e:
            raise WriteError(dest, e) from e
        _remove(old)
        return
    try:
        os.replace(staging, dest)
    except OSError as e:
        raise WriteError(dest, e) from e


def _prepare(to: Path, dest: Path, overwrite: bool) -> None:
    if os.path.lexists(dest) and not overwrite:
        raise DataError(f"{dest}: already exists; pass --overwrite (overwrite=True) to replace it with a new, "
                        "verified copy, or choose another --to folder")
    if os.path.lexists(to) and not to.is_dir():
        raise DataError(f"{to}: is not a folder; give --to a folder (it is created if missing)")
    try:
        (to / ".downloads").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise WriteError(to / ".downloads", e) from e


def _failed(error: DataError, fetched: Mapping[str, tuple[Path, bool]], dest: Path) -> DataError:
    """``error`` (a checksum mismatch, a damaged or unsafe archive) with what was done about it.

    The archives it concerns that were downloaded here are removed, so that the next run downloads
    them anew; archives the user handed over are named, never removed.
    """
    roles = getattr(error, "roles", None) or {r for r, (p, _) in fetched.items() if str(p) in str(error)}
    ours = [p for role, (p, mine) in fetched.items() if role in roles and mine]
    theirs = [p for role, (p, mine) in fetched.items() if role in roles and not mine]
    for path in ours:
        path.unlink(missing_ok=True)
    todo = (f"the downloaded archive {', '.join(map(str, ours))} was removed: run the same command again; "
            "if it fails again, report it" if ours else
            f"{', '.join(map(str, theirs)) or 'the archive'} is damaged or not the one the source names: get it again")
    message = f"{str(error).rstrip('.?!')}{'?' if str(error).endswith('?') else '.'} Nothing was installed at {dest}; {todo}"
    return ChecksumError(message, roles) if isinstance(error, ChecksumError) else type(error)(message)


def download_dataset(name: str, to: str | Path, *, source: str | None = None,
                     archives: Mapping[str, str | Path] | Sequence[str | Path] | None = None,
                     base_url: str | None = None, overwrite: bool = False, progress: Progress | None = None,
                     keep_archives: bool = False, limits: Limits | None = None, options: FetchOptions | None = None,
                     checksums: Checksums | None = None) -> Path:
    """Download, verify and arrange dataset ``name`` into ``to/name``; returns that folder.

    ``source`` picks among the dataset's sources (None: SOURCE.md's); ``archives`` hands over files
    downloaded by hand (see :func:`archive_paths`); ``progress(file, done, total)`` follows the
    downloads; ``keep_archives`` keeps the downloaded archives in ``to/.downloads``. ``limits``,
    ``options`` and ``checksums`` replace the extraction limits, the retry policy and the shipped
    checksums (tests use them). Raises a :class:`~unetfamily.data.errors.DataError` naming what failed.
    """
    chosen = find_source(name, source)
    to = Path(to).expanduser()
    dest = to / name
    given = archive_paths(chosen, archives)
    base_url = base_url if base_url is not None else os.environ.get(BASE_URL_ENV) or None
    with_base_url("https://example.org/", base_url)  # a bad base URL is refused before anything is written
    _manual_steps(name, chosen, given)
    sums = checksums if checksums is not None else load_checksums(name)
    _prepare(to, dest, overwrite)
    if not chosen.verified:
        log.warning("%s: source %r: %s", name, chosen.name, chosen.note)
    try:
        with FileLock(to / ".downloads" / f"{name}.lock", timeout=0):
            fetched = _get_archives(name, chosen, given, to / ".downloads", base_url, options, progress)
            staging = to / f".{name}.partial"
            _remove(staging)
            try:
                produced = _arrange(name, chosen, {r: p for r, (p, _) in fetched.items()}, staging, sums, limits)
                _write_sums(staging, _verify(name, chosen, staging, produced, sums), sums)
                _place(staging, dest, overwrite)
            except (ChecksumError, ArchiveError) as e:
                raise _failed(e, fetched, dest) from e
            finally:  # after _place the staging folder is gone; after a failure it goes
                with contextlib.suppress(WriteError):
                    _remove(staging)
    except Timeout as e:
        raise DataError(f"{to}: another download of {name} into this folder is running; wait for it to end") from e
    if not keep_archives:
        for path, ours in fetched.values():
            if ours:
                path.unlink(missing_ok=True)
    log.info("%s: %d file(s) in %s", name, len(produced), dest)
    return dest
