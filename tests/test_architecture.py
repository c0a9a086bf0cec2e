"""The layering and size rules of docs/architecture.md, checked on the source tree.

Only ``unetfamily.cli`` parses arguments, prints or exits; lower layers never import higher
ones; files and functions stay small enough to read. A failure names the file and line.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "unetfamily"
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
#: Model forwards that mirror a paper's figure may be longer (docs/architecture.md).
LONG_FUNCTIONS_ALLOWED = {"forward", "forward_padded"}

#: Layer of each top-level module or package; a module may import only from lower layers or its own.
LAYERS = {
    "errors": 0, "text": 0,
    "files": 1, "overlay": 1, "config_file": 1, "models": 1,
    "config": 2, "losses": 2, "data": 2,
    "metrics": 3,
    "engine": 4, "bench": 4,
    "plan": 5,
    "compare": 6,
    "cli": 7,
}


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def _top(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _parsed() -> list[tuple[Path, ast.AST, str]]:
    out = []
    for path in _modules():
        text = path.read_text()
        out.append((path, ast.parse(text), text))
    return out


PARSED = _parsed()
LIBRARY = [(p, t, s) for p, t, s in PARSED if _top(p) not in ("cli", "__main__")]


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(SRC.parent.parent)}:{line}"


def test_only_cli_parses_arguments_prints_or_exits() -> None:
    offences = []
    for path, tree, _ in LIBRARY:
        for line, name in _imports(tree):
            if name == "argparse":
                offences.append(f"{_where(path, line)} imports argparse")
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id in ("print", "exit", "quit"):
                    offences.append(f"{_where(path, node.lineno)} calls {func.id}()")
                if isinstance(func, ast.Attribute) and func.attr == "exit" and isinstance(func.value, ast.Name) \
                        and func.value.id in ("sys", "os"):
                    offences.append(f"{_where(path, node.lineno)} calls {func.value.id}.exit()")
    assert not offences, "library code must log and raise, not print or exit:\n" + "\n".join(offences)


def test_layers_import_only_downwards() -> None:
    offences = []
    for path, tree, _ in PARSED:
        top = _top(path)
        if top not in LAYERS:
            continue
        for line, name in _imports(tree):
            parts = name.split(".")
            if parts[0] != "unetfamily" or len(parts) < 2:
                continue
            target = parts[1]
            if target != top and target in LAYERS and LAYERS[target] >= LAYERS[top]:
                offences.append(f"{_where(path, line)}: {top} (layer {LAYERS[top]}) imports {name} (layer {LAYERS[target]})")
    assert not offences, "imports against the layering of docs/architecture.md:\n" + "\n".join(offences)


def test_every_top_level_module_has_a_layer() -> None:
    tops = {_top(p) for p in _modules()} - {"__init__", "__main__"}
    assert tops <= set(LAYERS), f"add {sorted(tops - set(LAYERS))} to LAYERS and docs/architecture.md"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_files_and_functions_stay_small(path: Path) -> None:
    text = path.read_text()
    lines = text.count("\n")
    assert lines <= MAX_FILE_LINES, f"{path.name} has {lines} lines (> {MAX_FILE_LINES}): split it"
    long = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in LONG_FUNCTIONS_ALLOWED:
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                long.append(f"{_where(path, node.lineno)} {node.name}: {length} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)
