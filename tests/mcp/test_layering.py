"""The engine's import contracts, read from the source (lazy and type-only imports included):
mcp knows nothing of OAuth, stdio and sessions never need the HTTP transport, and the two HTTP eras stay apart."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
MCP = SRC / "bastion" / "mcp"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import versions`
    return found


def engine_modules() -> dict[str, set[str]]:
    return {module_name(path): imports_of(path) for path in MCP.rglob("*.py")}


def offenders(modules: dict[str, set[str]], importer_prefixes: tuple[str, ...], forbidden: tuple[str, ...]) -> list:
    return sorted(
        (name, target)
        for name, targets in modules.items()
        if name.startswith(importer_prefixes)
        for target in targets
        if any(target == f or target.startswith(f + ".") for f in forbidden)
    )


def test_the_reader_resolves_relative_imports():
    found = imports_of(MCP / "http" / "legacy.py")
    assert {"bastion.mcp.session", "bastion.mcp.http.reply", "bastion.mcp.versions"} <= found
    assert "bastion.principal" in imports_of(MCP / "http" / "endpoint.py")


def test_mcp_never_imports_oauth_identity_or_resource():
    modules = engine_modules()
    assert len(modules) > 20
    assert offenders(modules, ("bastion.mcp",), ("bastion.oauth", "bastion.identity", "bastion.resource")) == []


@pytest.mark.parametrize("importer", ["bastion.mcp.stdio", "bastion.mcp.session", "bastion.mcp.server"])
def test_sessions_stdio_and_dispatch_never_import_the_http_transport(importer):
    modules = engine_modules()
    assert importer in modules
    assert offenders(modules, (importer,), ("bastion.mcp.http",)) == []


def test_the_modern_and_legacy_eras_do_not_import_each_other():
    modules = engine_modules()
    assert offenders(modules, ("bastion.mcp.http.modern",), ("bastion.mcp.http.legacy",)) == []
    assert offenders(modules, ("bastion.mcp.http.legacy",), ("bastion.mcp.http.modern",)) == []
