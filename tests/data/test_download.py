"""``unetfamily dataset download``: archives shaped like GitHub's, served by a local HTTP server on 127.0.0.1.

Never the internet: every archive is built by the test (top folder ``REPO-COMMIT/``, the real
member paths, tiny fake images) and the shipped checksums are replaced by ones computed here.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import re
import threading
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from filelock import FileLock
from PIL import Image

from unetfamily.data import build_dataset
from unetfamily.data.archive import ArchiveError
from unetfamily.data.errors import DataConfigError, DataError
from unetfamily.data.fetch import DownloadError, FetchOptions
from unetfamily.data import sources
from unetfamily.data.download import ChecksumError, download_dataset
from unetfamily.data.sources import Checksums, pixel_digest

from .conftest import real_dataset

FAST = FetchOptions(timeout=5, retries=0, backoff=0)
COMMITS = {a.url: a for srcs in sources.SOURCES.values() for s in srcs for a in s.archives if a.url}


# ---------------------------------------------------------------- the server


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        server: _Server = self.server  # type: ignore[assignment]
        wanted = self.headers.get("Range")
        server.log.append((self.path, wanted))
        data = server.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1)) if wanted and not server.ignore_range else 0
        if start >= len(data) and start:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if not server.no_length:
            self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if server.drop_after is not None:  # send part of the body, then close the connection
            body, server.drop_after = body[: server.drop_after], None
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    files: dict[str, bytes]
    log: list[tuple[str, str | None]]
    ignore_range = False
    no_length = False
    drop_after: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def serve(self, url: str, data: bytes) -> None:
        """Serve ``data`` at the path of ``url`` (a source's GitHub URL)."""
        self.files[re.sub(r"^https?://[^/]+", "", url)] = data


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("UNETFAMILY_DOWNLOAD_BASE_URL", raising=False)
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.files, srv.log = {}, []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


# ---------------------------------------------------------------- fake archives


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def github_zip(archive: sources.Archive, members: dict[str, bytes]) -> bytes:
    """A zip laid out as codeload.github.com serves one: ``REPO-COMMIT/`` then the repository's paths."""
    repo, commit = archive.url.split("/")[-3], archive.url.split("/")[-1]
    top = f"{repo}-{commit}/"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(top, b"")
        for name, data in members.items():
            z.writestr(top + name, data)
    return buffer.getvalue()


def sums_of(expected: dict[str, bytes], pixels: dict[str, str] | None = None) -> Checksums:
    return Checksums({k: hashlib.sha256(v).hexdigest() for k, v in expected.items()}, pixels or {})


def isbi(rng: np.random.Generator, n: int = 8) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(archive members, expected dataset files) of a fake zhixuhao/unet with ``n`` slices."""
    members, expected = {"README.md": b"unet", "data/membrane/train/aug/0.png": b"x"}, {}
    for i in range(n):
        image = png(rng.integers(0, 256, (8, 8), dtype=np.uint8))
        label = png(np.where(rng.random((8, 8)) > 0.3, 255, 0).astype(np.uint8))
        members |= {f"data/membrane/train/image/{i}.png": image, f"data/membrane/train/label/{i}.png": label,
                    f"data/membrane/test/{i}.png": image, f"data/membrane/test/{i}_predict.png": label}
        expected |= {f"train/image/{i}.png": image, f"train/label/{i}.png": label, f"test/image/{i}.png": image}
    return members, expected


def isbi_archive() -> sources.Archive:
    return sources.SOURCES["isbi2012_em"][0].archives[0]


@pytest.fixture
def isbi_served(server: _Server, rng: np.random.Generator) -> tuple[bytes, Checksums, dict[str, bytes]]:
    members, expected = isbi(rng)
    data = github_zip(isbi_archive(), members)
    server.serve(isbi_archive().url, data)
    return data, sums_of(expected), expected


def files_in(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- good archives


def test_isbi_is_arranged_verified_and_read_by_build_dataset(tmp_path, server, isbi_served, monkeypatch) -> None:
    _, sums, expected = isbi_served
    dest = download_dataset("isbi2012_em", tmp_path, base_url=server.base_url, checksums=sums, options=FAST)
    assert dest == tmp_path / "isbi2012_em"
    found = files_in(dest)
    assert {k: v for k, v in found.items() if k != "SHA256SUMS"} == expected  # no *_predict.png, no aug/
    assert len(found["SHA256SUMS"].splitlines()) == len(expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".downloads", "isbi2012_em"]  # no staging left
    assert not list((tmp_path / ".downloads").glob("*.zip*"))  # the archive is removed once arranged
    monkeypatch.setenv("UNETFAMILY_DATA_ROOT", str(tmp_path))
    ds = build_dataset({"type": "isbi2012_em", "val_slices": 2}, split="train")
    assert len(ds) == 6 and ds[0]["mask"].shape[-2:] == (8, 8)


def camvid(rng: np.random.Generator) -> tuple[dict[str, bytes], dict[str, bytes]]:
    members, expected = {"Scripts/camvid11.png": png(np.zeros((2, 2, 3), np.uint8)),
                         "Scripts/camvid12.png": png(np.ones((2, 2, 3), np.uint8))}, {}
    expected |= {"camvid11_palette.png": members["Scripts/camvid11.png"],
                 "camvid12_palette.png": members["Scripts/camvid12.png"]}
    for split, count, step in (("train", 7, 3), ("val", 4, 3), ("test", 7, 6)):
        lines = [f"/SegNet/CamVid/{split}/{split}_{i:03d}.png /SegNet/CamVid/{split}annot/{split}_{i:03d}.png\n"
                 for i in range(count)]
        full = "".join(lines).encode()
        members[f"CamVid/{split}.txt"] = full
        expected[f"lists_full/{split}.txt"] = full
        expected[f"{split}.txt"] = "".join(lines[::step]).encode()
        for i in range(count):
            image, label = png(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)), png(
                rng.integers(0, 12, (6, 8), dtype=np.uint8))
            members |= {f"CamVid/{split}/{split}_{i:03d}.png": image, f"CamVid/{split}annot/{split}_{i:03d}.png": label}
            if i % step == 0:
                expected |= {f"{split}/{split}_{i:03d}.png": image, f"{split}annot/{split}_{i:03d}.png": label}
    return members, expected


def test_camvid_subset_lists_are_every_third_and_sixth_line(tmp_path, server, rng, monkeypatch) -> None:
    members, expected = camvid(rng)
    archive = sources.SOURCES["camvid"][0].archives[0]
    server.serve(archive.url, github_zip(archive, members))
    dest = download_dataset("camvid", tmp_path, base_url=server.base_url, checksums=sums_of(expected), options=FAST)
    assert {k: v for k, v in files_in(dest).items() if k != "SHA256SUMS"} == expected
    assert (dest / "train.txt").read_text().count("\n") == 3 and (dest / "test.txt").read_text().count("\n") == 2
    monkeypatch.setenv("UNETFAMILY_DATA_ROOT", str(tmp_path))
    assert len(build_dataset({"type": "camvid"}, split="train")) == 3


def dsb(rng: np.random.Generator, prefix: str = "stage1_train/"):
    """Members of a fake DSB2018 archive (2 images, overlapping masks) and the expected derived arrays."""
    members, images, labels = {}, {}, {}
    for sample, (h, w) in {"aa11": (6, 8), "bb22": (5, 5)}.items():
        images[sample] = png(rng.integers(0, 256, (h, w, 4), dtype=np.uint8))
        members[f"{prefix}{sample}/images/{sample}.png"] = images[sample]
        lab = np.zeros((h, w), np.uint16)
        for k, name in enumerate(["m2", "m1", "m3"]):  # archive order differs from name order
            m = np.zeros((h, w), np.uint8)
            m[k: k + 3, k: k + 3] = 255
            members[f"{prefix}{sample}/masks/{name}.png"] = png(m)
        for k, name in enumerate(sorted(["m2", "m1", "m3"]), 1):  # k-th by name; a later mask wins
            arr = np.asarray(Image.open(io.BytesIO(members[f"{prefix}{sample}/masks/{name}.png"])))
            lab[arr > 0] = k
        labels[sample] = lab
    return members, images, labels


def dsb_sums(tmp_path: Path, images: dict, labels: dict) -> Checksums:
    scratch = tmp_path / "expected"
    pixels, files = {}, {f"images/{s}.png": v for s, v in images.items()}
    for sample, lab in labels.items():
        for target, arr in ((f"instances/{sample}.png", lab), (f"masks/{sample}.png", (lab > 0).astype(np.uint8) * 255)):
            path = scratch / target
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(path)
            pixels[target], files[target] = pixel_digest(path), path.read_bytes()
    return replace(sums_of(files), pixels=pixels)


def test_dsb_masks_are_merged_by_name_order_and_checked_by_pixels(tmp_path, server, rng) -> None:
    members, images, labels = dsb(rng)
    archive = sources.SOURCES["dsb2018_nuclei"][0].archives[0]
    server.serve(archive.url, github_zip(archive, members | {"README.rst": b"fixes"}))
    sums = dsb_sums(tmp_path, images, labels)
    # A different PNG encoder writes other bytes: the byte checksums of derived files are not used.
    sums.files.update({t: "0" * 64 for t in sums.pixels})
    dest = download_dataset("dsb2018_nuclei", tmp_path / "out", base_url=server.base_url, checksums=sums, options=FAST)
    for sample, lab in labels.items():
        got = np.asarray(Image.open(dest / "instances" / f"{sample}.png"))
        assert got.dtype == np.uint16 and np.array_equal(got, lab)
        assert set(np.unique(np.asarray(Image.open(dest / "masks" / f"{sample}.png")))) == {0, 255}
    assert not (dest / ".raw").exists() and sorted(p.name for p in dest.iterdir()) == [
        "SHA256SUMS", "images", "instances", "masks"]


def test_kvasir_comes_from_two_archives(tmp_path, server, rng) -> None:
    data, splits = sources.SOURCES["kvasir_seg"][0].archives
    members, expected = {"datasets/CVC-ClinicDB/images/1.tif": b"not copied"}, {}
    for name in ("cju0a", "cju0b", "cju0c"):
        jpg = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)).save(jpg, format="JPEG")
        members |= {f"datasets/Kvasir-SEG/images/{name}.jpg": jpg.getvalue(),
                    f"datasets/Kvasir-SEG/masks/{name}.jpg": jpg.getvalue()}
        expected |= {f"images/{name}.jpg": jpg.getvalue(), f"masks/{name}.jpg": jpg.getvalue()}
    members["datasets/Kvasir-SEG/kavsir_bboxes.json"] = expected["kavsir_bboxes.json"] = b"{}"
    lists = {"kvasir-seg-train-val/train.txt": b"cju0a\ncju0b\n", "kvasir-seg-train-val/val.txt": b"cju0c\n"}
    expected |= {"splits_medico2020/train.txt": b"cju0a\ncju0b\n", "splits_medico2020/val.txt": b"cju0c\n"}
    server.serve(data.url, github_zip(data, members))
    server.serve(splits.url, github_zip(splits, lists | {"README.md": b"x"}))
    dest = download_dataset("kvasir_seg", tmp_path, base_url=server.base_url, checksums=sums_of(expected), options=FAST)
    assert {k: v for k, v in files_in(dest).items() if k != "SHA256SUMS"} == expected
    assert len(build_dataset({"type": "kvasir_seg", "root": str(dest)}, split="train")) == 2


# ---------------------------------------------------------------- integrity


def test_one_changed_byte_is_a_checksum_error_and_nothing_is_installed(tmp_path, server, rng) -> None:
    members, expected = isbi(rng)
    key = "data/membrane/train/label/3.png"
    members[key] = members[key][:-5] + bytes([members[key][-5] ^ 1]) + members[key][-4:]
    server.serve(isbi_archive().url, github_zip(isbi_archive(), members))
    with pytest.raises(ChecksumError, match=r"isbi2012_em/train/label/3\.png: sha256 mismatch: expected [0-9a-f]{64}, "
                                            r"got [0-9a-f]{64}.*Nothing was installed.*was removed"):
        download_dataset("isbi2012_em", tmp_path, base_url=server.base_url, checksums=sums_of(expected), options=FAST)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".downloads"]  # no dataset, no staging folder
    assert not list((tmp_path / ".downloads").glob("*.zip*"))  # the bad archive is gone: the next run fetches anew


def test_a_damaged_archive_is_refused_and_nothing_is_installed(tmp_path, server, isbi_served) -> None:
    data, sums, _ = isbi_served
    middle = len(data) // 2
    server.serve(isbi_archive().url, data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    with pytest.raises(DataError, match="damaged|mismatch|not a readable"):
        download_dataset("isbi2012_em", tmp_path, base_url=server.base_url, checksums=sums, options=FAST)
    assert not (tmp_path / "isbi2012_em").exists() and not (tmp_path / ".isbi2012_em.partial").exists()


def test_a_known_archive_sha256_is_checked(tmp_path, server, isbi_served, monkeypatch) -> None:
    data, sums, _ = isbi_served
    source = sources.SOURCES["isbi2012_em"][0]
    for digest, ok in ((hashlib.sha256(b"other").hexdigest(), False), (hashlib.sha256(data).hexdigest(), True)):
        archive = replace(source.archives[0], sha256=digest)
        monkeypatch.setitem(sources.SOURCES, "isbi2012_em", (replace(source, archives=(archive,)),))
        if ok:
            download_dataset("isbi2012_em", tmp_path, base_url=server.base_url, checksums=sums, options=FAST)
        else:
            with pytest.raises(DownloadError, match=f"sha256 mismatch.*expected {digest}, got {hashlib.sha256(data).hexdigest()}"):
                download_dataset("isbi2012_em", tmp_path, base_url=server.base_url, checksums=sums, options=FAST)
    assert (tmp_path / "isbi2012_em" / "train" / "image" / "0.png").is_file()


# ---------------------------------------------------------------- resuming


def test_a_truncated_download_resumes_with_range(tmp_path, server, isbi_served) -> None:
    data, sums, _ = isbi_served
    server.drop_after = len(data) // 2
    with pytest.raises(DownloadError, match=r"http://127\.0\.0\.1:\d+/zhixuhao/unet/zip/.*resumes"):
        download_dataset("isbi2012_em", tmp_path, base_url=server.base_url, checksums=sums, options=FAST)
    part = next((tmp_path / ".downloads").glob("*.zip.part"))
    assert part.stat().st_size == len(data) // 2 and not (tmp_path / "isbi2012_em").exists()
    download_dataset("isbi2012_em", tmp_path, base_url=server.base_url, checksums=sums, options=FAST)
    assert server.log[-1][1] == f"bytes={len(data) // 2}-"
    assert (tmp_path / "isbi2012_em" / "SHA256SUMS").is_file()


def test_retries_within_one_call_resume_too(tmp_path, server, isbi_served) -> None:
    data, sums, _ = isbi_served
    server.drop_after = 100
    download_dataset("isbi2012_em", tmp_path, base_url=server.base_url, checksums=sums,
                     options=FetchOptions(timeout=5, retries=2, backoff=0))
    assert [r for _, r in server.log] == [None, "bytes=100-"]


def test_a_server_ignoring_range_restarts_from_zero(tmp_path, server, isbi_served) -> None:
    data, sums, _ = isbi_served
    downloads = tmp_path / ".downloads"
    downloads.mkdir()
    (downloads / f"{isbi_archive().filename}.part").write_bytes(b"garbage that is not the start of the archive")
    server.ignore_range = True
    download_dataset("isbi2012_em", tmp_path, base_url=server.base_url, checksums=sums, options=FAST)
    assert server.log[0][1] is not None  # it asked for a range, got 200, and started over
    assert (tmp_path / "isbi2012_em" / "train" / "label" / "7.png").is_file()


def test_a_complete_part_file_is_answered_416_and_used(tmp_path, server, isbi_served) -> None:
    data, sums, _ = isbi_served
    (tmp_path / ".downloads").mkdir()
    (tmp_path / ".downloads" / f"{isbi_archive().filename}.part").write_bytes(data)
    download_dataset("isbi2012_em", tmp_path, base_url=server.base_url, checksums=sums, options=FAST)
    assert server.log == [(server.log[0][0], f"bytes={len(data)}-")]


def test_a_body_without_length_is_read_to_the_end_but_not_beyond_the_limit(tmp_path, server, isbi_served) -> None:
    data, sums, _ = isbi_served
    server.no_length = True
    with pytest.raises(DownloadError, match=r"/zhixuhao/unet/zip/\w+: more than 1000 bytes received"):
        download_dataset("isbi2012_em", tmp_path, base_url=server.base_url, checksums=sums,
                         options=replace(FAST, max_bytes=1000))
    (tmp_path / ".downloads" / f"{isbi_archive().filename}.part").unlink()
    download_dataset("isbi2012_em", tmp_path, base_url=server.base_url, checksums=sums, options=FAST)
    assert (tmp_path / "isbi2012_em" / "train" / "image" / "0.png").is_file()


# ---------------------------------------------------------------- errors the user sees


def test_http_404_names_the_url(tmp_path, server) -> None:
    with pytest.raises(DownloadError, match=r"http://127\.0\.0\.1:\d+/zhixuhao/unet/zip/b45af4d\w+: HTTP 404"):
        download_dataset("isbi2012_em", tmp_path, base_url=server.base_url, checksums=Checksums({"x": "0"}),
                         options=FAST)


def test_a_refused_connection_names_the_url_and_what_to_do(tmp_path) -> None:
    # At once, not after the retries: nothing listens on port 9, and retrying cannot change that.
    with pytest.raises(DownloadError, match=r"http://127\.0\.0\.1:9/zhixuhao.*connection refused.*base URL.*network"):
        download_dataset("isbi2012_em", tmp_path, base_url="http://127.0.0.1:9", checksums=Checksums({"x": "0"}),
                         options=FetchOptions(timeout=2, retries=5, backoff=0))


def test_a_manual_source_lists_the_steps(tmp_path) -> None:
    with pytest.raises(DownloadError, match=r"source 'kaggle' cannot be downloaded automatically.*kaggle\.com.*"
                                            r"--archive stage1_train\.zip"):
        download_dataset("dsb2018_nuclei", tmp_path, source="kaggle")
    assert not any(tmp_path.iterdir())


def test_an_archive_handed_over_is_extracted_and_verified_the_same_way(tmp_path, rng, server) -> None:
    members, images, labels = dsb(rng, prefix="")  # Kaggle's stage1_train.zip: <id>/... at the top
    zipped = tmp_path / "stage1_train.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    dest = download_dataset("dsb2018_nuclei", tmp_path / "out", source="kaggle", archives=[str(zipped)])
    assert np.array_equal(np.asarray(Image.open(dest / "instances" / "aa11.png")), labels["aa11"])
    assert zipped.is_file()  # a file the user handed over is never removed
    members, expected = isbi(rng)  # the default source, given by hand: the same checks apply
    (tmp_path / "unet.zip").write_bytes(github_zip(isbi_archive(), members))
    download_dataset("isbi2012_em", tmp_path / "out", archives={"data": tmp_path / "unet.zip"},
                     checksums=sums_of(expected))
    assert server.log == []  # nothing was downloaded


def test_unknown_names_are_refused_with_close_matches(tmp_path) -> None:
    with pytest.raises(DataConfigError, match="did you mean 'camvid'"):
        download_dataset("camvidd", tmp_path)
    with pytest.raises(DataConfigError, match="kaggle"):
        download_dataset("dsb2018_nuclei", tmp_path, source="kagle")
    with pytest.raises(DataConfigError, match="splits"):
        download_dataset("kvasir_seg", tmp_path, archives=["split=x.zip"])
    with pytest.raises(DataConfigError, match="http:// or https://"):
        download_dataset("isbi2012_em", tmp_path, base_url="ftp://mirror")


def test_an_existing_dataset_folder_is_kept_unless_overwrite(tmp_path, server, isbi_served) -> None:
    _, sums, _ = isbi_served
    mine = tmp_path / "isbi2012_em" / "my_notes.txt"
    mine.parent.mkdir()
    mine.write_text("keep me")
    with pytest.raises(DataError, match="isbi2012_em: already exists; pass --overwrite"):
        download_dataset("isbi2012_em", tmp_path, base_url=server.base_url, checksums=sums, options=FAST)
    assert mine.read_text() == "keep me" and server.log == []
    download_dataset("isbi2012_em", tmp_path, base_url=server.base_url, checksums=sums, options=FAST, overwrite=True)
    assert not mine.exists() and (tmp_path / "isbi2012_em" / "train" / "image" / "0.png").is_file()
    assert not (tmp_path / ".isbi2012_em.old").exists()


def test_a_second_download_into_the_same_folder_is_refused(tmp_path) -> None:
    (tmp_path / ".downloads").mkdir()
    with FileLock(tmp_path / ".downloads" / "isbi2012_em.lock"):
        with pytest.raises(DataError, match="another download of isbi2012_em"):
            download_dataset("isbi2012_em", tmp_path, checksums=Checksums({"x": "0"}))


def test_a_traversal_member_is_refused_end_to_end(tmp_path, server, rng) -> None:
    members, expected = isbi(rng)
    members["../../evil.png"] = b"evil"
    server.serve(isbi_archive().url, github_zip(isbi_archive(), members))
    with pytest.raises(ArchiveError, match=r"member '.*\.\./\.\./evil\.png'.*unsafe.*was removed"):
        download_dataset("isbi2012_em", tmp_path / "to", base_url=server.base_url, checksums=sums_of(expected),
                         options=FAST)
    assert sorted(p.name for p in tmp_path.rglob("*")) == [".downloads", "isbi2012_em.lock", "to"]


# ---------------------------------------------------------------- the command line and the shipped checksums


def test_cli_download_prints_the_data_root(tmp_path, server, isbi_served, capsys, monkeypatch) -> None:
    from unetfamily.cli import dataset_download

    parser = argparse.ArgumentParser()
    dataset_download.add_parser(parser.add_subparsers())
    monkeypatch.setattr("unetfamily.data.download.load_checksums", lambda name: isbi_served[1])
    args = parser.parse_args(["download", "isbi2012_em", "--to", str(tmp_path), "--base-url", server.base_url])
    assert args.func(args) == 0
    out = capsys.readouterr()
    assert f"export UNETFAMILY_DATA_ROOT={tmp_path}" in out.out and "verified" in out.out
    assert "MiB" in out.err  # progress lines when stderr is not a terminal
    assert dataset_download.NAMES == sources.DATASETS


@pytest.mark.parametrize("name", sources.DATASETS)
def test_shipped_checksums_match_the_shared_copy(name: str) -> None:
    shared = real_dataset(name) / "SHA256SUMS"
    assert sources.load_checksums(name).files == sources._parse(shared.read_text(), str(shared))
    shipped = Path(sources.__file__).parent / "checksums" / f"{name}.sha256"
    assert shipped.read_bytes() == shared.read_bytes()


def test_pixel_checksums_match_the_shared_copy() -> None:
    root = real_dataset("dsb2018_nuclei")
    pixels = sources.load_checksums("dsb2018_nuclei").pixels
    assert len(pixels) == 1328 and all(t.startswith(("masks/", "instances/")) for t in pixels)
    for target in sorted(pixels)[::150]:  # a sample: decoding all 1328 takes 15 s
        assert pixel_digest(root / target) == pixels[target], target
