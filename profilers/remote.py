"""Backend `remote`: models are measured by an agent on another device (`hwnas agent serve` there).

    hwnas profile --backend remote --agent http://pi.local:8765 --token-file pi.token
    HWNAS_AGENT=http://pi.local:8765 HWNAS_AGENT_TOKEN_FILE=pi.token hwnas search --backend remote ...

The model is exported to ONNX here and uploaded; the agent checks it, times it with the requested protocol and
thread count and answers the Measurement. The device id is the agent's (its fingerprint), so rows measured through
an agent join those measured on the device itself. Requests are retried with exponential backoff: a connection
lost while the agent measures is retried with the same Idempotency-Key, and the agent answers the first result
again instead of measuring twice; the store's unique key (device, backend, space, arch, shape, batch) keeps one
row per architecture whatever happens (store-side dedupe is the guarantee, the key saves the device's time).
httpx (the `agent` extra) is imported when an agent is first contacted.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from torch import nn

from hwnas.choices import AGENT_ENV, TOKEN_FILE_ENV
from hwnas.conversion import export_onnx
from hwnas.errors import HwnasError, quote
from hwnas.measurement import Measurement
from hwnas.profilers.agent_protocol import (
    MIN_AGENT_API,
    PREFIX,
    measurement_from_json,
    protocol_to_dict,
    read_token,
)
from hwnas.profilers.base import Backend, register_backend
from hwnas.profilers.energy import analytical_energy_mj
from hwnas.profilers.timing import TimingProtocol
from hwnas.spaces.analysis import profile_model

#: ONNX export is not safe to run from several threads at once (a fleet measures from one thread per agent)
_EXPORT_LOCK = threading.Lock()


class AgentUnreachable(HwnasError):
    """The agent did not answer (after the retries): it is down, or the network is. A fleet hands its work on."""


def check_agent_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HwnasError(f"agent address {quote(url)} is not accepted; give http://HOST:PORT (or https://...)")
    return url.rstrip("/")


@register_backend("remote")
class RemoteBackend(Backend):
    """A device reached through its agent. Options: `agent` (URL; default $HWNAS_AGENT), `token_file` (default
    $HWNAS_AGENT_TOKEN_FILE) or `token` (the value), `retries` (transport failures retried per request), `backoff_s`
    (first wait, doubled per retry), `timeout_s` (the longest one request may take)."""

    runs_onnx = True
    libraries = ("httpx",)

    def __init__(self, threads: int = 1, agent: str | None = None, token_file: str | os.PathLike | None = None,
                 token: str | None = None, retries: int = 5, backoff_s: float = 0.25, timeout_s: float = 180.0,
                 **options: Any):
        super().__init__(threads, **options)
        self.url = (agent or os.environ.get(AGENT_ENV) or "").rstrip("/")
        self.token_file = token_file or os.environ.get(TOKEN_FILE_ENV)
        self._token = token
        self.retries, self.backoff_s, self.timeout_s = int(retries), float(backoff_s), float(timeout_s)
        self._info: dict[str, Any] | None = None
        self._client = None

    # --- connecting -----------------------------------------------------------------------------------------
    def why_unavailable(self) -> str | None:
        try:
            import httpx  # noqa: F401
        except ImportError as e:
            return f"httpx is not installed ({e}); pip install 'hwnas[agent]'"
        if not self.url:
            return f"no agent given: pass --agent http://HOST:PORT and --token-file (or set {AGENT_ENV} and {TOKEN_FILE_ENV})"
        try:
            self.connect()
        except HwnasError as e:
            return str(e)
        return None

    def require(self) -> None:
        """Connect, or one line saying why not: no agent given, unreachable, wrong token, agent too old."""
        why = self.why_unavailable()
        if why:
            raise (AgentUnreachable if why.startswith("cannot reach") else HwnasError)(why)

    def connect(self) -> dict[str, Any]:
        """The agent's fingerprint answer (checked once: address, API version, token, thread count)."""
        if self._info is not None:
            return self._info
        check_agent_url(self.url)
        if self._token is None:
            if not self.token_file:
                raise HwnasError(f"no token for the agent at {self.url}: pass --token-file (or set {TOKEN_FILE_ENV})")
            self._token = read_token(self.token_file)
        health = self._request("GET", "/health", auth=False, retries=min(self.retries, 2))
        if health.status_code == 404:
            raise HwnasError(f"the agent at {self.url} is too old or not a hwnas agent (no {PREFIX}/health); this "
                             f"hwnas needs agent API {MIN_AGENT_API} or newer: upgrade hwnas on the device")
        version = self._json(health).get("api_version")
        if not isinstance(version, int) or version < MIN_AGENT_API:
            raise HwnasError(f"the agent at {self.url} is too old (API {version}; this hwnas needs {MIN_AGENT_API} or "
                             "newer): upgrade hwnas on the device")
        info = self._json(self._ok(self._request("GET", "/fingerprint", params={"threads": self.threads})))
        if not {"device_id", "device_name", "fingerprint"} <= set(info):
            raise HwnasError(f"the agent at {self.url} answered a fingerprint without a device id; upgrade hwnas there")
        self._info = info
        return info

    def _client_now(self):
        import httpx

        if self._client is None:
            self._client = httpx.Client(base_url=self.url + PREFIX, timeout=httpx.Timeout(self.timeout_s, connect=5.0))
        return self._client

    def _request(self, method: str, path: str, auth: bool = True, retries: int | None = None, **kwargs: Any):
        """One request, retried with exponential backoff when the connection fails and waited for while the agent
        is busy (503, Retry-After), up to `timeout_s`; any other answer is returned as it is."""
        import httpx

        headers = {**kwargs.pop("headers", {}), **({"Authorization": f"Bearer {self._token}"} if auth else {})}
        deadline, failures = time.monotonic() + self.timeout_s, 0
        while True:
            try:
                reply = self._client_now().request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as e:
                failures += 1
                if failures > (self.retries if retries is None else retries) or time.monotonic() > deadline:
                    raise AgentUnreachable(f"cannot reach the agent at {self.url} ({type(e).__name__}: "
                                           f"{str(e)[:120] or 'no answer'}, {failures} tries); start it with `hwnas "
                                           "agent serve` on the device, or check --agent") from None
                time.sleep(self.backoff_s * 2 ** (failures - 1) * random.uniform(0.8, 1.2))
                continue
            if reply.status_code == 503 and time.monotonic() < deadline:
                time.sleep(min(float(reply.headers.get("Retry-After") or 1), 5.0))
                continue
            return reply

    def _ok(self, reply):
        """`reply` when it is a success, else the agent's refusal as one line."""
        if reply.status_code < 400:
            return reply
        detail = self._json(reply).get("detail", "") if "json" in reply.headers.get("content-type", "") else ""
        status = reply.status_code
        if status == 401:
            raise HwnasError(f"the agent at {self.url} refused the token (401); give the token file the agent was "
                             "started with (--token-file)")
        if status == 404:
            raise HwnasError(f"the agent at {self.url} is too old for this hwnas (404 on {reply.request.url.path}); "
                             "upgrade hwnas on the device")
        raise HwnasError(f"the agent at {self.url} refused the request ({status}: {quote(str(detail), 300)[1:-1]})")

    def _json(self, reply) -> dict[str, Any]:
        try:
            data = reply.json()
        except (json.JSONDecodeError, ValueError):
            raise HwnasError(f"{self.url} answered {reply.status_code} without JSON; is it a hwnas agent?") from None
        if not isinstance(data, dict):
            raise HwnasError(f"{self.url} answered {reply.status_code} with unexpected JSON; is it a hwnas agent?")
        return data

    # --- what the device is ---------------------------------------------------------------------------------
    def hardware(self) -> dict[str, Any]:
        fingerprint = self.connect()["fingerprint"]
        return {k: v for k, v in fingerprint.items() if k not in ("backend", "versions")}

    def fingerprint(self) -> dict[str, Any]:
        fingerprint = self.connect()["fingerprint"]
        return {**fingerprint, "backend": self.name, "agent_backend": fingerprint.get("backend")}

    def device_id(self) -> str:
        return str(self.connect()["device_id"])

    def device_name(self) -> str:
        return str(self.connect()["device_name"])

    # --- measuring ------------------------------------------------------------------------------------------
    def prepare(self, model: nn.Module, input_shape: Sequence[int], batch: int):
        raise HwnasError("the remote backend runs models on its agent; call measure() or measure_onnx()")

    def measure(self, model: nn.Module, input_shape: Sequence[int], batch: int = 1,
                protocol: TimingProtocol | None = None, label: str = "") -> Measurement:
        self.require()
        with tempfile.TemporaryDirectory(prefix="hwnas-remote-") as tmp:
            with _EXPORT_LOCK:
                path = export_onnx(model.eval(), input_shape, Path(tmp) / "model.onnx",
                                   exporter=self.options.get("exporter", "auto")).path
            return self._measure_bytes(path.read_bytes(), input_shape, batch, protocol, model, label)

    def measure_onnx(self, onnx_path, input_shape: Sequence[int], batch: int = 1,
                     protocol: TimingProtocol | None = None, model: nn.Module | None = None) -> Measurement:
        self.require()
        path = Path(onnx_path)
        if not path.is_file():
            raise HwnasError(f"no ONNX file at {onnx_path}")
        return self._measure_bytes(path.read_bytes(), input_shape, batch, protocol, model, path.name)

    def _measure_bytes(self, data: bytes, input_shape, batch, protocol, model, label: str) -> Measurement:
        protocol = protocol or TimingProtocol()
        params = {"input_shape": [int(s) for s in input_shape], "batch": int(batch), "threads": self.threads,
                  "protocol": protocol_to_dict(protocol), "label": label or hashlib.sha256(data).hexdigest()[:12]}
        # one key for every retry of this request: the agent measures it once and replays the answer
        key = uuid.uuid4().hex
        reply = self._ok(self._request("POST", "/measure", files={"model": ("model.onnx", data, "application/onnx")},
                                       data={"params": json.dumps(params)}, headers={"Idempotency-Key": key}))
        m = measurement_from_json(self._json(reply).get("measurement"))
        if m.device != self.device_id():
            raise HwnasError(f"the agent at {self.url} measured as device {m.device}, not {self.device_id()} as it "
                             "said before; it was restarted with other settings: start again")
        if m.energy_mj is None and model is not None:  # no meter on the device: the same estimate a local backend uses
            prof = profile_model(model, input_shape)
            m.energy_mj = int(batch) * analytical_energy_mj(prof.macs, prof.activation_bytes)
            m.energy_method = "analytical-45nm"
        m.backend = self.name
        m.extra.update(agent=self.url, agent_backend=self.connect()["backend"])
        return m


__all__ = ["AGENT_ENV", "TOKEN_FILE_ENV", "AgentUnreachable", "RemoteBackend", "check_agent_url"]
