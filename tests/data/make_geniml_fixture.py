"""Build the tiny geniml-format model folders under ``tests/data/``.

The output is committed, so this script only needs to be run again when the fixture must
change. It needs PyTorch, which the project itself never installs: use a separate
environment, e.g.::

    python3.11 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch safetensors pyyaml numpy h5py
    /tmp/torchenv/bin/python tests/data/make_geniml_fixture.py

What it writes
--------------
``geniml_tiny/``
    A model laid out exactly as geniml exports it and as ``databio/r2v-*`` repositories
    hold it on the Hugging Face hub: ``config.yaml``, ``universe.bed`` (60 regions),
    a genuine ``checkpoint.pt`` written by ``torch.save`` of a module whose only parameter
    is ``projection = nn.Embedding(67, 8)`` (state-dict key ``projection.weight``; 67 =
    60 regions + 7 gtars special tokens) and its ``model.safetensors`` twin.
    ``expected_weight.npy`` holds the full 67 x 8 matrix as plain numpy for the tests.
    Rows 5 and 41 are zeroed to stand for regions that carry no learned vector.
``geniml_evil/``
    The same config and universe with a ``checkpoint.pt`` whose ``data.pkl`` calls
    ``os.system``. Its pickle bytes are written by hand; nothing here or in the tests
    ever unpickles it with the standard unpickler.

The universe regions are 1 kb windows centred on 30 chr1 and 30 chr2 peaks of the Granja
2019 BMMC dataset (hg19), so a query built from that dataset overlaps them.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import h5py
import numpy as np
import torch
import yaml
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
H5AD = HERE.parents[2] / "shared" / "data" / "granja2019_bmmc" / "granja2019_bmmc_D6T1.h5ad"
N_PER_CHROM = 30
DIM = 8
N_SPECIAL = 7  # gtars appends <unk>, <pad>, <mask>, <cls>, <eos>, <bos>, <sep>
ZERO_ROWS = (5, 41)
SEED = 20191120


class Region2Vec(torch.nn.Module):
    """The same module geniml exports: one embedding table called ``projection``."""

    def __init__(self, vocab_size: int, embedding_dim: int) -> None:
        super().__init__()
        self.projection = torch.nn.Embedding(vocab_size, embedding_dim)


def pick_universe() -> list[tuple[str, int, int]]:
    """Evenly spaced chr1 and chr2 peaks of the Granja data, widened to 1 kb windows."""
    with h5py.File(H5AD, "r") as handle:
        index_key = handle["var"].attrs["_index"]
        names = [n.decode() for n in handle["var"][index_key][:]]
    regions = []
    for chrom in ("chr1", "chr2"):
        peaks = [n for n in names if n.split("_")[0] == chrom]
        step = len(peaks) // N_PER_CHROM
        for name in peaks[::step][:N_PER_CHROM]:
            _, start, end = name.split("_")
            centre = (int(start) + int(end)) // 2
            regions.append((chrom, centre - 500, centre + 500))
    return regions


def write_common(folder: Path, regions: list[tuple[str, int, int]]) -> None:
    """Write ``config.yaml`` and ``universe.bed`` the way geniml does."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "embedding_dim": DIM,
        "vocab_size": len(regions) + N_SPECIAL,
        "pooling_method": "mean",
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "universe.bed").write_text("".join(f"{c}\t{s}\t{e}\n" for c, s, e in regions))


def evil_pickle() -> bytes:
    """Protocol-2 pickle bytes for ``os.system("echo ...")``, assembled opcode by opcode."""
    command = b"echo scembed-evil-pickle-fixture"
    return (
        b"\x80\x02"  # PROTO 2
        + b"cos\nsystem\n"  # GLOBAL os.system
        + b"X"  # BINUNICODE
        + len(command).to_bytes(4, "little")
        + command
        + b"\x85"  # TUPLE1
        + b"R"  # REDUCE
        + b"."  # STOP
    )


def main() -> None:
    regions = pick_universe()
    assert len(regions) == 2 * N_PER_CHROM

    tiny = HERE / "geniml_tiny"
    write_common(tiny, regions)
    torch.manual_seed(SEED)
    model = Region2Vec(len(regions) + N_SPECIAL, DIM)
    with torch.no_grad():
        for row in ZERO_ROWS:
            model.projection.weight[row] = 0.0
    state = model.state_dict()
    torch.save(state, tiny / "checkpoint.pt")
    save_file(
        {"projection.weight": state["projection.weight"].contiguous()}, tiny / "model.safetensors"
    )
    (tiny / "model.safetensors").chmod(0o644)  # safetensors creates files private to the user
    np.save(tiny / "expected_weight.npy", state["projection.weight"].numpy(), allow_pickle=False)

    evil = HERE / "geniml_evil"
    write_common(evil, regions)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in (
            ("checkpoint/data.pkl", evil_pickle()),
            ("checkpoint/byteorder", b"little"),
            ("checkpoint/version", b"3\n"),
        ):
            # a fixed timestamp keeps the file byte-identical between runs, as torch does
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    (evil / "checkpoint.pt").write_bytes(buffer.getvalue())


if __name__ == "__main__":
    main()
