"""Every label rule of the engine, each written once, in one room.

Which file owns which rule:

- :mod:`.vote`: the nearest reference cells of a query cell
  (``query_reference_neighbors``), the one vote counter (``vote_fractions``, used by the
  kNN method, the classifier's kNN blend and its calibration), the kNN label method
  (``knn_labels``: probabilities, no thresholds), the mapping distance and the only
  reader of the reference's own quantiles of it (``mapping_distance_threshold``), and the
  name ``UNASSIGNED``.
- :mod:`.classifier`: the reference's label classifier stored as plain arrays
  (``LabelModel``, ``fit_label_model``), its temperature calibration, and the blend with
  the kNN vote fractions.
- :mod:`.calibration`: reliability curve, expected calibration error, accuracy versus
  coverage for any probability matrix.
- :mod:`.assign`: the one label rule every caller uses (``assign_labels``: which method
  runs, ``resolve_label_method``), and the one place probabilities become labels, with
  the thresholds to ``"Unassigned"`` (``threshold_labels``); the label frame's accessors
  (``probabilities_of``, ``label_classes``) and ``explain_label``.
- :mod:`.clusters`: the per-cluster majority vote and its tie rule (``cluster_vote``,
  ``cluster_majority``) and the per-cluster table with the absent-type check
  (``cluster_table``, also importable from :mod:`.assign`).

Rules added by later work get their own file here and a line above: unseen cell types
(``unknown.py``), marker-based second opinions (``second_opinion.py``).

Submodules are imported where they are used; importing this package loads none of them.
"""
