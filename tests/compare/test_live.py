"""The live table of a parallel comparison (read from status.json files) and the shared-storage probe, without Ray."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from unetfamily.compare.live import LiveTable, RunRow
from unetfamily.compare.ray_executor import check_shared_storage
from unetfamily.engine.status import STATUS_FILE, RunProgress, read_status
from unetfamily.errors import ConfigError


def write_status(run: Path, **fields: Any) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / STATUS_FILE).write_text(json.dumps({"state": "training", "step": 0, "total": 10, "validation": {},
                                               "host": "node-a", "pid": 1, "updated": time.time(), **fields}))


def test_rows_follow_the_status_files_and_ignore_a_previous_commands(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_status(c, updated=time.time() - 3600, state="training", step=7)  # left by an earlier, killed command
    table = LiveTable([RunRow("a", a), RunRow("b", b), RunRow("c", c)])
    write_status(a, step=4, validation={"dice": 0.5})
    write_status(b, state="finished", step=10)
    table.refresh()
    assert [r.state for r in table.rows] == ["training", "evaluating", "queued"]
    assert (table.rows[0].step, table.rows[0].score, table.rows[0].node) == (4, 0.5, "node-a")
    table.rows[1].finish("done")
    table.rows[2].finish("failed", "DataError: bad file")
    write_status(b, state="training", step=1)  # a finished row no longer reads its file
    table.refresh()
    assert [r.state for r in table.rows] == ["training", "done", "failed"]
    assert "DataError: bad file" in table.rows[2].line(5)


def test_a_terminal_gets_the_table_redrawn_in_place_and_a_log_gets_changes(tmp_path: Path,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    with caplog.at_level("INFO"), LiveTable([RunRow("unet seed 0", tmp_path / "r")], stream) as table:
        write_status(tmp_path / "r", step=3)
        table.refresh()
        table.rows[0].finish("done")
    text = stream.getvalue()
    assert text.count("\x1b[2F") >= 2 and "unet seed 0" in text  # header + 1 row, moved up over before redrawing
    logged = [r.getMessage() for r in caplog.records]
    assert any("training" in m for m in logged) and any("done" in m for m in logged)
    assert any("1 done, 0 failed" in m for m in logged)
    assert LiveTable([RunRow("x", tmp_path / "x")], io.StringIO()).tty is False  # a file or pipe: log lines only


def test_run_progress_keeps_status_json(tmp_path: Path) -> None:
    progress = RunProgress(tmp_path, step=0, total=5)
    assert read_status(tmp_path)["state"] == "training"
    progress.update(2)
    progress.validated(2, {"dice": 0.25, "per_class": [1.0]})
    assert read_status(tmp_path)["validation"] == {"dice": 0.25} and read_status(tmp_path)["step"] == 2
    progress.close("stopped")
    assert read_status(tmp_path)["state"] == "stopped"
    RunProgress(None, 0, 5).close()  # a DDP rank other than 0 writes nothing
    assert read_status(tmp_path / "nothing") is None


class FakeRay:
    """Ray's API as check_shared_storage uses it: nodes whose tasks write (or not) where the driver reads.

    A task runs when its result is asked for, so ``events`` shows whether every node was asked before any answered."""

    def __init__(self, shared: bool, nodes: int = 1) -> None:
        self.shared, self.events = shared, []
        self.node_list = [{"Alive": True, "NodeID": f"{i:02x}" * 28, "NodeManagerAddress": f"10.0.0.{7 + i}"}
                          for i in range(nodes)] + [{"Alive": False, "NodeID": "ff" * 28}]

    def nodes(self) -> list[dict[str, Any]]:
        return self.node_list

    def remote(self, num_cpus: int) -> Any:
        def wrap(fn: Any) -> Any:
            def remote(path: str, token: str, node: str) -> Any:
                self.events.append("asked")
                return lambda: fn(path, token, node) if self.shared else "node-b"  # node-b: its own disk, writes nowhere seen
            return SimpleNamespace(options=lambda **_: SimpleNamespace(remote=remote))
        return wrap

    def get(self, refs: list[Any]) -> list[Any]:
        self.events.append("get")
        return [ref() for ref in refs]


def test_the_storage_probe_passes_when_shared_and_names_the_node_when_not(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="the probe uses Ray's node-affinity scheduling strategy")
    ray = FakeRay(shared=True, nodes=3)
    check_shared_storage(ray, tmp_path / "out")
    assert ray.events == ["asked"] * 3 + ["get"]  # every alive node at once, not one after another
    assert not [p for p in (tmp_path / "out").iterdir()]  # the probe files are removed
    with pytest.raises(ConfigError, match=r"--out .* is not shared with the Ray node node-b \(10.0.0.7\)"):
        check_shared_storage(FakeRay(shared=False), tmp_path / "out")
    assert not [p for p in (tmp_path / "out").iterdir()]


def test_the_probe_runs_on_a_worker_without_importing_the_package(tmp_path: Path) -> None:
    """Ray ships the probe by value: a worker answers it without importing unetfamily (and torch, ~2 s per node)."""
    cloudpickle = pytest.importorskip("ray.cloudpickle", reason="Ray pickles the probe with its cloudpickle")
    from unetfamily.compare.ray_executor import _make_probe

    (tmp_path / "probe").write_text("token")
    code = ("import sys, pickle; sys.modules['unetfamily'] = sys.modules['torch'] = None; "
            "probe = pickle.loads(sys.stdin.buffer.read()); print(probe(sys.argv[1], 'token', 'n1'))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "probe")], input=cloudpickle.dumps(_make_probe()),
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() and (tmp_path / "probe.n1").read_text() == "token"
