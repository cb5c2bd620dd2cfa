"""How a passage becomes the text a model reads: the one place that joins title and body.

Encoding, training, reranking and mining all turn a CORPUS row into text through
`passage_text`, so a model never sees passages one way in training and another at search time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def passage_text(title: str | None, text: str | None) -> str:
    """`title + " " + text`; just the non-empty one when the other is empty (no stray spaces)."""
    title = title or ""
    text = text or ""
    if title and text:
        return f"{title} {text}"
    return title or text


def passage_texts(
    titles: Sequence[str | None] | Iterable[str | None], texts: Iterable[str | None]
) -> list[str]:
    """`passage_text` over two parallel columns (e.g. a CORPUS batch's `title` and `text`)."""
    return [passage_text(title, text) for title, text in zip(titles, texts, strict=True)]
