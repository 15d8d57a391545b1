"""Property tests (hypothesis) for region names, h5ad reading and overlap mapping."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from intervaltree import IntervalTree

from scembed_core.errors import ChromosomeNamingError
from scembed_core.io import read_dataset
from scembed_core.regions import GenomicRegions, map_peaks_to_universe, parse_region_names


def fast(max_examples: int) -> settings:
    """Few examples, no deadline: the whole file runs in a few seconds."""
    return settings(
        max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


contigs = st.one_of(
    st.sampled_from(["chr1", "chr2", "chrX", "chrY", "chrM", "1", "22", "MT", "chrUn_KI270742v1"]),
    st.from_regex(r"\A(chr)?[A-Za-z0-9]{1,6}(_[A-Za-z0-9]{1,8})?\Z"),
)
coordinates = st.integers(0, 3 * 10**9)


@st.composite
def region_lists(draw, max_size: int = 20) -> tuple[list[str], list[int], list[int]]:
    n = draw(st.integers(1, max_size))
    chroms = draw(st.lists(contigs, min_size=n, max_size=n))
    starts = draw(st.lists(coordinates, min_size=n, max_size=n))
    lengths = draw(st.lists(st.integers(1, 10**7), min_size=n, max_size=n))
    return chroms, starts, [s + length for s, length in zip(starts, lengths, strict=True)]


@fast(150)
@given(region_lists(), st.sampled_from([("_", "_"), (":", "-"), ("-", "-")]))
def test_region_names_round_trip(regions, separators):
    chroms, starts, ends = regions
    first, second = separators
    names = [f"{c}{first}{s}{second}{e}" for c, s, e in zip(chroms, starts, ends, strict=True)]
    parsed = parse_region_names(names)
    assert parsed.chrom.tolist() == chroms
    assert parsed.start.tolist() == starts and parsed.end.tolist() == ends
    # names always come back in the canonical chr_start_end form, and parse again identically
    again = parse_region_names(parsed.names)
    assert again.chrom.tolist() == chroms and again.start.tolist() == starts


CONVENTIONS = [
    "var_chr",
    "var_chrom",
    "var_chromosome",
    "var_seqnames",
    "var_categorical",
    "names_underscore",
    "names_colon",
    "names_dash",
]
STORAGES = ["dense", "csr", "csc", "counts_layer"]


@st.composite
def small_datasets(draw):
    n_cells = draw(st.integers(1, 8))
    n_peaks = draw(st.integers(1, 12))
    chroms = draw(
        st.lists(
            st.sampled_from(["chr1", "chr2", "chrX", "1", "MT", "chrUn_GL000195v1"]),
            min_size=n_peaks,
            max_size=n_peaks,
        )
    )
    starts = draw(st.lists(st.integers(0, 10**9), min_size=n_peaks, max_size=n_peaks, unique=True))
    lengths = draw(st.lists(st.integers(1, 10**5), min_size=n_peaks, max_size=n_peaks))
    dtype = draw(st.sampled_from([np.int32, np.uint16, np.float32, np.float64]))
    counts = draw(arrays(dtype, (n_cells, n_peaks), elements=st.integers(0, 4)))
    counts[draw(st.integers(0, n_cells - 1)), draw(st.integers(0, n_peaks - 1))] = 1
    barcodes = draw(
        st.lists(
            st.text(alphabet="ACGT-_<>&'\"é1 ", min_size=1, max_size=10).filter(
                lambda s: s.strip() == s
            ),
            min_size=n_cells,
            max_size=n_cells,
            unique=True,
        )
    )
    ends = [s + length for s, length in zip(starts, lengths, strict=True)]
    return {
        "counts": counts,
        "chroms": chroms,
        "starts": starts,
        "ends": ends,
        "barcodes": barcodes,
        "convention": draw(st.sampled_from(CONVENTIONS)),
        "storage": draw(st.sampled_from(STORAGES)),
    }


def _write(dataset: dict, path: Path) -> None:
    chroms, starts, ends = dataset["chroms"], dataset["starts"], dataset["ends"]
    convention = dataset["convention"]
    ids = [f"peak{i}" for i in range(len(chroms))]
    if convention.startswith("names_"):
        first, second = {"underscore": "__", "colon": ":-", "dash": "--"}[convention[6:]]
        var = pd.DataFrame(
            index=[
                f"{c}{first}{s}{second}{e}" for c, s, e in zip(chroms, starts, ends, strict=True)
            ]
        )
    elif convention == "var_categorical":
        var = pd.DataFrame({"chr": pd.Categorical(chroms), "start": starts, "end": ends}, index=ids)
    else:
        var = pd.DataFrame({convention[4:]: chroms, "start": starts, "end": ends}, index=ids)
    obs = pd.DataFrame(
        {"label": [f"<i>{b}</i>" for b in dataset["barcodes"]]}, index=dataset["barcodes"]
    )
    counts, storage = dataset["counts"], dataset["storage"]
    if storage == "counts_layer":
        adata = ad.AnnData(obs=obs, var=var)
        adata.layers["counts"] = sp.csr_matrix(counts)
    else:
        matrix = {"dense": counts, "csr": sp.csr_matrix(counts), "csc": sp.csc_matrix(counts)}[
            storage
        ]
        adata = ad.AnnData(X=matrix, obs=obs, var=var)
    adata.write_h5ad(path)


@fast(30)
@given(small_datasets())
def test_random_h5ad_conventions_read_to_the_same_matrix(dataset):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random.h5ad"
        _write(dataset, path)
        adata = read_dataset(path)
    assert type(adata.X) is sp.csr_matrix and adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), (dataset["counts"] > 0).astype(np.float32))
    assert adata.var["chr"].tolist() == dataset["chroms"]
    assert adata.var["start"].tolist() == dataset["starts"]
    assert adata.var["end"].tolist() == dataset["ends"]
    assert adata.obs_names.tolist() == dataset["barcodes"]
    assert adata.obs["label"].tolist() == [f"<i>{b}</i>" for b in dataset["barcodes"]]


# ----------------------------------------------------------------------------- overlap oracle

QUERY_CHROMS = ["chr1", "1", "chr2", "2", "chrM", "MT", "M", "chrUn"]
UNIVERSE_CHROMS = ["chr1", "chr2", "chrM"]


def _canonical(name: str) -> str:
    key = name[3:] if name.lower().startswith("chr") else name
    return "M" if key.upper() in {"M", "MT"} else key


@st.composite
def interval_sets(draw, chrom_choices: list[str], max_size: int):
    """Intervals on a small coordinate range so ends touch, nest and repeat often."""
    n = draw(st.integers(1, max_size))
    chroms = draw(st.lists(st.sampled_from(chrom_choices), min_size=n, max_size=n))
    starts = draw(st.lists(st.integers(0, 60), min_size=n, max_size=n))
    lengths = draw(
        st.lists(st.one_of(st.integers(1, 6), st.integers(20, 80)), min_size=n, max_size=n)
    )
    ends = [s + length for s, length in zip(starts, lengths, strict=True)]
    return GenomicRegions(chroms, starts, ends)


@fast(300)
@given(interval_sets(QUERY_CHROMS, 25), interval_sets(UNIVERSE_CHROMS, 25))
def test_mapping_equals_interval_tree(peaks, universe):
    trees: dict[str, IntervalTree] = {}
    for j, (c, s, e) in enumerate(zip(universe.chrom, universe.start, universe.end, strict=True)):
        trees.setdefault(_canonical(str(c)), IntervalTree()).addi(int(s), int(e), j)
    expected = set()
    for i, (c, s, e) in enumerate(zip(peaks.chrom, peaks.start, peaks.end, strict=True)):
        tree = trees.get(_canonical(str(c)))
        if tree is not None:
            expected.update((i, iv.data) for iv in tree.overlap(int(s), int(e)))
    known = [c for c in set(peaks.chrom) if _canonical(c) in trees]
    if not known:
        with pytest.raises(ChromosomeNamingError):
            map_peaks_to_universe(peaks, universe)
        return
    mapping = map_peaks_to_universe(peaks, universe)
    coo = mapping.matrix.tocoo()
    assert set(zip(coo.row.tolist(), coo.col.tolist(), strict=True)) == expected
    assert np.all(mapping.matrix.data == 1.0)
    unknown = sorted({c for c in peaks.chrom if _canonical(c) not in trees})
    assert mapping.unknown_chromosomes == unknown
    for query, target in mapping.renamed_chromosomes.items():
        assert query not in set(universe.chrom) and _canonical(query) == _canonical(target)
