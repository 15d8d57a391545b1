"""Peak -> universe overlap mapping against an independent interval-tree oracle.

``map_peaks_to_universe`` is vectorised (sorted starts plus a running maximum of ends);
``intervaltree`` answers the same question one query at a time. They must agree on
10,000 random queries (200 batches of 50, each against its own random universe with
short, nested and very long regions) and on hand-written edge cases.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from intervaltree import IntervalTree

from scembed_core.errors import ChromosomeNamingError, CoordinateError, InputFormatError
from scembed_core.regions import (
    GenomicRegions,
    binary_signal,
    cells_by_universe,
    map_peaks_to_universe,
    parse_region_names,
    reconcile_chromosome_names,
)

N_BATCHES, N_QUERIES, N_UNIVERSE = 200, 50, 100


def _canonical(name: str) -> str:
    key = name[3:] if name.lower().startswith("chr") else name
    return "M" if key.upper() in {"M", "MT"} else key


def oracle_pairs(peaks: GenomicRegions, universe: GenomicRegions) -> set[tuple[int, int]]:
    """Overlapping (peak, region) pairs by interval trees, one query at a time."""
    trees: dict[str, IntervalTree] = {}
    for j, (c, s, e) in enumerate(zip(universe.chrom, universe.start, universe.end, strict=True)):
        trees.setdefault(str(c), IntervalTree()).addi(int(s), int(e), j)
    by_canonical = {}
    for name in sorted(trees):
        by_canonical.setdefault(_canonical(name), name)
    pairs = set()
    for i, (c, s, e) in enumerate(zip(peaks.chrom, peaks.start, peaks.end, strict=True)):
        target = str(c) if str(c) in trees else by_canonical.get(_canonical(str(c)))
        if target is None:
            continue
        pairs.update((i, iv.data) for iv in trees[target].overlap(int(s), int(e)))
    return pairs


def mapped_pairs(peaks: GenomicRegions, universe: GenomicRegions) -> set[tuple[int, int]]:
    coo = map_peaks_to_universe(peaks, universe).matrix.tocoo()
    return set(zip(coo.row.tolist(), coo.col.tolist(), strict=True))


def _random_batch(rng: np.random.Generator) -> tuple[GenomicRegions, GenomicRegions]:
    """A universe of mixed lengths and queries planted to touch, nest and span regions."""
    u_chrom = rng.choice(["chr1", "chr2", "chr3"], N_UNIVERSE)
    u_start = rng.integers(0, 20_000, N_UNIVERSE)
    kind = rng.random(N_UNIVERSE)
    u_len = np.where(
        kind < 0.6,
        rng.integers(1, 300, N_UNIVERSE),
        np.where(
            kind < 0.95,
            rng.integers(300, 2_000, N_UNIVERSE),
            rng.integers(5_000, 20_000, N_UNIVERSE),
        ),
    )
    universe = GenomicRegions(u_chrom, u_start, u_start + u_len)

    q_len = np.where(
        rng.random(N_QUERIES) < 0.9,
        rng.integers(1, 800, N_QUERIES),
        rng.integers(2_000, 15_000, N_QUERIES),
    )
    q_start = rng.integers(0, 20_000, N_QUERIES)
    anchor = rng.integers(0, N_UNIVERSE, N_QUERIES)
    mode = rng.integers(0, 6, N_QUERIES)
    # 1: start exactly at a region's end (touching, no overlap); 2: end exactly at its start;
    # 3: one base inside its end; 4: inside the region; 5: covering the region.
    q_start = np.select(
        [mode == 1, mode == 2, mode == 3, mode == 4, mode == 5],
        [
            universe.end[anchor],
            np.maximum(universe.start[anchor] - q_len, 0),
            universe.end[anchor] - 1,
            universe.start[anchor] + (universe.end[anchor] - universe.start[anchor]) // 3,
            np.maximum(universe.start[anchor] - 7, 0),
        ],
        q_start,
    )
    q_end = q_start + q_len
    q_end = np.where(mode == 2, np.maximum(universe.start[anchor], q_start + 1), q_end)
    q_end = np.where(
        mode == 4, np.maximum(np.minimum(q_end, universe.end[anchor]), q_start + 1), q_end
    )
    q_end = np.where(mode == 5, np.maximum(universe.end[anchor] + 3, q_start + 1), q_end)
    q_chrom = np.where(
        mode > 0, universe.chrom[anchor], rng.choice(["chr1", "chr2", "chr3"], N_QUERIES)
    )
    # Some queries use Ensembl-style names ("1" for "chr1") or a contig absent from the universe.
    style = rng.random(N_QUERIES)
    q_chrom = np.where(style < 0.15, np.char.replace(q_chrom.astype(str), "chr", ""), q_chrom)
    q_chrom = np.where(style > 0.95, "chrUn_KI270742v1", q_chrom)
    return GenomicRegions(q_chrom, q_start, q_end), universe


def test_mapping_matches_interval_tree_on_10000_random_queries():
    rng = np.random.default_rng(20190101)
    n_queries = n_pairs = n_touching = 0
    for _ in range(N_BATCHES):
        peaks, universe = _random_batch(rng)
        got, want = mapped_pairs(peaks, universe), oracle_pairs(peaks, universe)
        assert got == want, f"missing {sorted(want - got)[:5]}, extra {sorted(got - want)[:5]}"
        n_queries += len(peaks)
        n_pairs += len(want)
        n_touching += int(np.isin(peaks.start, universe.end).sum())
    assert n_queries >= 10_000
    assert n_pairs > n_queries  # long regions and long queries give many pairs
    assert n_touching > 1_000


def test_touching_ends_do_not_overlap_but_one_base_does():
    universe = GenomicRegions(["chr1"], [100], [200])
    peaks = GenomicRegions(
        ["chr1"] * 6, [200, 50, 199, 0, 120, 0], [300, 100, 300, 101, 130, 1_000]
    )
    m = map_peaks_to_universe(peaks, universe)
    assert m.matrix.toarray().ravel().tolist() == [0, 0, 1, 1, 1, 1]
    assert m.n_mapped_peaks == 4 and m.fraction_mapped == pytest.approx(4 / 6)


def test_long_universe_region_and_nested_regions():
    # A long region hides short ones that end early: the running max of ends must be used.
    universe = GenomicRegions(["chr1"] * 4, [0, 10, 30, 9_000], [10_000, 20, 40, 9_100])
    peaks = GenomicRegions(["chr1"] * 4, [5_000, 15, 9_050, 10_000], [5_001, 35, 9_060, 10_500])
    dense = map_peaks_to_universe(peaks, universe).matrix.toarray()
    np.testing.assert_array_equal(dense, [[1, 0, 0, 0], [1, 1, 1, 0], [1, 0, 0, 1], [0, 0, 0, 0]])


def test_long_query_spans_many_regions():
    starts = np.arange(0, 100_000, 1_000)
    universe = GenomicRegions(["chr2"] * len(starts), starts, starts + 500)
    peaks = GenomicRegions(["chr2", "chr2"], [250, 99_500], [50_250, 100_000])
    m = map_peaks_to_universe(peaks, universe).matrix
    assert m[0].nnz == 51 and m[1].nnz == 0


def test_unsorted_input_gives_permuted_rows_and_columns():
    rng = np.random.default_rng(3)
    peaks, universe = _random_batch(rng)
    p_order, u_order = rng.permutation(len(peaks)), rng.permutation(len(universe))
    shuffled_p = GenomicRegions(peaks.chrom[p_order], peaks.start[p_order], peaks.end[p_order])
    shuffled_u = GenomicRegions(
        universe.chrom[u_order], universe.start[u_order], universe.end[u_order]
    )
    base = map_peaks_to_universe(peaks, universe).matrix.toarray()
    moved = map_peaks_to_universe(shuffled_p, shuffled_u).matrix.toarray()
    np.testing.assert_array_equal(moved, base[p_order][:, u_order])


def test_unknown_contigs_are_unmapped_and_reported():
    universe = GenomicRegions(["chr1", "chr2"], [0, 0], [1_000, 1_000])
    peaks = GenomicRegions(
        ["chr1", "chrUn_gl000220", "chrEBV", "chr2"], [10, 10, 10, 10], [20, 20, 20, 20]
    )
    m = map_peaks_to_universe(peaks, universe)
    assert m.unknown_chromosomes == ["chrEBV", "chrUn_gl000220"]
    assert m.peak_is_mapped.tolist() == [True, False, False, True]
    assert (
        m.summary()["n_mapped_peaks"] == 2
        and m.summary()["unknown_chromosomes"] == m.unknown_chromosomes
    )


def test_chromosome_styles_are_renamed_and_reported():
    universe = GenomicRegions(["chr1", "chrM", "chrX"], [0, 0, 0], [100, 100, 100])
    peaks = GenomicRegions(["1", "MT", "X", "chr1"], [5, 5, 5, 5], [10, 10, 10, 10])
    m = map_peaks_to_universe(peaks, universe)
    assert m.renamed_chromosomes == {"1": "chr1", "MT": "chrM", "X": "chrX"}
    np.testing.assert_array_equal(m.matrix.toarray(), [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
    reverse = map_peaks_to_universe(universe, GenomicRegions(["1", "MT"], [0, 0], [50, 50]))
    assert reverse.renamed_chromosomes == {"chr1": "1", "chrM": "MT"}
    assert reconcile_chromosome_names(["chrM", "chr9"], ["M", "1"]) == ({"chrM": "M"}, ["chr9"])


def test_all_unknown_chromosomes_raise():
    universe = GenomicRegions(["chr1"], [0], [100])
    with pytest.raises(ChromosomeNamingError, match="genome build"):
        map_peaks_to_universe(
            GenomicRegions(["NC_000001.11", "scaffold_7"], [0, 0], [50, 50]), universe
        )


def test_cells_by_universe_has_set_semantics():
    universe = GenomicRegions(["chr1", "chr1"], [0, 1_000], [500, 1_500])
    # peaks 0 and 1 both hit region 0; peak 2 hits both regions; peak 3 hits nothing.
    peaks = GenomicRegions(["chr1"] * 4, [10, 300, 400, 5_000], [50, 350, 1_200, 5_100])
    mapping = map_peaks_to_universe(peaks, universe)
    x = sp.csr_matrix(
        np.array([[3, 5, 0, 0], [0, 0, 0, 7], [1, 0, 2, 1], [0, 0, 0, 0]], dtype=np.float32)
    )
    out = cells_by_universe(x, mapping)
    assert out.dtype == np.float32 and set(out.data.tolist()) <= {1.0}
    np.testing.assert_array_equal(out.toarray(), [[1, 0], [0, 0], [1, 1], [0, 0]])
    with pytest.raises(InputFormatError, match="mapping was built for"):
        cells_by_universe(x[:, :3], mapping)


def test_region_name_parsing_and_validation():
    r = parse_region_names(["chr1_100_600", "chr1:100-600", "chr1-100-600", "chrUn_KI270742v1_5_9"])
    assert r.chrom.tolist() == ["chr1", "chr1", "chr1", "chrUn_KI270742v1"]
    assert r.start.tolist() == [100, 100, 100, 5] and r.end.tolist() == [600, 600, 600, 9]
    with pytest.raises(CoordinateError, match="not of the form"):
        parse_region_names(["chr1_100_600", "CD3E"])
    with pytest.raises(CoordinateError, match="start >= end"):
        GenomicRegions(["chr1"], [10], [10]).validate()
    with pytest.raises(CoordinateError, match="negative start"):
        GenomicRegions(["chr1"], [-1], [10]).validate()


def test_binary_signal_is_value_above_zero_after_summing_duplicates():
    # (row, col, value): duplicates (0, 1) sum to 0 -> no signal, (1, 2) sum to 3 -> 1;
    # negative, NaN and explicit zeros are no signal; counts of any size are 1
    rows = [0, 0, 0, 1, 1, 1, 2, 2]
    cols = [1, 1, 3, 2, 2, 0, 0, 3]
    vals = [2.0, -2.0, 5.0, 1.0, 2.0, -1.0, np.nan, 0.0]
    coo = sp.coo_matrix((vals, (rows, cols)), shape=(3, 4))
    before = coo.copy()
    out = binary_signal(coo)
    assert out.format == "csr" and out.dtype == np.float32 and out.has_canonical_format
    np.testing.assert_array_equal(out.toarray(), [[0, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]])
    assert (out.data == 1.0).all() and out.nnz == 2
    np.testing.assert_array_equal(coo.toarray(), before.toarray())  # input untouched
    # dense and integer input give the same; an already binary matrix comes back as is
    dense = np.nan_to_num(before.toarray()).astype(np.int64)
    np.testing.assert_array_equal(binary_signal(dense).toarray(), out.toarray())
    assert binary_signal(out) is out
    # the counts matrix a caller passes is never binarised in place
    counts = sp.csr_matrix(np.array([[3.0, 0.0], [0.0, 7.0]], dtype=np.float32))
    binary_signal(counts)
    np.testing.assert_array_equal(counts.data, [3.0, 7.0])


def test_cells_by_universe_ignores_negative_values():
    """It used to binarise after the product, so a negative value counted as signal."""
    peaks = GenomicRegions(["chr1", "chr1"], [0, 100], [50, 150])
    universe = GenomicRegions(["chr1", "chr1"], [10, 110], [20, 120])
    mapping = map_peaks_to_universe(peaks, universe)
    x = sp.csr_matrix(np.array([[-1.0, 2.0], [0.0, -3.0]]))
    np.testing.assert_array_equal(cells_by_universe(x, mapping).toarray(), [[0, 1], [0, 0]])
