"""Our bounce reader over the labelled corpus (tests/bounce_corpus/): detection quality above a bar, and a corpus
whose every file is labelled. The scoring is bench/bounce_quality.py's, which prints the same figures."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

RECALL_MIN = 0.95  # expected failed recipients found / expected
PRECISION_MIN = 0.98  # found recipients that are expected / found
HARD_SOFT_MIN = 0.90  # of recipients found and expected, those with the expected hard/soft

KINDS = {"bounce", "delayed", "complaint", "auto-reply", "other"}
BENCH = Path(__file__).resolve().parents[1] / "bench" / "bounce_quality.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bounce_quality", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


def test_every_corpus_file_has_a_label_and_every_label_a_file() -> None:
    files, expected = set(bench.corpus_files()), bench.load_expected()
    assert not files - set(expected), f"files without an entry in expected.json: {sorted(files - set(expected))}"
    assert not set(expected) - files, f"entries without a file: {sorted(set(expected) - files)}"
    for path, label in expected.items():
        assert label["kind"] in KINDS, path
        assert set(label["failed"].values()) <= {"hard", "soft"}, path
        assert all(a == a.lower() for a in label["failed"]), path
        if label["kind"] != "bounce":
            assert not label["failed"], f"{path}: only a bounce has failed recipients"
        if label.get("delayed"):
            assert label["kind"] == "delayed", path


def test_our_reader_finds_and_classifies_the_failed_recipients() -> None:
    score = bench.run(bench.read_ours)
    figures = (f"recall {score.recall:.3f} ({score.found_expected}/{score.expected}, min {RECALL_MIN}), "
               f"precision {score.precision:.3f} ({score.found_expected}/{score.found}, min {PRECISION_MIN}), "
               f"hard/soft {score.hard_soft_accuracy:.3f} ({score.kind_right}/{score.found_expected}, min {HARD_SOFT_MIN})")
    misses = "\n".join(bench.describe(r) for r in score.misses())
    good = (score.recall >= RECALL_MIN and score.precision >= PRECISION_MIN
            and score.hard_soft_accuracy >= HARD_SOFT_MIN)
    assert good, f"{figures}\nFiles ours gets wrong:\n{misses}"
