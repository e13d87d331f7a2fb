"""The program's functional core stays pure: every feature's `rules.py`, and the modules they
stand on (`orders/earning.py`, `dates.py`, `intents.py`, `wording.py`, `events.py`,
`document/schema.py`), import no database (`pointguard.db`, `asyncpg`, `sqlalchemy`), no ledger
module but the key builder `pointguard.ledger.keys`, and no module of `pointguard.program`
outside this pure set, so purity holds transitively. Read from the import statements (`ast`),
nothing is imported."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import pointguard

PACKAGE = Path(pointguard.__file__).resolve().parent
PROGRAM = PACKAGE / "program"
FEATURES = {"orders", "actions", "referrals", "tiers", "challenges"}
PURE_FILES = [
    "orders/earning.py",
    "dates.py",
    "intents.py",
    "wording.py",
    "events.py",
    "document/schema.py",
]
INPUT_OUTPUT = ("pointguard.db", "asyncpg", "sqlalchemy")
LEDGER_ALLOWED = {"pointguard.ledger.keys"}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


RULES_FILES = sorted(PROGRAM.rglob("rules.py"))
PURE = {module_name(path): path for path in [*RULES_FILES, *(PROGRAM / f for f in PURE_FILES)]}


def is_module(name: str) -> bool:
    """Whether `name` is a module or a package of `pointguard` (on disk)."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported(source: str, module: str) -> list[tuple[int, str]]:
    """The modules `source` (the text of `module`) imports, with their lines: `from X import y`
    names X.y where that is a module, else X; relative imports are resolved. Imports inside
    functions and `if TYPE_CHECKING:` count too."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: -node.level]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append((node.lineno, submodule if is_module(submodule) else base))
    return found


def impurity(name: str) -> str | None:
    """Why a pure module may not import `name`, or None."""

    def within(package: str) -> bool:
        return name == package or name.startswith(package + ".")

    if any(within(io) for io in INPUT_OUTPUT):
        return "the database"
    if within("pointguard.ledger") and name not in LEDGER_ALLOWED:
        return "a ledger module other than pointguard.ledger.keys"
    if within("pointguard.program") and name not in PURE:
        return "a program module outside the pure core"
    return None


def violations(source: str, module: str) -> list[str]:
    return [
        f"{module} imports {name} (line {line}): {why}"
        for line, name in imported(source, module)
        if (why := impurity(name))
    ]


def test_every_feature_has_its_pure_rules() -> None:
    features = {path.parent.name for path in RULES_FILES}
    assert features >= FEATURES, f"no rules.py for {sorted(FEATURES - features)}"
    assert all((PROGRAM / f).is_file() for f in PURE_FILES), PURE_FILES


@pytest.mark.parametrize("module", sorted(PURE))
def test_the_pure_core_imports_no_input_output(module: str) -> None:
    problems = violations(PURE[module].read_text(), module)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "module", "flagged"),
    [
        pytest.param("import asyncpg", "pointguard.program.dates", "asyncpg", id="asyncpg"),
        pytest.param(
            "from sqlalchemy.sql import text",
            "pointguard.program.dates",
            "sqlalchemy.sql",
            id="sqlalchemy",
        ),
        pytest.param(
            "from pointguard import db", "pointguard.program.dates", "pointguard.db", id="db"
        ),
        pytest.param(
            "from pointguard.db import connection",
            "pointguard.program.dates",
            "pointguard.db",
            id="db-name",
        ),
        pytest.param(
            "from pointguard.ledger import posting",
            "pointguard.program.dates",
            "pointguard.ledger.posting",
            id="ledger-submodule",
        ),
        pytest.param(
            "from pointguard.ledger import member_balances",
            "pointguard.program.dates",
            "pointguard.ledger",
            id="ledger-package",
        ),
        pytest.param(
            "from pointguard.program.orders.records import load_order",
            "pointguard.program.orders.rules",
            "pointguard.program.orders.records",
            id="program-records",
        ),
        pytest.param(
            "from . import records",
            "pointguard.program.orders.rules",
            "pointguard.program.orders.records",
            id="relative",
        ),
        pytest.param(
            "from ..apply import apply_event",
            "pointguard.program.orders.rules",
            "pointguard.program.apply",
            id="relative-parent",
        ),
        pytest.param(
            "import pointguard.program", "pointguard.program.dates", "pointguard.program", id="pkg"
        ),
        pytest.param(
            "def f() -> None:\n    import asyncpg\n",
            "pointguard.program.dates",
            "asyncpg",
            id="inside-a-function",
        ),
    ],
)
def test_the_check_names_the_module_and_the_import(source: str, module: str, flagged: str) -> None:
    [problem] = violations(source, module)
    assert problem.startswith(f"{module} imports {flagged} (line ")


@pytest.mark.parametrize(
    "source",
    [
        "from pointguard.ledger.keys import idempotency_key",
        "from pointguard.ledger import keys",
        "from pointguard.program.dates import add_months",
        "from pointguard.program import dates",
        "from .earning import Buyer",
        "from msgspec import Struct",
        "import calendar",
    ],
)
def test_the_check_lets_the_pure_imports_pass(source: str) -> None:
    assert violations(source, "pointguard.program.orders.rules") == []


def test_importing_the_pure_core_loads_no_database() -> None:
    """What the statements say holds when the modules run: importing every pure module, in a
    fresh interpreter, loads neither a database driver nor the ledger's I/O (the ledger's
    package imports its names on first use, so `ledger.keys` comes alone)."""
    script = (
        "import importlib, sys\n"
        f"for name in {sorted(PURE)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m in ('asyncpg', 'sqlalchemy', 'pointguard.db')"
        " or m.startswith('pointguard.ledger.') and m not in ('pointguard.ledger.keys',"
        " 'pointguard.ledger.entries', 'pointguard.ledger.accounts')))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]", f"importing the pure core loaded {loaded}"
