"""Postfix's smtp-sink and smtp-source, the reference the send benchmarks measure against, without running a
mail system: found on PATH or in /usr/sbin, else taken from Debian's postfix package (`apt-get download
postfix`, `dpkg -x` into a cache folder) and run from there with LD_LIBRARY_PATH at its libraries.
Only ever on 127.0.0.1.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wip-mailer" / "postfix"


@dataclass(frozen=True)
class PostfixTools:
    sink: Path
    source: Path
    env: dict[str, str]  # LD_LIBRARY_PATH for an extracted package

    def start_sink(self, port: int) -> subprocess.Popen[bytes]:
        """smtp-sink on 127.0.0.1:port, accepting and discarding every message (-u nobody when run as root)."""
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        process = subprocess.Popen([str(self.sink), *user, f"127.0.0.1:{port}", "256"], env=self.env)
        wait_for_port(port)
        return process

    def run_source(self, port: int, *, messages: int, sessions: int, size: int) -> float:
        """Seconds smtp-source takes for `messages` of `size` bytes over `sessions` connections kept open (-d)."""
        started = time.perf_counter()
        subprocess.run(
            [str(self.source), "-d", "-s", str(sessions), "-m", str(messages), "-l", str(size),
             "-f", "bench@example.org", "-t", "lettore@example.org", f"127.0.0.1:{port}"],
            check=True, env=self.env,
        )
        return time.perf_counter() - started


def find_postfix_tools() -> PostfixTools | None:
    """The tools, downloading Debian's package into the cache if need be; None when that cannot be done."""
    for folder in (None, Path("/usr/sbin")):
        sink = shutil.which("smtp-sink") if folder is None else folder / "smtp-sink"
        source = shutil.which("smtp-source") if folder is None else folder / "smtp-source"
        if sink and source and Path(sink).exists() and Path(source).exists():
            return PostfixTools(Path(sink), Path(source), dict(os.environ))
    extracted = CACHE / "usr" / "sbin"
    if not (extracted / "smtp-sink").exists() and not _extract_package():
        return None
    env = {**os.environ, "LD_LIBRARY_PATH": str(CACHE / "usr" / "lib" / "postfix")}
    return PostfixTools(extracted / "smtp-sink", extracted / "smtp-source", env)


def _extract_package() -> bool:
    if not shutil.which("apt-get") or not shutil.which("dpkg"):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        download = subprocess.run(["apt-get", "download", "postfix"], cwd=tmp, capture_output=True)
        if download.returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
            download = subprocess.run(["apt-get", "download", "postfix"], cwd=tmp, capture_output=True)
        package = next(Path(tmp).glob("postfix_*.deb"), None)
        if download.returncode != 0 or package is None:
            return False
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg", "-x", str(package), str(CACHE)], check=True)
    return (CACHE / "usr" / "sbin" / "smtp-sink").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int) -> None:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")
