"""The report's SVG charts: well-formed, proportional, escaped, labelled, readable."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from markupsafe import Markup

from mailer.web.charts import SERIES_COLOURS, TEXT_COLOUR, horizontal_bars, stacked_timeline

NS = {"s": "http://www.w3.org/2000/svg"}
SERIES = [(key, key.capitalize(), colour) for key, colour in SERIES_COLOURS.items()]
EVIL = "<script>alert(1)</script> & co"


def parse(markup: Markup) -> ET.Element:
    assert isinstance(markup, Markup)
    return ET.fromstring(str(markup))


def bars(root: ET.Element, series: str | None = None) -> list[ET.Element]:
    found = root.findall(".//s:rect[@class='bar']", NS)
    return [r for r in found if series is None or r.get("data-series") == series]


def texts(root: ET.Element, cls: str | None = None) -> list[str]:
    return ["".join(t.itertext()) for t in root.iter("{%s}text" % NS["s"]) if cls is None or t.get("class") == cls]


def luminance(hex_colour: str) -> float:
    """WCAG 2.x relative luminance of an sRGB colour."""
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def timeline(buckets, **kwargs) -> ET.Element:
    return parse(stacked_timeline(buckets, SERIES, title="Esiti", desc="Esiti per minuto", id_prefix="tl", **kwargs))


def test_contrast_formula_on_known_pairs() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)
    assert contrast("#ffff00", "#ffffff") < 3  # yellow on white would fail


@pytest.mark.parametrize("status", ["sent", "deferred", "bounced", "failed", "uncertain", "skipped"])
def test_palette_has_non_text_contrast_against_white(status: str) -> None:
    assert contrast(SERIES_COLOURS[status], "#ffffff") >= 3.0


def test_palette_colours_are_distinct_and_text_is_readable() -> None:
    assert len(set(SERIES_COLOURS.values())) == len(SERIES_COLOURS)
    assert contrast(TEXT_COLOUR, "#ffffff") >= 4.5


def test_stacked_bars_are_proportional_and_stacked() -> None:
    root = timeline([("22:10", {"sent": 30, "bounced": 10}), ("22:11", {"sent": 10}), ("22:12", {})])
    plot_h = float(root.find("s:line", NS).get("y1")) - 10  # axis baseline minus the top margin
    sent = [float(r.get("height")) for r in bars(root, "sent")]
    assert sent[0] == pytest.approx(3 * sent[1], abs=1)
    assert sent[0] + float(bars(root, "bounced")[0].get("height")) == pytest.approx(plot_h, abs=1)
    baseline = float(bars(root, "sent")[0].get("y")) + sent[0]
    bounced = bars(root, "bounced")[0]
    assert float(bounced.get("y")) + float(bounced.get("height")) == pytest.approx(baseline - sent[0], abs=0.1)
    assert len(bars(root)) == 3  # zero values draw nothing
    assert texts(root, "x-tick") == ["22:10", "22:11", "22:12"]


def test_tallest_stack_fills_the_plot_height() -> None:
    root = timeline([("a", {"sent": 5}), ("b", {"sent": 50})], height=240)
    axis = root.find("s:line", NS)
    tallest = max(bars(root), key=lambda r: float(r.get("height")))
    assert float(tallest.get("y")) == pytest.approx(10, abs=1)  # the top margin
    assert float(tallest.get("y")) + float(tallest.get("height")) == pytest.approx(float(axis.get("y1")), abs=1)
    assert "0" in texts(root, "y-tick") and len(texts(root, "y-tick")) >= 3


def test_aria_and_ids() -> None:
    root = timeline([("22:10", {"sent": 1})])
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "tl-title tl-desc"
    assert root.find("s:title", NS).get("id") == "tl-title" and root.find("s:title", NS).text == "Esiti"
    assert root.find("s:desc", NS).get("id") == "tl-desc"


def test_legend_is_text_with_totals() -> None:
    root = timeline([("a", {"sent": 7, "failed": 2}), ("b", {"sent": 3})])
    legend = {g.get("data-series"): "".join(g.itertext()) for g in root.findall(".//s:g[@class='legend']", NS)}
    assert legend["sent"] == "Sent: 10" and legend["failed"] == "Failed: 2" and legend["skipped"] == "Skipped: 0"


def test_text_is_dark_and_large_enough() -> None:
    root = timeline([("a", {"sent": 7})])
    for text in root.iter("{%s}text" % NS["s"]):
        assert text.get("fill") == TEXT_COLOUR and float(text.get("font-size")) >= 12


def test_labels_are_escaped() -> None:
    root = timeline([(EVIL, {"sent": 1})])
    assert root.find(".//script") is None and root.find(".//s:script", NS) is None
    assert EVIL in texts(root, "x-tick")
    hbars = parse(horizontal_bars([(EVIL, 3)], title=EVIL, desc=EVIL, colour="#2e7d32", id_prefix="hb", width=1000))
    assert hbars.find(".//s:script", NS) is None and hbars.find(".//script") is None
    assert hbars.find("s:title", NS).text == EVIL and texts(hbars, "label") == [EVIL]


@pytest.mark.parametrize("buckets", [[], [("22:10", {})], [("22:10", {"sent": 0}), ("22:11", {})]])
def test_empty_timeline_says_no_data(buckets) -> None:
    root = timeline(buckets, no_data="Nessun dato")
    assert texts(root, "no-data") == ["Nessun dato"] and bars(root) == []


def test_single_and_many_buckets() -> None:
    assert len(bars(timeline([("2026-05-03", {"sent": 4})]))) == 1
    many = [(f"{h:02d}:{m:02d}", {"sent": h + m, "deferred": 1}) for h in range(20) for m in range(0, 60, 6)]
    root = timeline(many)
    assert len(many) == 200 and len(bars(root, "deferred")) == 200
    labels = texts(root, "x-tick")
    assert 2 <= len(labels) <= 20 and labels[0] == "00:00"


def test_horizontal_bars_scale_truncate_and_show_values() -> None:
    long = "mx." + "a" * 80 + ".example.org"
    rows = [("comune.torino.it", 120), (long, 30), ("gmail.com", 0)]
    root = parse(horizontal_bars(rows, title="Domini", desc="Consegne per dominio", colour="#1565c0", id_prefix="dom"))
    assert root.get("aria-labelledby") == "dom-title dom-desc"
    widths = [float(r.get("width")) for r in bars(root)]
    assert widths[0] == pytest.approx(4 * widths[1], abs=1) and widths[2] == 0
    assert all(float(r.get("height")) == 22 for r in bars(root))
    labels = texts(root, "label")
    assert labels[0] == "comune.torino.it" and labels[1].endswith("…") and len(labels[1]) < len(long)
    assert [g.find("s:title", NS).text for g in root.findall("s:g", NS)][1] == f"{long}: 30"  # full text as tooltip
    assert texts(root, "value") == ["120", "30", "0"]


def test_horizontal_bars_empty() -> None:
    root = parse(horizontal_bars([], title="Motivi", desc="Nessun rimbalzo", colour="#c62828", id_prefix="r"))
    assert texts(root, "no-data") == ["No data"] and bars(root) == []
