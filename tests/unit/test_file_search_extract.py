"""Extraction of every supported format, the errors a person can act on, and token-window chunking."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistd.tools.file_search.chunking import ChunkingSpec, check_static, chunk_segments
from assistd.tools.file_search.embedding import HFTokenizer, default_model_path
from assistd.tools.file_search.extract import IngestError, Segment, extract
from tests.file_search_docs import (
    CORRUPT_PDF,
    DOCX_FACT,
    MARKDOWN,
    PDF_PAGE_1,
    PDF_PAGE_2,
    docx_bytes,
    pdf_bytes,
    pptx_bytes,
)


@pytest.fixture(scope="module")
def tokenizer() -> HFTokenizer:
    return HFTokenizer(default_model_path())


def test_pdf_pages_are_kept():
    segments = extract("report.pdf", pdf_bytes())
    assert [s.page for s in segments] == [1, 2]
    assert "apples" in segments[0].text and "Tuesday" in segments[1].text


def test_docx_pptx_markdown_html_code():
    assert DOCX_FACT in extract("notes.docx", docx_bytes())[0].text
    slides = extract("deck.pptx", pptx_bytes(("First slide about owls", "Second slide about bats")))
    assert [(s.page, s.text) for s in slides] == [
        (1, "First slide about owls"),
        (2, "Second slide about bats"),
    ]
    assert extract("k.md", MARKDOWN.encode())[0].text == MARKDOWN
    html = (
        b"<html><head><style>p{}</style><script>var x=1</script></head>"
        b"<body><h1>Title</h1><p>Body text</p></body></html>"
    )
    assert extract("page.html", html)[0].text == "Title\nBody text"
    assert "def f" in extract("code.py", b"def f():\n    return 1\n")[0].text
    assert extract("data.json", b'{"a": 1}')[0].text == '{"a": 1}'
    assert extract("bom.txt", "\ufeffcaf\u00e9".encode())[0].text == "caf\u00e9"
    assert extract("latin.txt", "caf\u00e9".encode("cp1252"))[0].text == "caf\u00e9"


@pytest.mark.parametrize(
    ("name", "data", "code", "hint"),
    [
        ("broken.pdf", CORRUPT_PDF, "invalid_file", "could not be read as a PDF"),
        ("fake.docx", b"not a zip at all", "invalid_file", "Word .docx"),
        ("fake.pptx", b"PK\x03\x04 broken", "invalid_file", ".pptx"),
        ("empty.txt", b"", "invalid_file", "is empty"),
        ("blank.md", b"   \n\n  ", "invalid_file", "no extractable text"),
        ("binary.txt", b"\x00\x01\x02\x03", "invalid_file", "binary"),
        ("image.png", b"\x89PNG\r\n", "unsupported_file", "'.png'"),
        ("README", b"text", "unsupported_file", "no extension"),
        ("blank.pdf", None, "invalid_file", "no extractable text"),
    ],
)
def test_unreadable_files_say_why(name, data, code, hint):
    if data is None:
        data = pdf_bytes(("",))
    with pytest.raises(IngestError) as info:
        extract(name, data)
    assert info.value.code == code
    assert hint in info.value.message and name in info.value.message


def test_chunks_are_token_windows_of_the_original_text(tokenizer):
    text = " ".join(f"Sentence number {i} talks about rivers." for i in range(200))
    n = len(tokenizer.offsets(text))
    spec = ChunkingSpec.static(100, 30)
    chunks = chunk_segments([Segment(text)], tokenizer, spec)
    assert len(chunks) == 1 + -(-(n - 100) // 70)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.text in text  # a slice of the original, not detokenized text
        assert len(tokenizer.offsets(chunk.text)) <= 100
    assert all(c.tokens == 100 for c in chunks[:-1])
    # consecutive chunks share 30 tokens
    spans = tokenizer.offsets(text)
    assert chunks[1].text == text[spans[70][0] : spans[169][1]]
    assert text[spans[70][0] : spans[99][1]] in chunks[0].text


def test_no_overlap_and_auto(tokenizer):
    text = "word " * 1000
    chunks = chunk_segments([Segment(text)], tokenizer, ChunkingSpec.static(250, 0))
    assert [c.tokens for c in chunks] == [250, 250, 250, 250]
    auto = chunk_segments([Segment(text)], tokenizer, ChunkingSpec())
    assert [c.tokens for c in auto] == [800, 600]  # stride 400: windows at 0 and 400 (the last one ends)
    assert chunk_segments([Segment("short text")], tokenizer, ChunkingSpec())[0].text == "short text"


def test_chunks_know_their_pages(tokenizer):
    pages = [Segment(PDF_PAGE_1, 1), Segment(PDF_PAGE_2, 2)]
    big = chunk_segments(pages, tokenizer, ChunkingSpec())
    assert len(big) == 1 and (big[0].page, big[0].page_end) == (1, 2)
    long_pages = [Segment("alpha " * 150, 1), Segment("omega " * 150, 2)]
    small = chunk_segments(long_pages, tokenizer, ChunkingSpec.static(100, 0))
    assert small[0].page == 1 and small[-1].page == 2 and small[-1].page_end == 2
    assert all("omega" not in c.text for c in small if c.page_end == 1)


def test_slicing_the_text_for_the_tokenizer_changes_no_chunk(tokenizer):
    pages = [
        Segment(" ".join(f"Page {p} line {i}: rivers, (lakes) & seas-{i}." for i in range(150)), p)
        for p in (1, 2, 3)
    ]
    whole = chunk_segments(pages, tokenizer, ChunkingSpec.static(100, 30), slice_chars=10**9)
    assert len(whole) > 20
    assert chunk_segments(pages, tokenizer, ChunkingSpec.static(100, 30), slice_chars=4999) == whole
    assert chunk_segments(pages, tokenizer, ChunkingSpec(), slice_chars=777) == chunk_segments(
        pages, tokenizer, ChunkingSpec(), slice_chars=10**9
    )
    # no whitespace for longer than a slice: cut there (the run becomes two tokens), text kept whole
    run = "x" * 9000 + " tail words"
    cut = chunk_segments([Segment(run)], tokenizer, ChunkingSpec.static(100, 0), slice_chars=5000)
    assert [c.tokens for c in cut] == [4] and cut[0].text == run


def test_chunking_a_long_text_keeps_memory_small(tokenizer):
    words = [f"w{i}rd" for i in range(5000)]
    text = " ".join(words[(i * 7919) % 5000] for i in range(2 * 1024 * 1024 // 6))
    tokenizer.offsets("warm up")
    Path("/proc/self/clear_refs").write_text("5")  # resets the peak RSS (VmHWM) to the current RSS
    before = _peak_rss()
    chunks = chunk_segments([Segment(text)], tokenizer, ChunkingSpec())
    growth = _peak_rss() - before
    assert len(chunks) > 1000
    assert growth < 120 * 1024 * 1024, f"peak RSS grew by {growth // 2**20} MiB"


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("VmHWM missing")


@pytest.mark.parametrize(("size", "overlap"), [(99, 0), (4097, 0), (200, 101), (100, -1)])
def test_static_limits(size, overlap):
    with pytest.raises(ValueError):
        check_static(size, overlap)


def test_static_limits_at_the_edges():
    check_static(100, 50)
    check_static(4096, 2048)
    spec = ChunkingSpec.from_wire(ChunkingSpec.static(300, 150).to_wire())
    assert (spec.max_tokens, spec.overlap, spec.auto) == (300, 150, False)
    assert ChunkingSpec.from_wire(None) == ChunkingSpec()


def test_embedding_batches_are_bounded_by_count_and_tokens():
    from assistd.tools.file_search.chunking import Chunk
    from assistd.tools.file_search.ingest import batches

    chunks = [Chunk(i, "x", tokens) for i, tokens in enumerate([800] * 5 + [100] * 10)]
    parts = batches(chunks, 4, 1700)
    assert [len(p) for p in parts] == [2, 2, 4, 4, 3]
    assert [c.index for p in parts for c in p] == list(range(15))
    assert batches([Chunk(0, "x", 5000)], 4, 1700) == [[Chunk(0, "x", 5000)]]
    assert batches([], 4, 100) == []
