"""CNN versus MLP on EMNIST Letters and Fashion-MNIST: data, models, training, statistics."""

__version__ = "0.1.0"
