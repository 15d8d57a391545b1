"""Readers of model formats written by other tools.

:mod:`.geniml` reads geniml model folders (``config.yaml``, ``universe.bed`` and
``model.safetensors``, ``checkpoint.pt`` or a trusted gensim ``model.bin``) as a
:class:`~scembed_core.model.RegionModel`; :mod:`.torch_zip` is the restricted reader of
PyTorch zip checkpoints it uses. Nothing here reaches the network (see :mod:`scembed_core.hub`).
"""
