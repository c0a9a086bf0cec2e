"""``unetfamily dataset download NAME --to DIR``: get a named dataset from its public source, verified.

The archives are downloaded into ``DIR/.downloads`` (resumable: run the same command again after
an interruption), only the dataset's files are extracted (safely), laid out as the named dataset
reads them, checked against the checksums unetfamily ships, and moved to ``DIR/NAME`` at the end.
Then ``export UNETFAMILY_DATA_ROOT=DIR`` makes ``configs/data/NAME.yaml`` read them.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from unetfamily.cli._common import EXIT_OK, command, err, out

__all__ = ["NAMES", "add_parser", "run"]

#: The datasets ``download`` knows (``unetfamily.data.sources.DATASETS``; kept here so that the CLI starts fast).
NAMES = ("isbi2012_em", "dsb2018_nuclei", "kvasir_seg", "camvid")
BASE_URL_ENV = "UNETFAMILY_DOWNLOAD_BASE_URL"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``download`` on the ``unetfamily dataset`` sub-commands."""
    p = command(subparsers, "download", run, help="download a named dataset from its public source, verify it "
                "and arrange it for UNETFAMILY_DATA_ROOT", description=__doc__.replace("``", ""))
    p.add_argument("name", metavar="NAME", help=f"the dataset: {', '.join(NAMES)}")
    p.add_argument("--to", required=True, metavar="DIR", help="folder that receives NAME/ (created if missing)")
    p.add_argument("--source", help="which source (default: the one the dataset's SOURCE.md names); "
                   "dsb2018_nuclei: github, kaggle; kvasir_seg: github, simula")
    p.add_argument("--archive", action="append", metavar="[ROLE=]PATH",
                   help="an archive downloaded by hand (sources behind a login); repeatable; a plain PATH is the "
                   "source's main archive, ROLE=PATH another (e.g. splits=PATH)")
    p.add_argument("--base-url", metavar="URL", help="a mirror: replaces the scheme and host of every download URL "
                   f"(default: ${BASE_URL_ENV} when set)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing DIR/NAME, once the new copy is "
                   "complete and verified")
    p.add_argument("--keep-archives", action="store_true", help="keep the downloaded archives in DIR/.downloads")


class _Progress:
    """A tqdm bar per file on a terminal (when tqdm is installed); otherwise a line every 10 %."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}
        self.shown: dict[str, int] = {}
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        self.tqdm = tqdm if tqdm is not None and sys.stderr.isatty() else None

    def __call__(self, label: str, done: int, total: int | None) -> None:
        if self.tqdm is not None:
            if label not in self.bars:
                self.bars[label] = self.tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
                                             initial=0, leave=True)
            bar = self.bars[label]
            bar.update(done - bar.n)
            return
        step = max(total // 10, 1) if total else 32 << 20
        if done // step > self.shown.get(label, 0) or (total and done == total):
            self.shown[label] = done // step
            of = f" of {total / 2**20:.1f} MiB" if total else ""
            err(f"{label}: {done / 2**20:.1f} MiB{of}")

    def close(self) -> None:
        """Close the bars."""
        for bar in self.bars.values():
            bar.close()


def run(args: argparse.Namespace) -> int:
    """Download ``args.name`` into ``args.to``; print where it is and the ``UNETFAMILY_DATA_ROOT`` line."""
    from unetfamily.data.download import download_dataset
    from unetfamily.data.sources import find_source
    from unetfamily.errors import unknown_choice

    if args.name not in NAMES:
        raise unknown_choice("NAME", args.name, NAMES)
    source = find_source(args.name, args.source)
    progress = _Progress()
    try:
        path = download_dataset(args.name, args.to, source=args.source, archives=args.archive,
                                base_url=args.base_url, overwrite=args.overwrite, progress=progress,
                                keep_archives=args.keep_archives)
    finally:
        progress.close()
    if not source.verified:  # said once the files are there, not before a refusal
        err(f"warning: {args.name} source {source.name!r}: {source.note}")
    state = "verified against the checksums unetfamily ships" if source.verified else "NOT verified (see the warning)"
    out(f"{args.name}: ready in {path} ({state})")
    out(f"export UNETFAMILY_DATA_ROOT={shlex.quote(str(path.parent.resolve()))}")
    out(f"then, for example: unetfamily dataset info configs/data/{args.name}.yaml")
    return EXIT_OK
