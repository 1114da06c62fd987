"""The admin API key is compared in constant time: `hmac.compare_digest` decides, for keys of any
length, so the time a refusal takes does not tell how many leading characters were right. An
empty value is never compared (never a key), and a non-ASCII key works when sent UTF-8 encoded."""

from __future__ import annotations

import hmac

import pytest
from fastapi.testclient import TestClient

from service import admin_access
from service.app import create_app

from .conftest import admin_settings

KEY = "s3cret-key"
LOAD = "/v2/repository/models/tiny/load"


@pytest.fixture
def keyed(repository):
    with TestClient(create_app(admin_settings(repository, api_key=KEY))) as client:
        yield client


@pytest.fixture
def comparisons(monkeypatch):
    """Every (given, expected) pair the admin routes compare, through the real compare_digest."""
    calls, real = [], hmac.compare_digest

    def spy(given, expected):
        calls.append((given, expected))
        return real(given, expected)

    monkeypatch.setattr(admin_access.hmac, "compare_digest", spy)
    return calls


@pytest.mark.parametrize("wrong", [
    "s3cret-kex",  # same length, last character wrong
    "x3cret-key",  # same length, first character wrong
    "s3cret",  # a prefix
    "s3cret-key-and-more",  # the key and more
    "\u00e9" * len(KEY),  # not ASCII (a header is latin-1 text)
])
@pytest.mark.parametrize("header", ["X-API-Key", "Authorization"])
def test_a_wrong_key_of_any_length_is_refused_by_compare_digest(keyed, comparisons, wrong,
                                                                header):
    value = f"Bearer {wrong}" if header == "Authorization" else wrong
    response = keyed.post(LOAD, headers={header: value.encode("latin-1")})
    assert response.status_code == 403, response.text
    assert response.json() == {"error": "wrong API key"}
    assert len(comparisons) == 1
    given, expected = comparisons[0]
    assert expected == KEY.encode() and isinstance(given, bytes)


def test_the_right_key_passes_through_compare_digest(keyed, comparisons):
    assert keyed.post(LOAD, headers={"X-API-Key": KEY}).status_code == 200
    assert comparisons == [(KEY.encode(), KEY.encode())]


def test_no_key_is_a_401_without_comparing(keyed, comparisons):
    response = keyed.post(LOAD)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert comparisons == []


@pytest.mark.parametrize("headers", [
    {"X-API-Key": ""}, {"X-API-Key": "   "}, {"Authorization": "Bearer "},
    {"Authorization": "Bearer"}, {"Authorization": "bearer   "},
    {"Authorization": "Basic czNjcmV0LWtleTo="},  # another scheme is no key
    # X-API-Key wins when present, even empty: the right Bearer token beside it does not count.
    {"X-API-Key": "", "Authorization": f"Bearer {KEY}"},
], ids=["x-api-key-empty", "x-api-key-spaces", "bearer-space", "bearer", "bearer-spaces",
        "basic", "empty-beside-bearer"])
def test_an_empty_key_never_authenticates_and_is_never_compared(keyed, comparisons, headers):
    response = keyed.post(LOAD, headers=headers)
    assert response.status_code == 401, response.text
    assert comparisons == []


NON_ASCII_KEY = "cl\u00e9-\u00fc\u00df-\u5bc6\u94a5"


@pytest.mark.parametrize("header", ["X-API-Key", "Authorization"])
def test_a_non_ascii_key_authenticates_when_sent_utf8_encoded(repository, header):
    with TestClient(create_app(admin_settings(repository, api_key=NON_ASCII_KEY))) as client:
        def post(key: bytes):
            value = b"Bearer " + key if header == "Authorization" else key
            return client.post(LOAD, headers={header: value})

        assert post(NON_ASCII_KEY.encode("utf-8")).status_code == 200
        # The same text in another encoding is other bytes: not the key.
        assert post(NON_ASCII_KEY[:6].encode("latin-1")).status_code == 403
        assert post(b"cl\xc3\xa9").status_code == 403  # a prefix


@pytest.mark.parametrize("verdict", [True, False])
def test_compare_digest_alone_decides(keyed, monkeypatch, verdict):
    """No other comparison (==, startswith) sits beside it: its answer is the outcome."""
    monkeypatch.setattr(admin_access.hmac, "compare_digest", lambda given, expected: verdict)
    for key in (KEY, "wrong"):
        status = keyed.post(LOAD, headers={"X-API-Key": key}).status_code
        assert status == (200 if verdict else 403)
