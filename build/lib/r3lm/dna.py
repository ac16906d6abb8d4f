"""DNA as letters, base codes and matrices: complements, the network encoding and the dinucleotide shuffle.

`r3lm.data.sequences` reads sequence tables; this module holds what is done to a sequence once read, so
every strand flip uses one complement (letters A<->T, C<->G, N stays; codes in ACGT order, 0..3, with
N and padding 4).

`dinucleotide_shuffle` is the Altschul-Erickson shuffle (a random Eulerian walk through the dinucleotide
graph, its last-exit edges drawn as a random arborescence with Wilson's algorithm): it keeps every
dinucleotide count and the first and last base.

torch loads only where tensors are encoded, so table preparation starts without it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

COMPLEMENT_CODES = (3, 2, 1, 0)  # A<->T, C<->G in ACGT order
PAD = 4  # the code of N and of padding: both one-hot to all zeros

_LETTER_COMPLEMENT = str.maketrans("ACGTN", "TGCAN")
_CODES = np.full(256, PAD, dtype=np.uint8)
for _code, _base in enumerate(b"ACGT"):
    _CODES[_base] = _code


def reverse_complement(sequence: str) -> str:
    """The other strand of an upper-case A/C/G/T/N sequence, read 5' to 3'."""
    return sequence.translate(_LETTER_COMPLEMENT)[::-1]


def reverse_complement_matrix(matrix: np.ndarray) -> np.ndarray:
    """A (width, 4) position matrix in ACGT order for the other strand (contiguous, for fast scanning)."""
    return np.ascontiguousarray(matrix[::-1, list(COMPLEMENT_CODES)])


def encode_sequences(sequences: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Base codes (rows, longest length) as uint8: A, C, G, T = 0..3, N and right padding = 4; and lengths.

    Codes rather than one-hot keep a large library 4x smaller (x4 bytes for float); one-hot happens
    per batch. Sequences must already be checked to hold only A, C, G, T, N.
    """
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    codes = np.full((len(sequences), int(lengths.max())), PAD, dtype=np.uint8)
    for length in np.unique(lengths):
        index = np.flatnonzero(lengths == length)
        raw = np.frombuffer("".join(sequences[i] for i in index).encode("ascii"), dtype=np.uint8)
        codes[index, :length] = _CODES[raw.reshape(len(index), length)]
    return codes, lengths


def reverse_complement_codes(codes: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse complement of each sequence in place of its own length; padding stays on the right.

    Flipping the whole padded row would move the padding to the left, and the network would see a
    different input than the encoded reverse-complement sequence.
    """
    import torch

    positions = torch.arange(codes.shape[1], device=codes.device)
    last = lengths[:, None] - 1
    index = torch.where(positions < lengths[:, None], last - positions, positions)
    complement = torch.tensor([*COMPLEMENT_CODES, PAD], device=codes.device)  # N and padding stay
    return complement[codes.gather(1, index)]


def one_hot(codes: torch.Tensor) -> torch.Tensor:
    """(batch, length) codes -> (batch, 4, length) float; code 4 (N, padding) is all zeros."""
    import torch

    return torch.nn.functional.one_hot(codes, PAD + 1)[..., :PAD].transpose(1, 2).float()


def dinucleotide_shuffle(sequence: str, rng: np.random.Generator) -> str:
    """A uniformly random sequence with exactly the same dinucleotide counts (and first and last letter)."""
    if len(sequence) < 3:
        return sequence
    successors: dict[str, list[str]] = defaultdict(list)
    for left, right in pairwise(sequence):
        successors[left].append(right)
    root = sequence[-1]
    last_exit: dict[str, int] = {}
    in_tree = {root}
    for vertex in sorted(successors):
        current = vertex
        while current not in in_tree:  # loop-erased random walk toward the root (Wilson's algorithm)
            last_exit[current] = int(rng.integers(len(successors[current])))
            current = successors[current][last_exit[current]]
        current = vertex
        while current not in in_tree:
            in_tree.add(current)
            current = successors[current][last_exit[current]]
    orders: dict[str, list[str]] = {}
    for vertex, edges in successors.items():
        if vertex in last_exit:
            kept = edges[last_exit[vertex]]
            rest = edges[:last_exit[vertex]] + edges[last_exit[vertex] + 1:]
            orders[vertex] = [rest[index] for index in rng.permutation(len(rest))] + [kept]
        else:
            orders[vertex] = [edges[index] for index in rng.permutation(len(edges))]
    position = dict.fromkeys(orders, 0)
    letters = [sequence[0]]
    for _ in range(len(sequence) - 1):
        current = letters[-1]
        letters.append(orders[current][position[current]])
        position[current] += 1
    return "".join(letters)
