"""How the CNN's lead over the MLP changes with the size of the training set.

The ``data-efficiency`` pipeline trains every variant on nested, class-stratified
subsets of the training split (:mod:`~cnnvsmlp.efficiency.subsets`), each to
convergence by one rule (:mod:`~cnnvsmlp.stopping`), and compares
them (:mod:`~cnnvsmlp.efficiency.analysis`): accuracy against size, the gap
per size with McNemar's test, and learning curves fitted per variant with the
data multiplier they imply (:mod:`~cnnvsmlp.efficiency.curves`).
:mod:`~cnnvsmlp.efficiency.plan` holds the study's settings and its runs.
"""
