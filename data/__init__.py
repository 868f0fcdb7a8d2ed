"""The real data sets l2n_jax ships (see README.md here for provenance and licences).

A package only so that installs carry the files (as ``l2n_jax/usecases/data``);
read them through ``l2n_jax.usecases.base.data_dir()``.
"""
