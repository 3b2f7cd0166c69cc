"""ChatRenderer renders chat templates as transformers does, so that real templates work unchanged."""

from __future__ import annotations

from pathlib import Path

from assistd.llm.vocab import ChatRenderer

TEMPLATES = Path(__file__).parent.parent / "fixtures" / "templates"


def test_generation_tags_render_their_text() -> None:
    template = "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}"
    assert ChatRenderer(template, "", "").render([{"role": "user", "content": "hi"}]) == "hi"


def test_tojson_is_plain_text_and_keeps_non_ascii() -> None:
    template = "{{ '<|x|>' + messages[0].content | tojson + '<|y|>' }}"
    out = ChatRenderer(template, "", "").render([{"role": "user", "content": "café"}])
    assert out == '<|x|>"café"<|y|>'  # no HTML escaping, no \\u escapes


def test_extra_variables_reach_the_template() -> None:
    gpt_oss = ChatRenderer((TEMPLATES / "gpt-oss.jinja").read_text(), "", "")
    messages = [{"role": "user", "content": "hi"}]
    assert "Reasoning: high" in gpt_oss.render(messages, reasoning_effort="high")
    assert "Reasoning: medium" in gpt_oss.render(messages)


def test_a_template_without_system_role_gets_it_in_the_first_user_message() -> None:
    gemma = ChatRenderer((TEMPLATES / "gemma-2.jinja").read_text(), "<bos>", "<eos>")
    out = gemma.render([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}])
    assert "<start_of_turn>user\nBe brief.\n\nHello<end_of_turn>" in out
