"""Fresh databases for the benchmarks that also measure on PostgreSQL."""
from __future__ import annotations


def fresh_postgresql_database(admin_url: str, name: str) -> str:
    """A new, empty database on the server `admin_url` names (its role may create databases)."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    with psycopg.connect(host=url.host, port=url.port, user=url.username, password=url.password,
                         dbname=url.database or "postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)
