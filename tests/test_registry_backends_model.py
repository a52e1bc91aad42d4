"""The registry storage backends against a model (a Hypothesis state
machine, once per backend and mode), and the sqlite backend's canonical key
encoding and index forms (Hypothesis).  The example-based contract is in
tests/test_registry_backends.py."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from registry_world import KINDS, World, open_kind

from otp.registry import (
    AlreadyRegistered,
    Entry,
    NotFound,
    PidNotAlive,
)
from otp.registry._backend import canonical_key, index_form
from otp.registry._sqlite import decode_key, encode_key


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("mode", ["unique", "duplicate"])
def test_stateful_against_a_model(kind, mode, tmp_path):
    names = itertools.count()

    class Machine(RegistryMachine):
        def open(self):
            return open_kind(kind, self.world, tmp_path / f"m{next(names)}.sqlite", mode)

    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=40 if kind == "memory" else 25,  # a fresh sqlite file costs ~30 ms of fsync
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


KEYS = ["a", "b", ("t", 1), 7]
FIELDS = ["role", "tier"]
MVALUES = [1, True, 2.5, "x", None, (1, "y"), [1]]
metadata_st = st.dictionaries(st.sampled_from(FIELDS), st.sampled_from(MVALUES), max_size=2)
value_st = st.sampled_from([None, 0, "v", [1, 2], {"n": 1}])


class RegistryMachine(RuleBasedStateMachine):
    """The backend against a list of (key, pid, value, metadata) in registration order,
    from which dead pids are removed at once (reads make the backend look the same)."""

    def __init__(self) -> None:
        super().__init__()
        self.world = World()
        self.backend = self.open()
        self.unique = self.backend.mode == "unique"
        self.pids = [World.spawn(i) for i in range(3)]
        self.model: list[Entry] = []

    def open(self):
        raise NotImplementedError

    def teardown(self) -> None:
        self.backend.close()

    def pick(self, i):
        return self.pids[i % len(self.pids)]

    @rule(key=st.sampled_from(KEYS), i=st.integers(0, 9), value=value_st, meta=metadata_st)
    def register(self, key, i, value, meta):
        pid = self.pick(i)
        held = [n for n, e in enumerate(self.model) if e.key == key]
        if not self.world.is_alive(pid):
            with pytest.raises(PidNotAlive):
                self.backend.register(key, pid, value, meta)
        elif self.unique and held and self.model[held[0]].pid != pid:
            with pytest.raises(AlreadyRegistered):
                self.backend.register(key, pid, value, meta)
        else:
            self.backend.register(key, pid, value, meta)
            if self.unique and held:
                self.model[held[0]] = Entry(key, pid, value, meta)
            else:
                self.model.append(Entry(key, pid, value, meta))

    @rule(key=st.sampled_from(KEYS), i=st.one_of(st.none(), st.integers(0, 9)))
    def unregister(self, key, i):
        pid = None if i is None else self.pick(i)
        n = self.backend.unregister(key, pid)
        keep = [e for e in self.model if not (e.key == key and (pid is None or e.pid == pid))]
        removed = len(self.model) - len(keep)
        assert n == removed if pid is not None and self.world.is_alive(pid) else n >= removed
        self.model = keep

    @rule(i=st.integers(0, 9))
    def unregister_pid(self, i):
        pid = self.pick(i)
        keys = self.backend.unregister_pid(pid)
        expected = list(dict.fromkeys(e.key for e in self.model if e.pid == pid))
        assert keys == expected if self.world.is_alive(pid) else set(keys) <= set(KEYS)
        self.model = [e for e in self.model if e.pid != pid]

    @rule(key=st.sampled_from(KEYS), i=st.integers(0, 9), value=value_st)
    def update_value(self, key, i, value):
        pid = self.pick(i)
        hits = [n for n, e in enumerate(self.model) if e.key == key and e.pid == pid]
        if not hits:
            with pytest.raises(NotFound):
                self.backend.update_value(key, pid, value)
            return
        self.backend.update_value(key, pid, value)
        for n in hits:
            self.model[n] = Entry(key, pid, value, self.model[n].metadata)

    @rule(key=st.sampled_from(KEYS), i=st.one_of(st.none(), st.integers(0, 9)), meta=metadata_st)
    def update_metadata(self, key, i, meta):
        pid = None if i is None else self.pick(i)
        hits = [n for n, e in enumerate(self.model) if e.key == key and (pid is None or e.pid == pid)]
        if not hits:
            with pytest.raises(NotFound):
                self.backend.update_metadata(key, meta, pid)
            return
        self.backend.update_metadata(key, meta, pid)
        for n in hits:
            e = self.model[n]
            self.model[n] = Entry(e.key, e.pid, e.value, meta)

    @rule(i=st.integers(0, 9))
    def kill(self, i):
        pid = self.pick(i)
        self.world.kill(pid)
        self.model = [e for e in self.model if e.pid != pid]

    @rule(key=st.sampled_from(KEYS), i=st.integers(0, 9), value=value_st, meta=metadata_st, j=st.integers(0, 9))
    def batched(self, key, i, value, meta, j):  # operations that fail inside a batch are undone alone
        with self.backend.batch():
            self.register(key, i, value, meta)
            self.update_metadata(key, j, meta)
            self.update_value(key, j, value)

    @precondition(lambda self: len(self.pids) < 6)
    @rule()
    def spawn(self):
        self.pids.append(World.spawn())

    @invariant()
    def same_as_model(self):
        b, model = self.backend, self.model
        assert b.list_all() == model
        assert b.count() == len(model)
        for key in KEYS:
            assert b.lookup(key) == [e for e in model if e.key == key]
        for pid in self.pids:
            assert b.keys_of(pid) == list(dict.fromkeys(e.key for e in model if e.pid == pid))
        for field in FIELDS:
            for value in MVALUES:
                assert b.match(field, value) == [e for e in model if field in e.metadata and e.metadata[field] == value]
        assert b._audit() == []


# --- canonical key encoding (sqlite), Hypothesis ------------------------------------------------

atoms = st.one_of(st.text(), st.integers(), st.binary(), st.sampled_from(["\ud800", "\udfff", "a\x00b"]))
keys_st = st.recursive(atoms, lambda inner: st.lists(inner, max_size=4).map(tuple), max_leaves=12)


@given(keys_st, keys_st)
def test_key_encoding_is_canonical_and_injective(a, b):
    ea, eb = encode_key(canonical_key(a)), encode_key(canonical_key(b))
    assert decode_key(ea) == a and decode_key(eb) == b
    assert (ea == eb) == (a == b)


forms_st = st.recursive(
    st.one_of(atoms, st.booleans(), st.none(), st.floats(allow_nan=False)),
    lambda inner: st.lists(inner, max_size=3).map(tuple),
    max_leaves=8,
)


@given(forms_st, forms_st)
def test_index_forms_of_equal_values_are_equal(a, b):
    fa, fb = index_form(a), index_form(b)
    if a == b:
        assert encode_key(fa) == encode_key(fb)
    assert decode_key(encode_key(fa)) == fa
