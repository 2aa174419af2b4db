"""The package's shape is a rule, not a habit: layers import downward only, production code
never reaches into devtools, and no module grows past the size a reader can hold. The tests
keep one rule too: shared code lives in tests/support/, never in another test module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "release"
TESTS = Path(__file__).resolve().parent
MAX_LINES = 400
MAX_TOP_LEVEL_MODULES = 8

# What each layer may import besides itself. `web` and `ops` are the edges (requests,
# commands); `container` wires everything; only `devtools` and the app factory (for demo
# mode) may import `devtools`.
ALLOWED = {
    "paths": set(),
    "config": {"paths"},
    "db": {"config", "paths"},
    # db: an rspamd node's quarantine is the service's own database (gateway/stored.py);
    # mail: its release re-injects through SMTP on the mail layer's loop thread (gateway/relay.py).
    "gateway": {"config", "paths", "db", "mail"},
    "mail": {"config", "paths"},
    "captcha": {"config", "paths"},
    "jobs": {"config", "paths", "db"},
    # preview: pure functions of a message's bytes (no database, gateway or Flask).
    "preview": set(),
    "core": {"config", "paths", "db", "gateway", "mail", "jobs", "preview"},
    "web": {"config", "paths", "db", "gateway", "mail", "captcha", "jobs", "core", "container", "ops", "preview"},
    "ops": {"config", "paths", "db", "gateway", "mail", "captcha", "jobs", "core", "container", "web", "(release)"},
    "container": {"config", "paths", "db", "gateway", "mail", "captcha", "jobs", "core", "ops"},
    "gunicorn_hooks": {"ops"},
    "devtools": {"config", "paths", "db", "gateway", "mail", "captcha", "jobs", "core", "container", "(release)"},
}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def layer_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return "(release)" if parts == ("__init__",) else parts[0]


def imported_layers(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "release":
            assert node.level == 0, f"{path}: relative import"
            parts = node.module.split(".")
            found.add(parts[1] if len(parts) > 1 else "(release)")
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    layer = layer_of(path)
    if layer == "(release)":
        return  # the app factory wires every layer (and demo mode's blueprint)
    upward = imported_layers(path) - ALLOWED[layer] - {layer}
    assert not upward, f"{path.relative_to(PACKAGE)} ({layer}) imports {sorted(upward)}"


def test_only_the_app_factory_reaches_devtools() -> None:
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in modules()
        if layer_of(p) not in ("devtools", "(release)") and "devtools" in imported_layers(p)
    ]
    assert offenders == []


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_readable(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(PACKAGE)} has {lines} lines; split it by job"


def test_the_package_top_level_stays_small() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_modules_import_from_other_tests_only_through_support() -> None:
    """A test module or conftest imported by another test couples suites; tests.support is the
    one shared place (fixtures are declared in conftest files, never imported from them)."""
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = [("." * node.level) + (node.module or "")]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                shared = name == "tests.support" or name.startswith("tests.support.")
                if name.startswith(".") or (name.split(".")[0] == "tests" and not shared):
                    offenders.append(f"{path.relative_to(TESTS.parent)}:{node.lineno}: {name}")
    assert offenders == []
