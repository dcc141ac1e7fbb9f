"""The README's tour runs as written after `prodsearch demo` (issue 11, item 9).

Runs the demo on a small stratified sample ($PRODSEARCH_DEMO_LIMIT=300, a subset of the default
3,000, so the README's product ids are in both), then every command of the README blocks marked
``<!-- readme-tour: ... -->``, from the checkout, exactly as written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CATALOG = ROOT.parent / "shared/datasets/fashion-product-images-small/styles.csv"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CATALOG.is_file(), reason="the shared fashion catalog is not next to the checkout"
    ),
]


def tour_blocks() -> dict[str, str]:
    """``{name: code}`` of every fenced block right after a ``<!-- readme-tour: name -->`` marker."""
    found = re.findall(r"<!-- readme-tour: ([\w-]+) -->\n```\w+\n(.*?)```", README.read_text(), flags=re.S)
    return dict(found)


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)  # the `prodsearch` script of this environment
    e = {
        **os.environ,
        "PRODSEARCH_DEMO_LIMIT": "300",
        "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
    }
    demo = subprocess.run(
        ["prodsearch", "demo", "--no-serve"], cwd=ROOT, env=e, capture_output=True, text=True, timeout=900
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "== text: 'red dress for women'" in demo.stdout
    return e


def run_block(code: str, env: dict[str, str]) -> str:
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"README block failed:\n{code}\n--- stderr ---\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_readme_marks_its_tour_blocks():
    assert set(tour_blocks()) == {"after-demo", "own-catalog", "models", "python"}


def test_after_demo_commands_run_as_written(env):
    out = run_block(tour_blocks()["after-demo"], env)
    assert '"products": 300' in out  # info on the demo's index
    assert "Catwalk Women Golden Heels" in out  # the photo search finds the photo's product
    assert "error" not in out.lower()


def test_python_tour_runs_as_written(env):
    idx = subprocess.run(
        ["prodsearch", "demo", "--where"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    proc = subprocess.run(
        [sys.executable, "-c", tour_blocks()["python"]], cwd=ROOT, env={**env, "IDX": idx},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(proc.stdout.strip().splitlines()) == 5  # five printed hits


def test_own_catalog_commands_run_as_written(env):
    out = run_block(tour_blocks()["own-catalog"], env)
    assert "100/100 rows accepted" in out and "report written to" in out


def test_models_commands_run_as_written(env):
    out = run_block(tour_blocks()["models"], env)
    assert "sync: added 100" in out and "train: candidate v2 (warm start from v1)" in out
    assert (
        "paired resamples" in out
        and "now serves v2" in out
        and "now serves v1 (was v2; encoded 0 products)" in out
    )
