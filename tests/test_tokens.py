"""Signed tokens: round trip, tampering, purposes kept apart, key rotation."""
from __future__ import annotations

import pytest

from subscribers.errors import InvalidToken
from subscribers.tokens import Claim, Signup, TokenSigner


def test_round_trip_and_no_expiry_for_unsubscribe() -> None:
    signer = TokenSigner(["k1"])
    assert signer.read_unsubscribe_token(signer.unsubscribe_token(12, 3, 1)) == Claim(12, 3, 1)


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature changed
    lambda t: "Wzk5LDMsMV0" + t[t.index("."):],  # payload swapped for subscriber 99
    lambda t: t.split(".")[0],  # signature removed
    lambda t: "",
    lambda t: "not-a-token",
])
def test_tampered_tokens_are_rejected(mutate) -> None:  # type: ignore[no-untyped-def]
    signer = TokenSigner(["k1"])
    with pytest.raises(InvalidToken, match="not valid"):
        signer.read_unsubscribe_token(mutate(signer.unsubscribe_token(12, 3, 1)))


def test_purposes_do_not_mix() -> None:
    signer = TokenSigner(["k1"])
    with pytest.raises(InvalidToken):
        signer.read_manage_token(signer.unsubscribe_token(1, 1, 0))
    with pytest.raises(InvalidToken):
        signer.read_unsubscribe_token(signer.signup_token(Signup("a@example.org", "", "it", (1,), "v1")))


def test_rotation_newest_signs_all_verify() -> None:
    old = TokenSigner(["old"]).unsubscribe_token(5, 1, 0)
    rotated = TokenSigner(["new", "old"])
    assert rotated.read_unsubscribe_token(old) == Claim(5, 1, 0)
    fresh = rotated.unsubscribe_token(5, 1, 0)
    assert TokenSigner(["new"]).read_unsubscribe_token(fresh) == Claim(5, 1, 0)
    with pytest.raises(InvalidToken):
        TokenSigner(["old"]).read_unsubscribe_token(fresh)
    with pytest.raises(InvalidToken):
        TokenSigner(["other"]).read_unsubscribe_token(old)


def test_confirmation_links_expire() -> None:
    signer = TokenSigner(["k"], confirm_max_age=-1)
    with pytest.raises(InvalidToken, match="expired"):
        signer.read_signup_token(signer.signup_token(Signup("a@example.org", "", "it", (1,), "v1")))


def test_bounce_tags() -> None:
    signer = TokenSigner(["k"])
    assert signer.read_bounce_tag(signer.bounce_tag(77)) == 77
    with pytest.raises(InvalidToken):
        signer.read_bounce_tag("78." + signer.bounce_tag(77).split(".")[1])


def test_links_signed_before_the_key_cache_still_open_and_new_ones_read_the_same() -> None:
    from itsdangerous import Signer, URLSafeSerializer

    keys = ["older-key-0123456789abcdef0123456789", "newest-key-0123456789abcdef01234567"]
    signer = TokenSigner(list(reversed(keys)))
    plain = URLSafeSerializer(keys, salt="unsubscribe")  # as every link in mail already sent was signed
    assert signer.read_unsubscribe_token(plain.dumps([7, 3, 2, 11])).subscriber_id == 7
    assert signer.unsubscribe_token(7, 3, 2, 11) == plain.dumps([7, 3, 2, 11])  # the very same bytes
    assert signer.manage_token(7, 2, 11) == URLSafeSerializer(keys, salt="manage").dumps([7, 0, 2, 11])
    assert signer.bounce_tag(42) == Signer(keys, salt="bounce", sep=".").sign(b"42").decode()
    for claim in ([0, 0, 0], [1, 2, 3], [2**40, 17, 0, 99999], [5, 0, 12, 1]):  # the short way of writing them, too
        assert signer.unsubscribe_token(*claim) == plain.dumps(claim)
