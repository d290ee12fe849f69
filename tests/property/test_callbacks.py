"""Properties of completion callbacks' pure rules (core/callbacks.py): which URLs are taken,
which addresses a delivery may reach, when it is told and when it is tried again; and the
signature the sender puts on each attempt, checked against the reference library."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from adapters.http.callback_sender import HttpCallbackSender
from core import callbacks
from core.callbacks import Delivery, address_allowed, check_callback_url, notifies, retry_at
from core.errors import InvalidRequest
from core.model import ExecutionState

LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
HOST = st.lists(LABEL, min_size=1, max_size=4).map(".".join)
PATH = st.from_regex(r"(/[A-Za-z0-9._~-]{0,12}){0,3}", fullmatch=True)
PORT = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
IPV4 = st.ip_addresses(v=4).map(str)
IPV6 = st.ip_addresses(v=6).map(str)


@given(host=HOST, scheme=st.sampled_from(["http", "https"]), port=PORT, path=PATH)
def test_a_url_whose_host_is_listed_is_taken_as_it_is(host, scheme, port, path):
    url = f"{scheme}://{host}{port}{path}"
    assert check_callback_url(url, (host.upper() + ".",)) == url  # case and a root dot aside


@given(host=HOST, other=HOST, port=PORT, path=PATH)
def test_any_host_not_listed_is_refused(host, other, port, path):
    if host == other:
        return
    with pytest.raises(InvalidRequest, match="not in callbacks.allowed_hosts"):
        check_callback_url(f"https://{host}{port}{path}", (other,))
    # Nor does a listed name let its subdomains or look-alikes in.
    for sneaky in (f"x.{other}", f"{other}.evil.test", f"{other}@{host}"):
        with pytest.raises(InvalidRequest):
            check_callback_url(f"https://{sneaky}/", (other,))


@given(
    scheme=st.sampled_from(["ftp", "file", "javascript", "gopher", "data", "ws", ""]),
    host=HOST,
)
def test_schemes_other_than_http_and_https_are_refused(scheme, host):
    with pytest.raises(InvalidRequest):
        check_callback_url(f"{scheme}://{host}/", (host,))


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pw@hooks.test/",
        "https://hooks.test:99999/",
        "https://hooks.test:port/",
        "https://hooks.test:0/",
        "https://h\u00fcoks.test/",
        "https://hooks.test/\udcff",
        "https:///nohost",
        "https://hooks.test/a b",
        "https://hooks.test/\r\nX: y",
        "",
        "hooks.test/path",
        "https://" + "a" * 3000,
    ],
)
def test_malformed_urls_are_refused_with_a_reason(url):
    with pytest.raises(InvalidRequest) as refused:
        check_callback_url(url, ("hooks.test",))
    assert refused.value.message


def test_without_configured_callbacks_every_url_is_refused():
    with pytest.raises(InvalidRequest, match="not configured"):
        check_callback_url("https://hooks.test/", None)


def _effective(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address a delivery would reach: an IPv4-mapped IPv6 address is its IPv4 one."""
    ip = ipaddress.ip_address(text)
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped or ip


def _never(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_unspecified or ip.is_multicast


@given(address=IPV4 | IPV6)
def test_a_name_reaches_only_public_addresses(address):
    ip = _effective(address)
    assert address_allowed("hooks.test", address) == (ip.is_global and not _never(ip))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.5",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "fe80::1%eth0",
        "0.0.0.0",
        "::ffff:127.0.0.1",
        "100.64.0.1",
        "fd00::1",
        "224.0.0.1",
        "not-an-address",
    ],
)
def test_a_name_never_reaches_the_servers_own_network(address):
    assert not address_allowed("hooks.test", address)


@given(address=IPV4 | IPV6, other=IPV4 | IPV6)
def test_an_address_literal_reaches_that_address_only(address, other):
    assert address_allowed(address, address) == (not _never(_effective(address)))
    if _effective(other) != _effective(address):
        assert not address_allowed(address, other)


@given(state=st.sampled_from(ExecutionState), before=st.sampled_from([None, *ExecutionState]))
def test_only_an_arrival_at_a_told_state_is_told(state, before):
    told = state in (
        ExecutionState.COMPLETED,
        ExecutionState.FAILED,
        ExecutionState.CANCELLED,
        ExecutionState.PAUSED,
    )
    assert notifies(state, before) == (told and state != before)


@given(
    created=st.floats(0, 1e9),
    attempts=st.integers(1, 200),
    elapsed=st.floats(0, 2 * callbacks.GIVE_UP_AFTER),
)
def test_retries_back_off_exponentially_within_a_day_of_creation(created, attempts, elapsed):
    now = created + elapsed
    at = retry_at(created, attempts, now)
    wait = min(2.0 ** (attempts - 1), callbacks.LONGEST_WAIT)
    if now + wait > created + callbacks.GIVE_UP_AFTER:
        assert at is None
    else:
        assert at == pytest.approx(now + wait)
        assert at - now <= callbacks.LONGEST_WAIT + 1e-6  # floats aside


def test_the_first_retry_comes_within_ten_seconds():
    assert retry_at(0.0, 1, 5.0) == 6.0
    assert [retry_at(0.0, n, 0.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]


SECRET = "whsec_" + base64.b64encode(b"a test key of thirty-two bytes!!").decode()


@given(
    delivery_id=st.from_regex(r"msg_[0-9a-f]{32}", fullmatch=True),
    body=st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=4),
    now=st.integers(1_700_000_000, 2_000_000_000),
)
def test_every_attempt_is_signed_as_standard_webhooks_says(delivery_id, body, now):
    payload = json.dumps(body, separators=(",", ":"))
    delivery = Delivery(delivery_id, "e1", "https://hooks.test/", payload, now, now)
    headers = HttpCallbackSender(SECRET, ("hooks.test",), clock=lambda: now).headers(delivery)
    assert headers["webhook-id"] == delivery_id
    assert headers["webhook-timestamp"] == str(now)
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{delivery_id}.{now}.{payload}".encode(), hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(mac).decode()


def test_a_receiver_using_the_reference_library_accepts_the_signature():
    payload = json.dumps({"execution_id": "e1", "state": "COMPLETED"})
    delivery = Delivery("msg_1", "e1", "https://hooks.test/", payload, 0.0, 0.0)
    headers = HttpCallbackSender(SECRET, ("hooks.test",)).headers(delivery)
    assert Webhook(SECRET).verify(payload, headers) == json.loads(payload)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(payload.replace("COMPLETED", "FAILED"), headers)
