"""A worker uses every slot its engines have: an engine at `url` tells its slots in its /props
(`total_slots`), and once it is reached the worker executes that many of its runs at once, unless the
models file says `parallel`."""

from __future__ import annotations

from assistd.config import Settings
from assistd.container import Container
from tests.remote_engine import models_file
from tests.scripted_engine import ScriptedEngine

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build(tmp_path, url: str, **extra) -> Container:
    models = models_file(
        tmp_path / "models.toml", "remote", url, model_path=None, chat_template=CHATML, **extra
    )
    settings = Settings(data_dir=tmp_path / "data", kernel_pool_size=0, models_file=models, parallel=3)
    return Container.build(settings)


def test_a_url_engines_slots_come_from_its_props(tmp_path):
    with ScriptedEngine(CHATML, eog_tokens=["<|im_end|>"], slots=12) as engine:
        container = build(tmp_path, engine.url)
        try:
            before = container.engine.capacity  # the bundled model's 3 + the remote one's, not known yet: 3
            assert before == 6
            backend = container.registry.get("remote")
            assert backend.slots == 12
            assert container.engine.capacity == 3 + 12  # every slot the engine has
            assert container.registry.gate("remote").slots == 12
        finally:
            container.close()


def test_the_models_file_parallel_wins_over_the_props(tmp_path):
    with ScriptedEngine(CHATML, eog_tokens=["<|im_end|>"], slots=12) as engine:
        container = build(tmp_path, engine.url, parallel=5)
        try:
            assert container.registry.get("remote").slots == 5
            assert container.engine.capacity == 3 + 5
        finally:
            container.close()
