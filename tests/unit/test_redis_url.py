"""MICS_REDIS_URL: one server (redis://) or Redis Sentinel (redis+sentinel://), and what is refused."""

from __future__ import annotations

import pytest

from mics.config import RedisAddress, parse_url
from mics.errors import ConfigError


def test_a_plain_url_names_one_server():
    address = parse_url("redis://user:p%40ss@r1:6380/2")
    assert (address.host, address.port, address.db) == ("r1", 6380, 2)
    assert (address.username, address.password) == ("user", "p@ss")
    assert not address.is_sentinel and address.describe() == "r1:6380"


def test_a_sentinel_url_names_the_sentinels_the_master_and_the_data_nodes_credentials():
    address = parse_url("redis+sentinel://:secret@s1:26380,s2,[::1]:26381/mics/3?sentinel_password=s%26p")
    assert address.sentinels == (("s1", 26380), ("s2", 26379), ("::1", 26381))
    assert (address.master, address.db, address.password, address.username) == ("mics", 3, "secret", None)
    assert address.sentinel_password == "s&p" and address.is_sentinel
    assert (address.host, address.port) == ("s1", 26380), "the first sentinel, for logs"
    assert "secret" not in address.describe() and "mics" in address.describe()
    assert parse_url("redis+sentinel://s1/mics") == RedisAddress(
        "s1", 26379, None, None, None, sentinels=(("s1", 26379),), master="mics"
    )


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://s1",  # no master
        "redis+sentinel://s1/",
        "redis+sentinel://s1/mics/zero",  # db not a number
        "redis+sentinel://s1/mics/0/extra",
        "redis+sentinel://s1:99999/mics",  # port out of range
        "redis+sentinel://s1,/mics",  # an empty sentinel address
        "redis+sentinel:///mics",
        "redis+sentinel://s1/mics?password=x",  # unknown option
        "rediss://r1",
        "sentinel://s1/mics",
    ],
)
def test_a_malformed_url_is_refused_naming_the_setting(url):
    with pytest.raises(ConfigError) as refused:
        parse_url(url)
    assert refused.value.field == "MICS_REDIS_URL"
