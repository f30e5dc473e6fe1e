"""The import rules of the architecture, checked on the source: the servers never import each
other (the all-in-one composes them), client and service never import a server, the CLI only
inside the commands that run one, and only flame.protocol imports the generated code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "flame"
SERVERS = ("flame.session_manager", "flame.executor_manager", "flame.object_cache")


def imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at module level) for every import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    found: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top))
    return found


def modules(package: str) -> list[Path]:
    return sorted((SRC / package.removeprefix("flame.").replace(".", "/")).rglob("*.py"))


def under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("server", SERVERS)
def test_a_server_never_imports_another(server: str) -> None:
    others = [s for s in SERVERS if s != server]
    wrong = [(p.name, m) for p in modules(server) for m, _ in imports(p) if any(under(m, o) for o in others)]
    assert not wrong, wrong


@pytest.mark.parametrize("package", ["flame.client", "flame.service"])
def test_client_and_service_never_import_a_server(package: str) -> None:
    wrong = [(p.name, m) for p in modules(package) for m, _ in imports(p) if any(under(m, s) for s in SERVERS)]
    assert not wrong, wrong


def test_the_cli_imports_a_server_only_in_the_command_that_runs_it() -> None:
    wrong = [
        (p.name, m) for p in modules("flame.cli") for m, top in imports(p) if top and any(under(m, s) for s in SERVERS)
    ]
    assert not wrong, wrong


def test_only_the_protocol_package_imports_the_generated_code() -> None:
    wrong = [
        (str(p.relative_to(SRC)), m)
        for p in SRC.rglob("*.py")
        if not p.is_relative_to(SRC / "protocol") and not p.is_relative_to(SRC / "_proto")
        for m, _ in imports(p)
        if under(m, "flame._proto")
    ]
    assert not wrong, wrong
