"""Reading chosen members of a zip or tar archive safely, whatever the archive holds.

:class:`SafeArchive` opens a zip or a tar (plain, gz, bz2, xz; recognised by content, not by
name) and checks every member before anything is extracted:

* member names: no absolute paths, no drive letters (``C:``), no ``..`` components, no NUL;
  for tar also Python's ``tarfile.data_filter`` (links that point outside, special files);
* counts and sizes: at most :attr:`Limits.max_members` members and :attr:`Limits.max_total_bytes`
  of declared uncompressed data, so that a zip bomb is refused before it is decompressed.

Any violation refuses the whole archive with an :class:`ArchiveError` naming the archive, the
member and the rule. Only the members a caller asks for are extracted, and only if they are
regular files (a symbolic or hard link, a device or a FIFO is refused, never created). The bytes
written are counted while they stream: a member that decompresses to more than it declared, or
more than :attr:`Limits.max_member_bytes`, is refused. Files are written with
:func:`unetfamily.files.atomic_write` under a root the caller names, at target paths the caller
chooses (never at the member's own path), each checked to stay inside that root.

A single top-level folder (``REPO-COMMIT/`` in GitHub's archives) is stripped from the names;
``__MACOSX/`` entries (metadata macOS adds to the zips it makes) are checked but not listed.
"""
from __future__ import annotations

import io
import logging
import re
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from unetfamily.data.errors import DataError
from unetfamily.files import atomic_write

__all__ = ["ArchiveError", "Limits", "SafeArchive", "check_relative"]

log = logging.getLogger(__name__)

_GIB = 1 << 30
_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
#: Errors a decompressor raises on damaged data (gzip's BadGzipFile is an OSError).
#: zipfile raises RuntimeError for an encrypted member, NotImplementedError for an unknown compression method.
_READ_ERRORS = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError, ValueError, RuntimeError,
                NotImplementedError)


class ArchiveError(DataError):
    """An archive is unsafe (a traversal or link member, a bomb), damaged, or lacks a member."""


@dataclass(frozen=True)
class Limits:
    """Upper bounds an archive must respect before anything is extracted from it.

    The defaults are generous for the project's datasets (the largest GitHub archive they come
    from holds well under 2 GiB and 100,000 members) and stop archives built to exhaust a disk.
    """

    max_members: int = 1_000_000
    max_total_bytes: int = 16 * _GIB
    max_member_bytes: int = 2 * _GIB


@dataclass(frozen=True)
class _Member:
    name: str  # with the top-level folder stripped
    raw: str  # as stored in the archive
    size: int  # declared uncompressed size in bytes
    kind: str  # "file", "dir", "symbolic link", "hard link", "special file"
    index: int  # position in the archive
    handle: zipfile.ZipInfo | tarfile.TarInfo


def _unsafe(name: str) -> str | None:
    """Why ``name`` cannot be a relative path inside a folder; None when it can."""
    parts = [p for p in re.split(r"[/\\]", name) if p not in ("", ".")]
    if "\0" in name:
        return "contains a NUL character"
    if not parts:
        return "names no file"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "is an absolute path (outside the target folder)"
    if ".." in parts:
        return "has a '..' component (would leave the target folder)"
    return None


def check_relative(name: str, what: str) -> PurePosixPath:
    """``name`` as a relative POSIX path that cannot leave its folder; a DataError naming ``what`` otherwise.

    Refused: empty names, absolute paths (``/x``, ``\\x``), drive letters (``C:x``), ``..``
    components, NUL characters. Backslashes count as separators for the check.
    """
    reason = _unsafe(name)
    if reason is not None:
        raise DataError(f"{what} {name!r}: {reason}")
    return PurePosixPath(*[p for p in re.split(r"[/\\]", name) if p not in ("", ".")])


def _zip_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if info.is_dir() or stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if mode and not stat.S_ISREG(mode) and stat.S_IFMT(mode):
        return "special file"
    return "file"


def _tar_kind(info: tarfile.TarInfo) -> str:
    if info.isdir():
        return "dir"
    if info.issym():
        return "symbolic link"
    if info.islnk():
        return "hard link"
    return "file" if info.isreg() else "special file"


class SafeArchive:
    """A zip or tar archive whose members were checked (see the module docstring); a context manager.

    ``names()`` lists its regular files (top folder stripped); ``read`` returns one small member's
    bytes; ``extract`` writes chosen members to chosen paths under a root.
    """

    def __init__(self, path: str | Path, limits: Limits | None = None) -> None:
        self.path = Path(path)
        self.limits = limits or Limits()
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        self._file: BinaryIO | None = None
        try:
            self._open()
            self._members = self._scan()
        except BaseException:
            self.close()
            raise
        self._by_name = {m.name: m for m in self._members if m.kind != "dir"}

    def _open(self) -> None:
        try:
            self._file = open(self.path, "rb")
            if zipfile.is_zipfile(self._file):
                self._zip = zipfile.ZipFile(self._file)
            else:
                self._file.seek(0)
                self._tar = tarfile.open(fileobj=self._file, mode="r:*")
        except FileNotFoundError as e:
            raise ArchiveError(f"{self.path}: archive not found") from e
        except tarfile.ReadError as e:  # neither a zip (no end record: truncated, or another file) nor a tar
            raise ArchiveError(f"{self.path}: neither a zip nor a tar (gz/bz2/xz) archive; the download is damaged "
                               "(cut short?) or the file is something else: get it again") from e
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as e:
            raise ArchiveError(f"{self.path}: not a readable zip or tar archive ({type(e).__name__}: {e}); "
                               "the download is damaged or the file is something else: get it again") from e

    def _raw_members(self) -> Iterator[tuple[str, int, str, zipfile.ZipInfo | tarfile.TarInfo]]:
        if self._zip is not None:
            for info in self._zip.infolist():
                yield info.filename, info.file_size, _zip_kind(info), info
            return
        assert self._tar is not None
        try:
            for info in self._tar:
                yield info.name, info.size, _tar_kind(info), info
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise ArchiveError(f"{self.path}: damaged tar archive ({type(e).__name__}: {e}); get it again") from e

    def _refuse(self, raw: str, why: str) -> ArchiveError:
        return ArchiveError(f"{self.path}: member {raw!r} {why}; the archive is unsafe and nothing was extracted "
                            "from it (get it again from the dataset's source)")

    def _scan(self) -> list[_Member]:
        found, total, seen = [], 0, set()
        for index, (raw, size, kind, info) in enumerate(self._raw_members()):
            if index >= self.limits.max_members:
                raise ArchiveError(f"{self.path}: more than {self.limits.max_members} members (the max_members "
                                   "limit); the archive is refused as a possible zip bomb")
            reason = _unsafe(raw)
            if reason is not None:
                raise self._refuse(raw, reason)
            if isinstance(info, tarfile.TarInfo):
                try:
                    tarfile.data_filter(info, "/__archive__")
                except tarfile.FilterError as e:
                    raise self._refuse(raw, f"is unsafe ({e})") from e
            name = str(check_relative(raw, "member"))
            total += max(size, 0)
            if total > self.limits.max_total_bytes:
                raise self._refuse(raw, f"brings the declared uncompressed size above the max_total_bytes limit "
                                        f"of {self.limits.max_total_bytes} bytes (a possible zip bomb)")
            if kind != "dir" and name in seen:
                raise self._refuse(raw, "appears twice (an ambiguous archive)")
            seen.add(name)
            found.append((name, raw, size, kind, index, info))
        return self._strip_top(found)

    @staticmethod
    def _strip_top(found: list[tuple]) -> list[_Member]:
        # macOS's zip tool adds __MACOSX/ (resource forks, never data): left out of the listing.
        found = [item for item in found if item[0].split("/", 1)[0] != "__MACOSX"]
        tops = {name.split("/", 1)[0] for name, *_ in found}
        nested = any("/" in name for name, *_ in found)
        if len(tops) == 1 and nested:
            top = tops.pop() + "/"
            found = [(name[len(top):], *rest) for name, *rest in found if name.startswith(top)]
        return [_Member(*item) for item in found]

    def names(self) -> list[str]:
        """The archive's members that are not folders (names without the top-level folder), in archive order."""
        return [m.name for m in self._members if m.kind != "dir"]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def _member(self, name: str) -> _Member:
        member = self._by_name.get(name)
        if member is None:
            raise ArchiveError(f"{self.path}: has no member {name!r}; is it the right archive (the one the "
                               "dataset's source names)?")
        if member.kind != "file":
            raise self._refuse(member.raw, f"is a {member.kind}, not a regular file; links and special "
                                           "files are never extracted")
        if member.size > self.limits.max_member_bytes:
            raise self._refuse(member.raw, f"declares {member.size} bytes, above the max_member_bytes limit "
                                           f"of {self.limits.max_member_bytes}")
        return member

    def _stream(self, member: _Member) -> IO[bytes]:
        try:
            if self._zip is not None:
                return self._zip.open(member.handle)
            assert self._tar is not None
            stream = self._tar.extractfile(member.handle)
        except _READ_ERRORS as e:
            raise ArchiveError(f"{self.path}: cannot read member {member.raw!r} ({type(e).__name__}: {e}); "
                               "the archive is damaged: get it again") from e
        if stream is None:
            raise self._refuse(member.raw, "has no data")
        return stream

    def _copy(self, member: _Member, write: IO[bytes]) -> int:
        """Stream ``member`` into ``write``, refusing it when it outgrows what it declared; returns its size."""
        done = 0
        with self._stream(member) as stream:
            while True:
                try:
                    chunk = stream.read(_CHUNK)
                except _READ_ERRORS as e:
                    raise ArchiveError(f"{self.path}: cannot read member {member.raw!r} ({type(e).__name__}: "
                                       f"{e}); the archive is damaged: get it again") from e
                if not chunk:
                    return done
                done += len(chunk)
                if done > member.size:
                    raise self._refuse(member.raw, f"decompresses to more than the {member.size} bytes it declares")
                write.write(chunk)

    def read(self, name: str, max_bytes: int = 64 << 20) -> bytes:
        """The bytes of the regular-file member ``name`` (at most ``max_bytes``: for lists and small files)."""
        member = self._member(name)
        if member.size > max_bytes:
            raise self._refuse(member.raw, f"is larger ({member.size} bytes) than the {max_bytes} expected here")
        buffer = io.BytesIO()
        self._copy(member, buffer)
        return buffer.getvalue()

    def extract(self, wanted: Mapping[str, str], root: str | Path) -> int:
        """Write each member ``wanted[target]`` to ``root / target``, in archive order; returns the bytes written.

        Targets are relative paths checked to stay inside ``root``; members must be regular files
        within the limits. The first problem raises an :class:`ArchiveError` naming the member.
        """
        root = Path(root)
        jobs = sorted(((self._member(name), str(check_relative(target, "target"))) for target, name in wanted.items()),
                      key=lambda job: job[0].index)
        declared = sum(member.size for member, _ in jobs)
        if declared > self.limits.max_total_bytes:
            raise ArchiveError(f"{self.path}: the {len(jobs)} members to extract declare {declared} bytes, above "
                               f"the max_total_bytes limit of {self.limits.max_total_bytes}")
        total = 0
        for member, target in jobs:
            sizes: list[int] = []
            atomic_write(root / target, lambda f, m=member: sizes.append(self._copy(m, f)))
            total += sizes[0]
        log.debug("extracted %d member(s), %d bytes, from %s", len(jobs), total, self.path)
        return total

    def close(self) -> None:
        """Close the archive file."""
        for handle in (self._zip, self._tar, self._file):
            if handle is not None:
                handle.close()
        self._zip = self._tar = self._file = None

    def __enter__(self) -> SafeArchive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
