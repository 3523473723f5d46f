"""The layer contracts in pyproject.toml hold, and they really catch a broken rule.

`make lint` runs `lint-imports` on the tree; these tests run it too, then on a copy of the
package with one forbidden import added per rule, and expect each copy to be refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(root / "pyproject.toml")],
        cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("wire/frames.py", "import asyncio", "wire is sans-IO"),
        ("net/framed.py", "import portway.store", "net uses only wire"),
        ("domain/clock.py", "import portway.wire.codes", "domain imports nothing"),
        ("store/pages.py", "import portway.net.tls", "store uses only domain"),
        ("api/ids.py", "import portway.hub.core.ticker", "the API has no socket code"),
        ("agent/dialer.py", "import portway.store.models", "agents never import the hub"),
        ("hub/core/ticker.py", "import portway.hub.dataplane.routes", "inside the hub"),
        ("hub/dataplane/routes.py", "import portway.api.ids", "only hub/server.py knows"),
    ],
)
def test_a_broken_rule_fails_the_lint(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    shutil.copytree(ROOT / "src" / "portway", tmp_path / "src" / "portway",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "src" / "portway" / module
    target.write_text(target.read_text() + f"\n{line}  # a rule broken on purpose\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[-1]
    importer = "portway." + module.removesuffix(".py").replace("/", ".")
    imported = line.rsplit(maxsplit=1)[-1]
    assert contract in broken and f"{importer} -> {imported}" in broken, result.stdout
