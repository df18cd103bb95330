"""Agents on loopback: real `hwnas agent serve` subprocesses, the remote backend, fleets on threads and on Ray."""
import contextlib
import http.server
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

pytest.importorskip("fastapi", reason="the agent needs fastapi and uvicorn: install .[agent]")
httpx = pytest.importorskip("httpx", reason="the remote backend needs httpx: install .[agent]")

from hwnas.cli import cli
from hwnas.errors import HwnasError
from hwnas.profilers import TimingProtocol, get_backend, profile_fleet
from hwnas.profilers.fleet import FleetAgent, load_fleet
from hwnas.profilers.samplers import SAMPLERS
from hwnas.reporting import Reporter
from hwnas.spaces import get_space
from hwnas.store import Store

SPACE, SHAPE, CELLS = "nb201:C=8,N=1", (1, 8, 8), 30
LIMIT_MB = 0.25


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AgentProcess:
    """`hwnas agent serve` as a subprocess on 127.0.0.1, ready when /v1/health answers."""

    def __init__(self, token_file, log_path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        self.log = log_path
        with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hwnas.cli", "agent", "serve", "--token-file", str(token_file), "--port",
                 str(self.port), "--threads", "1", "--max-upload-mb", str(LIMIT_MB)],
                stdout=log, stderr=subprocess.STDOUT, env=env)

    def wait(self, timeout=240.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the agent exited: {self.log.read_text()[-2000:]}"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return self
            time.sleep(0.2)
        raise AssertionError("the agent did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("agent") / "agent.token"
    assert CliRunner().invoke(cli, ["agent", "token", str(path)]).exit_code == 0
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    return path


@pytest.fixture(scope="module")
def agents(token_file, tmp_path_factory):
    """Three agents started together (startup is the slow part); the kill test kills the third."""
    logs = tmp_path_factory.mktemp("logs")
    procs = [AgentProcess(token_file, logs / f"agent{i}.log") for i in range(3)]
    try:
        yield [p.wait() for p in procs]
    finally:
        for p in procs:
            p.stop()


def fleet(agents, token_file):
    return [FleetAgent(f"a{i}", a.url, "loopback", str(token_file)) for i, a in enumerate(agents)]


def expected_cells():
    """The 30 cells profile_space would choose with seed 0 (uniform sampler, nothing stored)."""
    space = get_space(SPACE)
    offered = SAMPLERS.get("uniform")(space, CELLS, np.random.default_rng(0), SHAPE, {})
    return {space.to_string(a) for a in offered[:CELLS]}


def rows(store, device):
    return store.measurements(device=device, backend="remote", space=get_space(SPACE).spec, input_shape=SHAPE, batch=1)


class KillAfter(Reporter):
    """Kills an agent once `n` results have come in: a real agent dying mid-run."""

    def __init__(self, agent, n):
        self.agent, self.n, self.seen, self.warnings = agent, n, 0, []

    def warning(self, text):
        self.warnings.append(text)

    @contextlib.contextmanager
    def progress(self, title, total, completed=0):
        yield self

    def advance(self, steps=1, description=""):
        self.seen += steps
        if self.seen == self.n:
            self.agent.proc.kill()


def test_wrong_token_is_401_at_the_agent_and_one_line_exit_2_at_the_client(agents, tmp_path):
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-token\n")
    assert httpx.get(f"{agents[0].url}/v1/fingerprint", headers={"Authorization": "Bearer not-the-token"}).status_code == 401
    assert httpx.get(f"{agents[0].url}/v1/fingerprint").status_code == 401
    store = tmp_path / "m.db"
    result = CliRunner().invoke(cli, ["profile", "--backend", "remote", "--agent", agents[0].url, "--token-file",
                                      str(wrong), "--space", SPACE, "--input-shape", "1x8x8", "--samples", "1",
                                      "--store", str(store)])
    assert result.exit_code == 2, result.output
    assert "refused the token (401)" in result.output and len(result.output.strip().splitlines()) == 1
    assert not store.exists()  # refused before the store was opened


class Quiet404(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_error(404)

    def log_message(self, *args):
        pass


def test_unreachable_and_too_old_agents_are_one_line_exit_2(token_file, tmp_path):
    base = ["profile", "--backend", "remote", "--token-file", str(token_file), "--space", SPACE, "--input-shape",
            "1x8x8", "--samples", "1", "--store", str(tmp_path / "m.db")]
    down = CliRunner().invoke(cli, [*base, "--agent", f"http://127.0.0.1:{free_port()}"])
    assert down.exit_code == 2 and "cannot reach the agent" in down.output
    assert len(down.output.strip().splitlines()) == 1
    # a web server that is not (or predates) an agent API v1: 404 on /v1/health
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet404)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        old = CliRunner().invoke(cli, [*base, "--agent", f"http://127.0.0.1:{server.server_address[1]}"])
    finally:
        server.shutdown()
    assert old.exit_code == 2 and "too old" in old.output and len(old.output.strip().splitlines()) == 1


def test_oversized_upload_is_413_and_non_onnx_is_400_and_the_agent_keeps_serving(agents, token_file):
    auth = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
    params = {"params": '{"input_shape": [1, 8, 8], "batch": 1, "threads": 1}'}
    big = httpx.post(f"{agents[0].url}/v1/measure", headers=auth, data=params,
                     files={"model": ("m.onnx", b"\0" * int(2 * LIMIT_MB * 2**20))}, timeout=60)
    assert big.status_code == 413
    not_onnx = httpx.post(f"{agents[0].url}/v1/measure", headers=auth, data=params,
                          files={"model": ("m.onnx", b"import os; os.system('echo pwned')")}, timeout=60)
    assert not_onnx.status_code == 400 and "not a valid ONNX model" in not_onnx.json()["detail"]
    assert httpx.get(f"{agents[0].url}/v1/health").json()["api_version"] >= 1
    assert httpx.get(f"{agents[0].url}/v1/fingerprint", headers=auth).status_code == 200


def test_a_fleet_with_an_agent_killed_partway_still_stores_every_cell_once(agents, token_file, tmp_path):
    store = Store(tmp_path / "threads.db")
    watcher = KillAfter(agents[2], 8)
    summary = profile_fleet(get_space(SPACE), [fleet(agents, token_file)[0], fleet(agents, token_file)[2]], store,
                            CELLS, input_shape=SHAPE, protocol=TimingProtocol.quick(), reporter=watcher,
                            retries=1, backoff_s=0.1)
    stored = rows(store, summary.profile.device)
    assert len(stored) == CELLS and {m.arch for m in stored} == expected_cells()  # all of them, none twice
    assert summary.profile.measured_now == CELLS
    lost = [a for a in summary.agents if a["state"] != "ok"]
    assert [a["name"] for a in lost] == ["a2"] and any("a2 lost" in w for w in watcher.warnings)
    assert sum(a["measured"] for a in summary.agents) == CELLS
    assert all(m.extra["agent"] in (agents[0].url, agents[2].url) for m in stored)


def test_a_fleet_on_ray_gives_the_same_rows_and_search_repairs_against_the_agent(agents, token_file, tmp_path,
                                                                                  ray_local):
    store = Store(tmp_path / "ray.db")
    summary = profile_fleet(get_space(SPACE), fleet(agents, token_file)[:2], store, CELLS, input_shape=SHAPE,
                            protocol=TimingProtocol.quick(), executor="ray")
    stored = rows(store, summary.profile.device)
    assert len(stored) == CELLS and {m.arch for m in stored} == expected_cells()
    assert all(a["measured"] > 0 and a["state"] == "ok" for a in summary.agents)  # both agents took work
    _search_repairs_against_the_agent(agents[0], token_file, store, stored)


def _search_repairs_against_the_agent(agent, token_file, store, stored):
    """The measured repair of a search, with the remote backend: the architecture the (optimistic) predictor
    thinks fits is measured on the agent, stored, found over budget and repaired."""
    from hwnas.predictors import LookupTablePredictor
    from hwnas.search import HardwareCost, discretise_and_verify, op_table_from_measurements

    space = get_space(SPACE)
    backend = get_backend("remote", agent=agent.url, token_file=str(token_file))
    slowest = max(stored, key=lambda m: m.latency_ms)
    archs = [space.from_string(m.arch) for m in stored]
    table, base = op_table_from_measurements(space, archs, np.array([m.latency_ms for m in stored]))
    optimistic = LookupTablePredictor.from_table(0.2 * base, 0.2 * table)
    # just under every stored measurement: nothing measured fits, the optimistic predictor thinks most do, and the
    # refitted one still finds unmeasured cells under it (half the fastest was flaky: fixed overheads dominate)
    budget = 0.9 * min(m.latency_ms for m in stored)
    cost = HardwareCost(space, "latency_ms", budget, predictor=optimistic)
    alpha = torch.zeros(space.alpha_shape)
    chosen = space.from_string(slowest.arch)
    for edge, op in enumerate(chosen.choices):
        alpha[edge, op] = 5.0
    r = discretise_and_verify(space, alpha, [cost], backend=backend, store=store, input_shape=SHAPE, max_repairs=2,
                              protocol=TimingProtocol.quick())
    first = r.attempts[0]
    assert first["predicted"]["latency_ms"] <= budget < first["measured"]["latency_ms"]
    assert len(r.attempts) >= 2 and not first["within_budget"]  # measured over budget on the agent: repaired
    assert len(rows(store, backend.device_id())) > CELLS  # the repairs' measurements joined the store
    assert store.measurements(device=backend.device_id(), backend="remote", arch=r.attempts[-1]["arch"])


def test_fleet_file_paths_are_relative_to_it_and_bad_entries_are_one_line(tmp_path):
    (tmp_path / "fleet.toml").write_text('[[agent]]\nname = "pi"\nurl = "http://10.0.0.2:8765"\n'
                                         'device_type = "rpi4"\ntoken_file = "pi.token"\n')
    [pi] = load_fleet(tmp_path / "fleet.toml")
    assert pi.token_file == str(tmp_path / "pi.token") and pi.device_type == "rpi4"
    (tmp_path / "bad.toml").write_text('[[agent]]\nurl = "ftp://x"\ndevice_type = "a"\ntoken_file = "t"\n')
    with pytest.raises(HwnasError, match="ftp://x"):
        load_fleet(tmp_path / "bad.toml")
