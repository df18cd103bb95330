"""`hwnas agent serve` (run on the device) and `hwnas agent token` (make a token file); the options `hwnas profile`
takes to reach agents (`--agent`, `--token-file`, `--fleet`, `--device-type`, `--executor`, `--ray-address`)."""
from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import click

from hwnas.choices import AGENT_ENV, API_VERSION, DEFAULT_PORT, TOKEN_FILE_ENV
from hwnas.commands.common import console, emit_json, results, table
from hwnas.errors import HwnasError, quote
from hwnas.files import atomic_write
from hwnas.registries import BACKENDS
from hwnas.registries import FLEET_EXECUTORS as EXECUTORS


@click.group()
def agent() -> None:
    """Serve this device's backend to hwnas on other machines, and make a token for it.

    On the device: `hwnas agent token FILE`, then `hwnas agent serve --token-file FILE --host 0.0.0.0`. Elsewhere:
    `hwnas profile --backend remote --agent http://DEVICE:8765 --token-file FILE` (or --fleet fleet.toml)."""


def parse_cpus(text: str | None) -> set[int] | None:
    """`0,2-3` -> {0, 2, 3}."""
    if not text:
        return None
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            cpus.update(range(int(low), int(high or low) + 1))
    except ValueError:
        cpus = set()
    if not cpus or min(cpus) < 0:
        raise HwnasError(f"--cpu-affinity {quote(text)} is not accepted; give CPU numbers such as 0 or 0,2-3")
    return cpus


def pin(cpus: set[int] | None) -> None:
    """Run this process (and the threads it starts later) on `cpus` only: steadier timing (nn-Meter issue #83)."""
    if cpus is None:
        return
    if not hasattr(os, "sched_setaffinity"):
        raise HwnasError("--cpu-affinity needs Linux (os.sched_setaffinity); leave it out here")
    allowed = os.sched_getaffinity(0)
    if not cpus <= allowed:
        raise HwnasError(f"--cpu-affinity names CPUs this process may not use ({sorted(cpus - allowed)}); "
                         f"allowed: {sorted(allowed)}")
    os.sched_setaffinity(0, cpus)


@agent.command()
@click.option("--token-file", required=True, type=click.Path(dir_okay=False),
              help="File holding the bearer token clients must present (`hwnas agent token FILE` makes one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; give 0.0.0.0 (or the device's address) to accept other machines.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(1, 65535),
              help="TCP port to listen on.")
@click.option("--backend", "backend_name", default="onnxruntime-cpu", show_default=True,
              type=click.Choice([n for n in BACKENDS.names_with("runs_onnx") if n != "remote"]),
              help="The local backend that times the uploaded models.")
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help="Most intra-op threads a request may use. Default: the CPUs this agent may run on.")
@click.option("--cpu-affinity", default=None, metavar="CPUS", help="Pin the agent to these CPUs, e.g. 2 or 0,2-3.")
@click.option("--max-upload-mb", default=64.0, show_default=True, type=click.FloatRange(min=0.001),
              help="Largest request accepted (413 above it).")
@click.option("--request-timeout", default=120.0, show_default=True, type=click.FloatRange(min=1),
              help="Seconds a measurement may take before the request is answered 504.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              help="Least severe log line printed (info logs one line per request: who asked for what).")
def serve(token_file, host, port, backend_name, threads, cpu_affinity, max_upload_mb, request_timeout, log_level):
    """Serve this device's backend to hwnas elsewhere: health, fingerprint and measure (one model at a time).

    Every request but health needs the bearer token; each is logged with the client's address and a hash of the
    token it presented."""
    from hwnas.profilers.agent_protocol import read_token, token_is_private
    from hwnas.profilers.agent_server import AgentConfig
    from hwnas.profilers.agent_server import serve as serve_agent

    pin(parse_cpus(cpu_affinity))
    token = read_token(token_file)
    if not token_is_private(token_file):
        console.print(f"warning: the token file {token_file} may be read by other users; chmod 600 it",
                      markup=False)
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = AgentConfig(token=token, backend=backend_name, threads=threads,
                         max_upload_bytes=int(max_upload_mb * 2**20), request_timeout_s=request_timeout)
    console.print(f"hwnas agent (API {API_VERSION}) on http://{host}:{port}: backend {backend_name}, up to {threads} "
                  f"thread(s); Ctrl-C stops it", markup=False)
    serve_agent(config, host=host, port=port, log_level=log_level)


@agent.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Replace an existing file.")
def token(path, force):
    """Write a new random token to PATH (readable by its owner only)."""
    if Path(path).exists() and not force:
        raise HwnasError(f"{quote(path)} exists; pass --force to replace it (clients holding the old token stop working)")
    with atomic_write(path) as f:
        os.chmod(f.name, 0o600)
        f.write(secrets.token_urlsafe(32) + "\n")
    results.print(f"wrote a new token to {path}", markup=False)


# --- what `hwnas profile` takes to reach agents -----------------------------------------------------------------
def agent_options(f):
    f = click.option("--ray-address", default=None, metavar="ADDRESS",
                     help="Fleet with --executor ray: an existing Ray cluster (e.g. ray://head:10001, auto). "
                     "Default: a local Ray instance.")(f)
    f = click.option("--executor", default="threads", show_default=True, type=click.Choice(EXECUTORS.names()),
                     help="Fleet: a thread per agent, or one Ray actor per agent (pip install 'hwnas[distributed]').")(f)
    f = click.option("--device-type", default=None, metavar="TYPE",
                     help="Fleet: the agents of this device type (needed when the fleet file lists several).")(f)
    f = click.option("--fleet", "fleet_file", default=None, type=click.Path(dir_okay=False), metavar="FLEET.toml",
                     help="Profile on every agent of one device type listed in this file, into one store.")(f)
    f = click.option("--token-file", default=None, envvar=TOKEN_FILE_ENV, type=click.Path(dir_okay=False),
                     help=f"--backend remote: the agent's token file (or ${TOKEN_FILE_ENV}).")(f)
    f = click.option("--agent", "agent_url", default=None, envvar=AGENT_ENV, metavar="URL",
                     help=f"--backend remote: the agent, e.g. http://pi.local:{DEFAULT_PORT} (or ${AGENT_ENV}).")(f)
    return f


def remote_settings(backend_name: str, agent_url: str | None, token_file: str | None) -> dict:
    """Backend options for get_backend: the agent and token for `remote`, nothing for the others."""
    if backend_name != "remote":
        return {}
    return {"agent": agent_url, "token_file": token_file}


def print_fleet(summary, as_json: bool) -> None:
    if as_json:
        emit_json(summary.to_dict())
        return
    results.print(table("Fleet profile", ["agent", "address", "measured", "state"],
                        [[a["name"], a["url"], a["measured"], a["state"]] for a in summary.agents]))
    lat = summary.profile.latency_ms
    results.print(table("Profile", ["", ""], [
        ["device", f"{summary.profile.device_name} [{summary.profile.device}]"], ["space", summary.profile.space],
        ["measured now / already stored", f"{summary.profile.measured_now} / {summary.profile.already_stored}"],
        ["latency ms min / median / max", f"{lat.get('min', 0):.3f} / {lat.get('median', 0):.3f} / {lat.get('max', 0):.3f}"],
        ["executor", summary.executor], ["seconds", summary.profile.seconds]]))


__all__ = ["agent", "agent_options", "print_fleet", "remote_settings"]
