"""What README.md and docs/ tell a user to type still works: every documented command parses, every benchmark or
tool script it names exists and takes the flags shown, and every relative link leads to a file.

A renamed flag or a moved file otherwise breaks the docs silently; users copy these commands.
"""
from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from unetfamily.cli import _OVERRIDE, build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "docs" / "results").glob("*.md"))]


def _commands(prefix: str) -> list[tuple[str, str]]:
    """(page, command) of every line of a code block, and every inline code span, that starts with ``prefix``."""
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                line = line.strip().removeprefix("$ ")
                if line.startswith(prefix):
                    found.append((page.name, line))
        found += [(page.name, code) for code in re.findall(rf"`({re.escape(prefix)}[^`]+)`", text)]
    return found


def _argv(command: str) -> list[str] | None:
    """The arguments of a concrete command; None for a synopsis (``[--flag]``, ``...``, ``<x>``, ``$VAR``) or a
    bare mention of a command name (``unetfamily plan``)."""
    argv = shlex.split(re.split(r"\s+#", command)[0])[1:]
    if any(s in a for a in argv for s in ("...", "[", "<", "|", "$")):
        return None
    return argv if any(a.startswith("-") or "/" in a or "." in a for a in argv) else None


CLI = [(page, command, argv) for page, command in _commands("unetfamily ") if (argv := _argv(command)) is not None]
SCRIPTS = _commands("python benchmarks/") + _commands("python tools/")


def test_the_docs_show_commands_to_check() -> None:
    assert len(CLI) >= 50 and len(SCRIPTS) >= 20  # the extraction still finds the docs' commands


@pytest.mark.parametrize("page,command,argv", CLI, ids=[f"{p}:{c[:60]}" for p, c, _ in CLI])
def test_every_documented_command_parses(page: str, command: str, argv: list[str]) -> None:
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            args, extra = build_parser().parse_known_args(argv)
    except SystemExit as exit_:
        assert not exit_.code, f"{page}: {command}\n{stderr.getvalue()}"
        return  # --help, --version
    overrides = hasattr(args, "overrides") and all(_OVERRIDE.match(a) for a in extra)
    assert not extra or overrides, f"{page}: {command}: unrecognized {extra}"


@pytest.mark.parametrize("page,command", SCRIPTS, ids=[f"{p}:{c[:60]}" for p, c in SCRIPTS])
def test_every_documented_script_exists_and_takes_its_flags(page: str, command: str) -> None:
    argv = shlex.split(re.split(r"\s+#", command)[0])
    script = ROOT / argv[1]
    assert script.is_file(), f"{page}: {command}: {argv[1]} does not exist"
    source = "".join(p.read_text(encoding="utf-8") for p in script.parent.rglob("*.py"))  # its helper packages too
    missing = [flag for a in argv[2:] if a.startswith("--") and f'"{(flag := a.split("=")[0])}"' not in source]
    assert not missing, f"{page}: {command}: {argv[1]} defines no {missing}"


def test_every_relative_link_leads_to_a_file() -> None:
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        text = re.sub(r"`[^`\n]*`", "", text)  # code spans show text, not links
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:|#", target):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, "\n".join(broken)
