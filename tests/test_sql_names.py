"""SQL constants are named by what they do, verb first, and no two modules share a name.

A reader who meets `SELECT_DEAD_INBOX_ROWS` in a call knows what it does without opening the
constant, and a search for the name finds one statement. Every module of `pointguard` is
imported; its own top-level assignments (read from its source, so a name imported from another
module counts once, where it is defined) whose value is a string of SQL are checked. Migration
scripts (DDL under `UPGRADE`/`DOWNGRADE`) are left out.
"""

import ast
import importlib
import inspect
import pkgutil
import re
from collections import defaultdict

import pointguard

EXCLUDED_PACKAGES = ("pointguard.migrations",)
LEADING_COMMENTS = r"\A(?:\s|--[^\n]*\n|/\*.*?\*/)*"
STATEMENT = re.compile(
    LEADING_COMMENTS + r"(?:SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|ALTER|DROP|LOCK)\b",
    re.IGNORECASE | re.DOTALL,
)
PROBE = re.compile(LEADING_COMMENTS + r"EXISTS\s*\(", re.IGNORECASE | re.DOTALL)
# What a statement does, first; TRY_LOCK is a lock taken only if free. HAS_ names a fragment (an
# `EXISTS (...)` probe) composed into a larger statement, never a statement of its own.
VERBS = (
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "UPSERT",
    "LOCK",
    "TRY_LOCK",
    "UNLOCK",
    "CLAIM",
    "MARK",
    "SET",
    "ADD",
    "COUNT",
    "SUM",
    "MOVE",
    "TAKE",
    "POST",
    "WRITE",
    "REPLAY",
    "RETIRE",
    "REVOKE",
    "CREATE",
)
PROBE_PREFIX = "HAS_"


def package_modules() -> list[str]:
    names = [
        info.name
        for info in pkgutil.walk_packages(pointguard.__path__, "pointguard.")
        if not info.name.startswith(EXCLUDED_PACKAGES) and not info.name.endswith(".__main__")
    ]
    return ["pointguard", *names]


def sql_constants(module_name: str) -> list[tuple[str, str]]:
    """The names a module itself assigns at top level to a string of SQL (its value read from
    the imported module, so f-strings and concatenations count too), with their SQL."""
    module = importlib.import_module(module_name)
    tree = ast.parse(inspect.getsource(module))
    names = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name):
                value = getattr(module, target.id, None)
                if isinstance(value, str) and (STATEMENT.match(value) or PROBE.match(value)):
                    names.append((target.id, value))
    return names


def all_sql_constants() -> dict[str, list[tuple[str, str]]]:
    """Each SQL constant's name, and the modules that define one by that name, with its SQL."""
    found: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for module_name in package_modules():
        for name, sql in sql_constants(module_name):
            found[name].append((module_name, sql))
    return found


def is_named_for_what_it_does(name: str, sql: str) -> bool:
    public = name.lstrip("_")  # a module's private constant is named the same way
    if public.startswith(PROBE_PREFIX):
        return bool(PROBE.match(sql))
    return public.startswith(tuple(f"{verb}_" for verb in VERBS))


def test_the_check_sees_the_constants_it_is_about():
    modules = {name: [m for m, _ in found] for name, found in all_sql_constants().items()}
    assert "pointguard.plugin.worker" in modules["SELECT_DEAD_INBOX_ROWS"]
    assert "pointguard.ledger.seal" in modules["SELECT_ENTRIES_SEALED_AFTER"]  # a concatenation
    assert "pointguard.ledger.operations" in modules["SELECT_DUE_EXPIRIES"]  # an f-string
    assert "pointguard.ledger.operations" in modules["HAS_DUE_RELEASES"]  # an EXISTS probe
    assert not any(m.startswith("pointguard.migrations") for ms in modules.values() for m in ms)
    assert is_named_for_what_it_does("HAS_DUE_RELEASES", "EXISTS (SELECT 1)")
    assert not is_named_for_what_it_does("HAS_ENDPOINT", "SELECT endpoint_url IS NOT NULL")
    assert not is_named_for_what_it_does("DEAD", "SELECT 1")
    assert is_named_for_what_it_does("_SELECT_DUE", "SELECT 1")


def test_no_two_modules_define_an_sql_constant_of_the_same_name():
    shared = {name: found for name, found in all_sql_constants().items() if len(found) > 1}
    assert not shared, "SQL constants defined in more than one module:\n" + "\n".join(
        f"  {name}: {', '.join(module for module, _ in found)}"
        for name, found in sorted(shared.items())
    )


def test_every_sql_constant_starts_with_what_it_does():
    unnamed = sorted(
        (module, name)
        for name, found in all_sql_constants().items()
        for module, sql in found
        if not is_named_for_what_it_does(name, sql)
    )
    assert not unnamed, (
        f"SQL constants not named verb first ({', '.join(VERBS)}; {PROBE_PREFIX} for an"
        " `EXISTS (...)` probe only):\n"
        + "\n".join(f"  {module}.{name}" for module, name in unnamed)
    )
