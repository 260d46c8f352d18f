"""Both backends satisfy StoreProtocol structurally: every member present, every parameter of
the protocol accepted (same name and kind, a default where the protocol has one), and no
extra parameter that a caller of the protocol would have to pass."""
import inspect
import types

import pytest

import mmkv
from mmkv._protocol import StoreProtocol
from mmkv._redis import RedisCodecStore, RedisStore

_NOT_MEMBERS = {"__init__", "__subclasshook__", "__class_getitem__", "__init_subclass__"}


def _members():
    for name, value in vars(StoreProtocol).items():
        if name in _NOT_MEMBERS:
            continue
        if isinstance(value, (types.FunctionType, property)):
            yield name, value


def _problems(cls):
    problems = []
    for name, proto in _members():
        impl = inspect.getattr_static(cls, name, None)
        if impl is None:
            problems.append(f"{name}: missing")
        elif isinstance(proto, property):
            if not isinstance(impl, property):
                problems.append(f"{name}: must be a property")
        elif not callable(impl):
            problems.append(f"{name}: not callable")
        else:
            problems += [f"{name}: {p}" for p in _signature_problems(proto, impl)]
    return problems


def _signature_problems(proto, impl):
    try:
        got = inspect.signature(impl)
    except (TypeError, ValueError):
        return []                    # a builtin slot wrapper: accepts what the type does
    want = list(inspect.signature(proto).parameters.values())[1:]
    have = list(got.parameters.values())[1:]
    var_pos = any(p.kind is p.VAR_POSITIONAL for p in have)
    var_kw = any(p.kind is p.VAR_KEYWORD for p in have)
    by_name = {p.name: p for p in have}
    problems = []
    for i, p in enumerate(want):
        if p.kind is p.VAR_POSITIONAL:
            if not var_pos:
                problems.append("needs *args")
            continue
        if p.kind is p.VAR_KEYWORD:
            if not var_kw:
                problems.append("needs **kwargs")
            continue
        q = by_name.get(p.name)
        if q is None and p.kind is p.POSITIONAL_ONLY and i < len(have) and \
                have[i].kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            q = have[i]
        if q is None:
            if not (var_kw or (var_pos and p.kind is p.POSITIONAL_ONLY)):
                problems.append(f"parameter {p.name!r} missing")
            continue
        if p.default is not p.empty and q.default is q.empty:
            problems.append(f"parameter {p.name!r} needs a default")
    wanted = {p.name for p in want}
    for q in have:
        if q.name not in wanted and q.default is q.empty and \
                q.kind not in (q.VAR_POSITIONAL, q.VAR_KEYWORD) and \
                not (q.kind is q.POSITIONAL_ONLY and len(have) <= len(want)):
            problems.append(f"extra required parameter {q.name!r}")
    return problems


@pytest.mark.parametrize("cls", [RedisStore, RedisCodecStore, mmkv.Store],
                         ids=["RedisStore", "RedisCodecStore", "Store"])
def test_backend_satisfies_store_protocol(cls):
    """Issue 14: "a typing Protocol ... names the surface both satisfy"."""
    assert _problems(cls) == []


def test_protocol_check_catches_a_missing_and_an_incompatible_member():
    """The checker itself can fail: a class without lock(timeout) or watch is refused."""
    class Partial(RedisStore):
        def lock(self):
            return None
    Partial.watch = None
    found = _problems(Partial)
    assert any(p.startswith("lock: parameter 'timeout'") for p in found)
    assert any(p.startswith("watch:") for p in found)


def test_open_redis_store_is_instance_of_protocol(redis_server):
    with mmkv.open(redis_server.url("proto")) as d:
        assert isinstance(d, StoreProtocol)
