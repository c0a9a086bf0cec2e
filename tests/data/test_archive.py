"""Safe extraction (unetfamily.data.archive): hostile zip and tar members are refused by name, nothing lands outside."""
from __future__ import annotations

import io
import re
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from unetfamily.data.archive import ArchiveError, Limits, SafeArchive


def make_zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name) if name.startswith("/") else name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    return path


def make_tar(path: Path, members: dict[str, bytes], special: list[tarfile.TarInfo] = ()) -> Path:
    with tarfile.open(path, "w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        for info in special:
            t.addfile(info)
    return path


def listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


GOOD = {"repo-abc/data/a.png": b"a" * 100, "repo-abc/data/b.png": b"b", "repo-abc/README.md": b"r"}


@pytest.mark.parametrize("maker", [make_zip, make_tar], ids=["zip", "tar.gz"])
def test_top_folder_is_stripped_and_only_wanted_members_are_written(tmp_path: Path, maker) -> None:
    archive = maker(tmp_path / "a.archive", GOOD)
    out = tmp_path / "out"
    with SafeArchive(archive) as a:
        assert a.names() == ["data/a.png", "data/b.png", "README.md"]
        assert a.read("data/b.png") == b"b"
        assert a.extract({"x/a.png": "data/a.png"}, out) == 100
    assert listing(out) == ["x", "x/a.png"] and (out / "x" / "a.png").read_bytes() == b"a" * 100


@pytest.mark.parametrize("evil", ["../evil.png", "repo-abc/../../evil.png", "/abs/evil.png", "C:/evil.png",
                                  "repo-abc\\..\\..\\evil.png"])
@pytest.mark.parametrize("maker", [make_zip, make_tar], ids=["zip", "tar.gz"])
def test_traversal_and_absolute_members_refuse_the_archive(tmp_path: Path, maker, evil: str) -> None:
    archive = maker(tmp_path / "a.archive", GOOD | {evil: b"evil"})
    with pytest.raises(ArchiveError, match=re.escape(f"member {evil!r}") + r" (has a '\.\.'|is an absolute).*unsafe"):
        SafeArchive(archive)
    assert listing(tmp_path) == ["a.archive"]


def test_a_zip_symlink_member_is_never_extracted(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", GOOD, links={"repo-abc/data/c.png": "/etc/passwd"})
    with SafeArchive(archive) as a:
        a.extract({"a.png": "data/a.png"}, tmp_path / "out")  # other members are fine
        with pytest.raises(ArchiveError, match=r"member 'repo-abc/data/c\.png' is a symbolic link"):
            a.extract({"c.png": "data/c.png"}, tmp_path / "out")
    assert listing(tmp_path / "out") == ["a.png"]


def test_tar_links_out_of_the_target_and_special_files_refuse_the_archive(tmp_path: Path) -> None:
    link = tarfile.TarInfo("repo-abc/data/c.png")
    link.type, link.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
    with pytest.raises(ArchiveError, match=r"member 'repo-abc/data/c\.png' is unsafe \(.*outside the destination"):
        SafeArchive(make_tar(tmp_path / "link.tgz", GOOD, [link]))
    fifo = tarfile.TarInfo("repo-abc/data/fifo")
    fifo.type = tarfile.FIFOTYPE
    with pytest.raises(ArchiveError, match=r"member 'repo-abc/data/fifo'.*unsafe"):
        SafeArchive(make_tar(tmp_path / "fifo.tgz", GOOD, [fifo]))
    inside = tarfile.TarInfo("repo-abc/data/d.png")
    inside.type, inside.linkname = tarfile.SYMTYPE, "a.png"
    with SafeArchive(make_tar(tmp_path / "inside.tgz", GOOD, [inside])) as a:  # a link inside: listed, never written
        with pytest.raises(ArchiveError, match=r"is a symbolic link, not a regular file"):
            a.extract({"d.png": "data/d.png"}, tmp_path / "out")


@pytest.mark.parametrize("maker", [make_zip, make_tar], ids=["zip", "tar.gz"])
def test_a_bomb_is_refused_before_it_is_decompressed(tmp_path: Path, maker) -> None:
    archive = maker(tmp_path / "a.archive", GOOD | {"repo-abc/data/bomb.png": bytes(1_000_000)})
    with pytest.raises(ArchiveError, match=r"member 'repo-abc/data/bomb\.png'.*max_total_bytes limit of 100000"):
        SafeArchive(archive, Limits(max_total_bytes=100_000))
    with SafeArchive(archive, Limits(max_member_bytes=1000)) as a:
        with pytest.raises(ArchiveError, match=r"bomb\.png' declares 1000000 bytes, above the max_member_bytes"):
            a.extract({"bomb.png": "data/bomb.png"}, tmp_path / "out")
    with pytest.raises(ArchiveError, match="more than 3 members"):
        SafeArchive(archive, Limits(max_members=3))
    assert listing(tmp_path) == ["a.archive"]


def test_targets_outside_the_root_and_missing_members_are_refused(tmp_path: Path) -> None:
    with SafeArchive(make_zip(tmp_path / "a.zip", GOOD)) as a:
        with pytest.raises(Exception, match=r"'\.\./a\.png'.*'\.\.' component"):
            a.extract({"../a.png": "data/a.png"}, tmp_path / "out")
        with pytest.raises(ArchiveError, match=r"has no member 'data/zzz\.png'"):
            a.extract({"z.png": "data/zzz.png"}, tmp_path / "out")
    assert listing(tmp_path) == ["a.zip"]


def test_duplicate_members_and_damaged_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.zip"
    with zipfile.ZipFile(path, "w") as z, pytest.warns(UserWarning, match="Duplicate name"):
        z.writestr("repo-abc/a.png", b"1")
        z.writestr("repo-abc/a.png", b"2")
    with pytest.raises(ArchiveError, match="appears twice"):
        SafeArchive(path)
    (tmp_path / "junk.zip").write_bytes(b"this is not an archive")
    with pytest.raises(ArchiveError, match=r"junk\.zip: neither a zip nor a tar \(gz/bz2/xz\) archive; the download is "
                                           r"damaged \(cut short\?\) or the file is something else: get it again$"):
        SafeArchive(tmp_path / "junk.zip")
    data = bytearray(make_zip(tmp_path / "good.zip", {"repo-abc/a.txt": b"hello world " * 50}).read_bytes())
    data[60] ^= 0xFF  # inside the compressed data: the CRC check catches it
    (tmp_path / "bad.zip").write_bytes(bytes(data))
    with SafeArchive(tmp_path / "bad.zip") as a:
        with pytest.raises(ArchiveError, match="damaged"):
            a.read("a.txt")


def test_macos_metadata_is_not_listed_and_does_not_hide_the_top_folder(tmp_path: Path) -> None:
    members = {"Kvasir-SEG/images/a.jpg": b"a", "__MACOSX/Kvasir-SEG/images/._a.jpg": b"fork"}
    with SafeArchive(make_zip(tmp_path / "kvasir-seg.zip", members)) as a:
        assert a.names() == ["images/a.jpg"]
