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
