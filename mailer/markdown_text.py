"""Markdown -> readable plain text for the text/plain part: wrapped paragraphs, '-' lists, links as 'text (url)'."""
from __future__ import annotations

import functools
import textwrap

from markdown_it.tree import SyntaxTreeNode

from mailer.issue import markdown_parser

WIDTH = 72
_PARSER = markdown_parser()


@functools.lru_cache(maxsize=4096)
def markdown_to_text(source: str, width: int = WIDTH) -> str:
    tree = SyntaxTreeNode(_PARSER.parse(source))
    return "\n\n".join(b for b in (_block(node, width) for node in tree.children) if b).strip()


def _block(node: SyntaxTreeNode, width: int) -> str:
    kind = node.type
    if kind == "paragraph":
        return _wrap(_inline(node.children[0]) if node.children else "", width)
    if kind == "heading":
        return _inline(node.children[0]).upper() if node.children else ""
    if kind in ("bullet_list", "ordered_list"):
        start = int(node.attrs.get("start", 1) or 1)
        out = []
        for n, item in enumerate(node.children):
            marker = "- " if kind == "bullet_list" else f"{start + n}. "
            body = "\n\n".join(b for b in (_block(child, width - len(marker)) for child in item.children) if b)
            pad = " " * len(marker)
            lines = body.split("\n")
            out.append(marker + lines[0] + "".join("\n" + (pad + line if line else "") for line in lines[1:]))
        return "\n".join(out)
    if kind == "blockquote":
        inner = "\n\n".join(_block(child, width - 2) for child in node.children)
        return "\n".join("> " + line for line in inner.split("\n"))
    if kind in ("fence", "code_block"):
        return "\n".join("    " + line for line in node.content.rstrip("\n").split("\n"))
    if kind == "hr":
        return "-" * 20
    return "\n\n".join(_block(child, width) for child in node.children)


def _inline(node: SyntaxTreeNode) -> str:
    parts: list[str] = []
    for child in node.children:
        kind = child.type
        if kind in ("text", "code_inline"):
            parts.append(child.content)
        elif kind == "softbreak":
            parts.append(" ")
        elif kind == "hardbreak":
            parts.append("\n")
        elif kind == "link":
            label = _inline(child)
            href = str(child.attrs.get("href", ""))
            bare = href.removeprefix("mailto:")
            if href in ("", "#") or child.markup in ("linkify", "autolink") or label in (href, bare):
                parts.append(label)
            else:
                parts.append(f"{label} ({bare if href.startswith('mailto:') else href})")
        elif kind == "image":
            parts.append(str(child.attrs.get("alt", "")) or child.content)
        else:  # em, strong, s: keep the words
            parts.append(_inline(child))
    return "".join(parts)


def _wrap(text: str, width: int) -> str:
    return "\n".join(
        textwrap.fill(line, width=width, break_long_words=False, break_on_hyphens=False) for line in text.split("\n")
    )
