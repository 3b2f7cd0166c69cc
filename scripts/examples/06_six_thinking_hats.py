"""6. Several assistants collaborating: the "six thinking hats". Six assistants, each with its own
instructions, discuss one question on a shared thread in turns; a seventh summarises the discussion.

Each turn is one run on the same thread: the hat's cue is added with `additional_messages` and the turn
is kept short with per-run `additional_instructions` and `max_completion_tokens`. The summariser's run
replaces its instructions for that run only (`instructions=`).

    python scripts/examples/06_six_thinking_hats.py ["your question"]

ASSISTD_BASE_URL (default http://127.0.0.1:8000/v1) and ASSISTD_API_KEY (default "local") say where."""

from __future__ import annotations

import os
import sys
import time
import warnings

from openai import OpenAI

warnings.filterwarnings("ignore", category=DeprecationWarning)  # client.beta.* is marked deprecated

client = OpenAI(
    base_url=os.environ.get("ASSISTD_BASE_URL", "http://127.0.0.1:8000/v1"),
    api_key=os.environ.get("ASSISTD_API_KEY", "local"),
)
MODEL = os.environ.get("ASSISTD_MODEL", "SmolLM2-135M-Instruct")
QUESTION = "Should our team move all its meetings to the afternoon?"
TURN_TOKENS = 40

# colour -> (the assistant's instructions, the cue that opens its turn)
HATS = {
    "White": (
        "You wear the white hat: you state only facts and the information that is missing.",
        "What facts do we know, and what information is missing?",
    ),
    "Red": (
        "You wear the red hat: you say how people feel about it, with intuition and emotion.",
        "How do you feel about it?",
    ),
    "Black": (
        "You wear the black hat: you point out risks, problems and why it may not work.",
        "What are the risks?",
    ),
    "Yellow": (
        "You wear the yellow hat: you point out benefits and why it may work.",
        "What are the benefits?",
    ),
    "Green": (
        "You wear the green hat: you propose new ideas and creative alternatives.",
        "What creative alternative do you suggest?",
    ),
    "Blue": (
        "You wear the blue hat: you manage the thinking process and say what to decide next.",
        "What should we decide next?",
    ),
}


def text_of(run_id: str, thread_id: str) -> str:
    messages = client.beta.threads.messages.list(thread_id=thread_id, run_id=run_id, order="asc")
    return " ".join(p.text.value for m in messages for p in m.content if p.type == "text").strip()


def turn(thread_id: str, assistant_id: str, cue: str, **run_options) -> str:
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread_id,
        assistant_id=assistant_id,
        additional_messages=[{"role": "user", "content": cue}],
        max_completion_tokens=TURN_TOKENS,
        poll_interval_ms=100,
        **run_options,
    )
    if run.status not in ("completed", "incomplete"):  # incomplete: the turn hit its token cap
        raise RuntimeError(f"run {run.id} ended {run.status}: {run.last_error}")
    return text_of(run.id, thread_id)


def main() -> None:
    question = sys.argv[1] if len(sys.argv) > 1 else QUESTION
    started = time.monotonic()
    hats = {
        colour: client.beta.assistants.create(
            model=MODEL, name=f"{colour} hat", instructions=instructions, temperature=0.7
        )
        for colour, (instructions, _cue) in HATS.items()
    }
    summariser = client.beta.assistants.create(
        model=MODEL, name="Summariser", instructions="You summarise discussions."
    )
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": f"Question for the team: {question}"}],
        metadata={"topic": "six thinking hats"},
    )
    print(f"question: {question}")
    try:
        for colour, assistant in hats.items():
            said = turn(
                thread.id,
                assistant.id,
                f"{colour} hat, your turn. {HATS[colour][1]}",
                additional_instructions="Speak in one or two short sentences.",
            )
            print(f"[{colour} hat] {said}")
        summary = turn(
            thread.id,
            summariser.id,
            "Summarise the discussion in two sentences and give a recommendation.",
            instructions="You summarise the views of the six hats above into a short recommendation.",
        )
        print(f"[Summary] {summary}")
    finally:
        client.beta.threads.delete(thread.id)
        for assistant in [*hats.values(), summariser]:
            client.beta.assistants.delete(assistant.id)
    print(f"done in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    main()
