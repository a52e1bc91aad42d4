"""``otp.observer.serve``: the web view, as a process of the node.

The web server is a temporary child of the observer supervisor (see
:mod:`._start`), so the node stops it with everything else.  Its start
function binds the listening socket in the new process and returns once
it is bound; :func:`serve` then asks the process for the port (the OS
chooses it for ``port=0``).  A crash of the server is logged by its
supervisor and not repeated (a new start would have to pick a port and
token again): call :func:`serve` again.
"""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import _api, _process
from .._child_spec import child_spec
from .._errors import OTPError, StartError, Timeout
from .._pid import Pid, Ref
from .._reasons import DOWN
from .._supervisor import start_child, terminate_child
from ._bridge import WHERE
from ._client import add_root
from ._start import observer_supervisor
from ._tap import install_report_tap

__all__ = ["serve", "Server", "DEFAULT_HOST"]

DEFAULT_HOST = "127.0.0.1"
_READY = "$observer_web_ready"
_START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Server:
    """A running web view.  ``url`` carries the access token."""

    pid: Pid
    supervisor: Pid
    child_id: object
    host: str
    port: int
    token: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/?token={self.token}"

    @property
    def metrics_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop the web server (the collector stays, until it idles out)."""
        try:
            terminate_child(self.supervisor, self.pid, timeout=10.0)
        except OTPError:
            _api.exit(self.pid, "shutdown")

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(
    host: str = DEFAULT_HOST, port: int = 0, token: str | None = None, tap: bool = True, roots: Sequence[Pid] = ()
) -> Server:
    """Start the web view of this node (from any of its processes) and
    return its :class:`Server`; print ``server.url`` for the user.

    Binds ``host`` (127.0.0.1 unless you ask for another) and ``port`` (0:
    one the OS picks).  Every page, event stream, action and ``/metrics``
    requires ``token`` (default: a new random one).  In the root process,
    ``tap=True`` installs the report tap (:func:`install_report_tap`) so
    that the view shows the node's log reports.  Raises ``StartError`` if
    the port cannot be bound.  ``roots``: supervisors whose trees to show
    besides the kernel's and the applications' (see
    :func:`otp.observer.add_root`)."""
    token = token or secrets.token_urlsafe(24)
    if tap:
        install_report_tap()
    sup = observer_supervisor()
    child_id = ("web", secrets.token_hex(4))
    spec = child_spec(child_id, start=(start_web, (host, port, token)), restart="temporary", shutdown=5.0)
    pid = start_child(sup, spec, timeout=_START_TIMEOUT)
    if pid is None:  # pragma: no cover - start_web never ignores
        raise StartError("the observer's web server did not start")
    for root in roots:
        add_root(root)
    ref = _api.make_ref()
    _api.send(pid, (WHERE, _api.self_(), ref))
    bound = _api.receive(
        _START_TIMEOUT, lambda m: type(m) is tuple and len(m) == 3 and m[0] is not None and m[0] == ref
    )
    return Server(pid, sup, child_id, host, int(bound[2]), token)


def start_web(host: str, port: int, token: str) -> Pid:
    """The web server's start function (runs in the observer supervisor):
    spawn it linked, return once its socket is bound."""
    proc = _process.current()
    ack = _api.make_ref()
    pid, mref = proc.spawn(run_web, (proc.pid, ack, host, port, token), {}, link=True, monitor=True)

    def answer(m: object) -> bool:
        return (type(m) is tuple and len(m) == 3 and m[0] == _READY and m[1] == ack) or (
            isinstance(m, DOWN) and m.ref == mref
        )

    try:
        msg = _api.receive(_START_TIMEOUT, answer)
    except Timeout:
        _api.unlink(pid)
        _api.exit(pid, "kill")
        raise StartError(("timeout", "the observer's web server did not start")) from None
    _api.demonitor(mref, flush=True)
    if isinstance(msg, DOWN):
        raise StartError(msg.reason)
    ok, detail = msg[2]
    if not ok:
        raise StartError(("bind", host, port, detail))
    return pid


def run_web(parent: Pid, ack: Ref, host: str, port: int, token: str) -> None:
    """Body of the web server process."""
    import uvicorn  # here, not at import: the zygote learns this module

    from ._bridge import Bridge
    from ._web import build_app

    proc = _process.current()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        _api.send(parent, (_READY, ack, (False, str(exc))))
        return
    bound_port = sock.getsockname()[1]
    bridge = Bridge()
    bridge.start()
    app = build_app(bridge, token, proc.node.name)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="otp-observer-http", daemon=True)
    thread.start()
    _api.send(parent, (_READY, ack, (True, bound_port)))
    _serve(bridge, host, bound_port)


def _serve(bridge: Any, host: str, port: int) -> None:
    bridge.where = (host, port)
    bridge.serve_forever()
