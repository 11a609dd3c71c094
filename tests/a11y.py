"""Accessibility checks in a real browser: axe-core run inside a Playwright (sync API) page.

Not a test module (pytest collects only ``test_*.py``): tests import it::

    from tests.a11y import assert_accessible, explain

    def test_signup_page_is_accessible(browser, live_server, tmp_path):
        page = browser.new_page()                        # no bypass_csp needed: see the note on CSP
        page.goto(live_server + "/iscriviti")
        minor = assert_accessible(page, "signup form", artifacts=tmp_path)
        print(explain(minor))                            # moderate/minor findings, for the log

axe-core comes from the PyPI package ``axe-playwright-python`` (it bundles ``axe.min.js``; test extra in
pyproject.toml), so nothing is fetched at run time.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from axe_playwright_python.sync_playwright import Axe

#: Violations of these impacts fail the assertion; the others ("moderate", "minor") are returned.
BLOCKING_IMPACTS = ("critical", "serious")
#: How many offending elements of each rule the failure message lists.
MAX_TARGETS = 3

_axe: Axe | None = None


def _get_axe() -> Axe:
    global _axe
    if _axe is None:
        _axe = Axe()  # reads the bundled axe.min.js once
    return _axe


def axe_version() -> str:
    """Version of the bundled axe-core, e.g. '4.12.1' (for reports)."""
    found = re.search(r"axe v([\d.]+)", _get_axe().axe_script[:200])
    return found.group(1) if found else "unknown"


def _target(node: dict[str, Any]) -> str:
    # A target is a list of selectors; an entry is itself a list when it crosses a shadow root/iframe.
    return " >>> ".join(t if isinstance(t, str) else " >>> ".join(t) for t in node.get("target", []))


def _summary(node: dict[str, Any]) -> str:
    text = (node.get("failureSummary") or "").replace("Fix any of the following:", "").replace(
        "Fix all of the following:", "")
    return " ".join(text.split())


def explain(violations: list[dict[str, Any]], max_targets: int = MAX_TARGETS) -> str:
    """Readable lines for axe violations: rule id, impact, help, help URL, then the first targets
    with axe's failure summary (for colour-contrast it names both colours and the ratio)."""
    lines: list[str] = []
    for v in violations:
        nodes = v.get("nodes", [])
        lines.append(f"- {v.get('id')} [{v.get('impact')}] {v.get('help')} ({len(nodes)} element(s)) "
                     f"{v.get('helpUrl', '')}".rstrip())
        for node in nodes[:max_targets]:
            lines.append(f"    at {_target(node)}")
            if summary := _summary(node):
                lines.append(f"       {summary}")
        if len(nodes) > max_targets:
            lines.append(f"    ... and {len(nodes) - max_targets} more")
    return "\n".join(lines)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "page"


def assert_accessible(page, name: str, artifacts: Path | None = None) -> list:
    """Run axe-core on ``page`` (a Playwright sync ``Page``, already loaded) and fail on serious problems.

    Raises ``AssertionError`` when any violation has impact "serious" or "critical"; the message names
    ``name`` and the URL and lists, per rule, its id, impact, help text and URL, and the first
    ``MAX_TARGETS`` target selectors with axe's failure summary. Returns the remaining violations
    (impact "moderate"/"minor", as axe's result dicts: ``id``, ``impact``, ``help``, ``helpUrl``,
    ``nodes``...) so the caller can print them (``explain(result)``) or assert on them.

    Rules: axe's defaults (WCAG 2.0/2.1/2.2 A and AA plus best practices; AAA's
    ``color-contrast-enhanced`` and experimental rules stay off). Items axe could not decide
    ("incomplete", e.g. text over a background image) do not fail; they are saved with the artifacts.

    ``artifacts``: when given (a folder, created if missing), writes ``<name>.axe.json`` with the
    violations and incomplete items, and on failure a full-page ``<name>.png`` screenshot.

    CSP: our pages send ``Content-Security-Policy: script-src 'self'`` (and no inline styles). axe is
    injected with ``page.evaluate`` (DevTools-protocol evaluation, which CSP does not govern), so it
    runs on those pages as they are: no ``bypass_csp`` is needed. Prefer a context *without*
    ``bypass_csp=True``: bypassing makes Chromium ignore the page's whole CSP, so e.g. ``style="..."``
    attributes that production blocks get applied and axe checks colours users never see. (Only a
    caller that also injects scripts with ``page.add_script_tag(content=...)`` needs
    ``browser.new_context(bypass_csp=True)``.) If axe still cannot get in, the function says so.
    The page's CSP needs ``img-src 'self' data:`` for Bootstrap Italia's data-URI icons (select
    chevron, validation icons); axe does not see a missing icon, so that is for another test.

    axe cannot decide text over background images or "partially obscured" boxes (Bootstrap Italia's
    ``.alert`` icons, ``.badge``); those come back as "incomplete", never fail here, and are listed in
    the artifacts JSON: look at them when adding such components (``.badge.bg-light`` is 1.2:1).
    """
    page.wait_for_load_state("load")
    # Contrast is computed on the laid-out page: let web fonts finish so line boxes are final.
    page.evaluate("() => document.fonts ? document.fonts.ready.then(() => true) : true")
    has_axe = "() => typeof window.axe === 'object' && typeof window.axe.run === 'function'"
    if not page.evaluate(has_axe):  # once per document: a second call on the same page reuses it
        page.evaluate(_get_axe().axe_script)
    if not page.evaluate(has_axe):
        raise AssertionError(f"axe-core could not be injected into {name!r} ({page.url}); "
                             "create the browser context with bypass_csp=True")
    response = page.evaluate("() => axe.run(document, {resultTypes: ['violations', 'incomplete']})")
    violations: list[dict[str, Any]] = response.get("violations", [])
    blocking = [v for v in violations if v.get("impact") in BLOCKING_IMPACTS]
    others = [v for v in violations if v.get("impact") not in BLOCKING_IMPACTS]

    if artifacts is not None:
        folder = Path(artifacts)
        folder.mkdir(parents=True, exist_ok=True)
        report = {"name": name, "url": page.url, "axe": response.get("testEngine", {}).get("version"),
                  "violations": violations, "incomplete": response.get("incomplete", [])}
        (folder / f"{_slug(name)}.axe.json").write_text(json.dumps(report, indent=2, ensure_ascii=False),
                                                         encoding="utf-8")
        if blocking:
            page.screenshot(path=str(folder / f"{_slug(name)}.png"), full_page=True)

    if blocking:
        raise AssertionError(
            f"axe {response.get('testEngine', {}).get('version', '')}: {len(blocking)} serious/critical "
            f"accessibility violation(s) on {name!r} ({page.url}):\n{explain(blocking)}")
    return others
