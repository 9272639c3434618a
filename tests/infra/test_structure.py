"""The layout, drawn from the imports themselves: contracts at the bottom importing nothing of
ours, the shared runtime above it, no service importing another, the deploy tooling and the
local cloud above the services (and never inside a bundle), the operator tool on top, and no
import circle anywhere."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from deploytools.stacks import ROOT

SERVICES = ("splitter", "transformer", "publisher", "reaper")
# package -> its source folder
PACKAGES: dict[str, Path] = {
    "contracts": ROOT / "contracts" / "src" / "contracts",
    "servicekit": ROOT / "servicekit" / "src" / "servicekit",
    **{s: ROOT / "services" / s / "src" / s for s in SERVICES},
    "deploytools": ROOT / "deploytools" / "src" / "deploytools",
    "localcloud": ROOT / "localcloud" / "src" / "localcloud",
    "ingest_cli": ROOT / "cli" / "src" / "ingest_cli",
}
# package -> the packages of ours it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "contracts": set(),
    "servicekit": {"contracts"},
    **{s: {"contracts", "servicekit"} for s in SERVICES},
    "deploytools": set(),
    "localcloud": {"deploytools"},
    # the file commands use the splitter's and transformer's pure cores; the cloud commands
    # read the ledger and drive the local cloud
    "ingest_cli": {
        "contracts",
        "servicekit",
        "splitter",
        "transformer",
        "deploytools",
        "localcloud",
    },
}


def _module_name(package: str, path: Path) -> str:
    rel = path.relative_to(PACKAGES[package]).with_suffix("")
    parts = [package, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module an import statement in the file names, wherever the statement is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {
        _module_name(package, path): path
        for package, folder in PACKAGES.items()
        for path in folder.rglob("*.py")
    }
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for imported in _imports(path):
            if imported in modules and imported != name:
                graph[name].add(imported)
        graph.setdefault(name, set())
    return graph


GRAPH = _graph()


def _package(module: str) -> str:
    return module.split(".")[0]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_each_package_imports_only_the_layers_below_it(package: str) -> None:
    crossings = {
        (module, imported)
        for module, imports in GRAPH.items()
        if _package(module) == package
        for imported in imports
        if _package(imported) not in ALLOWED[package] | {package}
    }
    assert crossings == set(), f"{package} reaches outside its layer"


def test_contracts_import_nothing_but_the_standard_library_and_msgspec() -> None:
    ours = set(PACKAGES) - {"contracts"}
    for path in PACKAGES["contracts"].rglob("*.py"):
        foreign = {m.split(".")[0] for m in _imports(path)} - {"contracts"}
        assert foreign & ours == set(), path
        assert "boto3" not in foreign and "botocore" not in foreign, path


def test_there_is_no_import_circle() -> None:
    # Tarjan's strongly connected components: any of more than one module is a circle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(component)

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert circles == []


def test_the_structure_test_sees_every_package_and_their_imports() -> None:
    # a guard on the guard: the graph is not empty and knows the edges we rely on
    assert "splitter.handler" in GRAPH and "contracts.messages" in GRAPH["splitter.handler"]
    assert "servicekit.ledger" in GRAPH["servicekit.consumer"] | GRAPH["servicekit.errors"]
    assert any(_package(m) == "deploytools" for m in GRAPH["localcloud.deploy"])


def test_no_domain_module_imports_an_aws_sdk_or_powertools() -> None:
    domain = {
        "splitter": ["extract", "split", "ingest"],
        "transformer": ["core", "parse", "rules", "mapping", "event_id", "transform"],
        "publisher": ["publish"],
        "reaper": ["reap"],
    }
    for service, modules in domain.items():
        for module in modules:
            path = PACKAGES[service] / f"{module}.py"
            roots = {m.split(".")[0] for m in _imports(path)}
            assert roots & {"boto3", "botocore", "aws_lambda_powertools", "urllib3"} == set(), path


def test_each_service_says_the_version_its_package_declares() -> None:
    import importlib
    import tomllib

    for service in SERVICES:
        declared = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
        module = importlib.import_module(service)
        assert module.__version__ == declared["project"]["version"], service


def test_no_entry_point_lets_its_tracer_capture_a_response_or_an_error_message() -> None:
    # a response can carry a record (enrichment), an error's message a value: neither may
    # reach a trace
    entry_points = 0
    for service in SERVICES:
        tree = ast.parse((PACKAGES[service] / "handler.py").read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            for decorator in node.decorator_list:
                if (
                    isinstance(decorator, ast.Call)
                    and isinstance(decorator.func, ast.Attribute)
                    and decorator.func.attr == "capture_lambda_handler"
                ):
                    entry_points += 1
                    given = {k.arg: getattr(k.value, "value", None) for k in decorator.keywords}
                    assert given.get("capture_response") is False, (service, node.name)
                    assert given.get("capture_error") is False, (service, node.name)
    assert entry_points == 9
