"""The measurement agent run on a device (`hwnas agent serve`): FastAPI served by uvicorn.

Routes (under /v1, `agent_protocol.API_VERSION`):
  GET  /v1/health                      no token: {"status", "api_version", "hwnas", "busy", "max_upload_bytes"}
  GET  /v1/fingerprint?threads=N       the local backend's fingerprint, device id and name at N threads
  POST /v1/measure                     multipart: `model` (an ONNX file) and `params` (JSON: input_shape, batch,
                                       protocol, threads, label) -> {"measurement": Measurement.to_dict()}

Security: every route but health needs `Authorization: Bearer <token>` (compared with hmac.compare_digest); the
body is read under a size limit (413) and a deadline (408) before any handler sees it; an upload must pass
`onnx.checker` and hold no external-data references (400) before ONNX Runtime loads it; nothing but an ONNX graph
is ever loaded (no pickles); a measurement that outlasts the request timeout is answered 504. One measurement runs
at a time: a second request meanwhile is answered 503 with Retry-After. Each request is one log line: the client
address, a short hash of the token it presented, what it asked for, the status and the time taken.

fastapi and uvicorn (the `agent` extra) are imported here only, so the rest of hwnas never needs them. (No
`from __future__ import annotations` here: FastAPI reads the handlers' annotations at runtime.)
"""
import asyncio
import collections
import concurrent.futures
import hmac
import json
import logging
import math
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from hwnas import __version__
from hwnas.errors import HwnasError, quote
from hwnas.profilers.agent_protocol import (
    API_VERSION,
    PREFIX,
    measurement_to_json,
    protocol_from_dict,
    token_id,
)
from hwnas.profilers.base import Backend, get_backend

log = logging.getLogger("hwnas.agent")

#: the most float32 input elements (batch x shape) a request may ask to feed: 256 MB
MAX_INPUT_ELEMENTS = 2**26
#: results kept for replaying a retried request (same Idempotency-Key) without measuring again
IDEMPOTENCY_CACHE = 512


@dataclass
class AgentConfig:
    token: str
    backend: str = "onnxruntime-cpu"
    #: the most intra-op threads a request may ask for
    threads: int = 1
    max_upload_bytes: int = 64 * 2**20
    #: seconds a measurement may take before the request is answered 504
    request_timeout_s: float = 120.0
    #: seconds a client has to send its whole request body before it is answered 408
    body_timeout_s: float = 30.0
    retry_after_s: int = 1


class AgentError(Exception):
    """An HTTP error answer: status and one line of detail."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


class Agent:
    """The agent's state: its local backends (one per thread count), the one-at-a-time lock, the replay cache."""

    def __init__(self, config: AgentConfig):
        import onnx  # noqa: F401  (imported now, not while the first request waits)

        self.config = config
        self._backends: dict[int, Backend] = {}
        self.lock = threading.Lock()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hwnas-measure")
        self.replies: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self.backend(1)  # fails at start, with one line, when the backend does not work here

    def backend(self, threads: int) -> Backend:
        if not 1 <= threads <= self.config.threads:
            raise AgentError(400, f"threads={threads} is not accepted; this agent allows 1 to {self.config.threads}")
        if threads not in self._backends:
            backend = get_backend(self.config.backend, threads=threads)
            if not backend.runs_onnx:
                raise HwnasError(f"backend {backend.name!r} cannot time ONNX files; an agent needs one that can")
            self._backends[threads] = backend
        return self._backends[threads]

    def authorised(self, header: str | None) -> bool:
        scheme, _, presented = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), self.config.token.encode())

    def fingerprint(self, threads: int) -> dict[str, Any]:
        b = self.backend(threads)
        return {"api_version": API_VERSION, "hwnas": __version__, "backend": b.name, "device_id": b.device_id(),
                "device_name": b.device_name(), "fingerprint": b.fingerprint(), "threads_max": self.config.threads}

    # --- measuring ------------------------------------------------------------------------------------------
    async def measure(self, onnx_bytes: bytes, params: dict[str, Any], key: str | None) -> dict[str, Any]:
        if key and key in self.replies:
            reply = self.replies[key]
            if reply is None:  # the first copy of this request is still being measured
                raise AgentError(503, "this request is being measured", {"Retry-After": str(self.config.retry_after_s)})
            return reply
        if not self.lock.acquire(blocking=False):
            raise AgentError(503, "busy measuring another model", {"Retry-After": str(self.config.retry_after_s)})
        try:
            shape, batch, protocol, threads = self._parse(params)
            backend = self.backend(threads)
            check_onnx(onnx_bytes)
        except BaseException:
            self.lock.release()
            raise
        if key:
            self._remember(key, None)
        # the worker releases the lock when the measurement really ends, even after the request has timed out
        future = self.pool.submit(self._measure_locked, backend, onnx_bytes, shape, batch, protocol)
        try:
            reply = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.config.request_timeout_s)
        except asyncio.TimeoutError:
            self._forget(key)
            raise AgentError(504, f"the measurement took longer than {self.config.request_timeout_s:g} s") from None
        except AgentError:
            self._forget(key)
            raise
        if key:
            self._remember(key, reply)
        return reply

    def _measure_locked(self, backend: Backend, onnx_bytes: bytes, shape, batch, protocol) -> dict[str, Any]:
        try:
            with tempfile.TemporaryDirectory(prefix="hwnas-agent-") as tmp:
                path = Path(tmp) / "model.onnx"
                path.write_bytes(onnx_bytes)
                try:
                    m = backend.measure_onnx(path, shape, batch, protocol)
                except HwnasError as e:
                    raise AgentError(400, str(e)) from None
                except Exception as e:  # ONNX Runtime refusing the input (shape, type): the request's fault
                    if type(e).__module__.startswith("onnxruntime"):
                        raise AgentError(400, f"ONNX Runtime could not run the model: {first_line(e)}") from None
                    raise
            m.extra.pop("onnx", None)  # a temporary path on the agent means nothing to the client
            return {"measurement": measurement_to_json(m)}
        finally:
            self.lock.release()

    def _parse(self, params: dict[str, Any]):
        try:
            shape = tuple(int(s) for s in params["input_shape"])
            batch = int(params.get("batch", 1))
            threads = int(params.get("threads", 1))
        except (KeyError, TypeError, ValueError):
            raise AgentError(400, "params must hold input_shape (a list of sizes), batch and threads (integers)") from None
        if not shape or min(shape) < 1 or batch < 1 or batch * math.prod(shape) > MAX_INPUT_ELEMENTS:
            raise AgentError(400, f"input shape {quote(params.get('input_shape'), 80)} with batch {batch} is not "
                             f"accepted: positive sizes, at most {MAX_INPUT_ELEMENTS} elements in all")
        try:
            protocol = protocol_from_dict(params.get("protocol", {}))
        except HwnasError as e:
            raise AgentError(400, str(e)) from None
        return shape, batch, protocol, threads

    def _remember(self, key: str, reply: Any) -> None:
        self.replies[key] = reply
        self.replies.move_to_end(key)
        while len(self.replies) > IDEMPOTENCY_CACHE:
            self.replies.popitem(last=False)

    def _forget(self, key: str | None) -> None:
        if key:
            self.replies.pop(key, None)


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def check_onnx(data: bytes) -> None:
    """Refuse (400) anything that is not a well-formed, self-contained ONNX model, before ONNX Runtime sees it:
    it must parse as an ONNX ModelProto, pass onnx.checker, and keep every tensor inside the file (an external
    data reference could make ONNX Runtime read a file of the agent's)."""
    import onnx
    from onnx.external_data_helper import uses_external_data

    try:
        model = onnx.load_model_from_string(data)
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - protobuf and the checker raise many types for one meaning
        raise AgentError(400, f"the upload is not a valid ONNX model ({first_line(e)[:200]})") from None
    if any(uses_external_data(t) for t in _all_tensors(model.graph)):
        raise AgentError(400, "the ONNX model refers to external data files; send a self-contained model")
    if not model.graph.input:
        raise AgentError(400, "the ONNX model has no input")


def _all_tensors(graph):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _all_tensors(attr.g)
            for g in attr.graphs:
                yield from _all_tensors(g)


# --- the ASGI application -------------------------------------------------------------------------------------
class Guard:
    """Outermost ASGI layer: reads the whole body under the size limit and deadline (413 / 408, the rest of a too
    large body is drained so the client reads the answer), then hands it on; logs one line per request."""

    def __init__(self, app, config: AgentConfig):
        self.app, self.config = app, config

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), [0]

        async def send_logged(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            body, refusal = await self._read_body(receive)
            if refusal:
                await _plain(send_logged, *refusal)
            else:
                await self.app(scope, _replay(body), send_logged)
        finally:
            self._log(scope, status[0], time.perf_counter() - started)

    async def _read_body(self, receive) -> tuple[bytes, tuple[int, str] | None]:
        chunks, size, too_large = [], 0, False
        deadline = time.monotonic() + self.config.body_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                return b"", (408, f"the request body was not received within {self.config.body_timeout_s:g} s")
            if message["type"] == "http.disconnect":
                return b"", (400, "the client went away")
            size += len(message.get("body", b""))
            too_large = too_large or size > self.config.max_upload_bytes
            if not too_large:
                chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        if too_large:
            limit = self.config.max_upload_bytes
            return b"", (413, (f"the request body is larger than this agent's limit of {limit} bytes "
                              "(hwnas agent serve --max-upload-mb)"))
        return b"".join(chunks), None

    def _log(self, scope, status: int, seconds: float) -> None:
        client = scope.get("client") or ("?", 0)
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        who = token_id(auth.partition(" ")[2].strip()) if auth else "no-token"
        what = (scope.get("state") or {}).get("what", "")
        log.info("%s:%s %s %s %s %s -> %d in %.3f s", client[0], client[1], who, scope["method"], scope["path"], what,
                 status, seconds)


def _replay(body: bytes):
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _plain(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def create_app(config: AgentConfig):
    """The ASGI application of an agent (FastAPI inside `Guard`)."""
    from fastapi import Depends, FastAPI, File, Form, Header, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    agent = Agent(config)
    app = FastAPI(title="hwnas agent", version=str(API_VERSION), docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(AgentError)
    async def agent_error(request: Request, e: AgentError):
        return JSONResponse({"detail": e.detail}, status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, e: RequestValidationError):
        where = "; ".join(f"{'.'.join(map(str, err.get('loc', ())))}: {err.get('msg', '')}" for err in e.errors()[:3])
        return JSONResponse({"detail": f"malformed request ({where[:200]})"}, status_code=400)

    def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        if not agent.authorised(authorization):
            raise AgentError(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})

    @app.get(f"{PREFIX}/health")
    async def health():
        return {"status": "ok", "api_version": API_VERSION, "hwnas": __version__, "busy": agent.lock.locked(),
                "max_upload_bytes": config.max_upload_bytes}

    @app.get(f"{PREFIX}/fingerprint", dependencies=[Depends(require_token)])
    async def fingerprint(request: Request, threads: int = 1):
        request.state.what = f"threads={threads}"
        return agent.fingerprint(threads)

    @app.post(f"{PREFIX}/measure", dependencies=[Depends(require_token)])
    async def measure(request: Request, model: Annotated[UploadFile, File()], params: Annotated[str, Form()],
                      idempotency_key: Annotated[str | None, Header(max_length=128)] = None):
        try:
            fields = json.loads(params)
        except json.JSONDecodeError:
            raise AgentError(400, "params is not JSON") from None
        if not isinstance(fields, dict):
            raise AgentError(400, "params must be a JSON object")
        request.state.what = (f"label={quote(str(fields.get('label', '')), 90)} shape={quote(fields.get('input_shape'), 40)} "
                              f"batch={quote(fields.get('batch'), 12)} threads={quote(fields.get('threads'), 12)}")
        return await agent.measure(await model.read(), fields, idempotency_key)

    return Guard(app, config)


def serve(config: AgentConfig, host: str = "127.0.0.1", port: int = 8765, log_level: str = "info") -> None:
    """Serve the agent until interrupted (uvicorn, one process; measurements one at a time)."""
    import uvicorn

    app = create_app(config)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, timeout_keep_alive=5,
                limit_concurrency=64)


__all__ = ["Agent", "AgentConfig", "check_onnx", "create_app", "serve"]
