"""One writer: no module but mailgate.db.writer opens a write transaction."""

from __future__ import annotations

import ast
from pathlib import Path

import mailgate

SOURCE = Path(mailgate.__file__).parent
WRITER = SOURCE / "db" / "writer.py"
#: What opens a write transaction or writes a database file beside SQLAlchemy's sessions.
_WORDS = ("begin immediate", "mailgate_write")


def _write_openings(path: Path, root: Path = SOURCE) -> list[str]:
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    # Docstrings and other bare strings only talk about it.
    prose = {
        id(n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
    }
    for node in ast.walk(tree):
        if id(node) in prose:
            continue
        where = f"{path.relative_to(root)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if any(word in node.value.lower() for word in _WORDS):
                found.append(f"{where} names {node.value!r}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = node.func.value
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
            if node.func.attr == "begin" and "engine" in name.lower():
                found.append(f"{where} calls {name}.begin()")  # autocommitting transaction
            if node.func.attr == "execution_options" and node.keywords:
                found.append(f"{where} sets execution options")
            if name == "sqlite3" and node.func.attr == "connect":
                found.append(f"{where} opens SQLite directly")
        elif isinstance(node, ast.keyword) and node.arg == "mailgate_write":
            found.append(f"{where} passes mailgate_write")
    return found


def test_only_the_writer_opens_write_transactions() -> None:
    offenders = [
        finding
        for path in sorted(SOURCE.rglob("*.py"))
        if path != WRITER
        for finding in _write_openings(path)
    ]
    assert offenders == [], "write through mailgate.db.writer:\n" + "\n".join(offenders)


def test_the_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    lines = [
        "def f(engine, store, conn):",
        "    with engine.begin():",
        "        pass",
        "    with store.engine.begin():",
        "        pass",
        "    conn.exec_driver_sql('BEGIN IMMEDIATE')",
        "    conn.execution_options(mailgate_write=True)",
        "    sqlite3.connect('x.db')",
        "    with engine.connect() as reading, reading.begin():",  # a read: allowed
        "        pass",
    ]
    sample = tmp_path / "sample.py"
    sample.write_text("\n".join(lines) + "\n")
    found = sorted(_write_openings(sample, tmp_path))
    assert [f.split(" ", 1)[0] for f in found] == [
        "sample.py:2",
        "sample.py:4",
        "sample.py:6",
        "sample.py:7",
        "sample.py:7",
        "sample.py:8",
    ], found
