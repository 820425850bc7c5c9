"""The package's boundaries, checked on its source: only ``mirror/`` speaks SQL
and imports SQLAlchemy."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import edsync

PACKAGE = Path(edsync.__file__).parent

# A statement's opening words, or a way to hand one to the database.
SQL = re.compile(
    r"\bSELECT\b.+\bFROM\b|\bSELECT\s+(COUNT|MAX|MIN|pg_)|\bINSERT\s+INTO\b"
    r"|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b|\bexec_driver_sql\b"
    r"|\bsqlalchemy\.text\b|\bfrom sqlalchemy import\b.*\btext\b"
)

# Files outside mirror/ that still hold SQL, each with the reason it may.
ALLOWED: set[str] = set()


def _offenders() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("mirror/") or relative in ALLOWED:
            continue
        hits = [
            f"{number}: {line.strip()}"
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if SQL.search(line)
        ]
        if hits:
            found[relative] = hits
    return found


def test_only_the_mirror_package_speaks_sql() -> None:
    assert _offenders() == {}


def test_the_sql_pattern_finds_what_it_looks_for() -> None:
    spelled = [
        'conn.exec_driver_sql("SELECT COUNT(*) FROM deliveries")',
        "SELECT source, event_id FROM events WHERE status = ?",
        "UPDATE deliveries SET status = 'pending'",
        "INSERT INTO records (source) VALUES (?)",
        "DELETE FROM signals WHERE id = ?",
        "from sqlalchemy import select, text",
    ]
    assert [line for line in spelled if not SQL.search(line)] == []


def test_the_allowed_files_still_need_it() -> None:
    """An exemption whose file no longer holds SQL is dropped, not kept by habit."""
    for relative in ALLOWED:
        assert SQL.search((PACKAGE / relative).read_text()), relative


def _sqlalchemy_imports(tree: ast.Module) -> list[int]:
    """Lines of ``tree`` that import SQLAlchemy, anywhere: in a function, under
    ``if TYPE_CHECKING:`` too (a type from it is still its API in the signature)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        if any(name == "sqlalchemy" or name.startswith("sqlalchemy.") for name in names):
            found.append(node.lineno)
    return sorted(found)


def test_only_the_mirror_package_imports_sqlalchemy() -> None:
    """The rest of edsync holds a ``Mirror`` and catches ``MirrorError``: the
    database library is the mirror's business alone."""
    offenders = {
        relative: lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if not (relative := path.relative_to(PACKAGE).as_posix()).startswith("mirror/")
        and (lines := _sqlalchemy_imports(ast.parse(path.read_text(), str(path))))
    }
    assert offenders == {}


def test_the_sqlalchemy_import_check_finds_every_spelling() -> None:
    source = (
        "import sqlalchemy\n"
        "import sqlalchemy.exc as sa_exc\n"
        "from sqlalchemy import Engine\n"
        "from sqlalchemy.exc import SQLAlchemyError\n"
        "if TYPE_CHECKING:\n"
        "    from sqlalchemy import Connection\n"
        "def f():\n"
        "    import sqlalchemy.orm\n"
        "import sqlalchemy_utils\n"
        "from . import sqlalchemy\n"
    )
    assert _sqlalchemy_imports(ast.parse(source)) == [1, 2, 3, 4, 6, 8]


def _module_name(path: Path) -> str:
    parts = ("edsync", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, module: str, is_package: bool, *, deferred: bool) -> set[str]:
    """edsync modules ``module`` imports: at its top level (including under ``if``
    and ``try``), and also inside functions when ``deferred``; never those under
    ``if TYPE_CHECKING:``, which only the type checker follows."""
    found: set[str] = set()
    pending: list[ast.AST] = list(tree.body)
    package = module if is_package else module.rpartition(".")[0]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif deferred or not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            pending.extend(ast.iter_child_nodes(node))
    return found


def _parsed() -> dict[str, tuple[ast.Module, bool]]:
    return {
        _module_name(path): (ast.parse(path.read_text(), str(path)), path.name == "__init__.py")
        for path in PACKAGE.rglob("*.py")
    }


def test_the_product_imports_the_simulator_only_when_asked() -> None:
    """The simulator (``edsync_sim``) ships in the wheel but is its own package:
    only ``simulate`` and ``demo`` import it, inside their functions."""
    eager = {
        module
        for module, (tree, is_package) in _parsed().items()
        if any(
            name.split(".")[0] == "edsync_sim"
            for name in _imports(tree, module, is_package, deferred=False)
        )
    }
    lazy = {
        module
        for module, (tree, is_package) in _parsed().items()
        if "edsync_sim" in _imports(tree, module, is_package, deferred=True)
    }
    assert eager == set()
    assert lazy == {"edsync.cli", "edsync.ops.demo"}


def import_graph(*, deferred: bool = False) -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        imported = _imports(tree, module, path.name == "__init__.py", deferred=deferred)
        # Importing ``a.b.c`` runs ``a`` and ``a.b`` first: the parents are imports too.
        parents = {name.rsplit(".", depth)[0] for name in imported for depth in (1, 2)}
        graph[module] = {
            name
            for name in imported | parents
            if name in modules and name != module and not module.startswith(f"{name}.")
        }
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_edsync_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "edsync.settings" in graph["edsync.config"]  # the walk sees imports
    assert find_cycle(graph) is None


def test_no_cycle_hides_behind_a_deferred_import_either() -> None:
    """An import inside a function still makes the two modules one: the config
    loader and the rules, the mirror's schema and its views, were such pairs."""
    graph = import_graph(deferred=True)
    assert "edsync.mirror.views" in graph["edsync.cli"]  # imported in a function
    assert find_cycle(graph) is None


def test_the_domain_types_and_the_settings_are_leaves() -> None:
    """``model`` and ``settings`` import nothing else of edsync, even in a function."""
    graph = import_graph(deferred=True)
    assert graph["edsync.model"] == set()
    assert graph["edsync.settings"] == set()  # ``Rule`` only under TYPE_CHECKING


def test_the_ledger_fold_needs_no_type_ignore() -> None:
    """``Change | Quarantined`` lets the checker follow the fold as it is."""
    assert "type: ignore" not in (PACKAGE / "mirror" / "ledger.py").read_text()
