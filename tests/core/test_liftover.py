"""Liftover: the real UCSC chain against pyliftover, the swap, drop reasons, bad chains,
build detection, and the demo query lifted to hg38 and projected onto the hg19 reference."""

from __future__ import annotations

import gzip
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import PBMC_TINY, REPO

from scembed_core.errors import (
    ChainFileError,
    ChromosomeNamingError,
    GenomeBuildError,
    InputFormatError,
)
from scembed_core.liftover import (
    CHROMOSOME_SIZES,
    chain_between,
    detect_build,
    lift_positions,
    lift_regions,
    parse_chain,
    primary_chromosome,
    read_chain,
)
from scembed_core.liftover.builds import CHAIN_DIR
from scembed_core.liftover.query import check_genome, lift_dataset, prepare_query
from scembed_core.project import regions_of
from scembed_core.reference import DEMO_QUERY_PATH, load_default_reference
from scembed_core.regions import GenomicRegions

CHAIN_PATH = CHAIN_DIR / "hg38ToHg19.over.chain.gz"
PRIMARY = [f"chr{i}" for i in range(1, 23)] + ["chrX", "chrY"]


@pytest.fixture(scope="module")
def forward():
    return chain_between("hg38", "hg19")


@pytest.fixture(scope="module")
def backward():
    return chain_between("hg19", "hg38")


@pytest.fixture(scope="module")
def pyliftover_hg38_to_hg19():
    pyliftover = pytest.importorskip("pyliftover")
    return pyliftover.LiftOver(str(CHAIN_PATH))


@pytest.fixture(scope="module")
def reference():
    return load_default_reference()


@pytest.fixture(scope="module")
def demo():
    from scembed_core.io import read_dataset

    return read_dataset(DEMO_QUERY_PATH)


@pytest.fixture(scope="module")
def demo_hg38(demo):
    """The demo query (hg19) lifted to hg38 with the swapped chain, as an hg38 user has it."""
    lifted, result = lift_dataset(demo, "hg19", "hg38")
    assert result.n_lifted >= 0.99 * demo.n_vars
    var = lifted.var[["chr", "start", "end"]].copy()
    var.index = var["chr"] + "_" + var["start"].astype(str) + "_" + var["end"].astype(str)
    var.index = pd.Index(var.index).astype(str)
    keep = ~var.index.duplicated()
    return ad.AnnData(lifted.X[:, keep], obs=demo.obs.copy(), var=var[keep])


def random_positions(build: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    chrom = rng.choice(PRIMARY[:-1], n)
    sizes = np.array([CHROMOSOME_SIZES[build][c] for c in chrom])
    return chrom, (rng.random(n) * sizes).astype(np.int64)


# --------------------------------------------------------------------------- the real chain


def test_chain_header_sizes_agree_with_the_ucsc_table(forward):
    assert (forward.source, forward.target) == ("hg38", "hg19")
    assert forward.n_chains == 25_374 and forward.chain_minus.sum() == 11_555
    sizes = dict(zip(forward.contigs, forward.contig_sizes, strict=True))
    dest = dict(zip(forward.chain_dest, forward.chain_dest_size, strict=True))
    for chrom in PRIMARY:
        assert sizes[chrom] == CHROMOSOME_SIZES["hg38"][chrom]
        assert dest[chrom] == CHROMOSOME_SIZES["hg19"][chrom]
    assert not forward.piece_start.flags.writeable  # shared between sessions: read-only


def test_forward_positions_agree_with_pyliftover(forward, pyliftover_hg38_to_hg19):
    chrom, pos = random_positions("hg38", 3000, seed=1)
    ok, dest, dest_pos, minus = lift_positions(chrom, pos, forward)
    n_hits = 0
    for i in range(len(chrom)):
        hits = pyliftover_hg38_to_hg19.convert_coordinate(str(chrom[i]), int(pos[i]))
        assert bool(hits) == bool(ok[i]), (chrom[i], pos[i], hits)
        if hits:
            n_hits += 1
            assert (dest[i], int(dest_pos[i]), "-" if minus[i] else "+") in [h[:3] for h in hits]
    assert n_hits > 2500


def test_minus_strand_chains_agree_with_pyliftover(forward, pyliftover_hg38_to_hg19):
    chain_of, t_start, _, size, chain_contig = forward._blocks
    blocks = np.flatnonzero(forward.chain_minus[chain_of] & (size > 50))
    rng = np.random.default_rng(2)
    pick = rng.choice(blocks, 400, replace=False)
    pos = t_start[pick] + rng.integers(0, size[pick])
    chrom = forward.contigs[chain_contig[chain_of[pick]]]
    ok, dest, dest_pos, minus = lift_positions(chrom, pos, forward)
    checked = 0
    for i in np.flatnonzero(ok & minus):
        hits = pyliftover_hg38_to_hg19.convert_coordinate(str(chrom[i]), int(pos[i]))
        assert (dest[i], int(dest_pos[i]), "-") in [h[:3] for h in hits]
        checked += 1
    assert checked >= 100


def test_swapped_chain_inverts_the_alignment(backward, pyliftover_hg38_to_hg19):
    assert (backward.source, backward.target) == ("hg19", "hg38")
    chrom, pos = random_positions("hg19", 2000, seed=3)
    ok, dest, dest_pos, minus = lift_positions(chrom, pos, backward)
    assert ok.mean() > 0.85
    for i in np.flatnonzero(ok):
        hits = pyliftover_hg38_to_hg19.convert_coordinate(str(dest[i]), int(dest_pos[i]))
        strand = "-" if minus[i] else "+"
        assert (chrom[i], int(pos[i]), strand) in [h[:3] for h in hits]


def test_swap_prefers_the_primary_chromosome_over_alt_haplotypes(backward):
    # hg19 MHC: hg38 has seven alternate haplotypes aligned over it.
    pos = np.arange(28_600_000, 33_300_000, 997)
    ok, dest, _, _ = lift_positions(np.full(len(pos), "chr6"), pos, backward)
    assert ok.mean() > 0.95
    assert set(dest[ok]) == {"chr6"}
    assert any(name.startswith("chr6_") and name.endswith("_alt") for name in backward.chain_dest)


def test_intervals_round_trip(forward, backward):
    chrom, pos = random_positions("hg38", 20_000, seed=4)
    peaks = GenomicRegions(chrom, pos, pos + 500)
    there = lift_regions(peaks, forward)
    back = lift_regions(there.regions, backward)
    assert there.n_lifted > 0.85 * len(peaks)
    assert set(there.dropped) <= {"unaligned", "split_chains", "length_changed", "past_chrom_end"}
    original = peaks.start[there.kept[back.kept]]
    assert (back.regions.start == original).mean() > 0.99
    assert (back.regions.chrom == chrom[there.kept[back.kept]]).mean() > 0.99


# --------------------------------------------------------------------------- a planted chain

PLANTED = b"""\
chain 100 chr1 10000 + 0 3000 chr1 10000 + 0 2600 1
1000\t0\t100
1000\t500\t0
500

chain 50 chr1 10000 + 3000 4000 chr2 8000 - 1000 2000 2
1000

chain 900 chr1 10000 + 0 1000 chr1_KI270706v1_random 5000 + 0 1000 3
1000

chain 10 chr1 10000 + 7000 8000 chr3 9000 + 0 1000 4
1000

chain 800 chr1 10000 + 7000 8000 chr3_GL000221v1_alt 9000 + 0 1000 5
1000
"""


@pytest.fixture
def planted_chain_file(tmp_path):
    path = tmp_path / "planted.over.chain.gz"
    path.write_bytes(gzip.compress(PLANTED))
    return path


def test_planted_chain_drop_reasons_and_strands(planted_chain_file):
    chain = read_chain(planted_chain_file)
    assert chain.source == chain.target == "unknown"  # sizes of no human build
    peaks = GenomicRegions(
        ["chr1", "chr1", "chr1", "chr1", "chr1", "chr7", "chr1", "1"],
        [100, 900, 1900, 2800, 3100, 100, 9990, 7100],
        [600, 1100, 2600, 3200, 3600, 600, 10010, 7600],
    )
    result = lift_regions(peaks, chain)
    reasons = [
        "lifted", "length_changed", "unaligned", "split_chains", "lifted", "unknown_contig",
        "past_chrom_end", "lifted",
    ]  # fmt: skip
    from scembed_core.liftover import DROP_REASONS

    assert [DROP_REASONS[r] for r in result.reason] == reasons
    lifted = result.regions
    # primary chain beats the higher-scoring chain to a _random contig
    assert (lifted.chrom[0], lifted.start[0], lifted.end[0]) == ("chr1", 100, 600)
    # '-' strand: t 3100 -> reverse 1100 -> forward 8000-1-1100 = 6899; 3599 -> 6400
    assert (lifted.chrom[1], lifted.start[1], lifted.end[1]) == ("chr2", 6400, 6900)
    assert result.minus_strand.tolist() == [False] * 4 + [True] + [False] * 3
    # a primary chromosome beats a higher-scoring chain to an _alt contig; '1' naming accepted
    assert (lifted.chrom[2], lifted.start[2], lifted.end[2]) == ("chr3", 100, 600)
    assert result.dropped == {
        "unknown_contig": 1, "past_chrom_end": 1, "unaligned": 1, "split_chains": 1,
        "length_changed": 1,
    }  # fmt: skip
    text = result.describe()
    assert "3 of 8 intervals lifted" in text and "different chains" in text


def test_planted_chain_agrees_with_pyliftover(planted_chain_file):
    pyliftover = pytest.importorskip("pyliftover")
    theirs = pyliftover.LiftOver(str(planted_chain_file))
    chain = read_chain(planted_chain_file)
    pos = np.arange(0, 10_000, 7)
    ok, dest, dest_pos, minus = lift_positions(np.full(len(pos), "chr1"), pos, chain)
    for i in range(len(pos)):
        hits = theirs.convert_coordinate("chr1", int(pos[i]))
        assert bool(hits) == bool(ok[i])
        if hits:
            assert (dest[i], int(dest_pos[i]), "-" if minus[i] else "+") in [h[:3] for h in hits]


def test_swap_of_a_minus_strand_chain(planted_chain_file):
    swapped = read_chain(planted_chain_file).swap()
    ok, dest, dest_pos, minus = lift_positions(["chr2", "chr2"], [6899, 6400], swapped)
    assert ok.all() and minus.all()
    assert dest.tolist() == ["chr1", "chr1"] and dest_pos.tolist() == [3100, 3599]


def test_primary_chromosome_names():
    assert primary_chromosome("chr6_GL000250v2_alt") == "chr6"
    assert primary_chromosome("chr1_gl000191_random") == "chr1"
    assert primary_chromosome("chrUn_KI270302v1") is None
    assert primary_chromosome("MT") == "MT"


# --------------------------------------------------------------------------- bad input


def test_truncated_gzip_chain(tmp_path):
    data = CHAIN_PATH.read_bytes()
    path = tmp_path / "cut.over.chain.gz"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ChainFileError, match="truncated or corrupt gzip"):
        read_chain(path)


def test_corrupt_gzip_chain(tmp_path):
    path = tmp_path / "noise.over.chain.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + np.random.default_rng(0).bytes(4000))
    with pytest.raises(ChainFileError, match="truncated or corrupt"):
        read_chain(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"chr1\t100\t200\nchr1\t300\t400\n", "no 'chain' header"),
        (PLANTED.replace(b"1000\t500\t0", b"1000\t400\t0"), "do not add up"),
        (PLANTED.replace(b"chr1 10000 + 0 3000", b"chr1 10000 - 0 3000"), "strand '-'"),
        (PLANTED.replace(b"chr2 8000 - 1000", b"chr2 8000 x 1000"), "neither"),
        (PLANTED.replace(b"1000\t0\t100", b"1000\tten\t100"), "non-integer"),
        (PLANTED[: PLANTED.index(b"1000\t500")], "do not add up|hold"),
        (b"", "empty"),
    ],
)
def test_malformed_chains_are_refused(text, message):
    with pytest.raises(ChainFileError, match=message):
        parse_chain(text, name="bad.chain")


def test_no_chain_links_other_builds():
    with pytest.raises(GenomeBuildError, match="No liftover chain links hg19 to mm10"):
        chain_between("hg19", "mm10")


def test_chain_for_another_build_is_recognised(tmp_path):
    mouse = b"chain 10 chr1 195471971 + 0 100 chr1 197195432 + 0 100 1\n100\n"
    chain = parse_chain(mouse, name="mm10ToMm9.over.chain")
    assert (chain.source, chain.target) == ("unknown", "unknown")
    hg19_like = b"chain 10 chr1 249250621 + 0 100 chr1 248956422 + 0 100 1\n100\n"
    assert (parse_chain(hg19_like).source, parse_chain(hg19_like).target) == ("hg19", "hg38")


def test_bed_with_unknown_contigs(tmp_path, forward):
    bed = tmp_path / "peaks.bed"
    bed.write_text(
        "chr1\t1000000\t1000500\nscaffold_12\t100\t600\nchr2\t5000000\t5000500\n"
        "HLA-A*01:01\t0\t500\n"
    )
    result = lift_regions(GenomicRegions.read_bed(bed), forward)
    assert result.dropped.get("unknown_contig") == 2 and result.n_lifted == 2
    assert "2 on contigs the chain does not know" in result.describe()
    only_unknown = GenomicRegions(["scaffold_1", "contig_9"], [0, 0], [100, 100])
    with pytest.raises(ChromosomeNamingError, match="None of the contigs"):
        lift_regions(only_unknown, forward)


# --------------------------------------------------------------------------- detection


def test_detection_on_the_demo_query_and_its_hg38_version(demo, demo_hg38, reference):
    universe = reference.model.universe
    on_hg19 = detect_build(regions_of(demo), universe, reference.genome)
    assert on_hg19.build == "hg19" and on_hg19.confident
    assert on_hg19.overlap_as_is == 1.0 and on_hg19.overlap_lifted < 0.1
    on_hg38 = detect_build(regions_of(demo_hg38), universe, reference.genome)
    assert on_hg38.build == "hg38" and on_hg38.confident
    assert on_hg38.overlap_as_is < 0.1 and on_hg38.overlap_lifted > 0.99
    assert on_hg38.past_end["hg19"] > 0 and on_hg38.past_end["hg38"] == 0


def test_detection_says_hg38_on_the_real_pbmc_fixture(reference):
    from scembed_core.io import read_dataset

    pbmc = read_dataset(PBMC_TINY)
    peaks = regions_of(pbmc)
    # from the peaks alone, without the file's own genome tag
    found = detect_build(peaks, reference.model.universe, reference.genome)
    assert found.build == "hg38" and found.confident
    assert found.overlap_lifted > found.overlap_as_is
    without_reference = detect_build(peaks)
    assert without_reference.build == "hg38"  # chromosome ends alone


def test_detection_with_no_evidence_says_so():
    peaks = GenomicRegions(["chr1"], [1_000_000], [1_000_500])
    found = detect_build(peaks)
    assert found.build is None and found.confidence == 0.5 and not found.confident
    alt = GenomicRegions(["chr1_KI270706v1_random"], [0], [500])
    assert detect_build(alt).build == "hg38"
    old = GenomicRegions(["chr6_apd_hap1"], [0], [500])
    assert detect_build(old).build == "hg19"


def test_train_genome_is_checked_against_the_peaks(demo):
    assert check_genome(regions_of(demo), "hg19").build == "hg19"
    with pytest.raises(GenomeBuildError, match="look like hg19"):
        check_genome(regions_of(demo), "GRCh38")


# --------------------------------------------------------------------------- the target


def test_hg38_demo_projected_onto_the_hg19_reference(demo, demo_hg38, reference):
    from scembed_core.pipeline import annotated_adata, run_pipeline

    on_hg19 = run_pipeline(demo, reference, ev=False, truth_key="cell_type")
    on_hg38 = run_pipeline(demo_hg38, reference, ev=False, truth_key="cell_type")
    acc19 = on_hg19.evaluation["labels"]["accuracy"]
    acc38 = on_hg38.evaluation["labels"]["accuracy"]
    assert acc19 > 0.6
    assert abs(acc38 - acc19) <= 0.03
    assert on_hg19.liftover is None
    lift = annotated_adata(on_hg38).uns["scembed"]["liftover"]
    assert lift["source_build"] == "hg38" and lift["target_build"] == "hg19"
    assert lift["chain"] == "hg38ToHg19.over.chain.gz"
    assert lift["overlap_before"] < 0.1 and lift["overlap_after"] > 0.99
    assert lift["n_lifted"] + lift["n_dropped"] == demo_hg38.n_vars
    assert on_hg38.params["query_genome"] == "hg38"
    refused = pytest.raises(GenomeBuildError, match="liftover is turned off")
    with refused:
        run_pipeline(demo_hg38, reference, ev=False, liftover=False)


def test_prepare_query_keeps_a_valid_matrix_when_peaks_collapse(demo_hg38, reference):
    doubled = ad.concat([demo_hg38, demo_hg38], axis=1, merge="same")
    doubled.var_names_make_unique()
    prepared = prepare_query(doubled, reference, query_genome="hg38")
    x = prepared.adata.X
    x.check_format()
    assert x.shape == (doubled.n_obs, prepared.liftover["n_lifted"])
    assert prepared.liftover["n_lifted"] >= 0.99 * doubled.n_vars
    lifted = regions_of(prepared.adata).names
    assert len(set(lifted)) <= len(lifted) // 2 + 1  # each interval twice
    assert "hg38_start" in prepared.adata.var and prepared.adata.uns["genome"] == "hg19"
    from scembed_core.project import compute_coverage

    coverage = compute_coverage(prepared.adata, reference)
    assert coverage.fraction_peaks_mapped > 0.99


def write_fragments(folder, reference) -> tuple[object, object, object]:
    """Fragments inside the hg19 reference regions, written on hg19 and lifted to hg38.

    Returns the hg19 and hg38 file paths and the lift result.
    """
    universe = reference.model.universe
    rng = np.random.default_rng(5)
    region = rng.choice(len(universe), 3000)
    offset = rng.integers(0, 300, len(region))
    start = universe.start[region] + offset
    frags19 = GenomicRegions(universe.chrom[region], start, start + 150)
    barcodes = np.array([f"cell{i}" for i in rng.integers(0, 40, len(region))])
    moved = lift_regions(frags19, chain_between("hg19", "hg38"))

    def write(path, regions, rows):
        frame = pd.DataFrame(
            {"chr": regions.chrom, "start": regions.start, "end": regions.end,
             "barcode": barcodes[rows], "count": 1}
        )  # fmt: skip
        frame.to_csv(path, sep="\t", header=False, index=False, compression="gzip")

    write(folder / "hg19.fragments.tsv.gz", frags19, np.arange(len(region)))
    write(folder / "hg38.fragments.tsv.gz", moved.regions, moved.kept)
    return folder / "hg19.fragments.tsv.gz", folder / "hg38.fragments.tsv.gz", moved


def test_fragments_are_lifted_while_counting(tmp_path, reference):
    from scembed_app.uploads import load_uploads
    from scembed_core.io import read_dataset, read_fragment_sample
    from scembed_core.liftover.query import chain_for_fragments, decide_lift

    universe = reference.model.universe
    _, _, moved = write_fragments(tmp_path, reference)
    sample = read_fragment_sample(tmp_path / "hg38.fragments.tsv.gz")
    build, detection, lift_from = decide_lift(sample, reference)
    assert build == "hg38" and lift_from == "hg38" and detection.confident
    with pytest.raises(GenomeBuildError):
        decide_lift(sample, reference, liftover=False)
    chain = chain_for_fragments(tmp_path / "hg38.fragments.tsv.gz", reference)
    assert (chain.source, chain.target) == ("hg38", "hg19")
    assert chain_for_fragments(tmp_path / "hg19.fragments.tsv.gz", reference) is None
    assert chain_for_fragments(DEMO_QUERY_PATH, reference) is None  # not fragments
    path = tmp_path / "hg38.fragments.tsv.gz"
    uploaded = load_uploads(
        [(path.name, path.read_bytes())], universe=universe, reference=reference
    )
    assert uploaded.liftover["what"] == "fragments" and uploaded.liftover["n_lifted"] > 0
    plain = read_dataset(tmp_path / "hg19.fragments.tsv.gz", universe=universe)
    lifted = read_dataset(
        tmp_path / "hg38.fragments.tsv.gz", universe=universe,
        liftover=chain_between("hg38", "hg19"),
    )  # fmt: skip
    record = lifted.uns["scembed_read"]["liftover"]
    assert record["n_lifted"] >= 0.99 * moved.n_lifted and record["what"] == "fragments"
    shared = plain.obs_names.intersection(lifted.obs_names)
    assert len(shared) >= 38
    same = (plain[shared].X != lifted[shared].X).nnz
    assert same <= 0.01 * plain.X.nnz
    unlifted = read_dataset(tmp_path / "hg38.fragments.tsv.gz", universe=universe)
    assert unlifted.X.nnz < 0.2 * plain.X.nnz


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "scembed_core", *args],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )  # fmt: skip


def test_cli_lifts_by_default_and_refuses_with_no_liftover(tmp_path, demo_hg38):
    source = tmp_path / "demo_hg38.h5ad"
    demo_hg38.write_h5ad(source)
    out = tmp_path / "out.h5ad"
    refused = run_cli("project", str(source), "--out", str(out), "--no-liftover", "--no-ev")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "liftover is turned off" in errors[0]
    assert not out.exists()
    done = run_cli("project", str(source), "--out", str(out), "--no-ev")
    assert done.returncode == 0, done.stderr
    assert "lifted" in done.stdout and "from hg38 to hg19" in done.stdout
    lift = ad.read_h5ad(out).uns["scembed"]["liftover"]
    assert lift["source_build"] == "hg38" and lift["overlap_after"] > 0.99


def test_cli_bad_chain_and_train_genome(tmp_path, demo):
    source = tmp_path / "demo.h5ad"
    demo.write_h5ad(source)
    done = run_cli("train", str(source), "--out", str(tmp_path / "b"), "--genome", "hg38")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "look like hg19" in done.stderr


def test_chain_error_is_an_input_format_error():
    assert issubclass(ChainFileError, InputFormatError)


def test_cli_lifts_fragments_while_counting(tmp_path, reference):
    _, hg38, _ = write_fragments(tmp_path, reference)
    out = tmp_path / "frags.h5ad"
    refused = run_cli("project", str(hg38), "--out", str(out), "--no-ev", "--no-liftover")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "liftover is turned off" in refused.stderr
    done = run_cli("project", str(hg38), "--out", str(out), "--no-ev", "--resolution", "0.5")
    assert done.returncode == 0, done.stderr
    lift = ad.read_h5ad(out).uns["scembed"]["liftover"]
    assert lift["what"] == "fragments" and lift["source_build"] == "hg38"
    assert "lifted" in done.stdout


def test_app_export_records_the_liftover(tmp_path, demo_hg38, reference):
    from scembed_app.exports import annotated_adata, annotated_h5ad_bytes
    from scembed_core.project import project

    prepared = prepare_query(demo_hg38, reference)
    projection = project(prepared.adata, reference, ev=False)
    clusters = np.zeros(prepared.adata.n_obs, dtype=int)
    annotated = annotated_adata(
        prepared.adata, reference, projection, clusters, None, resolution=1.0
    )
    path = tmp_path / "export.h5ad"
    path.write_bytes(annotated_h5ad_bytes(annotated))
    written = ad.read_h5ad(path)
    assert written.uns["scembed"]["liftover"]["source_build"] == "hg38"
    assert "scembed_liftover" not in written.uns


def test_cli_out_of_core_refuses_another_build(tmp_path, demo_hg38):
    source = tmp_path / "demo_hg38.h5ad"
    demo_hg38.write_h5ad(source)
    done = run_cli("project", str(source), "--out", str(tmp_path / "o.zarr"), "--no-ev")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "does not lift peaks over" in done.stderr and "on hg38" in done.stderr
    assert not (tmp_path / "o.zarr").exists()
