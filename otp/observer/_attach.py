"""Attaching the web view to a running node from another OS process.

How nodes are found today: each running node has a directory
``<base_dir>/otp-XXXXXXXX`` (mode 0700, ours) holding its zygote's socket
and a file ``owner`` with the root's OS pid and start time.  A node's
*name* is written nowhere there, so a node is named on the command line by
its directory or its root's OS pid (or by name once the node writes a
``name`` file beside ``owner``, which is read if present).

How attaching works: the zygote of a node forks processes for anyone who
can reach its socket (the directory's mode limits that to its user).  We
ask it for a process as a spawning OTP process would
(:class:`~otp._zygote_client.ZygoteClient` and a
:class:`~otp._zygote_protocol.SpawnSpec`, not linked, not monitored), and
hand it :func:`run_attached`: inside the node it calls
:func:`otp.observer.serve`, links itself to the web server, sends the URL
back on a datagram socket of ours, and waits for our OS process to end (a
pidfd), then stops the server.  We wait for Ctrl-C or for its end.  The
node sees one more process while we are attached and none after.

An attached observer runs in a process that is not the node's root, so it
cannot install the report tap: logs show only if the program called
``otp.observer.install_report_tap()`` (or ``serve()``) in its root.
"""

from __future__ import annotations

import os
import pickle
import select
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass

from .. import _api, _oslib, _process
from .._codec import dumps, dumps_by_value
from .._errors import Timeout
from .._pid import Pid
from .._zygote_client import ZygoteClient
from .._zygote_protocol import Identity, SpawnSpec, absolute_path

__all__ = ["NodeRef", "list_nodes", "find_node", "attach", "Attached", "run_attached", "AttachError"]

_PREFIX = "otp-"
_ANSWER_TIMEOUT = 60.0


class AttachError(Exception):
    """No such node, several candidates, or the node did not start the view."""


@dataclass(frozen=True)
class NodeRef:
    dir: str
    root_ospid: int
    name: str | None

    def describe(self) -> str:
        return f"{self.name or '(unnamed)'}  root OS pid {self.root_ospid}  {self.dir}"


def _read(path: str, size: int = 256) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(fd, size).decode("utf-8", "replace").strip()
    finally:
        os.close(fd)


def list_nodes(base_dir: str = "/tmp") -> list[NodeRef]:
    """Running nodes of this user under ``base_dir``."""
    out = []
    try:
        entries = sorted(os.listdir(base_dir))
    except OSError:
        return []
    for entry in entries:
        path = os.path.join(base_dir, entry)
        if not entry.startswith(_PREFIX):
            continue
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not os.path.isdir(path) or os.path.islink(path) or st.st_uid != os.getuid():
            continue
        owner = _read(os.path.join(path, "owner"))
        try:
            ospid, start = (int(field) for field in (owner or "").split())
        except ValueError:
            continue
        if not _oslib.os_process_alive(ospid, start) or not os.path.exists(os.path.join(path, "zygote")):
            continue
        out.append(NodeRef(path, ospid, _read(os.path.join(path, "name"))))
    return out


def find_node(spec: str | None, base_dir: str = "/tmp") -> NodeRef:
    """The node ``spec`` names: its directory, its root's OS pid or its
    name; None: the only running node.  AttachError otherwise."""
    nodes = list_nodes(base_dir)
    if spec is None:
        if len(nodes) == 1:
            return nodes[0]
        if not nodes:
            raise AttachError(f"no running node of yours under {base_dir}")
        raise AttachError("several nodes run; name one:\n  " + "\n  ".join(n.describe() for n in nodes))
    for node in nodes:
        if spec in (node.dir, os.path.basename(node.dir), str(node.root_ospid), node.name):
            return node
    raise AttachError(f"no running node {spec!r} of yours under {base_dir} (python -m otp observer --list)")


@dataclass(frozen=True)
class Attached:
    url: str
    node: str
    ospid: int


def attach(node: NodeRef, host: str, port: int, token: str | None) -> Attached:
    """Start the web view inside ``node``; returns once it listens.  The
    view lives until this OS process ends."""
    scratch = tempfile.mkdtemp(prefix="otp-observer-")
    answer_path = os.path.join(scratch, "answer")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(answer_path)
        me = os.getpid()
        my_start = _oslib.proc_start_time(me) or 0
        blob = dumps_by_value((run_attached, (answer_path, me, my_start, host, port, token), {}))
        spawned: list[int] = []

        parent = Pid(node.name or "observer-attach", 1, me, my_start)  # not linked, not monitored: unused
        spec = dumps(SpawnSpec(parent, False, None, absolute_path(sys.path), blob))

        def register(identity: Identity) -> None:
            spawned.append(identity.ospid)

        client = ZygoteClient(os.path.join(node.dir, "zygote"))
        try:
            client.spawn(spec, register)
        finally:
            client.close()
        answer = _await_answer(sock, spawned[0])
    finally:
        sock.close()
        shutil.rmtree(scratch, ignore_errors=True)
    if answer[0] != "ok":
        raise AttachError(f"the node did not start the observer: {answer[1]}")
    return Attached(answer[1], answer[2], spawned[0])


def _await_answer(sock: socket.socket, ospid: int) -> tuple:
    try:
        pidfd = os.pidfd_open(ospid)
    except ProcessLookupError:
        raise AttachError("the process the node started for the observer died at once") from None
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        ready = {fd for fd, _ in poller.poll(_ANSWER_TIMEOUT * 1000)}
        if sock.fileno() in ready:
            answer = pickle.loads(sock.recv(1 << 16))
            return answer if isinstance(answer, tuple) else ("error", repr(answer))
        if pidfd in ready:
            raise AttachError("the process the node started for the observer died before answering")
        raise AttachError(f"no answer from the node within {_ANSWER_TIMEOUT}s")
    finally:
        os.close(pidfd)


def wait_attached(attached: Attached) -> None:
    """Block until the attached process ends (the node stopped, or the
    server failed)."""
    try:
        pidfd = os.pidfd_open(attached.ospid)
    except ProcessLookupError:
        return
    try:
        select.select([pidfd], [], [])
    finally:
        os.close(pidfd)


def run_attached(answer_path: str, cli_ospid: int, cli_start: int, host: str, port: int, token: str | None) -> None:
    """Body of the attached process, inside the node (see the module docstring)."""
    from ._server import serve

    def tell(answer: tuple) -> None:
        out = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            out.sendto(pickle.dumps(answer), answer_path)
        except OSError:
            pass
        finally:
            out.close()

    try:
        server = serve(host, port, token, tap=False)
    except Exception as exc:  # noqa: BLE001 - told to the command line, which says it
        tell(("error", f"{type(exc).__name__}: {exc}"))
        return
    _api.link(server.pid)  # our end ends the server, the server's end ends us
    pidfd = _oslib.open_verified_pidfd(cli_ospid, cli_start)
    tell(("ok", server.url, _process.current().node.name))
    if pidfd is None:
        server.stop()
        return
    proc = _process.current()
    try:
        while True:
            ready = proc.poll_sockets([pidfd], None)  # type: ignore[list-item]  # a raw fd polls too
            if ready:
                break
            while True:  # nothing is ever sent here; whatever is, is dropped
                try:
                    _api.receive(0)
                except Timeout:
                    break
    finally:
        os.close(pidfd)
    _api.unlink(server.pid)
    server.stop()
