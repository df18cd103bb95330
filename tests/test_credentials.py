"""A password in a store URL never appears in any output: tables, --json, error lines, logs, written files."""
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import make_url

from hwnas.cli import cli
from hwnas.errors import HwnasError
from hwnas.store import Store, display_url, scrub

SPACE = "nb201:C=4,N=1"
SECRET = "Pw-9f3e-notshown"
CLOSED = f"postgresql+psycopg://hw:{SECRET}@127.0.0.1:1/hwnas"  # port 1: nothing listens, the open fails


@pytest.mark.parametrize("url, shown", [
    (CLOSED, "postgresql+psycopg://hw:***@127.0.0.1:1/hwnas"),
    ("postgresql://u:p%40ss@db.example:5433/x?sslmode=require", "postgresql://u:***@db.example:5433/x?sslmode=require"),
    ("postgresql+psycopg://u@host/db", "postgresql+psycopg://u@host/db"),
    ("postgresql://u:p@ss/word@host/db", "postgresql://u:***@host/db"),  # unescaped: masked whole, to the last @
    ("sqlite:////tmp/x:y@z.db", "sqlite:////tmp/x:y@z.db"),
    ("sqlite:////tmp/m.db", "sqlite:////tmp/m.db"),
    ("runs/default/measurements.db", "runs/default/measurements.db"),
    ("not a url://u:secret@host", "not a url://u:***@host"),
])
def test_display_url_masks_the_password(url, shown):
    assert display_url(url) == shown


def test_scrub_masks_the_password_in_any_text():
    assert SECRET not in scrub(f"could not connect with {CLOSED} (password {SECRET} rejected)", CLOSED)
    assert "p@ss" not in scrub("password p@ss rejected", "postgresql://u:p%40ss@h/db")


def test_the_store_keeps_the_real_url_private():
    with pytest.raises(HwnasError) as e:
        Store(CLOSED)
    line = str(e.value)
    assert SECRET not in line and "cannot open the measurement store" in line and "hw:***@127.0.0.1:1" in line


def _files_text(folder: Path) -> str:
    """Every file's bytes as text; .npz members (predictor metadata is a UTF-32 numpy string) as their values."""
    texts = []
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            texts.append(p.read_bytes().decode("latin-1"))
            if p.suffix == ".npz":
                with np.load(p, allow_pickle=False) as npz:
                    texts.extend(str(npz[k].tolist()) for k in npz.files)
    return "\n".join(texts)


def test_only_the_store_module_sees_the_real_url():
    """Everything else shows `Store.url` (masked); the private `_url` is read nowhere else."""
    root = Path(__file__).resolve().parents[1]
    sources = [p for folder in ("hwnas", "predictors", "profilers", "export") for p in (root / folder).rglob("*.py")]
    readers = [p.relative_to(root).as_posix() for p in sources if "._url" in p.read_text()]
    assert readers == ["hwnas/store.py"]


def _wide_csv(path: Path) -> Path:
    from hwnas.spaces import get_space

    space = get_space("nb201")
    path.write_text("arch,pixel3\n" + "".join(f"{space.to_string(space.arch_at(i))},{1 + i / 10}\n" for i in range(12)))
    return path


COMMANDS = [
    ["profile", "--space", SPACE, "--input-shape", "3x16x16", "--samples", "2"],
    ["profile", "--space", SPACE, "--input-shape", "3x16x16", "--samples", "2", "--json"],
    ["measurements", "list"],
    ["measurements", "list", "--json"],
    ["measurements", "export", "--csv", "out.csv"],
    ["measurements", "import", "--csv", "published.csv"],
    ["fit", "--predictor", "linear-cost", "--no-plot"],
    ["search", "--budget-ms", "5", "--space", SPACE, "--limit", "50", "--epochs", "1", "--retrain-epochs", "0",
     "--json"],
]


@pytest.mark.parametrize("via_env", [False, True], ids=["--store", "HWNAS_STORE"])
@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_an_unreachable_postgres_store_is_one_line_without_the_password(tmp_path, args, via_env):
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path) as here:
        _wide_csv(Path(here) / "published.csv")
        store = [] if via_env else ["--store", CLOSED]
        result = runner.invoke(cli, [*args, "--run-dir", "run", *store], env={"HWNAS_STORE": CLOSED} if via_env else {})
        written = _files_text(Path(here))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot open the measurement store" in lines[0] and "hw:***@127.0.0.1:1" in lines[0]
    assert SECRET not in result.output and SECRET not in written


def test_a_real_run_on_postgres_never_shows_the_password(postgres_url, tmp_path):
    """profile, list, export, import, fit and search against a real server: every output and every file written
    is searched for the password."""
    password = make_url(postgres_url).password
    assert password and len(password) >= 6, "the test server's password should be distinctive enough to search for"
    runner = CliRunner()
    outputs = []

    def run(*args, **kwargs):
        result = runner.invoke(cli, [*args, "--run-dir", str(tmp_path / "run")], **kwargs)
        outputs.append(result.output)
        assert result.exit_code == 0, result.output
        return result

    via = ["--store", postgres_url]
    run("profile", "--space", SPACE, "--input-shape", "1x8x8", "--samples", "8", *via)
    run("profile", "--space", SPACE, "--input-shape", "1x8x8", "--samples", "8", "--json", *via)
    run("measurements", "list", *via)
    run("measurements", "list", "--json", env={"HWNAS_STORE": postgres_url})
    run("measurements", "export", "--csv", str(tmp_path / "out.csv"), *via)
    run("measurements", "import", "--csv", str(_wide_csv(tmp_path / "published.csv")), "--json", *via)
    run("fit", "--space", SPACE, "--input-shape", "1x8x8", "--predictor", "linear-cost", "--json", *via)
    run("fit", "--space", SPACE, "--input-shape", "1x8x8", "--predictor", "linear-cost", *via)
    searched = run("search", "--budget-ms", "1000", "--strategy", "single-level", "--space", SPACE, "--limit", "60",
                   "--epochs", "1", "--retrain-epochs", "0", "--protocol", "quick", "--json", *via)
    assert json.loads(searched.stdout)
    assert "***@" in "\n".join(outputs)  # the store is named, masked
    assert not any(password in out for out in outputs)
    written = _files_text(tmp_path)
    assert list((tmp_path / "run").glob("predictor-*.npz"))
    assert "***@" in written and password not in written  # search.json and the predictor's metadata name it, masked
