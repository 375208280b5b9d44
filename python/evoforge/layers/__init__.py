"""Packed linear layers: sparse and quantised weights with CPU kernels that read them directly."""

from .model import apply, load, packed_layers, save
from .sparse import SparseLinear, pack_sparse, sparse_matmul, unpack_sparse

__all__ = ["SparseLinear", "apply", "load", "pack_sparse", "packed_layers", "save", "sparse_matmul", "unpack_sparse"]
