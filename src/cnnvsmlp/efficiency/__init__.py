"""How the CNN's lead over the MLP changes with the size of the training set."""
