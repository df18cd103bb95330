import os
from pathlib import Path

import pytest


def shared_data_dir() -> Path:
    return Path(os.environ.get("HWNAS_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture(scope="session")
def nb201_data() -> Path:
    folder = shared_data_dir() / "nb201"
    if not (folder / "latency_ms.csv").is_file():
        pytest.skip(f"published NAS-Bench-201 data not found at {folder} (set HWNAS_SHARED_DATA)")
    return folder


# --- the store under test: SQLite and PostgreSQL ---------------------------------------------------------------
def postgres_base_url() -> str:
    """The PostgreSQL server the tests may use ($HWNAS_TEST_POSTGRES_URL, e.g. from .ci/postgres); absent: the
    PostgreSQL-backed tests skip with the reason, except under HWNAS_REQUIRE_POSTGRES=1 (CI), where they fail."""
    url = os.environ.get("HWNAS_TEST_POSTGRES_URL", "")
    if not url:
        _absent("no PostgreSQL server for the tests: set HWNAS_TEST_POSTGRES_URL (e.g. `export "
                "HWNAS_TEST_POSTGRES_URL=$(.ci/postgres)`) to run them against one")
    return url


def _absent(reason: str) -> None:
    if os.environ.get("HWNAS_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason} (HWNAS_REQUIRE_POSTGRES=1: these tests must run here)")
    pytest.skip(reason)


@pytest.fixture
def postgres_url():
    """A URL of a fresh, empty PostgreSQL schema (dropped afterwards) on the test server."""
    import uuid

    from sqlalchemy import create_engine, make_url, text
    from sqlalchemy.exc import SQLAlchemyError

    base = postgres_base_url()
    schema = f"hwnas_test_{uuid.uuid4().hex[:12]}"
    try:
        engine = create_engine(base)
        with engine.begin() as c:
            c.execute(text(f"CREATE SCHEMA {schema}"))
    except (ImportError, SQLAlchemyError) as e:  # no driver, server down, no rights: skip (or fail on CI) with the reason
        _absent(f"the PostgreSQL server at {make_url(base).render_as_string(hide_password=True)} cannot be used: "
                f"{type(e).__name__}: {str(getattr(e, 'orig', None) or e).splitlines()[0]}")
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    yield url.render_as_string(hide_password=False)
    with engine.begin() as c:
        c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """One fixture, two databases: an SQLite file, and a fresh PostgreSQL schema (see `postgres_url`)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres_url")


# --- say, at the end of a run, whether the PostgreSQL-backed tests ran (CI shows it) --------------------------
_postgres_outcomes: dict[str, str] = {}


def pytest_runtest_logreport(report):
    if "postgres" not in report.nodeid:
        return
    if report.failed or report.skipped:
        _postgres_outcomes.setdefault(report.nodeid, "failed" if report.failed else "skipped")
    elif report.when == "call":
        _postgres_outcomes.setdefault(report.nodeid, "passed")


def pytest_terminal_summary(terminalreporter):
    if not _postgres_outcomes:
        return
    counts = {k: list(_postgres_outcomes.values()).count(k) for k in ("passed", "skipped", "failed")}
    url = os.environ.get("HWNAS_TEST_POSTGRES_URL")
    where = "no server given" if not url else f"server {url.split('@')[-1]}"
    terminalreporter.write_line(f"PostgreSQL-backed tests: {counts['passed']} passed, {counts['skipped']} skipped, "
                                f"{counts['failed']} failed ({where})")


# --- Ray ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance (num_cpus=2) shared by every test that needs one: starting Ray takes seconds. The
    executors that find Ray initialised use it and leave it running."""
    ray = pytest.importorskip("ray", reason="needs Ray: install .[distributed]")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}})
    yield ray
    if started:
        ray.shutdown()
