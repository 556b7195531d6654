"""Data sets and the helpers that prepare them for training.

``fashion_mnist.load_data()`` returns the Fashion-MNIST arrays (see that module for where the
files are looked for and how they are fetched); ``read_idx``/``write_idx`` handle the IDX
container it is stored in; the preprocessing helpers scale, standardize, one-hot encode and split.
"""
from . import fashion_mnist
from .idx import parse_idx, read_idx, write_idx
from .preprocess import normalize, one_hot, standardize, train_val_split

__all__ = ["fashion_mnist", "read_idx", "write_idx", "parse_idx", "normalize", "standardize",
           "one_hot", "train_val_split"]
