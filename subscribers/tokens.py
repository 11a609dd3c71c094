"""Signed tokens (itsdangerous): one salt per purpose, a list of keys for rotation (newest signs, all verify).

Unsubscribe and manage links never expire; signup confirmations (7 days), the unsubscribe form's links (24 h)
and form stamps do. Subscriber tokens carry the subscriber's token version, so the store can revoke every
link of one subscriber by bumping it; a signup confirmation carries the whole request instead.
"""
from __future__ import annotations

import binascii
import functools
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from itsdangerous import BadData, Serializer, SignatureExpired, Signer, URLSafeSerializer, URLSafeTimedSerializer, base64_encode, want_bytes
from itsdangerous.signer import HMACAlgorithm

from subscribers.errors import InvalidToken

UNSUBSCRIBE = "unsubscribe"
MANAGE = "manage"
BOUNCE = "bounce"
SIGNUP = "signup"
UNSUBSCRIBE_LINK = "unsubscribe-link"
FORM = "form"


@dataclass(frozen=True)
class Claim:
    """What a valid subscriber token says: who, which list (0 for all), which token version, and the
    campaign whose message carried the link (0 when none)."""

    subscriber_id: int
    list_id: int
    version: int
    campaign_id: int = 0


@dataclass(frozen=True)
class Signup:
    """A subscription request, carried whole by its confirmation link: nothing is stored until it is confirmed."""

    email: str
    name: str
    language: str
    list_ids: tuple[int, ...]
    consent_version: str
    requested_at: datetime | None = None  # when the link was signed (set when a token is read)


@functools.lru_cache(maxsize=64)
def _derived_key(secret_key: bytes, salt: bytes, derivation: str, digest: Any) -> bytes:
    return Signer(secret_key, salt=salt, key_derivation=derivation, digest_method=digest).derive_key()


class KeyCachingSigner(Signer):
    """itsdangerous's Signer, with each (key, salt) derivation made once per process instead of on every
    token, and the HMAC in one call (hmac.digest): a campaign signs three tokens per recipient. The tokens are the
    same bytes the plain Signer makes (tests/test_tokens.py)."""

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        key = self.secret_keys[-1] if secret_key is None else want_bytes(secret_key)
        return _derived_key(key, self.salt, self.key_derivation, self.digest_method)

    def get_signature(self, value: str | bytes) -> bytes:
        if type(self.algorithm) is not HMACAlgorithm:
            return super().get_signature(value)
        key = self.__dict__.get("_key")
        if key is None:  # the newest key, derived once per signer (older keys only ever verify)
            key = self.__dict__["_key"] = self.derive_key()
            # by name ('sha1'), hmac.digest takes OpenSSL's one-shot HMAC; itsdangerous's lazy sha1 wrapper would not
            self.__dict__["_digest"] = self.algorithm.digest_method().name
        return _urlsafe_b64(hmac.digest(key, value if type(value) is bytes else want_bytes(value), self.__dict__["_digest"]))


def _urlsafe_b64(data: bytes) -> bytes:
    """itsdangerous's base64_encode (URL-safe alphabet, no padding) for bytes, without its type checks."""
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


_URLSAFE = bytes.maketrans(b"+/", b"-_")


class CompactSerializer(URLSafeSerializer):
    """URLSafeSerializer without its zlib attempt: our payloads are a few small integers, which compression
    never shortens (so the token is unchanged), yet trying it was a third of the cost of each token.
    A list of integers (every link of every message) is written as the JSON encoder would write it and
    signed by one signer made once: the same bytes (tests/test_tokens.py), at a third of the cost."""

    def dump_payload(self, obj: Any) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))

    def dumps(self, obj: Any) -> str:
        if type(obj) is not list or not all(type(v) is int for v in obj):
            return str(super().dumps(obj))
        payload = _urlsafe_b64(("[" + ",".join(map(str, obj)) + "]").encode("ascii"))
        signer = self.__dict__.get("_signer")
        if signer is None:
            signer = self.__dict__["_signer"] = self.make_signer(self.salt)
        return (payload + b"." + signer.get_signature(payload)).decode("ascii")


class TokenSigner:
    def __init__(self, secret_keys: Sequence[str], *, confirm_max_age: int = 7 * 24 * 3600) -> None:
        if not secret_keys:
            raise ValueError("at least one secret key is needed")
        keys = list(reversed(secret_keys))  # settings list newest first; itsdangerous signs with the last
        self._unsubscribe = CompactSerializer(keys, salt=UNSUBSCRIBE, signer=KeyCachingSigner)
        self._manage = CompactSerializer(keys, salt=MANAGE, signer=KeyCachingSigner)
        self._bounce = KeyCachingSigner(keys, salt=BOUNCE, sep=".")
        self._signup = URLSafeTimedSerializer(keys, salt=SIGNUP)
        self._unsubscribe_link = URLSafeTimedSerializer(keys, salt=UNSUBSCRIBE_LINK)
        self._form = URLSafeTimedSerializer(keys, salt=FORM)
        self._confirm_max_age = confirm_max_age

    def unsubscribe_token(self, subscriber_id: int, list_id: int, version: int, campaign_id: int = 0) -> str:
        """The List-Unsubscribe link's token: never expires; names the campaign so the event can say which."""
        claim = [subscriber_id, list_id, version] + ([campaign_id] if campaign_id else [])
        return str(self._unsubscribe.dumps(claim))

    def read_unsubscribe_token(self, token: str) -> Claim:
        return _claim(self._unsubscribe, token, "unsubscribe")

    def manage_token(self, subscriber_id: int, version: int, campaign_id: int = 0) -> str:
        """The preferences link's token: never expires; names the campaign whose message carried it."""
        return str(self._manage.dumps([subscriber_id, 0, version] + ([campaign_id] if campaign_id else [])))

    def read_manage_token(self, token: str) -> Claim:
        return _claim(self._manage, token, "manage")

    def signup_token(self, signup: Signup) -> str:
        return str(self._signup.dumps([signup.email, signup.name, signup.language, list(signup.list_ids), signup.consent_version]))

    def read_signup_token(self, token: str) -> Signup:
        value, signed_at = _load(self._signup, token, "confirmation", max_age=self._confirm_max_age, timestamp=True)
        try:
            email, name, language, list_ids, version = value
            return Signup(str(email), str(name), str(language), tuple(int(i) for i in list_ids), str(version), signed_at)
        except (TypeError, ValueError):
            raise InvalidToken("confirmation link is not valid") from None

    def unsubscribe_link_token(self, subscriber_id: int, version: int) -> str:
        """The link the unsubscribe form mails: valid 24 hours, for every list."""
        return str(self._unsubscribe_link.dumps([subscriber_id, 0, version]))

    def read_unsubscribe_link_token(self, token: str, max_age: int = 24 * 3600) -> Claim:
        return _claim(self._unsubscribe_link, token, "unsubscribe", max_age=max_age)

    def form_stamp(self) -> str:
        """A signed time for a public form: a submission sooner than a person could fill it in is a bot."""
        return str(self._form.dumps("form"))

    def form_age(self, stamp: str, max_age: int = 24 * 3600) -> float:
        """Seconds since the form was served; InvalidToken if the stamp is forged or older than max_age."""
        try:
            _, signed_at = self._form.loads(stamp, max_age=max_age, return_timestamp=True)
        except BadData:
            raise InvalidToken("form is not valid or too old; please fill it in again") from None
        return (datetime.now(timezone.utc) - signed_at).total_seconds()

    def bounce_tag(self, delivery_id: int) -> str:
        """Tag for the per-delivery return path (bounces+TAG@domain): which delivery a bounce is about."""
        return self._bounce.sign(str(delivery_id)).decode("ascii")

    def read_bounce_tag(self, tag: str) -> int:
        try:
            return int(self._bounce.unsign(tag))
        except (BadData, ValueError):
            raise InvalidToken("bounce address tag is not valid") from None


def _load(
    serializer: URLSafeSerializer | URLSafeTimedSerializer, token: str, purpose: str, max_age: int | None = None,
    *, timestamp: bool = False,
) -> Any:
    try:
        if isinstance(serializer, URLSafeTimedSerializer):
            return serializer.loads(token, max_age=max_age, return_timestamp=timestamp)
        return serializer.loads(token)
    except BadData as exc:
        expired = isinstance(exc, SignatureExpired)
        raise InvalidToken(f"{purpose} link {'has expired' if expired else 'is not valid'}") from None


def _claim(serializer: URLSafeSerializer | URLSafeTimedSerializer, token: str, purpose: str, max_age: int | None = None) -> Claim:
    value = _load(serializer, token, purpose, max_age)
    if not (isinstance(value, list) and len(value) in (3, 4) and all(type(v) is int for v in value)):
        raise InvalidToken(f"{purpose} link is not valid")
    return Claim(*value)
