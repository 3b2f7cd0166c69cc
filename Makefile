PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install serve test lint typecheck bench clean

install:
	@command -v $(PY) >/dev/null 2>&1 || { echo "Python 3.11 is required ($(PY) not found)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel setuptools
	# The CPU build of torch first, so sentence-transformers does not pull a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	# llama.cpp for portable x86-64 (AVX2), not -march=native: on hosts with AMX, ggml's AMX kernels crash
	# (SIGSEGV in ggml_backend_amx_mul_mat) at the first decode; a native wheel in pip's cache would come back.
	$(BIN)/python -c "import llama_cpp, sys; sys.exit(b'AMX' in llama_cpp.llama_print_system_info())" 2>/dev/null || \
		CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip install --quiet --no-cache-dir --force-reinstall --no-deps \
		'llama-cpp-python>=0.3.2'
	$(BIN)/pip install --quiet torch==2.13.0 -e '.[dev]'
	# llama.cpp's HF-to-GGUF converter (convert_hf_to_gguf.py, conversion/, gguf-py/) from the llama-cpp-python
	# sdist of the installed version, for tests/vision_model.py (a tiny vision model built offline)
	V=$$($(BIN)/python -c "import importlib.metadata as m; print(m.version('llama-cpp-python'))"); \
	D=.cache/llama.cpp-convert; [ "$$(cat $$D/VERSION 2>/dev/null)" = "$$V" ] || { T=$$(mktemp -d) && \
	$(BIN)/pip download --quiet --no-binary :all: --no-deps --dest $$T "llama-cpp-python==$$V" && \
	mkdir $$T/x && tar xzf $$T/*.tar.gz -C $$T/x --strip-components=3 --wildcards \
		'*/vendor/llama.cpp/convert_hf_to_gguf.py' '*/vendor/llama.cpp/gguf-py/*' && \
	{ tar xzf $$T/*.tar.gz -C $$T/x --strip-components=3 --wildcards '*/vendor/llama.cpp/conversion/*' \
		2>/dev/null || true; } && \
	echo "$$V" > $$T/x/VERSION && rm -rf $$D && mkdir -p .cache && mv $$T/x $$D; S=$$?; rm -rf $$T; exit $$S; }
	$(BIN)/python scripts/fetch_model.py --models-dir models
	@if [ -f tests/browser/package.json ] && command -v npm >/dev/null 2>&1; then \
		cd tests/browser && npm install --no-audit --no-fund --silent; fi
	@if [ -f tests/node/package.json ] && command -v npm >/dev/null 2>&1; then \
		cd tests/node && npm install --no-audit --no-fund --silent; fi

serve:
	$(BIN)/assistd serve --host $(HOST) --port $(PORT)

test:
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q -rfEs

lint:
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

bench:
	$(BIN)/python scripts/bench_runs.py

clean:
	rm -rf $(VENV) data
