"""Anatomy for the synthetic scanners: partial-volume tissue fraction maps, no physics.

Each anatomy module exposes ``<anatomy>_tissue_slices(rng, num_slices, size)`` returning
``{tissue: (num_slices, size, size) float32}`` fractions in [0, 1] that sum to <= 1 per pixel (the
remainder is air), with the object in the central ~80 % of the field of view. Tissue names are the
keys of :data:`mrtl_core.simulate.TISSUES`; :mod:`mrtl_core.simulate` turns fractions into k-space.

* :mod:`.brain` -- axial head slices from the MNI ICBM152 2009 template plus a procedural head.
* :mod:`.knee` -- a procedural knee joint.

Submodules are imported on use (the brain loads nilearn, which takes seconds).
"""
