"""One-way layers: the library never imports the command layer, and lower layers never import higher ones."""
import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> the package it installs as (pyproject's package-dir)
FOLDERS = {"hwnas": "hwnas", "profilers": "hwnas.profilers", "predictors": "hwnas.predictors", "export": "hwnas.export"}
COMMAND_LAYER = ("hwnas.commands", "hwnas.cli")
#: a lower layer never imports a higher one (ARCHITECTURE.md: core < predictors < profilers < export < search <
#: pipeline < commands/cli)
ORDER = ["core", "hwnas.predictors", "hwnas.profilers", "hwnas.export", "hwnas.search", "hwnas.pipeline", "commands"]


#: files other helpers of issue 8 are fixing (h2: the reporter in search and the pipeline; h3: TensorRT engine
#: building below the profilers). The lead empties this after merging; the tests below then hold for every file.
PENDING = {"hwnas/pipeline.py": "h2", "hwnas/search/budget.py": "h2", "hwnas/search/train.py": "h2",
           "profilers/tensorrt.py": "h3"}


def _check(offenders: list[tuple[str, str]]) -> None:
    """No offender outside PENDING; PENDING offenders are xfail until merged."""
    hard = [text for path, text in offenders if path not in PENDING]
    assert not hard, "\n".join(hard)
    if offenders:
        pytest.xfail("pending other helpers' branches: " + "; ".join(text for _, text in offenders))


def layer(module: str) -> str:
    for name in ("hwnas.predictors", "hwnas.profilers", "hwnas.export", "hwnas.search", "hwnas.pipeline"):
        if module == name or module.startswith(name + "."):
            return name
    if module.startswith(COMMAND_LAYER):
        return "commands"
    return "core"


def library_files():
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            module = ".".join((package, *parts)).removesuffix(".__init__")
            if not module.startswith(COMMAND_LAYER):
                yield path, module


def imported(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, relative ones resolved."""
    out = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out += [(node.lineno, base)] + [(node.lineno, f"{base}.{a.name}") for a in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__" and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            out.append((node.lineno, node.args[0].value))
    return out


def test_no_library_file_imports_the_command_layer():
    offenders = [(str(path.relative_to(ROOT)), f"{path.relative_to(ROOT)}:{line} imports {name}")
                 for path, module in library_files() for line, name in imported(path, module)
                 if name.startswith(COMMAND_LAYER)]
    _check(offenders)


def test_no_lower_layer_imports_a_higher_one():
    offenders = []
    for path, module in library_files():
        mine = ORDER.index(layer(module))
        for line, name in imported(path, module):
            if name.startswith("hwnas") and ORDER.index(layer(name)) > mine:
                offenders.append((str(path.relative_to(ROOT)),
                                  f"{path.relative_to(ROOT)}:{line} ({layer(module)}) imports {name} ({layer(name)})"))
    _check(offenders)


@pytest.mark.parametrize("package", ["hwnas", "hwnas.search", "hwnas.predictors", "hwnas.profilers", "hwnas.export",
                                     "hwnas.store", "hwnas.pipeline"])
def test_importing_the_library_loads_no_command_module(package):
    code = (f"import json, sys; import {package}; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('hwnas.commands', 'hwnas.cli')))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_cli_starts_without_importing_torch():
    code = "import sys; from hwnas.cli import cli; print('torch' in sys.modules, 'hwnas.commands' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_the_lazy_command_table_matches_the_commands():
    import click

    from hwnas.cli import COMMANDS, cli

    ctx = click.Context(cli)
    for name, (_, _, text) in COMMANDS.items():
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name
        first = " ".join((command.help or "").split("\n\n")[0].split())
        assert first.startswith(text.rstrip(".").rstrip()), name
