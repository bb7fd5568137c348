"""How the CNN's lead over the MLP changes with the size of the training set.

Every variant trains on nested subsets (``subsets``) to convergence (``cnnvsmlp.stopping``);
``analysis`` compares them per size, with learning curves and data multipliers (``curves``).
"""
