"""A tiny random-weight vision model for tests: a Gemma 3 (2 text layers of width 64, a 2-layer SigLIP
tower of width 32 at 64x64 pixels pooled to 16 tokens) and its multimodal projector, as two GGUF files
that llama.cpp's server loads with vision enabled. Built offline from a config alone (transformers), with a
SentencePiece tokenizer trained on the spot, and converted with llama.cpp's convert_hf_to_gguf.py from the
llama-cpp-python sdist (`make install` puts it in .cache/llama.cpp-convert/).

    build_vision_model(cache_dir) -> (model_gguf, mmproj_gguf)

Deterministic (fixed seeds), cached per build-recipe hash under cache_dir, safe to call from several
processes at once (a file lock; the files move into place atomically). `python -m tests.vision_model [dir]`
builds and prints the two paths.

Facts tests rely on: an image costs 18 prompt tokens (16 + <start_of_image> and <end_of_image>, which
llama.cpp adds itself around the media marker); no sliding-window attention (every layer global), so the
engine's prompt cache reuses any common prefix."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONVERTER_DIR = REPO / ".cache" / "llama.cpp-convert"
DEFAULT_CACHE = REPO / ".cache" / "vision-model"

MODEL_FILE = "model.gguf"
MMPROJ_FILE = "mmproj.gguf"

SEED = 1234
VOCAB_SIZE = 512
IMAGE_SIZE = 64
PATCH_SIZE = 8  # 8x8 patches, pooled 2x2 to 4x4 = 16 tokens
MM_TOKENS_PER_IMAGE = 16
PROJECTION_STD = 0.05  # the projection starts at zero in transformers: images would change nothing

# Gemma 3's special tokens, at small ids (pad, eos, bos, unk first, as in Gemma)
PAD, EOS, BOS, UNK = "<pad>", "<eos>", "<bos>", "<unk>"
SPECIALS = ["<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>", "<image_soft_token>"]
BOI_ID, EOI_ID, IMAGE_ID = 6, 7, 8  # ids of <start_of_image>, <end_of_image>, <image_soft_token>

# google/gemma-3-4b-it's chat template, as Google publishes it with the model (tokenizer_config.json; Gemma
# Terms of Use): third-party test data, used only to render this test model's prompts
CHAT_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

VOCABULARY = """
the a an of to and in is it that for on with as was at by this be from or are not have you he she we
they what which when where who how why can will would could should may one two three four five six
seven eight nine ten image picture photo color red green blue yellow black white cat dog bird tree
house car sky sun moon water fire stone light dark left right top bottom small large square circle
line shape hello world model user assistant answer question thread message run file search code tool
function call result value number text word token describe show see look read write
"""


def _corpus() -> list[str]:
    """A fixed training text: word pairs and triples, numbers and punctuation."""
    words = VOCABULARY.split()
    lines = []
    n = len(words)
    for i, word in enumerate(words):
        for step in (1, 7, 13, 29):
            a, b = words[(i + step) % n], words[(i * step + 3) % n]
            lines.append(f"{word.capitalize()} {a} {b}, {i * step} {word}s? {b} {a}.")
    lines += ["0123456789 +-*/=()[]{}<>:;'\"!?.,_#@&%$", "  indented\tline\nwith newline"]
    return lines


def _recipe_hash() -> str:
    """The build's inputs: this file, the converter's version and the versions of what draws the weights."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(_converter_version().encode())
    for dist in ("torch", "transformers", "sentencepiece", "safetensors"):
        digest.update(f"{dist}=={importlib.metadata.version(dist)}".encode())
    return digest.hexdigest()[:16]


def _converter_version() -> str:
    script = CONVERTER_DIR / "convert_hf_to_gguf.py"
    version = CONVERTER_DIR / "VERSION"
    if not script.is_file() or not version.is_file() or not (CONVERTER_DIR / "gguf-py").is_dir():
        raise RuntimeError(
            f"llama.cpp's converter is missing from {CONVERTER_DIR} (tests/vision_model.py needs it to "
            "build the tiny vision model): run `make install`"
        )
    return version.read_text().strip()


def build_vision_model(cache_dir: Path = DEFAULT_CACHE) -> tuple[Path, Path]:
    """(model GGUF, mmproj GGUF) of the tiny vision model, built once per recipe into cache_dir."""
    cache_dir = Path(cache_dir)
    target = cache_dir / f"tiny-gemma3-vision-{_recipe_hash()}"
    model, mmproj = target / MODEL_FILE, target / MMPROJ_FILE
    if model.is_file() and mmproj.is_file():
        return model, mmproj
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(cache_dir / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it: wait, then reuse its result
        if model.is_file() and mmproj.is_file():
            return model, mmproj
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir))
        try:
            out = work / "out"
            out.mkdir()
            _build(work / "hf", out)
            os.rename(out, target)  # atomic: the directory appears with both files or not at all
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return model, mmproj


def _build(hf_dir: Path, out: Path) -> None:
    hf_dir.mkdir()
    _write_tokenizer(hf_dir)
    _write_hf_model(hf_dir)
    # gguf from the converter's own gguf-py (NO_LOCAL_GGUF unset), never an installed one
    env = {name: value for name, value in os.environ.items() if name != "NO_LOCAL_GGUF"}
    env |= {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    script = str(CONVERTER_DIR / "convert_hf_to_gguf.py")
    for extra, name in (([], MODEL_FILE), (["--mmproj"], MMPROJ_FILE)):
        cmd = [sys.executable, script, str(hf_dir), "--outtype", "f32", "--outfile", str(out / name), *extra]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not (out / name).is_file():
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def _write_tokenizer(hf_dir: Path) -> None:
    import io

    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()),
        model_writer=model,
        model_type="bpe",
        vocab_size=VOCAB_SIZE,
        pad_id=0,
        eos_id=1,
        bos_id=2,
        unk_id=3,
        pad_piece=PAD,
        eos_piece=EOS,
        bos_piece=BOS,
        unk_piece=UNK,
        user_defined_symbols=SPECIALS,  # ids 4.. in order
        byte_fallback=True,
        character_coverage=1.0,
        add_dummy_prefix=False,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        num_threads=1,
        minloglevel=2,
    )
    (hf_dir / "tokenizer.model").write_bytes(model.getvalue())
    names = [PAD, EOS, BOS, UNK, *SPECIALS]
    added = {
        str(i): {
            "content": name,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, name in enumerate(names)
    }
    config = {
        "tokenizer_class": "GemmaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": UNK,
        "boi_token": "<start_of_image>",
        "eoi_token": "<end_of_image>",
        "image_token": "<image_soft_token>",
        "added_tokens_decoder": added,
        "chat_template": CHAT_TEMPLATE,
        "model_max_length": 4096,
        "clean_up_tokenization_spaces": False,
        "spaces_between_special_tokens": False,
    }
    (hf_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": UNK}
    (hf_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    preprocessor = {
        "image_processor_type": "Gemma3ImageProcessor",
        "processor_class": "Gemma3Processor",
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "do_convert_rgb": None,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "image_seq_length": MM_TOKENS_PER_IMAGE,
        "resample": 2,
        "rescale_factor": 1 / 255,
        "size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
    }
    (hf_dir / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))


def _write_hf_model(hf_dir: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    config = Gemma3Config(
        text_config={
            "vocab_size": VOCAB_SIZE,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 32,
            "query_pre_attn_scalar": 32,
            "max_position_embeddings": 8192,
            "sliding_window": 8192,
            "layer_types": ["full_attention", "full_attention"],
            "pad_token_id": 0,
            "eos_token_id": 1,  # llama.cpp finds <end_of_turn> (end of generation) by name
            "bos_token_id": 2,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH_SIZE,
            "vision_use_head": False,
        },
        mm_tokens_per_image=MM_TOKENS_PER_IMAGE,
        boi_token_index=BOI_ID,
        eoi_token_index=EOI_ID,
        image_token_index=IMAGE_ID,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Gemma3ForConditionalGeneration(config).eval()
        projection = model.model.multi_modal_projector.mm_input_projection_weight
        with torch.no_grad():
            projection.normal_(0.0, PROJECTION_STD)
    model.save_pretrained(hf_dir)
    # no sliding-window attention in llama.cpp (its Gemma 3 would make layers 1-5 of every 6 local)
    config_file = hf_dir / "config.json"
    saved = json.loads(config_file.read_text())
    saved["text_config"]["sliding_window_pattern"] = 1
    saved["text_config"]["unk_token_id"] = 3  # the converter's tokenizer.ggml.unknown_token_id
    config_file.write_text(json.dumps(saved, indent=2))
    # transformers 5 saves the tower as `vision_tower.*`; the converter maps `vision_tower.vision_model.*`
    weights_file = hf_dir / "model.safetensors"
    tensors = load_file(weights_file)
    renamed = {
        (
            "vision_tower.vision_model." + name.removeprefix("vision_tower.")
            if name.startswith("vision_tower.") and not name.startswith("vision_tower.vision_model.")
            else name
        ): tensor.contiguous()
        for name, tensor in tensors.items()
    }
    save_file(renamed, weights_file, metadata={"format": "pt"})


def main() -> None:
    cache_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_CACHE
    with contextlib.suppress(BrokenPipeError):
        for path in build_vision_model(cache_dir):
            print(path)


if __name__ == "__main__":
    main()
