"""The words of a keyword query: lower-cased \\w+ runs without English stop words.

The index and its ranking live in the database (keywords.py); this is only how a query is split.
"""

from __future__ import annotations

import re

WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = (
    "a an and are as at be but by for from has have how i in is it its of on or that the this to was were "
    "what when where which who why will with does did do can you your"
)
STOPWORDS = frozenset(_STOPWORDS.split())


def terms(text: str) -> list[str]:
    return [w for w in WORD.findall(text.lower()) if w not in STOPWORDS]
