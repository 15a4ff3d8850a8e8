"""How long loading a backbone takes, and fpt's own share of it.

    python scripts/load_time.py smollm2            # warm: the files are in the page cache
    python scripts/load_time.py smollm2 --cold     # the backbone's files evicted from the page cache first

Each measurement is a fresh process (`--child`), timed from its start: importing torch and the
model's transformers class (what any program using the model pays), then fpt's load_backbone
(locating the file, the integrity checks, reading the checkpoint, building the model). fpt's
own share is the second part. "Cold" evicts the GGUF file and its dequantised checkpoint from the
page cache with posix_fadvise(DONTNEED) (no root needed; the Python libraries stay cached, as
they would on a machine that has just imported torch) and then loads: the disk reads of a first
load after the cache has gone. The first call ever also dequantises the GGUF file once (not
counted: run the script twice).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def child(name: str) -> dict[str, float]:
    started = time.perf_counter()
    import torch  # noqa: F401
    from transformers import LlamaModel, BertModel  # noqa: F401  (the classes of the offline backbones)

    imported = time.perf_counter()
    from fpt.backbones import load_backbone

    load_backbone(name, "pretrained", "auto", 0)
    done = time.perf_counter()
    return {"imports_s": imported - started, "fpt_load_s": done - imported, "total_s": done - started}


def backbone_files(name: str) -> list[Path]:
    """The files a load of `name` reads: the GGUF file and the dequantised checkpoint, if any."""
    from fpt.catalog import lookup
    from fpt.storage.downloads import default_data_dir

    files = []
    known = lookup(name)
    gguf = getattr(known, "gguf", None) if known else None
    if gguf is not None:
        from fpt.gguf import locate

        files.append(locate(gguf))
    files += sorted((default_data_dir() / "backbones").glob("*/model.safetensors"))
    return files


def evict(paths: list[Path]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="smollm2")
    parser.add_argument("--cold", action="store_true", help="evict the backbone's files from the page cache first")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.model)))
        return
    rows = []
    for _ in range(args.runs):
        if args.cold:
            evict(backbone_files(args.model))
        out = subprocess.run([sys.executable, __file__, args.model, "--child"], capture_output=True, text=True,
                             check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for key in ("imports_s", "fpt_load_s", "total_s"):
        values = sorted(r[key] for r in rows)
        print(f"{key:11} median {values[len(values) // 2]:.2f} s  (runs: {', '.join(f'{v:.2f}' for v in values)})")
    print(f"{args.model}, {'cold' if args.cold else 'warm'}, {args.runs} fresh processes")


if __name__ == "__main__":
    main()
