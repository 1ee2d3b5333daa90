"""The layering of ARCHITECTURE.md, asserted: each library has one home, `model` sits at
the bottom, and nothing imports the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

THIRD_PARTY = {
    "yaml", "pandas", "numpy", "jsonschema", "httpx", "click", "dateutil", "starlette",
    "uvicorn", "jwt", "cryptography", "fsspec", "pyarrow", "zstandard",
}  # fmt: skip
ALLOWED = {
    "loader.model": set(),
    "loader.timegrid": set(),
    "loader.access": set(),
    "loader.yamlsrc": {"yaml"},
    "loader.manifest": {"yaml"},
    "loader.manifestpart": {"yaml"},
    "loader.targets": {"yaml"},
    "loader.config": {"yaml"},
    # pandas loads pyarrow itself where it is installed (the parquet extra); zstandard
    # only when a .zst file is read.
    "loader.data": {"pandas", "numpy", "dateutil", "yaml", "pyarrow"},
    "loader.readers": {"pandas", "numpy", "dateutil", "yaml", "pyarrow"},
    "loader.fileformats": set(),
    # A plan whose files are all in the cache loads no data library.
    "loader.summaries": set(),
    # The data step imports pandas when it runs: the manifest alone is read without it.
    "loader.validation": {"yaml", "jsonschema"},
    # The embedded backend is the standard library's sqlite3: no web stack in its path.
    "loader.backends.store": set(),
    "loader.backends.local": set(),
    # fsspec only when a remote store is opened
    "loader.state": set(),
    # The planner and what it compares are pure: no library at all.
    "loader.record": set(),
    "loader.planner": set(),
    "loader.notes": set(),
    "loader.contract": set(),
    "loader.refresh": set(),
    "loader.execute": set(),
    "loader.render": set(),
    "loader.progress": set(),
    # pandas and IPython only when a notebook asks: a DataFrame, a bar
    "loader.coverage": set(),
    "loader.notebook": set(),
}


def python(code: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`code` run by a fresh interpreter: nothing this test process imported counts."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True
    )


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_module_imports_only_its_libraries(module: str) -> None:
    code = (
        "import json, sys; import " + module + "; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = python(code)
    loaded = set(json.loads(done.stdout)) & THIRD_PARTY
    assert loaded <= ALLOWED[module], f"{module} pulls in {sorted(loaded - ALLOWED[module])}"


def test_nobody_imports_the_cli() -> None:
    offenders = [
        path.name
        for path in (ROOT / "loader").rglob("*.py")
        if path.name not in {"cli.py", "__main__.py"}
        and ("loader.cli" in path.read_text() or "from loader import cli" in path.read_text())
    ]
    assert offenders == []


def test_only_the_cli_prints() -> None:
    printers = [
        path.name
        for path in (ROOT / "loader").rglob("*.py")
        if path.name != "cli.py" and re.search(r"\bprint\(", path.read_text())
    ]
    assert printers == []


def test_every_module_says_its_role() -> None:
    import ast

    missing = [
        str(path.relative_to(ROOT))
        for path in Path(ROOT / "loader").rglob("*.py")
        if not ast.get_docstring(ast.parse(path.read_text()))
    ]
    assert missing == []


# The commands that never read data: a fresh interpreter runs each through `main`, as the
# console script does, and reports which of the data libraries it loaded.
CLI_WITHOUT_DATA = [
    ["--help"],
    ["schema"],
    ["schema", "--config"],
    ["unlock", "{manifest}", "--state", "{state}"],
]


@pytest.mark.parametrize("args", CLI_WITHOUT_DATA, ids=lambda a: " ".join(a[:1] + a[1:2]))
def test_the_cli_imports_no_pandas_without_data(args: list[str], tmp_path: Path) -> None:
    manifest = ROOT / "tests" / "data" / "upstream" / "manifest.yaml"
    argv = [a.format(manifest=manifest, state=tmp_path / "state.json") for a in args]
    code = (
        "import json, sys\n"
        "import loader.cli\n"
        f"sys.argv = ['flowkit-loader', *{argv!r}]\n"
        "try:\n"
        "    loader.cli.main()\n"
        "except SystemExit as end:\n"
        "    code = end.code\n"
        "sys.stdout.flush()\n"
        "sys.stderr.write(json.dumps([code, sorted({'pandas', 'numpy'} & set(sys.modules))]))\n"
    )
    done = python(code, cwd=tmp_path)
    exit_code, loaded = json.loads(done.stderr.splitlines()[-1])
    assert (exit_code, loaded) == (0, []), done.stdout + done.stderr


def test_the_api_names_stay_functions_when_every_module_is_imported() -> None:
    """Importing a submodule binds it on the package: one named like an API function
    (`loader/status.py`) would replace `loader.status` for everyone after it."""
    code = (
        "import importlib, pkgutil, loader; "
        "[importlib.import_module(m.name) for m in pkgutil.walk_packages(loader.__path__, "
        "'loader.') if m.name != 'loader.__main__']; "
        "print(sorted(n for n in loader.__all__ if isinstance(getattr(loader, n), "
        "type(loader))))"
    )
    done = python(code)
    assert done.stdout == "[]\n"


def test_no_module_but_the_factory_asks_which_kind_of_backend_it_holds() -> None:
    """Callers use the Backend protocol: no isinstance on a backend class, and no
    getattr / hasattr of a protocol member, outside backends/factory.py."""
    import ast

    from loader.model import Backend

    members = {name for name in vars(Backend) if not name.startswith("__")} | {"tokens"}
    found = []
    for path in sorted((ROOT / "loader").rglob("*.py")):
        if path.name == "factory.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            args = node.args
            if node.func.id == "isinstance" and len(args) == 2:
                named = [n.id for n in ast.walk(args[1]) if isinstance(n, ast.Name)]
                if any(name.endswith("Backend") for name in named):
                    found.append(f"{path.name}:{node.lineno}: isinstance {named}")
            if node.func.id in ("getattr", "hasattr") and len(args) >= 2:
                name = args[1]
                if isinstance(name, ast.Constant) and name.value in members:
                    found.append(f"{path.name}:{node.lineno}: {node.func.id} {name.value!r}")
    assert found == []


def test_each_module_has_a_unit_test_module_named_after_it_and_suites_are_apart() -> None:
    """tests/test_<module>.py for each module of loader/ (backends/ included); every test
    module at the top of tests/ is named after one, and suites that cross modules live in
    tests/cross_cutting/."""
    modules = {p.stem for p in (ROOT / "loader").rglob("*.py") if not p.stem.startswith("__")}
    unit_tests = {p.stem.removeprefix("test_") for p in (ROOT / "tests").glob("test_*.py")}
    assert sorted(modules - unit_tests) == []  # a module without its tests
    assert sorted(unit_tests - modules) == []  # a suite that belongs in cross_cutting/
    stems = [p.stem for p in (ROOT / "loader").rglob("*.py") if not p.stem.startswith("__")]
    assert len(stems) == len(modules)  # one name, one module: test_X.py is unambiguous
