"""Security of distribution: key files (0600, refused when exposed), no
tcp without keys, unknown keys refused at the CURVE handshake (ZAP),
counted and logged once per key, and nothing from a peer that did not
authenticate is ever unpickled."""

from __future__ import annotations

import logging
import os
import pickle
import stat
import tempfile

import dist_nodes
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

import otp
from otp import _keys
from otp._dist_wire import CTL, HELLO, MSGS, REFUSED, SIG, encode_hello, pack_batch, pack_route, remote_prefix


@pytest.fixture
def keydir():
    with tempfile.TemporaryDirectory(prefix="otp-keys-") as d:
        yield d


def test_keys_new_writes_a_private_secret_and_a_public_file(keydir, capsys):
    path = os.path.join(keydir, "alpha.key")
    assert _keys.main(["new", path, "--name", "alpha@h"]) == 0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path + ".pub").st_mode) == 0o644
    pair = _keys.load_keypair(path)
    assert pair.public == _keys.load_public_key(path + ".pub")
    assert pair.public.decode() in capsys.readouterr().out
    assert "secret" not in repr(pair) or "..." in repr(pair)
    assert _keys.main(["new", path]) == 1  # never overwrites
    assert _keys.main(["check", path]) == 0
    assert _keys.main(["public", path + ".pub"]) == 0


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_exposed_secret_key_files_are_refused(keydir, mode):
    path = os.path.join(keydir, "k")
    _keys.write_key_files(path)
    os.chmod(path, mode)
    with pytest.raises(otp.KeyFileExposed):
        _keys.load_keypair(path)
    with pytest.raises(otp.KeyFileExposed):
        otp.Node(name="x@127.0.0.1", listen="tcp://127.0.0.1:0", keys=path)
    assert _keys.main(["check", path]) == 1


def test_malformed_key_files_are_refused(keydir):
    path = os.path.join(keydir, "bad")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b'curve\n    public-key = "not a key"\n')
    os.close(fd)
    with pytest.raises(otp.KeyFileMalformed):
        _keys.load_keypair(path)
    other = os.path.join(keydir, "other")
    _keys.write_key_files(other)
    mismatched = os.path.join(keydir, "mismatched")
    public = _keys.load_public_key(other).decode()
    secret = _keys.generate_keypair().secret.decode()
    fd = os.open(mismatched, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, f'curve\n    public-key = "{public}"\n    secret-key = "{secret}"\n'.encode())
    os.close(fd)
    with pytest.raises(otp.KeyFileMalformed):
        _keys.load_keypair(mismatched)


def test_no_tcp_without_keys():
    with pytest.raises(ValueError, match="keys"):
        otp.Node(name="x@127.0.0.1", listen="tcp://127.0.0.1:0")
    with pytest.raises(ValueError):
        otp.Node(name="x@127.0.0.1", listen="ipc:///tmp/x", keys=otp.KeyPair(*zmq.curve_keypair()))


class _Bomb:
    """Unpickling it creates a directory: proof that a frame was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _client(ctx, endpoint: str, server_key: bytes, pair: tuple[bytes, bytes] | None):
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if pair is not None:
        sock.setsockopt(zmq.CURVE_SERVERKEY, server_key)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, pair[0])
        sock.setsockopt(zmq.CURVE_SECRETKEY, pair[1])
    monitor = sock.get_monitor_socket()
    sock.connect(endpoint)
    return sock, monitor


def _close(sock, monitor) -> None:
    sock.disable_monitor()  # frees the monitor's inproc address (named after the socket's fd)
    monitor.close()
    sock.close()


def _events_until(monitor, wanted: set[int], timeout_ms: int = 20000) -> set[int]:
    seen: set[int] = set()
    poller = zmq.Poller()
    poller.register(monitor, zmq.POLLIN)
    while not (seen & wanted):
        if not poller.poll(timeout_ms):
            break
        seen.add(recv_monitor_message(monitor)["event"])
    return seen


def _bombs(marker: str) -> list[list[bytes]]:
    """Messages that would unpickle a bomb if accepted: a frame for the test
    process itself (it unpickles what reaches its mailbox), a signal, a
    control record, garbage."""
    bomb = pickle.dumps(_Bomb(marker))
    frame = pickle.dumps((7, 1, _Bomb(marker)))
    me = otp.self()
    batch = pack_batch([pack_route(me, 7, 1, 0) + remote_prefix("mallory@127.0.0.1", 1) + frame])
    return [[MSGS, batch], [SIG, bomb, bomb], [CTL, bomb], [bomb]]


def _pump() -> None:
    """Take in whatever reached the test process's mailbox (unpickling it)."""
    try:
        otp.receive(0.5, lambda m: False)
    except otp.Timeout:
        pass


def test_unknown_key_is_refused_at_the_handshake_counted_and_logged_once(caplog, keydir):
    marker = os.path.join(keydir, "unpickled")
    caplog.set_level(logging.WARNING, logger="otp.dist")
    with dist_nodes.cluster([]):
        info = otp.net_kernel.info()
        ctx = zmq.Context()
        try:
            stranger = zmq.curve_keypair()
            for _ in range(2):
                sock, monitor = _client(ctx, info["endpoint"], info["public_key"].encode(), stranger)
                sock.send_multipart([HELLO, encode_hello("mallory@127.0.0.1", 1, None)])
                for parts in _bombs(marker):
                    sock.send_multipart(parts)
                seen = _events_until(monitor, {zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_DISCONNECTED})
                assert zmq.EVENT_HANDSHAKE_SUCCEEDED not in seen
                _close(sock, monitor)
            # Without CURVE at all: the mechanisms do not match, nothing passes.
            sock, monitor = _client(ctx, info["endpoint"], b"", None)
            for parts in _bombs(marker):
                sock.send_multipart(parts)
            assert zmq.EVENT_HANDSHAKE_SUCCEEDED not in _events_until(
                monitor, {zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL}
            )
            _close(sock, monitor)
        finally:
            ctx.destroy(linger=0)
        _pump()
        info = otp.net_kernel.info()
        assert info["refused"] >= 2
        assert info["unauthenticated_dropped"] == 0
        assert otp.nodes() == []
    assert not os.path.exists(marker)
    lines = [r for r in caplog.records if "not a member's" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert stranger[0].decode() in lines[0].getMessage()


def test_a_member_that_skips_hello_or_lies_is_never_unpickled(keydir):
    marker = os.path.join(keydir, "unpickled")
    member_public, member_secret = zmq.curve_keypair()
    with dist_nodes.cluster([]):
        otp.net_kernel.add_peer("member@127.0.0.1", None, member_public)
        info = otp.net_kernel.info()
        ctx = zmq.Context()
        try:
            # Authenticated, but no HELLO: dropped unread.
            sock, monitor = _client(ctx, info["endpoint"], info["public_key"].encode(), (member_public, member_secret))
            assert zmq.EVENT_HANDSHAKE_SUCCEEDED in _events_until(monitor, {zmq.EVENT_HANDSHAKE_SUCCEEDED})
            for parts in _bombs(marker):
                sock.send_multipart(parts)
            # A HELLO naming another node than the key's: refused.
            liar, liar_monitor = _client(
                ctx, info["endpoint"], info["public_key"].encode(), (member_public, member_secret)
            )
            liar.send_multipart([HELLO, encode_hello("test@127.0.0.1", 5, None)])
            assert liar.poll(20000)
            assert liar.recv_multipart()[0] == REFUSED
            for parts in _bombs(marker):
                liar.send_multipart(parts)
            # Something that needs an answer shows the bombs before it were read.
            sock.send_multipart([HELLO, encode_hello("member@127.0.0.1", 9, None)])
            assert sock.poll(20000)
            sock.recv_multipart()
            _close(sock, monitor)
            _close(liar, liar_monitor)
        finally:
            ctx.destroy(linger=0)
        _pump()
        info = otp.net_kernel.info()
        assert info["unauthenticated_dropped"] >= 2 * len(_bombs(marker))
        assert info["refused"] >= 1
    assert not os.path.exists(marker)
