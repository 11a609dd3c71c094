"""A real IMAP server for the tests: Debian's Dovecot over TLS on a loopback port, with one user and Maildir mail.

Each server writes its own config, certificate, passwd-file, mail and logs into a fresh temporary folder and runs
`dovecot -F -c CONFIG` in the foreground as a child process: no systemd, no /etc/dovecot, no system service.

    from tests.imap_server import imap_server   # the fixture; or use ImapServer() as a context manager

    def test_reader(imap_server):
        imap_server.deliver("INBOX", b"From: a@example.org\\r\\nSubject: x\\r\\n\\r\\nbody\\r\\n")
        url = imap_server.url("INBOX", processed="Processed")   # imaps://bounces:PW@127.0.0.1:PORT/INBOX?processed=...
        ...  # the code under test trusts imap_server.cafile (or imap_server.ssl_context())
        assert len(imap_server.messages("Processed")) == 1

Missing Dovecot skips the tests, unless MAILER_REQUIRE_IMAP=1 (as `.ci/run` sets after installing dovecot-imapd),
in which case it fails them.
"""
from __future__ import annotations

import ctypes
import datetime
import grp
import imaplib
import ipaddress
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
HOST = "127.0.0.1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


def require_dovecot() -> None:
    """Skip the calling test when Dovecot is not installed, unless CI requires it
    (`.ci/run` installs dovecot-imapd and sets MAILER_REQUIRE_IMAP=1: then a missing Dovecot fails)."""
    if Path(DOVECOT).exists():
        return
    if os.environ.get("MAILER_REQUIRE_IMAP"):
        pytest.fail("MAILER_REQUIRE_IMAP is set but Dovecot is not installed (apt-get install dovecot-imapd)",
                    pytrace=False)
    pytest.skip("Dovecot is not installed (CI installs dovecot-imapd and sets MAILER_REQUIRE_IMAP=1)")


def _die_with_parent() -> None:
    """In the child before exec: Linux sends Dovecot SIGTERM if the test process dies without stopping it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _write_certificate(cert_path: Path, key_path: Path) -> None:
    """A self-signed certificate for 127.0.0.1 (IP SAN, so check_hostname works) and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)


def _children(pid: int) -> set[int]:
    """Every live descendant of `pid` (Dovecot's auth, config, log, imap-login, imap... processes)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        if fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


class ImapServer:
    """Dovecot serving IMAPS on 127.0.0.1:`port` for one user (`user`/`password`), Maildir under `root`/mail.

    Use as a context manager (or call start()/stop()). The certificate is self-signed: trust `cafile`."""

    def __init__(self, user: str = "bounces", password: str | None = None) -> None:
        self.host = HOST
        self.port = 0
        self.user = user
        # Characters that must be URL-quoted, to catch a reader that forgets to unquote; none that the
        # passwd-file (':') or Dovecot's variable expansion ('%') would take specially.
        self.password = password if password is not None else "p@ss/" + secrets.token_urlsafe(12) + "+?#"
        self.root = Path()
        self.cafile = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0
        self._children: set[int] = set()

    # --- life cycle -------------------------------------------------------------------------------------------

    def __enter__(self) -> "ImapServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        began = time.monotonic()
        # mkdtemp is 0700; Dovecot's unprivileged processes (dovenull, the mail user) must traverse it.
        self.root = Path(tempfile.mkdtemp(prefix="mailer-imap-"))
        self.root.chmod(0o755)
        cert, key = self.root / "cert.pem", self.root / "key.pem"
        _write_certificate(cert, key)
        self.cafile = str(cert)
        try:
            for attempt in range(3):  # the free port may be taken between picking and binding it
                self.port = _free_port()
                self._write_config()
                if self._launch():
                    break
                if attempt == 2 or "in use" not in self.log():
                    raise RuntimeError(f"Dovecot did not start on {HOST}:{self.port}:\n{self.log()}")
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def _write_config(self) -> None:
        root = self.root
        if os.geteuid() == 0:
            # Dovecot runs its internal and login processes unprivileged, and mail as an ordinary uid.
            internal_user, login_user = "dovecot", "dovenull"
            mail = pwd.getpwnam("nobody")
            chroot = "login"
        else:  # a developer's own account: everything runs as that user, and without chroots
            internal_user = login_user = pwd.getpwuid(os.geteuid()).pw_name
            mail = pwd.getpwuid(os.geteuid())
            chroot = ""
        for sub in ("base", "state", "mail"):
            shutil.rmtree(root / sub, ignore_errors=True)
        (root / "state").mkdir()
        (root / "mail").mkdir()
        os.chown(root / "mail", mail.pw_uid, mail.pw_gid)
        (root / "dovecot.log").unlink(missing_ok=True)
        (root / "users").write_text(
            f"{self.user}:{{PLAIN}}{self.password}:{mail.pw_uid}:{mail.pw_gid}::{root / 'mail' / self.user}::\n")
        (root / "users").chmod(0o600)  # read by the auth process, which runs as the internal user
        internal = pwd.getpwnam(internal_user)
        os.chown(root / "users", internal.pw_uid, internal.pw_gid)
        (root / "dovecot.conf").write_text(f"""\
# Written by tests/imap_server.py for one test server; nothing here comes from /etc/dovecot.
protocols = imap
listen = {HOST}
base_dir = {root / 'base'}
state_dir = {root / 'state'}
log_path = {root / 'dovecot.log'}
info_log_path = {root / 'dovecot.log'}
instance_name = mailer-test-{self.port}
default_internal_user = {internal_user}
default_internal_group = {grp.getgrgid(internal.pw_gid).gr_name}
default_login_user = {login_user}
first_valid_uid = {min(mail.pw_uid, 500)}
first_valid_gid = 1
login_greeting = Mailer test IMAP ready.
shutdown_clients = yes

ssl = required
ssl_cert = <{root / 'cert.pem'}
ssl_key = <{root / 'key.pem'}
ssl_min_protocol = TLSv1.2

auth_mechanisms = plain login
# A wrong password is refused at once, not after the default 2 s.
auth_failure_delay = 0
disable_plaintext_auth = yes
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root / 'users'}
}}
userdb {{
  driver = passwd-file
  args = {root / 'users'}
}}

mail_location = maildir:{root / 'mail'}/%u
namespace inbox {{
  inbox = yes
  separator = /
}}

service imap-login {{
  chroot = {chroot}
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {self.port}
    ssl = yes
  }}
}}
service anvil {{
  chroot = {"empty" if chroot else ""}
  # No auth penalty: with it, each further wrong password from 127.0.0.1 would wait 2, 4, 8... s.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
""")

    def _launch(self) -> bool:
        """Start Dovecot and wait until it greets over TLS; False if it died (e.g. its port was taken)."""
        stderr = open(self.root / "stderr.log", "wb")
        try:
            self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
                                            stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                            start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            stderr.close()
        context = self.ssl_context()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                self.process = None
                return False
            try:
                with socket.create_connection((HOST, self.port), timeout=1) as raw, \
                        context.wrap_socket(raw, server_hostname=HOST) as tls:
                    if tls.recv(200).startswith(b"* OK"):
                        self._children = _children(self.process.pid)
                        return True
            except (OSError, ssl.SSLError):
                pass
            if time.monotonic() > deadline:
                log = self.log()
                self.stop()
                raise RuntimeError(f"Dovecot did not accept IMAPS connections on {HOST}:{self.port} "
                                   f"within {START_TIMEOUT:.0f} s:\n{log}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop Dovecot and every process it started; raises if any outlives the timeout (they are then killed).

        SIGTERM goes to the whole process group that this server leads (start_new_session), not just the master:
        told alone, the master waits about a second for its log process to linger out; this way the shutdown
        takes a few milliseconds."""
        process, self.process = self.process, None
        if process is not None:
            children = self._children | _children(process.pid)
            _signal_group(process.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
            while (left := {pid for pid in children if _alive(pid)}) and time.monotonic() < deadline:
                time.sleep(0.005)
            if process.poll() is None or left:
                _signal_group(process.pid, signal.SIGKILL)
                for pid in left:
                    _signal(pid, signal.SIGKILL)
                process.wait()
                raise RuntimeError(f"Dovecot (pid {process.pid}, children {sorted(left)}) did not stop within "
                                   f"{STOP_TIMEOUT:.0f} s:\n{self.log()}")
        if self.root != Path() and self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        """Dovecot's own log, and whatever it printed before opening it."""
        parts = []
        for name in ("stderr.log", "dovecot.log"):
            path = self.root / name
            if path.exists() and (text := path.read_text(errors="replace").strip()):
                parts.append(f"--- {name}\n{text}")
        return "\n".join(parts) or "(Dovecot logged nothing)"

    # --- for tests --------------------------------------------------------------------------------------------

    def url(self, folder: str = "INBOX", **params: object) -> str:
        """imaps://USER:PASSWORD@127.0.0.1:PORT/FOLDER?PARAMS, user, password and folder URL-quoted."""
        url = f"imaps://{quote(self.user, safe='')}:{quote(self.password, safe='')}@{self.host}:{self.port}/" \
              f"{quote(folder, safe='/')}"
        return url + ("?" + urlencode(params) if params else "")

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies the server against `cafile`, host name included."""
        return ssl.create_default_context(cafile=self.cafile)

    def connect(self) -> imaplib.IMAP4_SSL:
        """A logged-in imaplib client (log it out when done)."""
        client = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=self.ssl_context(), timeout=10)
        try:
            client.login(self.user, self.password)
        except BaseException:
            client.shutdown()
            raise
        return client

    def create(self, folder: str) -> None:
        """Create `folder` unless it exists."""
        client = self.connect()
        try:
            _ensure_folder(client, folder)
        finally:
            client.logout()

    def deliver(self, folder: str, message: bytes) -> None:
        """Put `message` into `folder` by IMAP APPEND, creating the folder if needed.
        (imaplib's APPEND turns every line ending into CRLF.)"""
        client = self.connect()
        try:
            _ensure_folder(client, folder)
            typ, data = client.append(_mailbox(folder), None, None, message)
            if typ != "OK":
                raise RuntimeError(f"APPEND to {folder!r} failed: {data!r}")
        finally:
            client.logout()

    def messages(self, folder: str = "INBOX") -> list[bytes]:
        """Every message of `folder`, in order, as stored (without marking them \\Seen)."""
        client = self.connect()
        try:
            typ, data = client.select(_mailbox(folder), readonly=True)
            if typ != "OK":
                raise RuntimeError(f"SELECT {folder!r} failed: {data!r}")
            if int(data[0]) == 0:
                return []
            typ, data = client.fetch("1:*", "(BODY.PEEK[])")
            if typ != "OK":
                raise RuntimeError(f"FETCH in {folder!r} failed: {data!r}")
            return [item[1] for item in data if isinstance(item, tuple)]
        finally:
            client.logout()

    def folders(self) -> list[str]:
        """The names of every folder of the user."""
        client = self.connect()
        try:
            return _folders(client)
        finally:
            client.logout()


def _mailbox(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


_LIST_LINE = re.compile(rb'\((?P<flags>[^)]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) (?P<name>.+)$')


def _folders(client: imaplib.IMAP4) -> list[str]:
    typ, data = client.list()
    if typ != "OK":
        raise RuntimeError(f"LIST failed: {data!r}")
    names = []
    for line in data:
        if isinstance(line, tuple):  # a name sent as a literal
            names.append(line[1].decode())
        elif line and (m := _LIST_LINE.match(line)):
            name = m["name"]
            if name.startswith(b'"'):
                name = re.sub(rb"\\(.)", rb"\1", name[1:-1])
            names.append(name.decode())
    return names


def _ensure_folder(client: imaplib.IMAP4, folder: str) -> None:
    if folder.upper() == "INBOX" or folder in _folders(client):
        return
    typ, data = client.create(_mailbox(folder))
    if typ != "OK":
        raise RuntimeError(f"CREATE {folder!r} failed: {data!r}")


@pytest.fixture
def imap_server() -> Iterator[ImapServer]:
    """A fresh Dovecot IMAPS server for one test (skips without Dovecot, unless MAILER_REQUIRE_IMAP=1)."""
    require_dovecot()
    with ImapServer() as server:
        yield server
