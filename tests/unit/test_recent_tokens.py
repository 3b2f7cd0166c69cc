"""A turn's prompt is tokenized once: counted while it is fitted, and sent as the same tokens (issue 20: with
the engine's tokenizer each tokenization is a `/tokenize` round trip)."""

from __future__ import annotations

import threading

from assistd.llm.vocab import RecentTokens, RemotePrompting


class CountingVocab:
    chat_template = None
    bos_text = "<s>"
    eos_text = "</s>"

    def __init__(self, bos_id: int | None = 1) -> None:
        self.bos_id = bos_id
        self.calls: list[str] = []

    def tokenize(self, text: str) -> list[int]:
        self.calls.append(text)
        return [100 + ord(c) for c in text]


class Prompting(RemotePrompting):
    def __init__(self, vocab: CountingVocab) -> None:
        self._vocab = vocab


def test_a_prompt_counted_then_sent_is_tokenized_once():
    vocab = CountingVocab()
    backend = Prompting(vocab)
    prompt = "<|im_start|>user\nhello<|im_end|>\n"
    assert backend.count_tokens(prompt) == len(prompt)
    sent = backend.prompt_tokens(prompt)
    assert sent == [1, *(100 + ord(c) for c in prompt)]  # the BOS first, as before
    assert vocab.calls == [prompt]
    assert backend.count_tokens("other") == 5
    assert vocab.calls == [prompt, "other"]


def test_each_backend_keeps_its_own_tokens():
    first, second = CountingVocab(), CountingVocab(bos_id=None)
    a, b = Prompting(first), Prompting(second)
    a.tokenize("same text")
    assert b.prompt_tokens("same text") == [100 + ord(c) for c in "same text"]
    assert first.calls == ["same text"] and second.calls == ["same text"]


def test_what_a_caller_does_with_the_list_never_changes_what_is_kept():
    recent = RecentTokens()
    tokens = recent.get("abc", lambda t: [1, 2, 3])
    tokens.append(99)
    again = recent.get("abc", lambda t: [7])
    assert again == [1, 2, 3]
    again.clear()
    assert recent.get("abc", lambda t: [7]) == [1, 2, 3]


def test_the_oldest_texts_go_when_the_budget_is_spent():
    recent = RecentTokens(budget=10)
    calls: list[str] = []

    def tokenize(text: str) -> list[int]:
        calls.append(text)
        return list(range(len(text)))

    recent.get("aaaa", tokenize)
    recent.get("bbbb", tokenize)
    recent.get("aaaa", tokenize)  # used again: "bbbb" is now the oldest
    recent.get("cccc", tokenize)  # 12 tokens held: the oldest goes
    assert len(recent) == 2
    recent.get("aaaa", tokenize)
    recent.get("cccc", tokenize)
    assert calls == ["aaaa", "bbbb", "cccc"]
    recent.get("bbbb", tokenize)
    assert calls[-1] == "bbbb"
    recent.get("x" * 11, tokenize)  # longer than the whole budget: tokenized, never kept
    recent.get("x" * 11, tokenize)
    assert calls[-2:] == ["x" * 11, "x" * 11]


def test_threads_asking_at_once_get_the_same_tokens():
    recent = RecentTokens(budget=1000)
    results: list[list[int]] = []

    def ask(i: int) -> None:
        for j in range(200):
            text = f"t{(i + j) % 7}"
            results.append(recent.get(text, lambda t: [ord(c) for c in t]))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 800
    assert all(r == [ord("t"), r[1]] and chr(r[1]) in "0123456" for r in results)
    assert len(recent) == 7
