"""One-way layers: the import contracts in pyproject.toml hold, and they catch a wrong-way arrow."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``root/src`` with ``root/pyproject.toml``."""
    return subprocess.run(
        [str(LINT), "--no-cache", "--no-logo", "--config", str(root / "pyproject.toml")],
        cwd=root, env={"PYTHONPATH": str(root / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=120)


def test_the_package_keeps_its_contracts() -> None:
    assert LINT.is_file(), "import-linter is missing: pip install -e '.[dev]'"
    r = lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 kept, 0 broken" in r.stdout


@pytest.mark.parametrize(("module", "line", "arrow"), [
    ("data/tables.py", "from mimrec.ctr import model", "mimrec.data.tables -> mimrec.ctr.model"),
    ("encoders/text.py", "import mimrec.config", "mimrec.encoders.text -> mimrec.config"),
    ("csft/pairs.py", "from mimrec.pretrain import train",
     "mimrec.csft.pairs -> mimrec.pretrain.train"),
    ("serve/limits.py", "import mimrec.ctr.train", "mimrec.serve.limits -> mimrec.ctr.train"),
    ("serve/limits.py", "import mimrec.data.stage", "mimrec.serve.limits -> mimrec.data.stage"),
])
def test_an_arrow_going_the_wrong_way_breaks_a_contract(tmp_path: Path, module: str, line: str,
                                                         arrow: str) -> None:
    shutil.copytree(ROOT / "src" / "mimrec", tmp_path / "src" / "mimrec",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "src" / "mimrec" / module, "a") as f:
        f.write(f"\n{line}  # the wrong way\n")
    r = lint(tmp_path)
    assert r.returncode != 0 and "BROKEN" in r.stdout
    assert arrow in r.stdout


def local_imports(folder: Path) -> dict[str, set[str]]:
    """Script -> the scripts of the same folder it imports (by module name)."""
    names = {p.stem for p in folder.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
        graph[path.stem] = found & names - {path.stem}
    return graph


def test_benchmark_scripts_import_each_other_one_way() -> None:
    graph = local_imports(ROOT / "benchmarks")
    assert graph["run_all"] >= {"environment", "write_results"}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n}))
                   for n in graph[start])

    cycles = [name for name in graph if reaches(name, name, set())]
    assert cycles == []
