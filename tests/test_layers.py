"""Import contracts between Bastion's packages (DESIGN.md: lower layers never import higher ones).

The source is read with `ast`, never imported, so every import counts: top-level, inside functions (lazy), under
`if TYPE_CHECKING:` (still coupling), and `importlib.import_module("bastion....")` with a literal name. Imports are
followed through modules no rule governs (`bastion.principal`, the `bastion` package itself, ...), so a rule
cannot be dodged by a detour: `mcp` importing `bastion`, whose __init__ imports `bastion.app`, breaks "mcp never
imports app". tests/mcp/test_layering.py holds the engine's rules inside `bastion.mcp`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "bastion"


@dataclass(frozen=True)
class Import:
    importer: str
    line: int
    target: str


@dataclass(frozen=True)
class Module:
    source: str
    is_package: bool = False


@dataclass(frozen=True)
class Rule:
    name: str
    importers: tuple[str, ...]  # the modules the rule governs: these packages (and what is inside them)
    forbidden: tuple[str, ...]  # what they may not reach
    # A package whose imports of itself never count (a package may import its own modules).
    own: str | None = None

    def governs(self, module: str) -> bool:
        return any(within(module, package) for package in self.importers)

    def forbids(self, importer: str, target: str) -> bool:
        if self.own and within(importer, self.own) and within(target, self.own):
            return False
        return any(within(target, package) for package in self.forbidden)


RULES = (
    Rule("store imports nothing else of Bastion's", ("bastion.store",), (ROOT,), own="bastion.store"),
    Rule("security imports nothing else of Bastion's", ("bastion.security",), (ROOT,), own="bastion.security"),
    Rule("settings imports nothing else of Bastion's", ("bastion.settings",), (ROOT,), own="bastion.settings"),
    Rule(
        "mcp knows no OAuth, sign-in, protected resource, worker, store, cluster or app",
        ("bastion.mcp",),
        (
            "bastion.oauth",
            "bastion.identity",
            "bastion.connections",
            "bastion.resource",
            "bastion.worker",
            "bastion.store",
            "bastion.cluster",
            "bastion.app",
            "bastion.compose",
        ),
    ),
    Rule(
        "cluster joins the engine to the store and bus, and knows nothing of OAuth, the app or the composition root",
        ("bastion.cluster",),
        ("bastion.oauth", "bastion.identity", "bastion.resource", "bastion.app", "bastion.compose", "bastion.cli"),
    ),
    Rule("oauth does not know MCP exists", ("bastion.oauth",), ("bastion.mcp",)),
    Rule(
        "resource, identity, connections and oauth never import the app, the composition root or the CLI",
        ("bastion.resource", "bastion.identity", "bastion.connections", "bastion.oauth"),
        ("bastion.app", "bastion.compose", "bastion.cli"),
    ),
    Rule("nothing but the CLI imports the CLI", (ROOT,), ("bastion.cli",), own="bastion.cli"),
)


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def source_tree(src: Path = SRC) -> dict[str, Module]:
    modules = {}
    for path in sorted((src / ROOT).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = Module(path.read_text(), is_package)
    return modules


def imports_of(name: str, module: Module, known: Mapping[str, Module]) -> Iterator[Import]:
    """Bastion's modules that `name` imports, relative imports resolved. `from pkg import thing` is an import of
    the module pkg.thing when there is one, else of pkg (whose __init__ then provides thing)."""
    package = name if module.is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(module.source, filename=name)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                yield Import(name, node.lineno, submodule if submodule in known else source)
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func) and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield Import(name, node.lineno, first.value)


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in ("__import__", "import_module")
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def import_graph(modules: Mapping[str, Module]) -> dict[str, list[Import]]:
    return {
        name: sorted(
            {found for found in imports_of(name, module, modules) if within(found.target, ROOT)},
            key=lambda found: (found.line, found.target),
        )
        for name, module in modules.items()
    }


def violations(rule: Rule, graph: Mapping[str, list[Import]]) -> list[list[Import]]:
    """Each chain of imports by which a governed module reaches a forbidden one. The search goes on through
    modules the rule does not govern and stops at those it does: they answer for their own imports."""
    found = []
    for start in sorted(name for name in graph if rule.governs(name)):
        seen = {start}
        paths: list[list[Import]] = [[step] for step in graph[start]]
        while paths:
            path = paths.pop(0)
            step = path[-1]
            if rule.forbids(start, step.target):
                found.append(path)
            elif step.target not in seen and not rule.governs(step.target):
                seen.add(step.target)
                paths += [[*path, onward] for onward in graph.get(step.target, [])]
    return found


def describe(chain: list[Import]) -> str:
    first, *rest = chain
    words = f"{first.importer} line {first.line} imports {first.target}"
    return words + "".join(f", whose line {step.line} imports {step.target}" for step in rest)


def report(rule: Rule, chains: list[list[Import]]) -> str:
    return f"{rule.name}; broken by:\n" + "\n".join(f"  {describe(chain)}" for chain in chains)


# The tree as it is.

TREE = source_tree()
GRAPH = import_graph(TREE)


def test_the_tree_is_read_whole():
    assert len(TREE) > 80
    assert {"bastion", "bastion.app", "bastion.settings", "bastion.cli", "bastion.mcp.server"} <= set(TREE)
    assert "bastion.cli.serve" in {found.target for found in GRAPH["bastion.cli"]}


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_the_tree_keeps_the_rule(rule):
    assert any(rule.governs(name) for name in TREE), f"{rule.name}: governs no module (renamed?)"
    chains = violations(rule, GRAPH)
    assert chains == [], report(rule, chains)


# The checker itself, fed made-up modules: each rule fails when broken.

BASE = {
    "bastion": Module("from .app import App\n", is_package=True),
    "bastion.app": Module("from .oauth import server\n"),
    "bastion.principal": Module(""),
    "bastion.cli": Module("from . import serve\n", is_package=True),
    "bastion.cli.serve": Module("from ..app import App\n"),
    **{
        f"bastion.{package}": Module("", is_package=True)
        for package in ("store", "security", "settings", "mcp", "oauth", "identity", "resource", "worker")
    },
    "bastion.store.base": Module(""),
    "bastion.oauth.server": Module(""),
    "bastion.mcp.server": Module(""),
    "bastion.compose": Module(""),
}

BREAKERS = [  # (rule, module, its source, line, what it imports)
    ("store imports", "bastion.store.fake", "from ..oauth import server\n", 1, "bastion.oauth.server"),
    ("store imports", "bastion.store.fake", "from .. import principal\n", 1, "bastion.principal"),
    ("security imports", "bastion.security.fake", "import bastion.settings\n", 1, "bastion.settings"),
    ("settings imports", "bastion.settings.fake", "def f():\n    from ..security import x\n", 2, "bastion.security"),
    ("mcp knows", "bastion.mcp.fake", "from ..store.base import Store\n", 1, "bastion.store.base"),
    ("mcp knows", "bastion.mcp.fake", "from ..resource import bearer\n", 1, "bastion.resource"),
    ("mcp knows", "bastion.mcp.fake", "from ..cluster import sessions\n", 1, "bastion.cluster"),
    ("cluster joins", "bastion.cluster.fake", "from ..oauth.server import x\n", 1, "bastion.oauth.server"),
    ("oauth does not", "bastion.oauth.fake", "from ..mcp.server import Server\n", 1, "bastion.mcp.server"),
    ("resource, identity", "bastion.identity.fake", "from ..compose import build\n", 1, "bastion.compose"),
    ("resource, identity", "bastion.resource.fake", "from ..cli import main\n", 1, "bastion.cli"),
    ("nothing but the CLI", "bastion.worker.fake", "from bastion.cli import load_app\n", 1, "bastion.cli"),
]


def rule_named(start: str) -> Rule:
    (rule,) = [rule for rule in RULES if rule.name.startswith(start)]
    return rule


@pytest.mark.parametrize("rule_start, name, source, line, target", BREAKERS)
def test_each_rule_fails_when_a_module_breaks_it(rule_start, name, source, line, target):
    rule = rule_named(rule_start)
    assert violations(rule, import_graph(BASE)) == []
    chains = violations(rule, import_graph({**BASE, name: Module(source)}))
    assert [describe(chain) for chain in chains] == [f"{name} line {line} imports {target}"]
    assert f"  {name} line" in report(rule, chains)


def test_every_rule_has_a_breaking_example():
    assert {rule.name for rule in RULES} == {rule_named(start).name for start, *_ in BREAKERS}


def test_type_checking_lazy_and_dynamic_imports_count():
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from bastion.oauth.server import Server\n"
        "def later():\n"
        "    import importlib\n"
        "    return importlib.import_module('bastion.store.base')\n"
    )
    chains = violations(rule_named("mcp knows"), import_graph({**BASE, "bastion.mcp.fake": Module(source)}))
    assert [describe(chain) for chain in chains] == [
        "bastion.mcp.fake line 3 imports bastion.oauth.server",
        "bastion.mcp.fake line 6 imports bastion.store.base",
    ]


def test_a_detour_through_an_ungoverned_module_is_followed():
    tree = {
        **BASE,
        "bastion.principal": Module("from .oauth.server import Server\n"),
        "bastion.mcp.fake": Module("\nfrom bastion.principal import Principal\n"),
    }
    chains = violations(rule_named("mcp knows"), import_graph(tree))
    assert [describe(chain) for chain in chains] == [
        "bastion.mcp.fake line 2 imports bastion.principal, whose line 1 imports bastion.oauth.server"
    ]


def test_a_name_from_the_public_face_counts_as_what_the_face_imports():
    tree = {**BASE, "bastion.mcp.fake": Module("from bastion import App\n")}
    chains = violations(rule_named("mcp knows"), import_graph(tree))
    assert [describe(chain) for chain in chains] == [
        "bastion.mcp.fake line 1 imports bastion, whose line 1 imports bastion.app"
    ]


def test_relative_imports_resolve_from_modules_and_packages():
    tree = {
        **BASE,
        "bastion.mcp.http": Module("from . import wire\nfrom .. import server\nfrom ..errors import E\n", True),
        "bastion.mcp.http.wire": Module("from . import reply\nfrom ...oauth import server\n"),
    }
    graph = import_graph(tree)
    assert [found.target for found in graph["bastion.mcp.http"]] == [
        "bastion.mcp.http.wire",
        "bastion.mcp.server",
        "bastion.mcp.errors",
    ]
    # `reply` is no module here, so the import is of the package that would provide it.
    assert [found.target for found in graph["bastion.mcp.http.wire"]] == ["bastion.mcp.http", "bastion.oauth.server"]


def test_a_package_may_import_itself_but_nothing_else():
    tree = {**BASE, "bastion.store.fake": Module("from .base import Store\nfrom . import base\n")}
    assert violations(rule_named("store imports"), import_graph(tree)) == []
    assert violations(rule_named("nothing but the CLI"), import_graph(BASE)) == []  # cli.serve imports cli's own
