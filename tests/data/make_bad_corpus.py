"""Generate the corpus of bad (and tricky but valid) uploads in ``tests/data/bad/``.

Run from the repository root to regenerate the committed files::

    .venv/bin/python tests/data/make_bad_corpus.py

Every file is small (the whole corpus is well under 1 MB; the decompression bombs are
zeros that compress about 1000-fold). ``tests/core/test_bad_inputs.py`` says which error each
file must raise. Nothing here is ever unpickled: the pickle files are written with
:func:`pickle.dumps` of a plain dict and are only used to check that they are refused.
"""

from __future__ import annotations

import argparse
import gzip
import io
import pickle
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "bad"

BARCODES = ["AAACGAAC-1", "AAACGAAT-1", "AAACGCAA-1", "AAACGGTT-1"]
CHROMS = ["chr1", "chr1", "chr1", "chr2", "chr2"]
STARTS = [100, 300, 1000, 50, 700]
ENDS = [200, 400, 1500, 150, 900]
COUNTS = np.array(
    [[1, 0, 2, 0, 0], [0, 3, 0, 1, 0], [0, 0, 0, 0, 4], [1, 1, 0, 0, 1]], dtype=np.int32
)
#: Labels that must reach the app verbatim (it escapes them when rendering).
SCRIPT_LABELS = [
    "<script>alert('x')</script>",
    '<img src=x onerror="alert(1)">',
    "T cell & <b>NK</b>",
    "javascript:alert(document.cookie)",
]


def _names(chroms=CHROMS, starts=STARTS, ends=ENDS, sep=("_", "_")) -> list[str]:
    return [f"{c}{sep[0]}{s}{sep[1]}{e}" for c, s, e in zip(chroms, starts, ends, strict=True)]


def _var(chroms=CHROMS, starts=STARTS, ends=ENDS) -> pd.DataFrame:
    return pd.DataFrame(
        {"chr": chroms, "start": starts, "end": ends}, index=[f"p{i}" for i in range(len(chroms))]
    )


def _adata(x=COUNTS, var=None, obs_names=BARCODES) -> ad.AnnData:
    obs = pd.DataFrame({"cell_type": ["B", "T", "NK", "B"][: len(obs_names)]}, index=obs_names)
    return ad.AnnData(X=x, obs=obs, var=_var() if var is None else var)


def _write_h5ad(adata: ad.AnnData, path: Path) -> None:
    adata.write_h5ad(path)


def _csv_text(x=COUNTS, columns=None, index=BARCODES) -> str:
    frame = pd.DataFrame(x, index=index, columns=columns or _names())
    return frame.to_csv()


def _mtx_folder(
    folder: Path,
    *,
    matrix: sp.spmatrix | None = None,
    barcodes=BARCODES,
    bed_rows=None,
    header: str | None = None,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if header is not None:
        (folder / "matrix.mtx").write_text(header)
    else:
        buffer = io.BytesIO()
        scipy.io.mmwrite(buffer, sp.coo_matrix(COUNTS.T if matrix is None else matrix))
        with gzip.open(folder / "matrix.mtx.gz", "wb") as handle:
            handle.write(buffer.getvalue())
    with gzip.open(folder / "barcodes.tsv.gz", "wt") as handle:
        handle.write("".join(f"{b}\n" for b in barcodes))
    rows = bed_rows or list(zip(CHROMS, STARTS, ENDS, strict=True))
    with gzip.open(folder / "peaks.bed.gz", "wt") as handle:
        handle.write("".join(f"{c}\t{s}\t{e}\n" for c, s, e in rows))


def _zeros_zip(path: Path, megabytes: int) -> None:
    block = bytes(1024**2)
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open("data/cells.csv", "w") as handle,
    ):
        for _ in range(megabytes):
            handle.write(block)


def _zeros_tar(path: Path, megabytes: int) -> None:
    size = megabytes * 1024**2

    class _Zeros(io.RawIOBase):
        def __init__(self) -> None:
            self.left = size

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            n = min(len(buffer), self.left)
            buffer[:n] = bytes(n)
            self.left -= n
            return n

    with tarfile.open(path, "w:gz", compresslevel=9) as tf:
        info = tarfile.TarInfo("data/cells.csv")
        info.size = size
        tf.addfile(info, io.BufferedReader(_Zeros(), buffer_size=1024**2))


def _tar_with(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for info, payload in members:
            if payload is not None:
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
            else:
                tf.addfile(info)


def _fragments_text(chroms: list[str]) -> str:
    lines = [f"{c}\t{110 + i}\t{160 + i}\t{BARCODES[i % 4]}\t1\n" for i, c in enumerate(chroms)]
    return "".join(lines)


def build(out: Path = DEFAULT_OUT, *, bomb_megabytes: int = 200, tar_bomb_megabytes: int = 100):
    """Write every corpus file into ``out`` (emptied first) and return their paths."""
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)

    # Corrupt or truncated containers.
    _write_h5ad(_adata(), out / "valid_tmp.h5ad")
    raw = (out / "valid_tmp.h5ad").read_bytes()
    (out / "truncated.h5ad").write_bytes(raw[: len(raw) // 2])
    (out / "valid_tmp.h5ad").unlink()
    gz = gzip.compress(_csv_text().encode() * 20)
    (out / "truncated.csv.gz").write_bytes(gz[: len(gz) // 2])
    frag_gz = gzip.compress(_fragments_text(["chr1"] * 400).encode())
    (out / "truncated_fragments.tsv.gz").write_bytes(frag_gz[: len(frag_gz) // 2])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data/cells.csv", _csv_text() * 5)
    (out / "corrupt.zip").write_bytes(buffer.getvalue()[:-40])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        payload = (_csv_text() * 200).encode()
        info = tarfile.TarInfo("data/cells.csv")
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    (out / "corrupt.tar.gz").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    (out / "garbage.tar").write_bytes(np.random.default_rng(0).bytes(3000))
    (out / "empty.csv").write_bytes(b"")
    (out / "unknown_format.xyz").write_text("This is a lab notebook entry, not a dataset.\n")
    (out / "lone_matrix.mtx").write_text("%%MatrixMarket matrix coordinate integer general\n")
    with h5py.File(out / "not_anndata.h5", "w") as handle:
        handle["some/thing"] = np.arange(3)
        handle["other"] = np.arange(3)

    # Coordinates.
    _write_h5ad(
        _adata(var=pd.DataFrame(index=[f"peak{i}" for i in range(5)])), out / "no_coordinates.h5ad"
    )
    _write_h5ad(_adata(var=_var(ends=[200, 300, 1500, 150, 900])), out / "start_ge_end.h5ad")
    _write_h5ad(
        _adata(var=_var(starts=[100.5, 300, 1000, 50, 700])), out / "fractional_coords.h5ad"
    )
    bed = list(zip(CHROMS, [100, -300, 1000, 50, 700], ENDS, strict=True))
    _mtx_folder(out / "negative_coords_mtx", bed_rows=bed)
    with h5py.File(out / "gene_matrix.h5", "w") as handle:
        grp = handle.create_group("matrix")
        csr = sp.csr_matrix(COUNTS)
        grp["barcodes"] = np.array(BARCODES, dtype="S")
        grp["data"], grp["indices"], grp["indptr"] = csr.data, csr.indices, csr.indptr
        grp["shape"] = np.array([5, 4])
        grp["features/id"] = np.array([f"ENSG0000{i}" for i in range(5)], dtype="S")

    with h5py.File(out / "bad_indices_10x.h5", "w") as handle:
        grp = handle.create_group("matrix")
        csr = sp.csr_matrix(COUNTS)
        grp["barcodes"] = np.array(BARCODES, dtype="S")
        grp["data"], grp["indptr"] = csr.data, csr.indptr
        grp["indices"] = csr.indices + 3  # points past the 5 features
        grp["shape"] = np.array([5, 4])
        grp["features/id"] = np.array(_names(sep=(":", "-")), dtype="S")

    # Counts.
    _write_h5ad(
        _adata(x=np.where(COUNTS == 2, np.nan, COUNTS).astype(np.float32)), out / "nan_counts.h5ad"
    )
    _write_h5ad(
        _adata(x=np.where(COUNTS == 3, -3, COUNTS).astype(np.float32)), out / "negative_counts.h5ad"
    )
    (out / "inf_counts.csv").write_text(_csv_text(x=np.where(COUNTS == 4, np.inf, COUNTS)))
    text = _csv_text().splitlines()
    text[2] = text[2].replace(",3,", ",three,")
    (out / "nonnumeric_counts.csv").write_text("\n".join(text) + "\n")
    transposed = pd.DataFrame(COUNTS.T, index=_names(), columns=BARCODES)
    (out / "transposed.csv").write_text(transposed.to_csv())

    # Empty data.
    _write_h5ad(_adata(x=np.zeros((4, 5), np.float32)), out / "all_zero.h5ad")
    _write_h5ad(_adata(x=np.zeros((0, 5), np.float32), obs_names=[]), out / "zero_cells.h5ad")
    _write_h5ad(
        _adata(
            x=np.zeros((4, 0), np.float32),
            var=pd.DataFrame({"chr": [], "start": [], "end": []}, index=pd.Index([], dtype=str)),
        ),
        out / "zero_peaks.h5ad",
    )
    (out / "zero_cells.csv").write_text(",".join(["cell", *_names()]) + "\n")

    # Duplicates and inconsistent files.
    _mtx_folder(out / "duplicate_barcodes_mtx", barcodes=[*BARCODES[:3], BARCODES[0]])
    dup = _names()
    dup[3] = dup[0]
    (out / "duplicate_peaks.csv").write_text(_csv_text(columns=dup))
    _write_h5ad(
        _adata(
            var=_var(
                chroms=["chr1"] * 5,
                starts=[100, 100, 1000, 50, 700],
                ends=[200, 200, 1500, 150, 900],
            )
        ),
        out / "duplicate_peaks.h5ad",
    )
    _mtx_folder(out / "mtx_shape_mismatch", matrix=COUNTS.T[:4])
    _mtx_folder(out / "mtx_missing_barcodes")
    (out / "mtx_missing_barcodes" / "barcodes.tsv.gz").unlink()
    _mtx_folder(
        out / "enormous_shape_mtx",
        header="%%MatrixMarket matrix coordinate integer general\n"
        "1000000000000 1000000000000 10000000000000\n1 1 1\n",
    )

    # Unsafe archives.
    with zipfile.ZipFile(out / "traversal.zip", "w") as zf:
        zf.writestr("data/cells.csv", _csv_text())
        zf.writestr("../../evil.sh", "echo owned\n")
    with zipfile.ZipFile(out / "symlink.zip", "w") as zf:
        info = zipfile.ZipInfo("data/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    _tar_with(out / "absolute.tar.gz", [(tarfile.TarInfo("/tmp/scembed_evil.csv"), b"x\n")])
    link = tarfile.TarInfo("data/cells.csv")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    _tar_with(out / "symlink.tar.gz", [(link, None)])
    _zeros_zip(out / "bomb.zip", bomb_megabytes)
    _zeros_tar(out / "bomb.tar.gz", tar_bomb_megabytes)
    with zipfile.ZipFile(out / "two_datasets.zip", "w") as zf:
        zf.writestr("a/cells.csv", _csv_text())
        zf.writestr("b/cells.csv", _csv_text())

    # Pickles: refused by name and by content, never loaded.
    payload = pickle.dumps({"model": "not a dataset"}, protocol=4)
    (out / "model.pkl").write_bytes(payload)
    (out / "model.joblib").write_bytes(payload)
    (out / "disguised_pickle.dat").write_bytes(payload)
    np.save(out / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)

    # Fragments.
    (out / "fragments_small.tsv.gz").write_bytes(
        gzip.compress(_fragments_text(["chr1"] * 8).encode())
    )
    (out / "fragments_unknown_chroms.tsv.gz").write_bytes(
        gzip.compress(_fragments_text(["chrQ"] * 8).encode())
    )

    # Valid, tricky: labels with HTML and script in them.
    tricky = _adata()
    tricky.obs["cell_type"] = SCRIPT_LABELS
    tricky.obs["note"] = ["</td><td>", "${7*7}", "{{7*7}}", "'; DROP TABLE cells; --"]
    _write_h5ad(tricky, out / "script_labels.h5ad")
    return sorted(out.iterdir())


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--bomb-megabytes", type=int, default=200)
    args = parser.parse_args()
    paths = build(args.out, bomb_megabytes=args.bomb_megabytes)
    total = sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")))
    parser.exit(message=f"wrote {len(paths)} entries ({total / 1024:.0f} KiB) to {args.out}\n")


if __name__ == "__main__":
    main()
