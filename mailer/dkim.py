"""DKIM signatures (RFC 6376) for the messages we build, with keys from `cryptography`.

Canonicalisation relaxed/simple: headers relaxed, the body simple, which is the body exactly as we write it
(CRLF lines, no trailing blank lines), so its hash can start once per issue and be finished per recipient
(mailer.message). The headers are signed per recipient: one RSA-2048 or Ed25519 (RFC 8463) signature.

The list headers are over-signed (named once more than they occur): a relay that adds a second
List-Unsubscribe breaks the signature, which RFC 8058 requires of one-click unsubscribe.
Signatures are verified in the tests by dkimpy, an implementation we did not write.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mailer.errors import SettingsError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

SIGNED_HEADERS = (
    "from", "to", "subject", "date", "message-id", "reply-to", "mime-version", "content-type",
    "list-id", "list-unsubscribe", "list-unsubscribe-post",
)
OVER_SIGNED = ("from", "subject", "list-id", "list-unsubscribe", "list-unsubscribe-post")  # no one may add another
H_TAG = ":".join(SIGNED_HEADERS + OVER_SIGNED)
H_TAG_FOLDED = ":\r\n\t".join(  # lines within 78 columns; verifiers ignore whitespace around the colons
    [":".join(SIGNED_HEADERS[:6]), ":".join(SIGNED_HEADERS[6:]), ":".join(OVER_SIGNED)]
)
_WSP = re.compile(rb"[ \t]+")
_FOLD = re.compile(rb"\r\n(?=[ \t])")


@dataclass(frozen=True)
class DkimKey:
    """A private key and the selector under which its public half is published."""

    private_key: "RSAPrivateKey | Ed25519PrivateKey"
    selector: str
    domain: str = ""  # empty: the domain of each newsletter's From address

    @property
    def algorithm(self) -> str:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return "ed25519-sha256" if isinstance(self.private_key, Ed25519PrivateKey) else "rsa-sha256"


def load_key(path: str | Path, selector: str, domain: str = "") -> DkimKey:
    """The PEM private key at `path` (RSA of 2048 bits or more, or Ed25519); one clear error otherwise."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    check_selector(selector)
    try:
        key = load_pem_private_key(Path(path).read_bytes(), password=None)
    except OSError as exc:
        raise SettingsError(f"cannot read the DKIM key {path}: {exc.strerror or exc}") from None
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"the DKIM key {path} is not an unencrypted PEM private key ({exc})") from None
    if isinstance(key, RSAPrivateKey):
        if key.key_size < 2048:
            raise SettingsError(f"the DKIM key {path} is RSA-{key.key_size}: receivers want 2048 bits or more")
    elif not isinstance(key, Ed25519PrivateKey):
        raise SettingsError(f"the DKIM key {path} is a {type(key).__name__}: use RSA-2048 or Ed25519")
    return DkimKey(key, selector, domain.lower())


def check_selector(selector: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", selector or ""):
        raise SettingsError(f"a DKIM selector is a DNS label such as 'wip2026' (letters, digits, '-'), got {selector!r}")


def generate_key(algorithm: str = "rsa") -> bytes:
    """A new private key, PEM (PKCS#8): RSA-2048 or Ed25519."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if algorithm == "rsa" else ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def write_new_key(path: Path, algorithm: str) -> None:
    """A new key at `path`, readable by its owner only; an existing file is never replaced."""
    if algorithm not in ("rsa", "ed25519"):
        raise SettingsError(f"unknown key algorithm {algorithm!r}: rsa or ed25519")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "xb", opener=lambda name, flags: os.open(name, flags, 0o600)) as out:
            out.write(generate_key(algorithm))
    except FileExistsError:
        raise SettingsError(f"{path} exists: keep it, or choose another --out (a key is never overwritten)") from None
    except OSError as exc:
        raise SettingsError(f"cannot write the DKIM key {path}: {exc.strerror or exc}") from None


def dns_record(key: DkimKey, domain: str) -> str:
    """The TXT record to publish, in zone-file form (strings of at most 255 characters)."""
    from cryptography.hazmat.primitives import serialization

    public = key.private_key.public_key()
    if key.algorithm == "rsa-sha256":
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        value = f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    else:
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        value = f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    strings = " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))
    return f"{key.selector}._domainkey.{domain}. IN TXT ( {strings} )"


def txt_value(record: str) -> bytes:
    """The TXT data of a record made by dns_record (its strings joined), as a DNS answer gives it."""
    return "".join(re.findall(r'"([^"]*)"', record)).encode("ascii")


def body_hash_start() -> "hashlib._Hash":
    """A SHA-256 to feed the body with; simple canonicalisation leaves our bodies unchanged, as long as
    they end in exactly one CRLF (MessageBuilder's do: the closing MIME boundary line)."""
    return hashlib.sha256()


class DkimSigner:
    """Signs the messages of one newsletter: the d= domain and key fixed, the header part per message."""

    def __init__(self, key: DkimKey, domain: str) -> None:
        self.key = key
        self.domain = key.domain or domain.lower()
        self.prefix = f"v=1; a={key.algorithm}; c=relaxed/simple;\r\n\td={self.domain}; s={key.selector};"
        self._below: tuple[bytes, dict[str, list[bytes]]] = (b"", {})  # the shared headers, canonicalised

    def header(self, headers: bytes, body_sha256: bytes, *, timestamp: int | None = None, below: bytes = b"") -> bytes:
        """The DKIM-Signature header (folded, CRLF-terminated) for a message whose header block is
        `headers` + `below` (CRLF-terminated lines) and whose body hashed to `body_sha256`. `below` is the
        part every message of the issue shares: it is canonicalised once."""
        stamp = int(time.time()) if timestamp is None else timestamp
        value = (
            f" {self.prefix} t={stamp};\r\n\th={H_TAG_FOLDED};\r\n\tbh={base64.b64encode(body_sha256).decode()};\r\n\tb="
        ).encode("ascii")
        unsigned = b"DKIM-Signature:" + value
        if below and below is not self._below[0]:
            self._below = (below, relaxed_fields(below))
        data = canonical_headers(headers, SIGNED_HEADERS + OVER_SIGNED, self._below[1] if below else None) + _relaxed(unsigned)
        signature = base64.b64encode(self._sign(data))
        folded = b"\r\n\t".join(signature[i:i + 72] for i in range(0, len(signature), 72))
        return unsigned + folded + b"\r\n"

    def _sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        if self.key.algorithm == "rsa-sha256":
            return self.key.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[call-arg,union-attr]
        return self.key.private_key.sign(hashlib.sha256(data).digest())  # type: ignore[call-arg]  # RFC 8463


def relaxed_fields(block: bytes) -> dict[str, list[bytes]]:
    """Each header of `block`, relaxed and CRLF-terminated, by lower-case name, top to bottom."""
    fields: dict[str, list[bytes]] = {}
    for line in _FOLD.sub(b"", block).split(b"\r\n"):
        if b":" in line:
            name = line.split(b":", 1)[0].strip().lower().decode("ascii")
            fields.setdefault(name, []).append(_relaxed(line) + b"\r\n")
    return fields


def canonical_headers(block: bytes, names: tuple[str, ...], below: Mapping[str, list[bytes]] | None = None) -> bytes:
    """The relaxed canonical form of the named headers, in h= order: a name repeated in h= takes the next
    occurrence from the bottom; a name with no occurrence left contributes nothing (over-signing).
    `below`: the relaxed_fields() of headers that follow `block` in the message, made once by the caller."""
    fields = relaxed_fields(block)
    for name, found in (below or {}).items():
        fields[name] = [*fields.get(name, ()), *found]  # a copy: taking occurrences must not empty the caller's
    out = []
    for name in names:
        found = fields.get(name)
        if found:
            out.append(found.pop())
    return b"".join(out)


def _relaxed(field: bytes) -> bytes:
    """One header, relaxed (RFC 6376 3.4.2): name lower-cased, unfolded, whitespace runs to one space,
    none around the colon or at the end."""
    name, _, value = _FOLD.sub(b"", field.rstrip(b"\r\n")).partition(b":")
    return name.strip().lower() + b":" + _WSP.sub(b" ", value).strip(b" \t")
