"""JwtVerifier against a real (stand-in) identity provider on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from joserfc import jwt

from adapters.auth.oidc import JwtVerifier
from core.errors import Unauthenticated
from tests.auth.conftest import AUDIENCE, FakeClock, IdentityProvider

MakeVerifier = Callable[..., JwtVerifier]


@pytest.fixture
async def make_verifier(idp: IdentityProvider) -> AsyncIterator[MakeVerifier]:
    made: list[JwtVerifier] = []

    def make(**options) -> JwtVerifier:
        options.setdefault("audience", AUDIENCE)
        verifier = JwtVerifier(options.pop("issuer", idp.issuer), **options)
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        await verifier.aclose()


async def refused(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await verifier.verify(token)
    return caught.value.message


async def test_valid_token_returns_its_claims(idp, make_verifier):
    verifier = make_verifier()
    claims = await verifier.verify(idp.token(sub="alice"))
    assert claims["sub"] == "alice"
    assert claims["permissions"] == ["workflow:billing:*"]
    assert idp.discovery_hits == 1 and idp.jwks_hits == 1


async def test_keys_are_cached_between_tokens(idp, make_verifier):
    verifier = make_verifier()
    for n in range(3):
        await verifier.verify(idp.token(sub=f"user-{n}"))
    assert idp.jwks_hits == 1


async def test_wrong_issuer_is_refused(idp, make_verifier):
    message = await refused(make_verifier(), idp.token(iss="https://evil.example.com"))
    assert "issuer" in message


async def test_issuer_trailing_slash_is_tolerated(idp, make_verifier):
    claims = await make_verifier().verify(idp.token(iss=idp.issuer + "/"))
    assert claims["iss"] == idp.issuer + "/"


async def test_wrong_audience_is_refused(idp, make_verifier):
    message = await refused(make_verifier(), idp.token(aud="someone-else"))
    assert "audience" in message


async def test_missing_audience_is_refused_when_configured(idp, make_verifier):
    message = await refused(make_verifier(), idp.token(aud=None))
    assert "aud" in message


async def test_audience_is_not_checked_when_not_configured(idp, make_verifier):
    claims = await make_verifier(audience=None).verify(idp.token(aud="anything"))
    assert claims["aud"] == "anything"


async def test_audience_list_containing_ours_is_accepted(idp, make_verifier):
    claims = await make_verifier().verify(idp.token(aud=["other", AUDIENCE]))
    assert AUDIENCE in claims["aud"]


async def test_expired_token_is_refused(idp, make_verifier):
    message = await refused(make_verifier(), idp.token(exp=int(time.time()) - 120))
    assert "expired" in message


async def test_expiry_within_leeway_passes_and_clock_is_injected(idp, make_verifier):
    exp = int(time.time()) + 60
    token = idp.token(exp=exp)
    assert await make_verifier(clock=FakeClock(exp + 10), leeway=30).verify(token)
    message = await refused(make_verifier(clock=FakeClock(exp + 31), leeway=30), token)
    assert "expired" in message


async def test_token_without_exp_is_refused(idp, make_verifier):
    message = await refused(make_verifier(), idp.token(exp=None))
    assert "exp" in message


async def test_token_signed_by_another_key_is_refused(idp, make_verifier, rsa_keys):
    rogue = rsa_keys["rogue"]
    # Same kid as the published key, so the signature check itself must catch it.
    forged = jwt.encode({"alg": "RS256", "kid": idp.signing.kid}, idp.claims(), rogue)
    message = await refused(make_verifier(), forged)
    assert "signature" in message


async def test_alg_none_is_refused(idp, make_verifier):
    message = await refused(make_verifier(), idp.unsigned())
    assert "'none'" in message


async def test_hs256_signed_with_the_public_key_is_refused(idp, make_verifier):
    message = await refused(make_verifier(), idp.forged_hs256())
    assert "HS256" in message


def test_symmetric_algorithms_cannot_be_configured():
    for algorithms in (["RS256", "HS256"], ["none"], []):
        with pytest.raises(ValueError):
            JwtVerifier("https://idp.example.com", algorithms=algorithms)


async def test_garbage_is_refused(idp, make_verifier):
    verifier = make_verifier()
    for token in ("not-a-jwt", "a.b.c", ""):
        await refused(verifier, token)


async def test_key_rotation_refetches_once(idp, make_verifier, rsa_keys):
    clock = FakeClock()
    verifier = make_verifier(clock=clock)
    await verifier.verify(idp.token())
    clock.now += 60
    idp.rotate(rsa_keys["key-2"])
    claims = await verifier.verify(idp.token(sub="after-rotation"))
    assert claims["sub"] == "after-rotation"
    assert idp.jwks_hits == 2
    # The new key is now cached: no further download.
    await verifier.verify(idp.token())
    assert idp.jwks_hits == 2


async def test_unknown_kid_refetch_is_rate_limited(idp, make_verifier, rsa_keys):
    clock = FakeClock()
    verifier = make_verifier(clock=clock, refetch_interval=30)
    await verifier.verify(idp.token())
    unknown = idp.token(key=rsa_keys["rogue"])  # kid "rogue" is never published
    assert "unknown key id" in await refused(verifier, unknown)
    assert idp.jwks_hits == 1  # the first fetch was just now: no refetch yet
    clock.now += 31
    for _ in range(5):
        await refused(verifier, unknown)
    assert idp.jwks_hits == 2  # one refetch for five tries
    clock.now += 31
    idp.rotate(rsa_keys["key-2"])
    assert await verifier.verify(idp.token())
    assert idp.jwks_hits == 3


async def test_concurrent_unknown_kids_share_one_refetch(idp, make_verifier, rsa_keys):
    clock = FakeClock()
    verifier = make_verifier(clock=clock)
    await verifier.verify(idp.token())
    clock.now += 60
    idp.rotate(rsa_keys["key-2"])
    tokens = [idp.token(sub=f"u{n}") for n in range(8)]
    results = await asyncio.gather(*(verifier.verify(t) for t in tokens))
    assert [c["sub"] for c in results] == [f"u{n}" for n in range(8)]
    assert idp.jwks_hits == 2


async def test_missing_discovery_falls_back_to_jwks_json(idp, make_verifier):
    idp.discovery = False
    claims = await make_verifier().verify(idp.token())
    assert claims["sub"] == "user-1"
    assert idp.discovery_hits == 1 and idp.jwks_hits == 1


async def test_discovery_for_another_issuer_is_not_trusted(idp, make_verifier):
    idp.discovery_issuer = "https://evil.example.com"
    message = await refused(make_verifier(), idp.token())
    assert "unavailable" in message
    assert idp.jwks_hits == 0


async def test_explicit_jwks_uri_skips_discovery(idp, make_verifier):
    verifier = make_verifier(jwks_uri=idp.issuer + idp.jwks_path)
    assert await verifier.verify(idp.token())
    assert idp.discovery_hits == 0


async def test_unreachable_idp_is_unauthenticated_not_a_crash(make_verifier):
    verifier = make_verifier(issuer="http://127.0.0.1:9", timeout=2.0)
    message = await refused(verifier, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
    assert "unavailable" in message


async def test_verify_token_gives_the_sdk_access_token(idp, make_verifier):
    verifier = make_verifier()
    token = idp.token(sub="bob", scope="read write", azp="client-9")
    access = await verifier.verify_token(token)
    assert access is not None
    assert (access.subject, access.client_id, access.scopes) == (
        "bob",
        "client-9",
        ["read", "write"],
    )
    assert await verifier.verify_token(idp.token(aud="other")) is None


async def test_access_token_types(idp, make_verifier):
    verifier = make_verifier()
    for typ in ("at+jwt", "application/at+JWT", "JWT"):
        assert await verifier.verify(idp.token(typ=typ))
    message = await refused(verifier, idp.token(typ="logout+jwt"))
    assert "not an access token" in message
