"""file_search results as the model sees them, and `file_citation` annotations from its answer.

Each result is shown with a marker `【round:index†filename】`; the model is asked to cite with it. Markers
in the answer that name a shown result become annotations. A model too small to cite gets the markers of
the results its answer was grounded on appended as a sources line, so the citation is never lost."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MARKER = re.compile(r"【(\d+):(\d+)†([^】]*)】")
MAX_APPENDED = 2


@dataclass
class Source:
    marker: str
    file_id: str
    filename: str
    score: float
    text: str


def sources_for(round_no: int, hits: list[Any]) -> list[Source]:
    return [
        Source(f"【{round_no}:{i}†{hit.filename}】", hit.file_id, hit.filename, hit.score, hit.text)
        for i, hit in enumerate(hits)
    ]


def render_results(query: str, sources: list[Source]) -> str:
    if not sources:
        return f'No results in the files for "{query}".'
    lines = [
        f'Results from the user\'s files for "{query}". '
        f"Cite a result with its marker, like {sources[0].marker}."
    ]
    for source in sources:
        lines.append(f"{source.marker} {source.text.strip()}")
    return "\n\n".join(lines)


def annotate(text: str, sources: list[Source]) -> tuple[str, list[dict[str, Any]]]:
    """The final text and its file_citation annotations."""
    by_marker = {s.marker: s for s in sources}
    found = [m for m in MARKER.finditer(text) if m.group(0) in by_marker]
    if not found and sources:
        used = sources[:MAX_APPENDED]
        # appended, never trimmed: the text streamed so far stays a prefix of the final text
        text = text + ("" if text[-1:].isspace() else " ") + "".join(s.marker for s in used)
        found = [m for m in MARKER.finditer(text) if m.group(0) in by_marker]
    annotations = [
        {
            "type": "file_citation",
            "text": m.group(0),
            "start_index": m.start(),
            "end_index": m.end(),
            "file_citation": {"file_id": by_marker[m.group(0)].file_id},
        }
        for m in found
    ]
    return text, annotations
