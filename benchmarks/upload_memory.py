"""Peak memory of reading an upload, per MB of file (issue 22, attack run D7).

Runs the app's upload path (:func:`scembed_app.uploads.load_uploads` on the file's bytes,
as the Data page does) in a fresh process per file and reports the peak resident memory
added (``VmHWM`` minus ``VmRSS`` after imports) divided by the file size. ``--code DIR``
measures another checkout of the code (e.g. ``git archive eefe4de`` unpacked) for a
same-run baseline.

    nice -n 10 python -m benchmarks.upload_memory --sizes 1 8 24 [--code /tmp/base]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "scembed_core" / "data" / "demo_query.h5ad"

CHILD = """
import json, sys
from pathlib import Path
def status(key):
    return next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith(key))
from scembed_app.uploads import load_uploads
import anndata, h5py, scipy.sparse  # noqa: F401
path = Path(sys.argv[1])
data = path.read_bytes()
base = status('VmRSS')
dataset = load_uploads([(path.name, data)])
print(json.dumps({'base': base, 'peak': status('VmHWM'), 'file': len(data),
                  'cells': int(dataset.adata.n_obs)}))
"""


def make_upload(copies: int, folder: Path) -> Path:
    """The demo query repeated ``copies`` times with renamed cells, written uncompressed."""
    import anndata as ad

    demo = ad.read_h5ad(DEMO)
    parts = []
    for i in range(copies):
        part = demo.copy()
        part.obs_names = [f"{name}-{i}" for name in demo.obs_names]
        parts.append(part)
    path = folder / f"upload_{copies}x.h5ad"
    ad.concat(parts, merge="same").write_h5ad(path)
    return path


def measure(path: Path, code: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "NUMBA_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, env=env,
        cwd=code, check=True,
    )  # fmt: skip
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["added_per_file_mb"] = (row["peak"] - row["base"]) / row["file"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 24])
    parser.add_argument("--code", type=Path, default=ROOT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for copies in args.sizes:
            path = make_upload(copies, Path(tmp))
            row = measure(path, args.code)
            print(
                f"{copies:>3}x demo  file {row['file'] / 1e6:7.1f} MB  cells {row['cells']:>7,}  "
                f"peak +{(row['peak'] - row['base']) / 1e6:7.1f} MB  "
                f"= {row['added_per_file_mb']:.2f} x file",
                flush=True,
            )


if __name__ == "__main__":
    main()
