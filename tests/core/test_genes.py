"""Shipped gene annotations and nearest-gene / promoter / gene-body calls.

The hand-made annotation has genes on both strands, two genes sharing a TSS, nested genes
and a chromosome (chr2) the query never mentions; the query has regions at chromosome
ends, exactly between two TSSs, and on a contig the annotation lacks. Every expected value
is worked out by hand in the comments.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from scembed_core.errors import GenomeBuildError
from scembed_core.genes import GENE_DIR, load_annotation, nearest_genes

# chrom, start, end, strand, symbol -> TSS
GENES = pd.DataFrame(
    [
        ("chr1", 1000, 3000, "+", "PLUS"),  # TSS 1000
        ("chr1", 5000, 8000, "-", "MINUS"),  # TSS 7999
        ("chr1", 20000, 30000, "+", "BBB"),  # TSS 20000, shares it with AAA
        ("chr1", 20000, 21000, "+", "AAA"),  # TSS 20000
        ("chr1", 22000, 40000, "-", "NESTED"),  # TSS 39999, overlaps BBB
        ("chr2", 100, 900, "+", "ONLY2"),  # a chromosome the query lacks
    ],
    columns=["chrom", "start", "end", "strand", "symbol"],
)
REGIONS = pd.DataFrame(
    [
        ("chr1", 0, 100, "PLUS", -901, "distal"),  # chromosome start: TSS 1000 - end 99
        ("1", 900, 1100, "PLUS", 0, "promoter"),  # contains the TSS; "1" matches "chr1"
        ("chr1", 2500, 2600, "PLUS", 1500, "gene_body"),  # 3' of a + TSS: positive
        ("chr1", 4400, 4500, "PLUS", 3400, "distal"),  # PLUS 4400-1000, MINUS 7999-4499=3500
        ("chr1", 7000, 7100, "MINUS", 900, "gene_body"),  # 7999-7099, 3' of a - TSS: positive
        ("chr1", 8500, 8600, "MINUS", -501, "distal"),  # upstream of the - gene: negative
        ("chr1", 4499, 4500, "PLUS", 3499, "distal"),  # 4499-1000=3499 vs 7999-4499=3500
        ("chr1", 4500, 4501, "PLUS", 3500, "distal"),  # tie 3500 / 3499 -> MINUS? see below
        ("chr1", 19000, 19500, "AAA", -501, "distal"),  # shared TSS: alphabetically first
        ("chr1", 26000, 26100, "AAA", 6000, "gene_body"),  # in BBB and NESTED bodies
        ("chr1", 90000, 90100, "NESTED", -50001, "distal"),  # past the last TSS (chr end)
        ("chrUn_gl000220", 10, 20, "", np.nan, "no_gene_on_chromosome"),
    ],
    columns=["chrom", "start", "end", "gene", "distance", "location"],
)
# row 7: region [4500, 4501): PLUS at 4500 - 1000 = 3500, MINUS at 7999 - 4500 = 3499
REGIONS.loc[7, ["gene", "distance"]] = ["MINUS", 3499]  # 3' of MINUS
# an exact tie: [4499, 4501) -> PLUS 3499, MINUS 7999 - 4500 = 3499: the lower coordinate wins
TIE = pd.DataFrame([("chr1", 4499, 4501)], columns=["chrom", "start", "end"])


def test_hand_made_annotation_calls():
    got = nearest_genes(REGIONS[["chrom", "start", "end"]], GENES, promoter=500)
    assert list(got["gene"]) == list(REGIONS["gene"])
    np.testing.assert_array_equal(got["tss_distance"].to_numpy(), REGIONS["distance"].to_numpy())
    assert list(got["location"]) == list(REGIONS["location"])
    assert got["gene_strand"].tolist()[:6] == ["+", "+", "+", "+", "-", "-"]
    tie = nearest_genes(TIE, GENES)  # default promoter: +-2 kb
    assert tie["location"].item() == "distal"
    assert tie["gene"].item() == "PLUS" and tie["tss_distance"].item() == 3499


def test_promoter_width_and_region_names():
    names = ["chr1:3400-3500", "chr1_3000_3001"]  # 2400 and 2000 bp 3' of PLUS's TSS
    got = nearest_genes(names, GENES)
    assert list(got["location"]) == ["distal", "promoter"]
    assert list(nearest_genes(names, GENES, promoter=2500)["location"]) == ["promoter"] * 2
    assert list(got.index) == ["chr1_3400_3500", "chr1_3000_3001"]


def test_shipped_tables_are_the_documented_ones():
    sums = {
        "hg19": "20a4f5c06e5c0e60da51b9a9f03b19a4025272eb81a6617447f4229076858f7f",
        "hg38": "72abf0022ec77104d4f30cca397da387914b922d32f24c9ba59d7ba89d21b771",
    }
    for build, digest in sums.items():
        data = (GENE_DIR / f"genes_{build}.tsv.gz").read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest
    assert "MIT License" in (GENE_DIR / "PROVENANCE.md").read_text()


def test_real_annotation_known_genes_and_cache_is_safe():
    hg19 = load_annotation("GRCh37")
    assert len(hg19) == 23179 and hg19["symbol"].is_unique
    cd14 = hg19.loc["CD14"]
    assert (cd14["chrom"], cd14["strand"], cd14["tss"]) == ("chr5", "-", 140013285)
    hg19["tss"] = 0  # a caller's copy: the cached table is unchanged
    assert load_annotation("hg19").loc["CD3E", "tss"] == 118175294
    hg38 = load_annotation("hg38")
    assert hg38.loc["HBB", "tss"] == 5227070
    got = nearest_genes(["chr11:118175000-118175500", "chr5:140013000-140013600"], "hg19")
    assert list(got["gene"]) == ["CD3E", "CD14"] and set(got["location"]) == {"promoter"}
    with pytest.raises(GenomeBuildError, match="hg19"):
        load_annotation("mm10")
