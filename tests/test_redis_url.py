"""The --redis URL in a log: every form of credential is redacted (issue 19.7)."""

from __future__ import annotations

import pytest

from chat.federation.url import check, redact

SECRET = "s3cr3t-pw"


@pytest.mark.parametrize(("url", "shown"), [
    (f"redis://alice:{SECRET}@127.0.0.1:6379/0", "redis://alice:***@127.0.0.1:6379/0"),
    (f"redis://:{SECRET}@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    (f"redis://127.0.0.1:6379/0?password={SECRET}", "redis://127.0.0.1:6379/0?password=***"),
    (f"redis://h/0?db=1&PASSWORD={SECRET}&x=1", "redis://h/0?db=1&PASSWORD=***&x=1"),
    (f"rediss://alice:{SECRET}@h:6380/0", "rediss://alice:***@h:6380/0"),
    (f"rediss://h:6380/0?password={SECRET}", "rediss://h:6380/0?password=***"),
    (f"unix://:{SECRET}@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
    (f"redis://alice:{SECRET}@extra@h/0", "redis://alice:***@h/0"),
])
def test_every_credential_form_is_redacted_and_the_address_stays(url, shown):
    assert redact(url) == shown


@pytest.mark.parametrize("url", ["redis://alice@h:6379/0", "redis://h:6379/0?db=2", "h:6379"])
def test_a_url_without_a_password_is_shown_as_it_is(url):
    assert redact(url) == url


def test_a_password_that_shows_elsewhere_hides_the_whole_url():
    assert redact("redis://:0@h/0") == "redis://***"
    assert redact(f"redis://:{SECRET}@h/{SECRET}") == "redis://***"


def test_an_unusable_url_is_refused_without_its_password():
    with pytest.raises(ValueError) as refused:
        check(f"http://alice:{SECRET}@h/0")
    assert SECRET not in str(refused.value)
    assert "alice:***@h" in str(refused.value)
