"""The experiments: one module per post, each registering one or more experiments.

Each module defines an :class:`kexue.evidence.Experiment` (its claim, ``run`` and
``checks``) and decorates it with :func:`kexue.evidence.register`; the registry imports
every module here whose name does not start with ``_``, so adding an experiment is
adding one file. Helpers used by several experiments live in :mod:`._shared`.
Nothing in the library imports this package.
"""
