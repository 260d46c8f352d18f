"""Redis URLs: parsed before any connection; a bad one is ValueError naming the bad part."""
import pytest

import mmkv
from mmkv._redis_url import parse


@pytest.mark.parametrize("url, part", [
    ("redis://127.0.0.1:6379/0", "namespace"),
    ("redis://127.0.0.1:6379/0?namespace=", "namespace"),
    ("redis://127.0.0.1:6379/0?namespace=a{b}", "namespace"),
    ("redis://127.0.0.1:6379/0?namespace=a*", "namespace"),
    ("redis://127.0.0.1:notaport/0?namespace=a", "port"),
    ("redis://127.0.0.1:99999/0?namespace=a", "port"),
    ("redis://127.0.0.1:0/0?namespace=a", "port"),
    ("redis://:6379/0?namespace=a", "host"),
    ("redis://127.0.0.1:6379/x?namespace=a", "db"),
    ("redis+cluster://127.0.0.1:7000/3?namespace=a", "db"),
    ("redis://127.0.0.1:6379/0?namespace=a&socket_timeout=soon", "socket_timeout"),
    ("redis://127.0.0.1:6379/0?namespace=a&connect_timeout=-1", "connect_timeout"),
    ("redis://127.0.0.1:6379/0?namespace=a&lock_lease=0", "lock_lease"),
    ("redis://127.0.0.1:6379/0?namespace=a&watch_backlog=0", "watch_backlog"),
    ("redis://127.0.0.1:6379/0?namespace=a&colour=blue", "colour"),
    ("redis://127.0.0.1:6379/0?namespace=a&namespace=b", "namespace"),
    ("redis://127.0.0.1:6379/0?namespace=a#frag", "fragment"),
])
def test_open_bad_url_raises_valueerror_naming_part(url, part):
    """API.md / issue 14: "bad URLs are ValueError naming the part that is wrong"."""
    with pytest.raises(ValueError, match=part):
        mmkv.open(url)


def test_parse_good_url_gives_parts_and_defaults():
    u = parse("redis://me:secret@db.example:6380/2?namespace=jobs")
    assert (u.host, u.port, u.db, u.namespace, u.cluster) == ("db.example", 6380, 2, "jobs",
                                                              False)
    assert (u.username, u.password) == ("me", "secret")
    assert u.connect_timeout == 5.0 and u.socket_timeout == 5.0
    assert "secret" not in u.url


def test_parse_cluster_url_defaults_port_and_db():
    u = parse("redis+cluster://node7?namespace=x&socket_timeout=0.5")
    assert u.cluster and u.port == 6379 and u.db == 0 and u.socket_timeout == 0.5


def test_parse_keyword_options_override_query():
    u = parse("redis://h/0?namespace=x&socket_timeout=2", socket_timeout=3)
    assert u.socket_timeout == 3.0


def test_open_unknown_keyword_raises_typeerror():
    with pytest.raises(TypeError):
        mmkv.open("redis://127.0.0.1:1/0?namespace=x", colour="blue")


def test_open_unreachable_server_raises_error_naming_url():
    """Issue 14: "a server that is down, unreachable ... is mmkv.error naming the URL"."""
    url = "redis://127.0.0.1:1/0?namespace=x&connect_timeout=1"
    with pytest.raises(mmkv.error) as info:
        mmkv.open(url)
    assert url in str(info.value)
    assert not isinstance(info.value, mmkv.OutcomeUnknown)


def test_open_unreachable_cluster_raises_error_naming_url():
    url = "redis+cluster://127.0.0.1:1?namespace=x&connect_timeout=1"
    with pytest.raises(mmkv.error) as info:
        mmkv.open(url)
    assert url in str(info.value)
