"""Every label rule of the engine, each written once, in one room.

Which file owns which rule:

- :mod:`.vote`: the kNN vote of the nearest reference cells (``transfer_labels``), the
  mapping distance of a query cell to the reference and the reference's own 99th
  percentile (``mapping_distance_threshold``), the per-cluster majority vote and its tie
  rule (``cluster_vote``, ``annotate_clusters``), and the ``"Unassigned"`` label.
- :mod:`.classifier`: the reference's label classifier stored as plain arrays
  (``LabelModel``, ``fit_label_model``), its temperature calibration, and the blend with
  the kNN vote fractions.
- :mod:`.calibration`: reliability curve, expected calibration error, accuracy versus
  coverage for any probability matrix.
- :mod:`.assign`: the one label rule every caller uses (``assign_labels``: classifier or
  kNN probabilities, thresholds to ``"Unassigned"``) and the per-cluster table
  (``cluster_table``).

Submodules are imported where they are used; importing this package loads none of them.
"""
