"""Bounce detection quality on a labelled corpus: our reader (mailer.dsn.read_message) against flufl.bounce alone.

The corpus is tests/bounce_corpus/ (flufl.bounce's own samples and messages written in the formats real servers
send), labelled in tests/bounce_corpus/expected.json: for each file its kind and which recipients failed, hard or
soft, by what the message says (see tests/bounce_corpus/README.md).

Figures, for each reader:
  recall      expected failed recipients it found / expected failed recipients
  precision   recipients it found that are expected / recipients it found; any recipient found in a message
              that is not a bounce counts against it
  hard/soft   of the recipients both found and expected, those given the expected kind
  kind        (ours only) files read as the expected kind: bounce, delayed, complaint, auto-reply, other

A delay notice's recipients are listed under "delayed", not "failed": the server is still trying, so they are
not failures to find. Reporting one as a soft failure (flufl.bounce calls them temporary) is neither found nor
counted against; reporting one as a hard failure is a false positive (it would suppress a working address).

    .venv/bin/python bench/bounce_quality.py            # the table
    .venv/bin/python bench/bounce_quality.py --misses   # and every file ours gets wrong

The scoring (score()) is shared with tests/test_bounce_corpus.py.
"""
from __future__ import annotations

import argparse
import email
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "bounce_corpus"


@dataclass(frozen=True)
class Got:
    """What one reader made of one file: the message kind (None when the reader has no such notion) and the
    failed recipients with "hard", "soft" or "mixed" (the reader named the address twice with both kinds)."""

    kind: str | None
    failed: dict[str, str]


@dataclass
class FileResult:
    path: str
    expected: dict
    got: Got
    missed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    misclassified: list[str] = field(default_factory=list)
    wrong_kind: bool = False

    @property
    def wrong(self) -> bool:
        return bool(self.missed or self.added or self.misclassified or self.wrong_kind)


@dataclass
class Score:
    expected: int = 0  # expected failed recipients
    found: int = 0  # recipients reported (delayed recipients reported soft are left out)
    found_expected: int = 0
    kind_right: int = 0  # of found_expected, with the expected hard/soft
    files: int = 0
    files_kind_right: int = 0
    delayed: int = 0  # recipients of delay notices
    delayed_reported_soft: int = 0
    delayed_reported_hard: int = 0
    results: list[FileResult] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.found_expected / self.expected if self.expected else 1.0

    @property
    def precision(self) -> float:
        return self.found_expected / self.found if self.found else 1.0

    @property
    def hard_soft_accuracy(self) -> float:
        return self.kind_right / self.found_expected if self.found_expected else 1.0

    @property
    def kind_accuracy(self) -> float:
        return self.files_kind_right / self.files if self.files else 1.0

    def misses(self) -> list[FileResult]:
        return [r for r in self.results if r.wrong]


def corpus_files(corpus: Path = CORPUS) -> list[str]:
    """The message files, as paths relative to the corpus folder (one folder per origin)."""
    return sorted(p.relative_to(corpus).as_posix() for p in corpus.glob("*/*") if p.is_file())


def load_expected(corpus: Path = CORPUS) -> dict[str, dict]:
    return json.loads((corpus / "expected.json").read_text(encoding="utf-8"))


def _address(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return text.strip().strip("<>").lower()


def _merge(pairs: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for address, kind in pairs:
        out[address] = kind if out.get(address, kind) == kind else "mixed"
    return out


def read_ours(data: bytes) -> Got:
    from mailer.dsn import read_message

    reading = read_message(data)
    return Got(reading.kind, _merge([(_address(f.recipient), f.kind) for f in reading.failures]))


def read_flufl(data: bytes) -> Got:
    from flufl.bounce import all_failures

    logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)  # a detector choking on odd input logs a traceback
    try:
        temporary, permanent = all_failures(email.message_from_bytes(data))
    except Exception:  # noqa: BLE001: what it cannot read, it found nothing in
        return Got(None, {})
    return Got(None, _merge([(_address(a), "soft") for a in temporary] + [(_address(a), "hard") for a in permanent]))


def score(got: dict[str, Got], expected: dict[str, dict]) -> Score:
    """Score one reader's results (path -> Got) against the labels (path -> {"kind", "failed", "delayed"?})."""
    s = Score()
    for path in sorted(expected):
        label = expected[path]
        want = {a.lower(): k for a, k in label.get("failed", {}).items()}
        delayed = {a.lower() for a in label.get("delayed", {})}
        result = got.get(path, Got(None, {}))
        r = FileResult(path, label, result)
        s.files += 1
        s.expected += len(want)
        s.delayed += len(delayed)
        for address, kind in result.failed.items():
            if address in want:
                s.found += 1
                s.found_expected += 1
                if kind == want[address]:
                    s.kind_right += 1
                else:
                    r.misclassified.append(address)
            elif address in delayed and kind == "soft":
                s.delayed_reported_soft += 1
            else:
                if address in delayed:
                    s.delayed_reported_hard += 1
                s.found += 1
                r.added.append(address)
        r.missed = [a for a in want if a not in result.failed]
        if result.kind is not None:
            r.wrong_kind = result.kind != label["kind"]
            s.files_kind_right += not r.wrong_kind
        s.results.append(r)
    return s


def run(reader, corpus: Path = CORPUS, expected: dict[str, dict] | None = None) -> Score:
    expected = expected if expected is not None else load_expected(corpus)
    return score({path: reader((corpus / path).read_bytes()) for path in expected}, expected)


def describe(r: FileResult) -> str:
    """One file that ours gets wrong: what was expected, what it got."""
    want = dict(r.expected.get("failed", {}))
    want_text = ", ".join(f"{a} {k}" for a, k in want.items()) or "no failed recipient"
    if r.expected.get("delayed"):
        want_text += "; delayed: " + ", ".join(r.expected["delayed"])
    got_text = ", ".join(f"{a or '(empty address)'} {k}" for a, k in r.got.failed.items()) or "no failed recipient"
    what = []
    if r.wrong_kind:
        what.append("kind")
    if r.missed:
        what.append("missed " + ", ".join(r.missed))
    if r.added:
        what.append("added " + ", ".join(a or "(empty address)" for a in r.added))
    if r.misclassified:
        what.append("hard/soft " + ", ".join(r.misclassified))
    return (f"{r.path}\n    expected: {r.expected['kind']}: {want_text}\n"
            f"    got:      {r.got.kind}: {got_text}\n    wrong:    {'; '.join(what)}")


def _ratio(value: float, num: int, den: int) -> str:
    return f"{value:6.3f} ({num}/{den})"


def table(ours: Score, flufl: Score, expected: dict[str, dict]) -> str:
    origins: dict[str, dict[str, int]] = {}
    for path, label in expected.items():
        counts = origins.setdefault(path.split("/", 1)[0], {})
        counts[label["kind"]] = counts.get(label["kind"], 0) + 1
    lines = ["Corpus: " + "; ".join(
        f"{origin}/ {sum(c.values())} files (" + ", ".join(f"{n} {k}" for k, n in sorted(c.items())) + ")"
        for origin, c in sorted(origins.items()))]
    lines.append(f"Expected failed recipients: {ours.expected}; recipients of delay notices: {ours.delayed}")
    lines.append("")
    lines.append(f"{'':22}{'ours (mailer.dsn)':>26}{'flufl.bounce alone':>26}")
    rows = [
        ("recall", _ratio(ours.recall, ours.found_expected, ours.expected),
         _ratio(flufl.recall, flufl.found_expected, flufl.expected)),
        ("precision", _ratio(ours.precision, ours.found_expected, ours.found),
         _ratio(flufl.precision, flufl.found_expected, flufl.found)),
        ("hard/soft accuracy", _ratio(ours.hard_soft_accuracy, ours.kind_right, ours.found_expected),
         _ratio(flufl.hard_soft_accuracy, flufl.kind_right, flufl.found_expected)),
        ("message kind", _ratio(ours.kind_accuracy, ours.files_kind_right, ours.files), "-"),
        ("delayed, said soft", str(ours.delayed_reported_soft), str(flufl.delayed_reported_soft)),
        ("delayed, said hard", str(ours.delayed_reported_hard), str(flufl.delayed_reported_hard)),
        ("files wrong", str(len(ours.misses())), str(sum(1 for r in flufl.misses()))),
    ]
    for name, a, b in rows:
        lines.append(f"{name:22}{a:>26}{b:>26}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--misses", action="store_true", help="list every file where ours misses, adds or misclassifies")
    args = parser.parse_args(argv)
    expected = load_expected()
    unlabelled = sorted(set(corpus_files()) - set(expected))
    ours = run(read_ours, expected=expected)
    flufl = run(read_flufl, expected=expected)
    print(table(ours, flufl, expected))
    if unlabelled:
        print(f"\n{len(unlabelled)} corpus files have no label: {', '.join(unlabelled)}")
    if args.misses:
        misses = ours.misses()
        print(f"\nFiles ours gets wrong: {len(misses)}")
        for r in misses:
            print(describe(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
