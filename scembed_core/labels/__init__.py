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
- :mod:`.softmax_fit`: how the classifier is fitted (``fit_softmax``, warm-started from
  the held-out fit), its stratified hold-out (``holdout_split``) and the held-out cells'
  neighbours in the reference's own index (``held_out_neighbors``).
- :mod:`.calibration`: reliability curve, expected calibration error, accuracy versus
  coverage for any probability matrix.
- :mod:`.assign`: the one label rule every caller uses (``assign_labels``: which method
  runs, ``resolve_label_method``), and the one place probabilities become labels, with
  the thresholds to ``"Unassigned"`` (``threshold_labels``); the label frame's accessors
  (``probabilities_of``, ``label_classes``) and ``explain_label``.
- :mod:`.clusters`: the per-cluster majority vote and its tie rule (``cluster_vote``,
  ``cluster_majority``) and the per-cluster table with the absent-type check
  (``cluster_table``, also importable from :mod:`.assign`).
- :mod:`.second_opinion`: each reference type's open fraction per universe region
  (``compute_type_profiles``, stored or computed once per reference by ``type_profiles``),
  a query cluster's best-matching type by accessibility (``query_cluster_scores``), and
  whether it agrees with the transferred label, type or lineage (``with_second_opinion``,
  ``markers_agree``).
- :mod:`.loto`: the Unknown rule's leave-one-type-out calibration of a reference (stored,
  or computed once on load) and ``flag_unknown``, which applies it to query cells.
- :mod:`.names`: matching the user's label names to the reference's, up to case and
  punctuation (``match_names``), and the suggested reference -> user map from the cells
  (``suggest_label_map``: each label to the user's label most of its cells carry).
- :mod:`.unknown`: the signals and the rule that call a cell Unknown (a type the reference
  does not contain), calibrated per reference by :mod:`.loto`.
- :mod:`.priors`: the classifier's rare-type knobs: partial class weights
  (``class_weights``) and the intercept prior correction (``prior_shift``).

Rules added by later work get their own file here and a line above.

Submodules are imported where they are used; importing this package loads none of them.
"""
