"""The README's examples run as written, in order, in a fresh folder (after its two set-up commands, which CI
itself runs): every bash block with `bash -e`, every python block with this interpreter."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def readme_blocks() -> list[tuple[str, str]]:
    blocks = BLOCK.findall((ROOT / "README.md").read_text())
    assert blocks and blocks[0][0] == "bash" and "pytest" in blocks[0][1], "the README opens with its set-up commands"
    return blocks[1:]


def test_the_readme_opens_with_the_two_setup_commands():
    setup = BLOCK.findall((ROOT / "README.md").read_text())[0][1]
    commands = [line for line in setup.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(commands) == 2 and commands[0].endswith("hwnas run") and commands[1].endswith("pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m pytest" in ci and "ruff check" in ci  # CI runs the README's test command, after the lint


def test_every_readme_example_runs_as_written(tmp_path, nb201_data):
    if shutil.which("hwnas") is None:
        pytest.skip("the `hwnas` command is not on PATH: install the project with pip install -e .")
    work = tmp_path / "fresh"
    work.mkdir()
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(nb201_data.parent)  # the README reads ../shared/data, as in a checkout
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    for number, (language, code) in enumerate(readme_blocks(), start=1):
        command = ["bash", "-e", "-o", "pipefail", "-c", code] if language == "bash" else [sys.executable, "-c", code]
        done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600, check=False)
        assert done.returncode == 0, f"README block {number} ({language}) failed:\n{code}\n{done.stderr[-3000:]}"
    # what the examples say they leave behind
    manifest = json.loads((work / "bundle" / "manifest.json").read_text())
    assert manifest["passed"] and manifest["exporter"] in ("torchscript", "dynamo")
    assert (work / "runs" / "default" / "weights.pt").is_file() and (work / "predictions.csv").is_file()
    search = json.loads((work / "runs" / "default" / "search.json").read_text())
    assert search["within_budget"] and search["weights"] == str((work / "runs" / "default" / "weights.pt").resolve())
