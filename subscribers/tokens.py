"""Signed tokens (itsdangerous): one salt per purpose, a list of keys for rotation (newest signs, all verify).

Unsubscribe and manage links never expire; confirmation links do. Each token carries the subscriber's
token version, so the store can revoke every link of one subscriber by bumping it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from itsdangerous import BadData, Signer, URLSafeSerializer, URLSafeTimedSerializer

from subscribers.errors import InvalidToken

UNSUBSCRIBE = "unsubscribe"
MANAGE = "manage"
CONFIRM = "confirm"
BOUNCE = "bounce"


@dataclass(frozen=True)
class Claim:
    """What a valid subscriber token says: who, which list (0 for all), which token version."""

    subscriber_id: int
    list_id: int
    version: int


class TokenSigner:
    def __init__(self, secret_keys: Sequence[str], *, confirm_max_age: int = 7 * 24 * 3600) -> None:
        if not secret_keys:
            raise ValueError("at least one secret key is needed")
        keys = list(reversed(secret_keys))  # settings list newest first; itsdangerous signs with the last
        self._unsubscribe = URLSafeSerializer(keys, salt=UNSUBSCRIBE)
        self._manage = URLSafeSerializer(keys, salt=MANAGE)
        self._confirm = URLSafeTimedSerializer(keys, salt=CONFIRM)
        self._bounce = Signer(keys, salt=BOUNCE, sep=".")
        self._confirm_max_age = confirm_max_age

    def unsubscribe_token(self, subscriber_id: int, list_id: int, version: int) -> str:
        return str(self._unsubscribe.dumps([subscriber_id, list_id, version]))

    def read_unsubscribe_token(self, token: str) -> Claim:
        return _claim(self._unsubscribe, token, "unsubscribe")

    def manage_token(self, subscriber_id: int, version: int) -> str:
        return str(self._manage.dumps([subscriber_id, 0, version]))

    def read_manage_token(self, token: str) -> Claim:
        return _claim(self._manage, token, "manage")

    def confirm_token(self, subscriber_id: int, list_id: int, version: int) -> str:
        return str(self._confirm.dumps([subscriber_id, list_id, version]))

    def read_confirm_token(self, token: str) -> Claim:
        return _claim(self._confirm, token, "confirmation", max_age=self._confirm_max_age)

    def bounce_tag(self, delivery_id: int) -> str:
        """Tag for the per-delivery return path (bounces+TAG@domain): which delivery a bounce is about."""
        return self._bounce.sign(str(delivery_id)).decode("ascii")

    def read_bounce_tag(self, tag: str) -> int:
        try:
            return int(self._bounce.unsign(tag))
        except (BadData, ValueError):
            raise InvalidToken("bounce address tag is not valid") from None


def _claim(serializer: URLSafeSerializer | URLSafeTimedSerializer, token: str, purpose: str, max_age: int | None = None) -> Claim:
    try:
        if isinstance(serializer, URLSafeTimedSerializer):
            value = serializer.loads(token, max_age=max_age)
        else:
            value = serializer.loads(token)
    except BadData as exc:
        expired = type(exc).__name__ == "SignatureExpired"
        raise InvalidToken(f"{purpose} link {'has expired' if expired else 'is not valid'}") from None
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) for v in value)):
        raise InvalidToken(f"{purpose} link is not valid")
    return Claim(*value)
