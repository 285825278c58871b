"""rerankpool.flags sits below the command line and the bench: neither it nor the bench imports rerankpool.cli."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "rerankpool"


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports by absolute name, inside functions too."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_flags_and_bench_never_import_the_cli() -> None:
    files = [PACKAGE / "flags.py", *sorted((PACKAGE / "bench").rglob("*.py"))]
    offenders = [str(f.relative_to(PACKAGE.parent)) for f in files if "rerankpool.cli" in imported_modules(f)]
    assert offenders == []
    assert not any(node.level for f in files for node in ast.walk(ast.parse(f.read_text()))
                   if isinstance(node, ast.ImportFrom))  # no relative imports to slip past the check
