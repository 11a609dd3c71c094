"""`mailer subscribers import` of 100,000 and of 1,000,000 rows, as a user runs it (a whole process): wall
time and peak memory (the child's maxrss), into a fresh SQLite file, and into PostgreSQL with --postgresql.
The file is read as it goes into a staging table, checked, then merged at once: memory should not grow
with the file.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from mailer.settings import PROJECT_ROOT  # noqa: E402

MAILER = [sys.executable, "-c", "from mailer.cli import main; main()"]
MEASURED = [sys.executable, "-c", (  # the same command, saying its own peak memory when it ends
    "import resource, sys\nfrom mailer.cli import main\ntry:\n    main()\nfinally:\n"
    "    sys.stderr.write(f'maxrss={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n')"
)]


def write_csv(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("Indirizzo e-mail;Nome;Cognome;Lingua\n")
        for n in range(rows):
            out.write(f"lettore{n}@example.org;Lettore;Numero {n};{'en' if n % 7 == 0 else 'it'}\n")


def one_import(url: str, csv_path: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one import process."""
    env = {**os.environ, "MAILER_DATABASE_URL": url}
    subprocess.run(MAILER + ["db", "upgrade"], env=env, check=True, capture_output=True, cwd=PROJECT_ROOT)
    started = time.perf_counter()
    result = subprocess.run(MEASURED + ["subscribers", "import", str(csv_path), "--list", "work-in-progress"],
                            env=env, capture_output=True, text=True, cwd=PROJECT_ROOT)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    peak_kb = int(result.stderr.rsplit("maxrss=", 1)[1].split()[0])
    return elapsed, peak_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--postgresql", default=os.environ.get("MAILER_TEST_POSTGRESQL_URL", ""))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        stores = [("sqlite", lambda n: f"sqlite:///{tmp}/import-{n}.sqlite")]
        if args.postgresql:
            from databases import fresh_postgresql_database

            stores.append(("postgresql", lambda n: fresh_postgresql_database(args.postgresql, f"bench_import_{os.getpid()}_{n}")))
        for name, url_for in stores:
            figures = {}
            for n in sizes:
                path = Path(tmp) / f"people-{n}.csv"
                if not path.exists():
                    write_csv(path, n)
                figures[n] = one_import(url_for(n), path)
                print(f"{name:10} import of {n:>9,} rows: {figures[n][0]:6.1f} s, peak RSS {figures[n][1]:6.0f} MB")
            small, large = figures[sizes[0]], figures[sizes[-1]]
            print(f"{name:10} {sizes[-1]:,} / {sizes[0]:,}: time x{large[0] / small[0]:.1f}, peak RSS x{large[1] / small[1]:.2f}")


if __name__ == "__main__":
    main()
