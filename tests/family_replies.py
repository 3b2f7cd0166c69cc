"""What models of each family really write, as llama.cpp's own chat tests show it.

Test data only: no imports of the project (nor of anything else). Every raw string is copied from a
llama.cpp test (see each family's "source"); the only edit is the tool: llama.cpp's examples call
`special_function` with {"arg1": 1} (or get_time / python); here they call `get_weather` with
{"city": "Rome"} (and {"city": "Paris"} for the second of two parallel calls). Whitespace, newlines
and markup are kept exactly, including DeepSeek's fullwidth bars and U+2581 in "<｜tool▁calls▁begin｜>".
A few strings are marked COMPOSED in a comment: they join two forms that llama.cpp tests show
separately, or come from rendering the family's own template; the comment says which.

Conventions (apply to every family):
- Raw strings ("answer", "call", "parallel", the variants) are the text the model generates AFTER the
  generation prompt, i.e. after the prompt rendered by `template` with add_generation_prompt=True and
  `template_kwargs`; "gen_prompt_end" is the end of that prompt (checked with jinja2 against the fixture).
  Where the generation prompt already opens the reasoning block ("reasoning_prefilled": True), the reply
  starts INSIDE the reasoning and only contains the closing tag (DeepSeek R1 distill, DeepSeek V3.1 in
  thinking mode).
- The end-of-generation token is NOT part of the raw strings: "answer_end" / "call_end" name the token
  the model emits to stop (it is in "eog_tokens"); llama.cpp does not print it.
- Expected values ("answer_final", "answer_reasoning", "call_reasoning", ...) are compared the way
  llama.cpp's PEG tests compare them: after str.strip() (assert_msg_equals(..., ignore_whitespace=true)),
  and tool-call arguments as parsed JSON (key order and spacing do not matter).
- "control_tokens": markup that is a special/control token in the model's vocabulary. llama.cpp does
  not print control tokens unless the chat format lists them in "preserved_tokens" (server:
  accept_special_token) or --special is on. Tokens in "always_rendered" are re-marked USER_DEFINED by
  llama.cpp (src/llama-vocab.cpp) and are therefore printed regardless.
  How sure: gpt-oss and the EOG lists are read from llama.cpp's code; Mistral's [..] tokens are control
  tokens of the Tekken vocab (llama.cpp must preserve [TOOL_CALLS], [THINK], [/THINK], [ARGS] to see
  them); the "added but NOT special" claims for Qwen (<tool_call>, <think>) and DeepSeek (<｜User｜>,
  <｜tool▁calls▁begin｜>, <think>) come from the publishers' tokenizer_config.json as I know it, not from
  anything readable here: treat them as likely, not verified. A token listed in "preserved_tokens" only
  proves llama.cpp wants it printed IF it is special; it does not prove that it is special.
- "call_id": the id the model writes itself (Mistral, Kimi); None where the server must invent one.
- "forced": a reply under tool_choice="required": the call with no reasoning text before it, a form
  that every llama.cpp required-grammar accepts (reasoning is optional or not allowed there).
- Families with no template fixture (Llama 3.1, Qwen2.5) are in FAMILIES_WITHOUT_TEMPLATE, not FAMILIES.
- "bos" is "" where the model has no BOS token.
"""

GET_WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}
CALL = ("get_weather", {"city": "Rome"})
PARALLEL_CALLS = [("get_weather", {"city": "Rome"}), ("get_weather", {"city": "Paris"})]

ANSWER_FINAL = "Hello, world!\nWhat's up?"  # llama.cpp's message_assist content
ANSWER_REASONING = "I'm\nthinking"  # llama.cpp's message_assist_thoughts reasoning

TEST_CHAT = "ggml-org/llama.cpp tests/test-chat.cpp @ 0042e2079d3428ba7af410df553202aa7fdf8d7a"
# An older revision (classic test_templates / common_chat_parse tests), read from a fork that mirrors
# upstream (its template files are byte-identical to upstream's, checked by sha256 where possible).
TEST_CHAT_OLD = "ye-NX/llama.cpp (mirror) tests/test-chat.cpp @ b354d7c9ecb76c97c07098617cdebbdfffa2583e"
CHAT_CPP_OLD = "ye-NX/llama.cpp (mirror) common/chat.cpp @ b354d7c9ecb76c97c07098617cdebbdfffa2583e"
VOCAB_CPP = "ggml-org/llama.cpp src/llama-vocab.cpp @ 00ad355e009e83abf98f96a6ded7193b95763681"

# DeepSeek markup (U+FF5C fullwidth vertical bar, U+2581 lower one eighth block).
DS_BOS = "<｜begin▁of▁sentence｜>"
DS_EOS = "<｜end▁of▁sentence｜>"
DS_CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
DS_CALL_BEGIN = "<｜tool▁call▁begin｜>"
DS_SEP = "<｜tool▁sep｜>"
DS_CALL_END = "<｜tool▁call▁end｜>"
DS_CALLS_END = "<｜tool▁calls▁end｜>"

MISTRAL_CONTROL = [
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    "[TOOL_CALLS]",
]

FAMILIES = {
    # ------------------------------------------------------------------ gpt-oss (harmony)
    "gpt-oss": {
        "template": "gpt-oss.jinja",
        "template_kwargs": {},
        # The template ends the prompt with "<|start|>assistant": the model writes the channel header.
        "gen_prompt_end": "<|start|>assistant",
        "reasoning_prefilled": False,
        # All harmony markup is special in the o200k_harmony vocab ...
        "control_tokens": [
            "<|start|>",
            "<|end|>",
            "<|message|>",
            "<|channel|>",
            "<|constrain|>",
            "<|return|>",
            "<|call|>",
            "<|startoftext|>",
            "<|endoftext|>",
        ],
        # ... but llama.cpp re-marks these USER_DEFINED, so it always prints them ("quick hack for
        # gpt-oss"; and <|end|> is removed from EOG when <|return|> and <|call|> exist) - VOCAB_CPP.
        "always_rendered": ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", "<|end|>"],
        "preserved_tokens": ["<|channel|>", "<|constrain|>", "<|message|>", "<|start|>", "<|end|>"],
        # EOG after llama.cpp's fix-up: <|return|> ends a final answer, <|call|> ends a tool call,
        # <|end|> does NOT end generation (it separates the analysis message from the next one).
        # test-chat.cpp (old) uses end_tokens {"<|return|>", "<|call|>"}.
        "eog_tokens": ["<|return|>", "<|call|>", "<|endoftext|>"],
        "bos": "<|startoftext|>",
        "eos": "<|return|>",
        "answer": (
            "<|channel|>analysis<|message|>I'm\nthinking<|end|>"
            "<|start|>assistant<|channel|>final<|message|>Hello, world!\nWhat's up?"
        ),
        "answer_end": "<|return|>",
        "answer_final": ANSWER_FINAL,
        "answer_reasoning": ANSWER_REASONING,
        # Recipient in the channel header, with <|constrain|>json (old test, common_chat_parse GPT_OSS).
        "call": (
            "<|channel|>analysis<|message|>I'm\nthinking<|end|>"
            "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
            '<|message|>{"city": "Rome"}'
        ),
        "call_end": "<|call|>",
        "call_reasoning": ANSWER_REASONING,
        "call_content": "",
        "call_id": None,
        # current test: 'Tool call in commentary channel' (no analysis message).
        "forced": '<|channel|>commentary to=functions.get_weather<|message|>{"city": "Rome"}',
        # One call per message; <|call|> is EOG, so the model stops after the first call. The template
        # also assumes one call per assistant message ("We assume max 1 tool call per message").
        "parallel": None,
        "parallel_reasoning": None,
        "parallel_ids": None,
        "variants": {
            "answer_final_only": {  # current test: "Basic content only - final channel"
                "raw": "<|channel|>final<|message|>Hello, world!\nWhat's up?",
                "content": ANSWER_FINAL,
                "reasoning": "",
                "calls": [],
            },
            "answer_commentary_only": {  # current test: content in the commentary channel
                "raw": "<|channel|>commentary<|message|>Hello, world!\nWhat's up?",
                "content": ANSWER_FINAL,
                "reasoning": "",
                "calls": [],
            },
            "call_recipient_in_role_constrain": {  # old test: "Test tool calling in role header"
                "raw": (
                    "<|channel|>analysis<|message|>I'm\nthinking<|end|>"
                    "<|start|>assistant to=functions.get_weather<|channel|>analysis <|constrain|>json"
                    '<|message|>{"city": "Rome"}'
                ),
                "content": "",
                "reasoning": ANSWER_REASONING,
                "calls": [CALL],
            },
            "call_recipient_in_role": {  # current test: "Tool call with reasoning + content"
                "raw": (
                    "<|channel|>analysis<|message|>I'm\nthinking<|end|>"
                    "<|start|>assistant to=functions.get_weather<|channel|>analysis"
                    '<|message|>{"city": "Rome"}'
                ),
                "content": "",
                "reasoning": ANSWER_REASONING,
                "calls": [CALL],
            },
            "call_first_message_in_role": {  # old test: the recipient follows "<|start|>assistant" at once
                "raw": (
                    " to=functions.get_weather<|channel|>commentary <|constrain|>json"
                    '<|message|>{"city": "Rome"}'
                ),
                "content": "",
                "reasoning": "",
                "calls": [CALL],
            },
            "call_first_message_in_channel": {  # current test: "Tool call in commentary channel"
                "raw": '<|channel|>commentary to=functions.get_weather<|message|>{"city": "Rome"}',
                "content": "",
                "reasoning": "",
                "calls": [CALL],
            },
            "call_with_preamble": {  # old test: commentary preamble (content) then the call
                "raw": (
                    "<|channel|>analysis<|message|>I'm\nthinking<|end|>"
                    "<|start|>assistant<|channel|>commentary<|message|>Hello, world!\nWhat's up?<|end|>"
                    "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
                    '<|message|>{"city": "Rome"}'
                ),
                "content": ANSWER_FINAL,
                "reasoning": ANSWER_REASONING,
                "calls": [CALL],
            },
        },
        "source": (
            f"{TEST_CHAT}, 'GPT-OSS format tests' (peg_tester openai-gpt-oss-120b.jinja); "
            f"{TEST_CHAT_OLD}, block read_templates(openai-gpt-oss-120b.jinja) (common_chat_parse GPT_OSS); "
            f"{VOCAB_CPP} (EOG / USER_DEFINED fix-ups); common/parsers/gpt-oss.cpp @ 2629d7b5 (preserved)"
        ),
        "notes": (
            "The history form rendered by the template is '<|start|>assistant to=functions.X<|channel|>"
            "commentary json<|message|>{...}<|call|>' (no <|constrain|>); the model writes <|constrain|>json."
        ),
    },
    # ------------------------------------------------------------------ Qwen3 (hybrid thinking)
    "qwen3": {
        "template": "qwen3.jinja",
        # enable_thinking=True (llama.cpp's default) keeps the prompt at "<|im_start|>assistant\n";
        # enable_thinking=False appends "<think>\n\n</think>\n\n" (variant answer_no_thinking).
        "template_kwargs": {"enable_thinking": True},
        "gen_prompt_end": "<|im_start|>assistant\n",
        "reasoning_prefilled": False,
        "control_tokens": ["<|im_start|>", "<|im_end|>", "<|endoftext|>"],
        "always_rendered": [],
        # <think>, </think>, <tool_call>, </tool_call> are added tokens that are NOT special (printed).
        "preserved_tokens": ["<think>", "</think>", "<tool_call>", "</tool_call>"],
        "eog_tokens": ["<|im_end|>", "<|endoftext|>"],
        "bos": "",  # Qwen has no BOS token (bos_token null)
        "eos": "<|im_end|>",
        # COMPOSED: Qwen3 (not prefilled) writes "<think>\n" itself; the rest is the Qwen3.5-4B test
        # "I'm\nthinking\n</think>\n\nHello, world!\nWhat's up?" whose template prefills "<think>\n"
        # (test_template_generation_prompt). Same shape as Qwen3's own history rendering.
        "answer": "<think>\nI'm\nthinking\n</think>\n\nHello, world!\nWhat's up?",
        "answer_end": "<|im_end|>",
        "answer_final": ANSWER_FINAL,
        "answer_reasoning": ANSWER_REASONING,
        # COMPOSED: reasoning as above + the Hermes/Qwen call "<tool_call>\n{...}\n</tool_call>"
        # (old test, test_templates ... message_assist_call). Equals the template's own rendering.
        "call": (
            "<think>\nI'm\nthinking\n</think>\n\n"
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>'
        ),
        "call_end": "<|im_end|>",
        "call_reasoning": ANSWER_REASONING,
        "call_content": "",
        "call_id": None,
        # old test: test_templates runs message_assist_call under AUTO and REQUIRED with this delta.
        "forced": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>',
        # Old test "Test multiple tool calls with template" (two <tool_call> blocks joined by "\n").
        "parallel": (
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
        ),
        "parallel_reasoning": "",
        "parallel_ids": None,
        "variants": {
            "answer_compact_think": {  # old test (HERMES_2_PRO + DEEPSEEK reasoning format)
                "raw": "<think>I'm\nthinking</think>Hello, world!\nWhat's up?",
                "content": ANSWER_FINAL,
                "reasoning": ANSWER_REASONING,
                "calls": [],
            },
            "answer_no_thinking": {  # with enable_thinking=False the prompt already holds the empty block
                "raw": "Hello, world!\nWhat's up?",
                "content": ANSWER_FINAL,
                "reasoning": "",
                "calls": [],
            },
            "call_plain": {  # old test, test_templates(..., message_assist_call, ...)
                "raw": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>',
                "content": "",
                "reasoning": "",
                "calls": [CALL],
            },
            "call_with_content": {  # old test, message_assist_call_content
                "raw": (
                    'Hello, world!\nWhat\'s up?<tool_call>\n{"name": "get_weather", "arguments": '
                    '{"city": "Rome"}}\n</tool_call>'
                ),
                "content": ANSWER_FINAL,
                "reasoning": "",
                "calls": [CALL],
            },
        },
        "source": (
            f"{TEST_CHAT_OLD}, block NousResearch-Hermes-2-Pro (HERMES_2_PRO, the format llama.cpp used "
            f"for Qwen-Qwen3-0.6B.jinja and Qwen-Qwen2.5-7B-Instruct.jinja); {TEST_CHAT}, Qwen3.5-4B block "
            f"and test_template_generation_prompt; {CHAT_CPP_OLD} (hermes_2_pro preserved_tokens)"
        ),
        "notes": "Hermes-style JSON in <tool_call>; reasoning in <think>; parallel calls one block each.",
    },
    # ------------------------------------------------------------------ DeepSeek R1 distill
    "deepseek-r1": {
        "template": "deepseek-r1-distill.jinja",
        "template_kwargs": {},
        # The distill template ends the generation prompt with "<think>\n" (thinking forced open):
        # the reply starts INSIDE the reasoning and contains only the closing "</think>".
        "gen_prompt_end": "<｜Assistant｜><think>\n",
        "reasoning_prefilled": True,
        "control_tokens": [DS_BOS, DS_EOS],
        "always_rendered": [],
        # Old common/chat.cpp lists these (the last one really is "<｜tool▁calls▁end｜" without ">").
        "preserved_tokens": [
            "<think>",
            "</think>",
            DS_CALLS_BEGIN,
            DS_CALL_BEGIN,
            DS_SEP,
            DS_CALL_END,
            "<｜tool▁calls▁end｜",
        ],
        "eog_tokens": [DS_EOS],
        "bos": DS_BOS,
        "eos": DS_EOS,
        # Current test, DeepSeek-R1-Distill-Qwen-32B: "I'm\nthinking</think>Hello, world!\nWhat's up?"
        "answer": "I'm\nthinking</think>Hello, world!\nWhat's up?",
        "answer_end": DS_EOS,
        "answer_final": ANSWER_FINAL,
        "answer_reasoning": ANSWER_REASONING,
        # COMPOSED: the old test's message_assist_call_thoughts input
        # "<think>I'm\nthinking</think>\n\n<｜tool▁calls▁begin｜>...```<｜tool▁call▁end｜>..."
        # without its leading "<think>" (here the prompt already opened it).
        "call": (
            "I'm\nthinking</think>\n\n"
            f"{DS_CALLS_BEGIN}{DS_CALL_BEGIN}function{DS_SEP}get_weather\n"
            '```json\n{"city": "Rome"}\n```'
            f"{DS_CALL_END}{DS_CALLS_END}"
        ),
        "call_end": DS_EOS,
        "call_reasoning": ANSWER_REASONING,
        "call_content": "",
        "call_id": None,
        # current test (llama-cpp-deepseek-r1.jinja): empty reasoning, then the call. The old required
        # grammar is ( "</think>" space )? calls: no reasoning text under tool_choice=required.
        "forced": (
            f"</think>{DS_CALLS_BEGIN}{DS_CALL_BEGIN}function{DS_SEP}get_weather\n"
            '```json\n{"city": "Rome"}```'
            f"{DS_CALL_END}{DS_CALLS_END}"
        ),
        # COMPOSED from the template: no llama.cpp test shows two R1 calls; this is what the distill
        # template renders for an assistant turn with two calls (second call after "\n").
        "parallel": (
            f"{DS_CALLS_BEGIN}{DS_CALL_BEGIN}function{DS_SEP}get_weather\n"
            '```json\n{"city": "Rome"}\n```'
            f"{DS_CALL_END}\n{DS_CALL_BEGIN}function{DS_SEP}get_weather\n"
            '```json\n{"city": "Paris"}\n```'
            f"{DS_CALL_END}{DS_CALLS_END}"
        ),
        "parallel_reasoning": "",
        "parallel_ids": None,
        "variants": {
            "answer_empty_reasoning": {  # current test: "</think>Hello, world!\nWhat's up?"
                "raw": "</think>Hello, world!\nWhat's up?",
                "content": ANSWER_FINAL,
                "reasoning": "",
                "calls": [],
            },
            "call_no_reasoning_compact_fence": {  # current test (Distill-Qwen-32B, enable_thinking false)
                "raw": (
                    f"{DS_CALLS_BEGIN}{DS_CALL_BEGIN}function{DS_SEP}get_weather\n"
                    '```json\n{"city": "Rome"}```'
                    f"{DS_CALL_END}{DS_CALLS_END}"
                ),
                "content": "",
                "reasoning": "",
                "calls": [CALL],
            },
            "call_empty_reasoning": {  # current test, llama-cpp-deepseek-r1.jinja
                "raw": (
                    f"</think>{DS_CALLS_BEGIN}{DS_CALL_BEGIN}function{DS_SEP}get_weather\n"
                    '```json\n{"city": "Rome"}```'
                    f"{DS_CALL_END}{DS_CALLS_END}"
                ),
                "content": "",
                "reasoning": "",
                "calls": [CALL],
            },
            "call_tool_calls_alias": {  # old test: "<｜tool▁calls｜>" accepted as the opening tag
                "raw": (
                    f"<｜tool▁calls｜>function{DS_SEP}get_weather\n"
                    '```json\n{"city": "Rome"}\n```'
                    f"{DS_CALL_END}{DS_CALLS_END}"
                ),
                "content": "",
                "reasoning": "",
                "calls": [CALL],
            },
        },
        "source": (
            f"{TEST_CHAT}, blocks 'DeepSeek R1 Distill Qwen 32B', 'DeepSeek R1 Distill Llama 8B', "
            f"'llama-cpp DeepSeek R1 template'; {TEST_CHAT_OLD}, llama-cpp-deepseek-r1.jinja block "
            f"(message_assist_call_thoughts); {CHAT_CPP_OLD} (deepseek_r1 preserved_tokens)"
        ),
        "notes": (
            "The official distill template does not render a tools list at all; llama.cpp documents "
            "models/templates/llama-cpp-deepseek-r1.jinja as the tool-capable replacement."
        ),
    },
    # ------------------------------------------------------------------ DeepSeek V3.1 (hybrid)
    "deepseek-v3.1": {
        "template": "deepseek-v3.1.jinja",
        # The template reads `thinking` (or enable_thinking): True -> prompt ends "<｜Assistant｜><think>",
        # False (the template's own default) -> "<｜Assistant｜></think>" (see variants *_no_thinking).
        "template_kwargs": {"enable_thinking": True},
        "gen_prompt_end": "<｜Assistant｜><think>",
        "reasoning_prefilled": True,
        "control_tokens": [DS_BOS, DS_EOS],
        "always_rendered": [],
        "preserved_tokens": [
            "<think>",
            "</think>",
            DS_CALLS_BEGIN,
            DS_CALL_BEGIN,
            DS_SEP,
            DS_CALL_END,
            DS_CALLS_END,
        ],
        "eog_tokens": [DS_EOS],
        "bos": DS_BOS,
        "eos": DS_EOS,
        # Old test: common_chat_parse("I'm\nthinking</think>Hello, world!\nWhat's up?", DEEPSEEK_V3_1,
        # thinking_forced_open) -> reasoning "I'm\nthinking", content "Hello, world!\nWhat's up?".
        "answer": "I'm\nthinking</think>Hello, world!\nWhat's up?",
        "answer_end": DS_EOS,
        "answer_final": ANSWER_FINAL,
        "answer_reasoning": ANSWER_REASONING,
        # Current test: "REASONING</think><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_time<｜tool▁sep｜>
        # {\"city\": \"Tokyo\"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>" (reasoning text replaced).
        "call": (
            f"I'm\nthinking</think>{DS_CALLS_BEGIN}{DS_CALL_BEGIN}get_weather{DS_SEP}"
            f'{{"city": "Rome"}}{DS_CALL_END}{DS_CALLS_END}'
        ),
        "call_end": DS_EOS,
        "call_reasoning": ANSWER_REASONING,
        "call_content": "",
        "call_id": None,
        # COMPOSED: "</think>" (old required grammar: ( "</think>" space )? calls) + the current test's
        # enable_thinking(false) call.
        "forced": (
            f'</think>{DS_CALLS_BEGIN}{DS_CALL_BEGIN}get_weather{DS_SEP}{{"city": "Rome"}}'
            f"{DS_CALL_END}{DS_CALLS_END}"
        ),
        # Current test: "REASONING</think>CONTENT<｜tool▁calls▁begin｜>...get_time...get_weather..."
        # (content text dropped, both calls are get_weather here).
        "parallel": (
            f"I'm\nthinking</think>{DS_CALLS_BEGIN}"
            f'{DS_CALL_BEGIN}get_weather{DS_SEP}{{"city": "Rome"}}{DS_CALL_END}'
            f'{DS_CALL_BEGIN}get_weather{DS_SEP}{{"city": "Paris"}}{DS_CALL_END}'
            f"{DS_CALLS_END}"
        ),
        "parallel_reasoning": ANSWER_REASONING,
        "parallel_ids": None,
        "variants": {
            "answer_no_thinking": {  # current test: "CONTENT" with enable_thinking(false)
                "raw": "Hello, world!\nWhat's up?",
                "content": ANSWER_FINAL,
                "reasoning": "",
                "calls": [],
            },
            "call_no_thinking": {  # current test, enable_thinking(false)
                "raw": (
                    f'{DS_CALLS_BEGIN}{DS_CALL_BEGIN}get_weather{DS_SEP}{{"city": "Rome"}}'
                    f"{DS_CALL_END}{DS_CALLS_END}"
                ),
                "content": "",
                "reasoning": "",
                "calls": [CALL],
            },
            "parallel_with_content": {  # current test, exactly its shape
                "raw": (
                    f"I'm\nthinking</think>Hello, world!\nWhat's up?{DS_CALLS_BEGIN}"
                    f'{DS_CALL_BEGIN}get_weather{DS_SEP}{{"city": "Rome"}}{DS_CALL_END}'
                    f'{DS_CALL_BEGIN}get_weather{DS_SEP}{{"city": "Paris"}}{DS_CALL_END}'
                    f"{DS_CALLS_END}"
                ),
                "content": ANSWER_FINAL,
                "reasoning": ANSWER_REASONING,
                "calls": PARALLEL_CALLS,
            },
        },
        "source": (
            f"{TEST_CHAT}, the four peg_tester deepseek-ai-DeepSeek-V3.1.jinja blocks; {TEST_CHAT_OLD}, "
            f"DeepSeek-V3.1 block; {CHAT_CPP_OLD} (deepseek_v3_1 preserved_tokens)"
        ),
        "notes": "V3.1 calls: name<｜tool▁sep｜>raw JSON, no 'function' type prefix and no ```json fence.",
    },
    # ------------------------------------------------------------------ Mistral Small 3.2
    "mistral-small-3.2": {
        "template": "mistral-small-3.2.jinja",
        "template_kwargs": {},
        "gen_prompt_end": "[/INST]",
        "reasoning_prefilled": False,
        "control_tokens": [
            *MISTRAL_CONTROL,
            "[SYSTEM_PROMPT]",
            "[/SYSTEM_PROMPT]",
            "[TOOL_CONTENT]",
            "[ARGS]",
            "[CALL_ID]",
            "[IMG]",
        ],
        "always_rendered": [],
        # Not in any preserved list readable here for this template (the current autoparser derives it);
        # [ARGS] and [CALL_ID] must also be printed for this syntax to reach the parser.
        "preserved_tokens": ["[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"],
        "eog_tokens": ["</s>"],
        "bos": "<s>",
        "eos": "</s>",
        "answer": "Hello, world!\nWhat's up?",
        "answer_end": "</s>",
        "answer_final": ANSWER_FINAL,
        "answer_reasoning": "",
        # Current test, Mistral-Small-3.2-24B-Instruct-2506.jinja (FUNC_BRACKET_TAG, reconstruction
        # checked): the 3.2 template renders [TOOL_CALLS]name[CALL_ID]id[ARGS]args.
        "call": '[TOOL_CALLS]get_weather[CALL_ID]123456789[ARGS]{"city": "Rome"}',
        "call_end": "</s>",
        "call_reasoning": "",
        "call_content": "",
        "call_id": "123456789",
        "forced": '[TOOL_CALLS]get_weather[CALL_ID]123456789[ARGS]{"city": "Rome"}',
        "parallel": (
            '[TOOL_CALLS]get_weather[CALL_ID]000000001[ARGS]{"city": "Rome"}'
            '[TOOL_CALLS]get_weather[CALL_ID]000000002[ARGS]{"city": "Paris"}'
        ),
        "parallel_reasoning": "",
        "parallel_ids": ["000000001", "000000002"],
        "variants": {
            "call_without_call_id": {  # Devstral-Small-2507 / Ministral-3 tests: no [CALL_ID]
                "raw": '[TOOL_CALLS]get_weather[ARGS]{"city": "Rome"}',
                "content": "",
                "reasoning": "",
                "calls": [CALL],
            },
            "call_with_content": {  # Devstral test: content then [TOOL_CALLS]
                "raw": 'Hello, world!\nWhat\'s up?[TOOL_CALLS]get_weather[ARGS]{"city": "Rome"}',
                "content": ANSWER_FINAL,
                "reasoning": "",
                "calls": [CALL],
            },
        },
        "source": f"{TEST_CHAT}, blocks 'Mistral Small 3.2 - FUNC_BRACKET_TAG format' and 'Devstral'",
        "notes": "Call ids are 9 alphanumerics (the template raises otherwise).",
    },
    # ------------------------------------------------------------------ Mistral Nemo
    "mistral-nemo": {
        "template": "mistral-nemo.jinja",
        "template_kwargs": {},
        "gen_prompt_end": "[/INST]",
        "reasoning_prefilled": False,
        "control_tokens": list(MISTRAL_CONTROL),
        "always_rendered": [],
        "preserved_tokens": ["[TOOL_CALLS]"],
        "eog_tokens": ["</s>"],
        "bos": "<s>",
        "eos": "</s>",
        "answer": "Hello, world!\nWhat's up?",
        "answer_end": "</s>",
        "answer_final": ANSWER_FINAL,
        "answer_reasoning": "",
        # Current and old test: "[TOOL_CALLS][{\"name\": ..., \"arguments\": {...}, \"id\": \"123456789\"}]"
        "call": '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Rome"}, "id": "123456789"}]',
        "call_end": "</s>",
        "call_reasoning": "",
        "call_content": "",
        "call_id": "123456789",
        "forced": '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Rome"}, "id": "123456789"}]',
        # COMPOSED from the template (one JSON array, items joined by ", "); llama.cpp's grammar allows
        # several items when parallel_tool_calls is on, but no test shows two.
        "parallel": (
            '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Rome"}, "id": "123456789"}, '
            '{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "987654321"}]'
        ),
        "parallel_reasoning": "",
        "parallel_ids": ["123456789", "987654321"],
        "variants": {},
        "source": (
            f"{TEST_CHAT}, block 'mistralai-Mistral-Nemo-Instruct-2407.jinja'; {TEST_CHAT_OLD}, same block; "
            f"{CHAT_CPP_OLD} (mistral_nemo preserved_tokens, 9-char id pattern)"
        ),
        "notes": "No reasoning. Ids: ^[a-zA-Z0-9]{9}$.",
    },
    # ------------------------------------------------------------------ Magistral (Small 2509)
    "magistral": {
        "template": "magistral.jinja",
        "template_kwargs": {},
        # No add_generation_prompt branch: the prompt ends with the last "[/INST]"; the model opens
        # [THINK] itself (the default system prompt asks for it).
        "gen_prompt_end": "[/INST]",
        "reasoning_prefilled": False,
        "control_tokens": [
            *MISTRAL_CONTROL,
            "[SYSTEM_PROMPT]",
            "[/SYSTEM_PROMPT]",
            "[ARGS]",
            "[CALL_ID]",
            "[THINK]",
            "[/THINK]",
            "[IMG]",
        ],
        "always_rendered": [],
        "preserved_tokens": ["[THINK]", "[/THINK]", "[TOOL_CALLS]", "[ARGS]"],
        "eog_tokens": ["</s>"],
        "bos": "<s>",
        "eos": "</s>",
        # Current test (Ministral-3-14B-Reasoning-2512, same [THINK]/[TOOL_CALLS]/[ARGS] markup);
        # old test: "[THINK]raisonnement[/THINK]Réponse" parsed by COMMON_CHAT_FORMAT_MAGISTRAL.
        "answer": "[THINK]I'm\nthinking[/THINK]Hello, world!\nWhat's up?",
        "answer_end": "</s>",
        "answer_final": ANSWER_FINAL,
        "answer_reasoning": ANSWER_REASONING,
        # Current test: "[THINK]I'm\nthinking[/THINK]" R"([TOOL_CALLS]special_function[ARGS]{"arg1":1})"
        "call": '[THINK]I\'m\nthinking[/THINK][TOOL_CALLS]get_weather[ARGS]{"city":"Rome"}',
        "call_end": "</s>",
        "call_reasoning": ANSWER_REASONING,
        "call_content": "",
        "call_id": None,
        # current test (Ministral-3): the call without reasoning.
        "forced": '[TOOL_CALLS]get_weather[ARGS]{"city":"Rome"}',
        # Current test: R"([TOOL_CALLS]special_function[ARGS]{"arg1": 1})"
        #               R"([TOOL_CALLS]special_function_with_opt[ARGS]{"arg1": 1, "arg2": 2})"
        "parallel": (
            '[TOOL_CALLS]get_weather[ARGS]{"city": "Rome"}[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}'
        ),
        "parallel_reasoning": "",
        "parallel_ids": None,
        "variants": {
            "answer_french": {  # old test, message_assist_thoughts_unparsed_magistral
                "raw": "[THINK]raisonnement[/THINK]Réponse",
                "content": "Réponse",
                "reasoning": "raisonnement",
                "calls": [],
            },
            "call_no_reasoning": {  # current test
                "raw": '[TOOL_CALLS]get_weather[ARGS]{"city":"Rome"}',
                "content": "",
                "reasoning": "",
                "calls": [CALL],
            },
        },
        "source": (
            f"{TEST_CHAT}, block 'Ministral-3-14B-Reasoning-2512' (same markup as Magistral 2509, whose "
            f"template renders [TOOL_CALLS]name[ARGS]args); {TEST_CHAT_OLD}, MAGISTRAL parse; "
            "common/parsers/ministral3.cpp @ 5204e210 (preserved_tokens)"
        ),
        "notes": (
            "llama.cpp's older MAGISTRAL format expected Nemo-style [TOOL_CALLS][{...}] arrays; the "
            "2509 template and the current parser use [TOOL_CALLS]name[ARGS]{...}."
        ),
    },
    # ------------------------------------------------------------------ Llama 3.3
    "llama-3.3": {
        "template": "llama-3.3.jinja",
        "template_kwargs": {},
        "gen_prompt_end": "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "reasoning_prefilled": False,
        "control_tokens": [
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|eom_id|>",
            "<|python_tag|>",
        ],
        "always_rendered": [],
        # Only when a builtin tool (python / code_interpreter / brave_search / wolfram_alpha) is given.
        "preserved_tokens": ["<|python_tag|>"],
        "eog_tokens": ["<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"],
        "bos": "<|begin_of_text|>",
        "eos": "<|eot_id|>",
        "answer": "Hello, world!\nWhat's up?",
        "answer_end": "<|eot_id|>",
        "answer_final": ANSWER_FINAL,
        "answer_reasoning": "",
        # Old test (Llama 3.1 block, LLAMA_3_X): "{\"name\": \"special_function\", \"parameters\": ...}"
        "call": '{"name": "get_weather", "parameters": {"city": "Rome"}}',
        # Custom (JSON) tools end with <|eot_id|>; builtin <|python_tag|> calls end with <|eom_id|>.
        "call_end": "<|eot_id|>",
        "call_reasoning": "",
        "call_content": "",
        "call_id": None,
        "forced": '{"name": "get_weather", "parameters": {"city": "Rome"}}',
        "parallel": None,  # the template raises "This model only supports single tool-calls at once!"
        "parallel_reasoning": None,
        "parallel_ids": None,
        "variants": {
            "builtin_python_call": {  # old test, LLAMA_3_X_WITH_BUILTIN_TOOLS (needs a `python` tool)
                "raw": "<|python_tag|>python.call(code=\"print('hey')\")",
                "content": "",
                "reasoning": "",
                "calls": [("python", {"code": "print('hey')"})],
            },
        },
        "source": (
            f"{TEST_CHAT_OLD}, block meta-llama-Llama-3.1-8B-Instruct.jinja (also asserts the 3.3 template "
            f"gives LLAMA_3_X_WITH_BUILTIN_TOOLS); {TEST_CHAT}, 'Llama 3.3' block (content only); "
            f"{CHAT_CPP_OLD} (llama_3_x: <|python_tag|>, additional stop <|eom_id|>)"
        ),
        "notes": (
            "llama.cpp passes date_string, tools_in_user_message=False and builtin_tools to this template."
        ),
    },
    # ------------------------------------------------------------------ Gemma 2 (no native tools)
    "gemma": {
        "template": "gemma-2.jinja",
        "template_kwargs": {},
        # No system role: the template raises 'System role not supported'; render [user] only
        # (or fold the system text into the first user message).
        "gen_prompt_end": "<start_of_turn>model\n",
        "reasoning_prefilled": False,
        "control_tokens": ["<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>"],
        "always_rendered": [],
        "preserved_tokens": [],
        "eog_tokens": ["<end_of_turn>", "<eos>"],
        "bos": "<bos>",
        "eos": "<eos>",
        "answer": "Hello, world!\nWhat's up?",
        "answer_end": "<end_of_turn>",
        "answer_final": ANSWER_FINAL,
        "answer_reasoning": "",
        "call": None,
        "call_end": None,
        "call_reasoning": None,
        "call_content": None,
        "call_id": None,
        "forced": None,
        "parallel": None,
        "parallel_reasoning": None,
        "parallel_ids": None,
        "variants": {},
        "source": f"{TEST_CHAT}, block 'Google Gemma 2 2B - does not support tool calling'",
        "notes": "llama.cpp falls back to its GENERIC JSON tool format for this template (old test).",
    },
    # ------------------------------------------------------------------ IBM Granite 3.3
    "granite": {
        "template": "granite.jinja",
        # The template thinks only when rendered with thinking=True (llama.cpp passes `thinking`).
        "template_kwargs": {},
        "gen_prompt_end": "<|start_of_role|>assistant<|end_of_role|>",
        "reasoning_prefilled": False,
        # <|start_of_role|>, <|end_of_role|>, <|end_of_text|> are special; <|tool_call|> is listed in
        # preserved_tokens (so llama.cpp treats it as possibly special) - not verified here.
        "control_tokens": ["<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>", "<|tool_call|>"],
        "always_rendered": [],
        "preserved_tokens": ["<think>", "</think>", "<response>", "</response>", "<|tool_call|>"],
        "eog_tokens": ["<|end_of_text|>"],
        "bos": "<|end_of_text|>",  # granite-3.x uses <|end_of_text|> for bos and eos (unverified here)
        "eos": "<|end_of_text|>",
        "answer": "Hello, world!\nWhat's up?",
        "answer_end": "<|end_of_text|>",
        "answer_final": ANSWER_FINAL,
        "answer_reasoning": "",
        # Old test (GRANITE): "<|tool_call|>[{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}]"
        "call": '<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Rome"}}]',
        "call_end": "<|end_of_text|>",
        "call_reasoning": "",
        "call_content": "",
        "call_id": None,
        "forced": '<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Rome"}}]',
        # COMPOSED: a JSON list with two items (the grammar is "[" call ("," call)* "]"); no test shows it.
        "parallel": (
            '<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Rome"}}, '
            '{"name": "get_weather", "arguments": {"city": "Paris"}}]'
        ),
        "parallel_reasoning": "",
        "parallel_ids": None,
        "variants": {
            "answer_thinking": {  # current test (DEEPSEEK reasoning format)
                "raw": "<think>I'm\nthinking</think>Hello, world!\nWhat's up?",
                "content": ANSWER_FINAL,
                "reasoning": ANSWER_REASONING,
                "calls": [],
            },
            "answer_thinking_response_tags": {  # old test: thinking mode wraps the answer in <response>
                "raw": "<think>I'm\nthinking</think><response>Hello, world!\nWhat's up?</response>",
                "content": ANSWER_FINAL,
                "reasoning": ANSWER_REASONING,
                "calls": [],
            },
        },
        "source": (
            f"{TEST_CHAT}, block 'IBM Granite (reasoning and tool calling model)'; {TEST_CHAT_OLD}, "
            f"ibm-granite-granite-3.3-2B-Instruct.jinja block; {CHAT_CPP_OLD} (granite)"
        ),
        "notes": "The current llama.cpp test no longer checks granite-3.3 tool calls (only granite 4.x).",
    },
    # ------------------------------------------------------------------ GLM-4.5
    "glm-4.5": {
        "template": "glm-4.5.jinja",
        # enable_thinking=False appends "/nothink" to the user turn and "\n<think></think>" to the prompt.
        "template_kwargs": {"enable_thinking": True},
        "gen_prompt_end": "<|assistant|>",
        "reasoning_prefilled": False,
        # Role tokens and [gMASK]/<sop> are special; <think>, <tool_call>, <arg_key>, <arg_value> and
        # their closing tags are added tokens that are printed (likely; not verified here).
        "control_tokens": [
            "[gMASK]",
            "<sop>",
            "<|system|>",
            "<|user|>",
            "<|assistant|>",
            "<|observation|>",
            "<|endoftext|>",
        ],
        "always_rendered": [],
        "preserved_tokens": [
            "<think>",
            "</think>",
            "<tool_call>",
            "</tool_call>",
            "<arg_key>",
            "</arg_key>",
            "<arg_value>",
            "</arg_value>",
        ],
        # The test uses end_tokens {"<|assistant|>", "<|observation|>"}; llama.cpp's converter adds
        # <|user|> and <|observation|> as EOS for glm4_moe. A turn ends by starting the next role.
        "eog_tokens": ["<|endoftext|>", "<|user|>", "<|observation|>"],
        "bos": "",  # no BOS token; the template writes "[gMASK]<sop>" itself
        "eos": "<|endoftext|>",
        "answer": "\n<think>I'm\nthinking</think>\nHello, world!\nWhat's up?",
        "answer_end": "<|user|>",
        "answer_final": ANSWER_FINAL,
        "answer_reasoning": ANSWER_REASONING,
        "call": (
            "\n<think>I'm\nthinking</think>\n"
            "<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Rome</arg_value>\n</tool_call>"
        ),
        "call_end": "<|observation|>",
        "call_reasoning": ANSWER_REASONING,
        "call_content": "",
        "call_id": None,
        # test-glm-4-5.cpp 'Test parsing tool calls' (no reasoning).
        "forced": (
            "\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Rome</arg_value>\n</tool_call>"
        ),
        # COMPOSED: two test-shaped <tool_call> blocks joined by "\n" (the template puts "\n" before each
        # <tool_call>); the GLM tests show several calls only in other templates (GLM-4.7: no newline).
        "parallel": (
            "\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Rome</arg_value>\n</tool_call>"
            "\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>"
        ),
        "parallel_reasoning": "",
        "parallel_ids": None,
        "variants": {
            "call_plain": {
                "raw": (
                    "\n<tool_call>get_weather\n<arg_key>city</arg_key>\n"
                    "<arg_value>Rome</arg_value>\n</tool_call>"
                ),
                "content": "",
                "reasoning": "",
                "calls": [CALL],
            },
            "call_empty_think": {  # streaming test: "\n<think></think>\n<tool_call>...\n</tool_call>\n"
                "raw": (
                    "\n<think></think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n"
                    "<arg_value>Rome</arg_value>\n</tool_call>\n"
                ),
                "content": "",
                "reasoning": "",
                "calls": [CALL],
            },
            "answer_plain": {
                "raw": "Hello, world!\nWhat's up?",
                "content": ANSWER_FINAL,
                "reasoning": "",
                "calls": [],
            },
        },
        "source": (
            "ochafik/llama.cpp (fork of the llama.cpp chat-parser author) "
            "tests/chat-parsers/test-glm-4-5.cpp @ 148a605390c4c179f33932736f2da7c4cb251b23 "
            f"(format GLM_4_5, run on GLM-4.6.jinja); {TEST_CHAT}, 'GLM-4.6 tests' block"
        ),
        "notes": (
            "glm-4.5.jinja is llama.cpp's adapted copy (mentions 'polyfills disabled'); arguments are "
            "key/value pairs, non-string values as JSON text."
        ),
    },
    # ------------------------------------------------------------------ Kimi K2 (Instruct)
    "kimi-k2": {
        "template": "kimi-k2.jinja",
        "template_kwargs": {},
        "gen_prompt_end": "<|im_assistant|>assistant<|im_middle|>",
        "reasoning_prefilled": False,
        "control_tokens": [
            "[BOS]",
            "[EOS]",
            "<|im_end|>",
            "<|im_user|>",
            "<|im_assistant|>",
            "<|im_system|>",
            "<|im_middle|>",
            "<|tool_calls_section_begin|>",
            "<|tool_calls_section_end|>",
            "<|tool_call_begin|>",
            "<|tool_call_argument_begin|>",
            "<|tool_call_end|>",
        ],
        "always_rendered": [],
        "preserved_tokens": [
            "<|tool_calls_section_begin|>",
            "<|tool_calls_section_end|>",
            "<|tool_call_begin|>",
            "<|tool_call_argument_begin|>",
            "<|tool_call_end|>",
            "<think>",
            "</think>",
        ],
        # llama.cpp's EOG text list has "<|im_end|>" and, for Kimi-K2, "[EOT]" / "[EOS]".
        "eog_tokens": ["<|im_end|>", "[EOS]"],
        "bos": "[BOS]",  # from the K2 tokenizer as I know it; not verified here
        "eos": "[EOS]",
        "answer": "Hello, world!\nWhat's up?",
        "answer_end": "<|im_end|>",
        "answer_final": ANSWER_FINAL,
        "answer_reasoning": "",
        # Current test, moonshotai-Kimi-K2.jinja (reconstruction checked)
        "call": (
            "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>"
            '{"city": "Rome"}<|tool_call_end|><|tool_calls_section_end|>'
        ),
        "call_end": "<|im_end|>",
        "call_reasoning": "",
        "call_content": "",
        "call_id": "functions.get_weather:0",
        "forced": (
            "<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>"
            '{"city": "Rome"}<|tool_call_end|><|tool_calls_section_end|>'
        ),
        # Current test, Kimi-K2-Thinking block "Multiple tool calls (parallel)": counter 0, 1, ...
        "parallel": (
            "<|tool_calls_section_begin|>"
            "<|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>"
            '{"city": "Rome"}<|tool_call_end|>'
            "<|tool_call_begin|>functions.get_weather:1<|tool_call_argument_begin|>"
            '{"city": "Paris"}<|tool_call_end|>'
            "<|tool_calls_section_end|>"
        ),
        "parallel_reasoning": "",
        "parallel_ids": ["functions.get_weather:0", "functions.get_weather:1"],
        "variants": {
            "call_with_content": {  # Kimi-K2-Thinking test: "Tool call with content"
                "raw": (
                    "Hello, world!\nWhat's up?<|tool_calls_section_begin|><|tool_call_begin|>"
                    'functions.get_weather:0<|tool_call_argument_begin|>{"city": "Rome"}<|tool_call_end|>'
                    "<|tool_calls_section_end|>"
                ),
                "content": ANSWER_FINAL,
                "reasoning": "",
                "calls": [CALL],
            },
        },
        "source": f"{TEST_CHAT}, blocks 'Kimi-K2 old template' and 'Kimi-K2-Thinking tests'",
        "notes": (
            "The K2 template renders message content only (no tool_calls in history). The call id "
            "'functions.<name>:<n>' is written by the model; llama.cpp keeps it as the tool call id."
        ),
    },
}

# Families whose template is not available as a fixture (not in the searchable index): same fields,
# "template" is None. Kept apart so that every FAMILIES entry has a renderable template.
FAMILIES_WITHOUT_TEMPLATE = {
    # ------------------------------------------------------------------ Llama 3.1
    "llama-3.1": {
        # meta-llama-Llama-3.1-8B-Instruct.jinja is not in the searchable index. llama.cpp tests both
        # files the same way; to my knowledge the 3.1 and 3.3 Instruct templates are the same text, but
        # that is unverified here: render with llama-3.3.jinja at your own risk.
        "template": None,
        "template_substitute": "llama-3.3.jinja",
        "template_kwargs": {},
        "gen_prompt_end": "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "reasoning_prefilled": False,
        "control_tokens": [
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eot_id|>",
            "<|eom_id|>",
            "<|python_tag|>",
        ],
        "always_rendered": [],
        "preserved_tokens": ["<|python_tag|>"],
        # old test: end_tokens{ "<|eom_id|>", "<|eot_id|>" }
        "eog_tokens": ["<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"],
        "bos": "<|begin_of_text|>",
        "eos": "<|eot_id|>",
        "answer": "Hello, world!\nWhat's up?",
        "answer_end": "<|eot_id|>",
        "answer_final": ANSWER_FINAL,
        "answer_reasoning": "",
        "call": '{"name": "get_weather", "parameters": {"city": "Rome"}}',
        "call_end": "<|eot_id|>",
        "call_reasoning": "",
        "call_content": "",
        "call_id": None,
        "forced": '{"name": "get_weather", "parameters": {"city": "Rome"}}',
        "parallel": None,
        "parallel_reasoning": None,
        "parallel_ids": None,
        "variants": {
            "builtin_code_interpreter_call": {  # old test, llama_3_1_tools (code_interpreter)
                "raw": "<|python_tag|>code_interpreter.call(code=\"print('hey')\")",
                "content": "",
                "reasoning": "",
                "calls": [("code_interpreter", {"code": "print('hey')"})],
            },
        },
        "source": (
            f"{TEST_CHAT_OLD}, block meta-llama-Llama-3.1-8B-Instruct.jinja; {TEST_CHAT}, 'Llama 3.1' block"
        ),
        "notes": "Same syntax as llama-3.3.",
    },
    # ------------------------------------------------------------------ Qwen2.5 (Hermes tool calls)
    "qwen2.5": {
        # Qwen-Qwen2.5-7B-Instruct.jinja is not in the searchable index (no fixture).
        "template": None,
        "template_substitute": None,
        "template_kwargs": {},
        "gen_prompt_end": "<|im_start|>assistant\n",
        "reasoning_prefilled": False,
        "control_tokens": ["<|im_start|>", "<|im_end|>", "<|endoftext|>"],
        "always_rendered": [],
        "preserved_tokens": ["<tool_call>", "</tool_call>"],
        "eog_tokens": ["<|im_end|>", "<|endoftext|>"],
        "bos": "",  # no BOS token
        "eos": "<|im_end|>",
        "answer": "Hello, world!\nWhat's up?",
        "answer_end": "<|im_end|>",
        "answer_final": ANSWER_FINAL,
        "answer_reasoning": "",
        # Current test loop over MiMo-VL / Hermes-3 / Qwen-Qwen2.5-7B-Instruct.jinja
        "call": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>',
        "call_end": "<|im_end|>",
        "call_reasoning": "",
        "call_content": "",
        "call_id": None,
        "forced": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>',
        # Old test (HERMES_2_PRO), "Test multiple tool calls"
        "parallel": (
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
        ),
        "parallel_reasoning": "",
        "parallel_ids": None,
        "variants": {
            "call_with_content": {  # current test (Hermes-2-Pro block), message_assist_call_content
                "raw": (
                    'Hello, world!\nWhat\'s up?<tool_call>\n{"name": "get_weather", "arguments": '
                    '{"city": "Rome"}}</tool_call>'
                ),
                "content": ANSWER_FINAL,
                "reasoning": "",
                "calls": [CALL],
            },
        },
        "source": (
            f"{TEST_CHAT}, loop 'MiMo-VL / Hermes 3 / Qwen 2.5 (Common <tool_call> JSON format)'; "
            f"{TEST_CHAT_OLD}, Hermes-2-Pro block (multiple tool calls)"
        ),
        "notes": "No reasoning.",
    },
}
