"""scEmbed engine: region embeddings for single-cell ATAC-seq, projection and annotation.

Modules, one per stage: :mod:`~scembed_core.io` (readers), :mod:`~scembed_core.regions`
(universe and overlap mapping), :mod:`~scembed_core.train` (Word2Vec),
:mod:`~scembed_core.project` (E-/EV-projection), :mod:`~scembed_core.cluster`,
:mod:`~scembed_core.annotate` (kNN label transfer), :mod:`~scembed_core.evaluate`,
:mod:`~scembed_core.reference` (bundles) and :mod:`~scembed_core.hub` (Hugging Face hub).
The engine never imports streamlit.
"""

__version__ = "0.1.0"
