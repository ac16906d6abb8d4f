"""Start sequences for design, checked, as one-hot tensors; and designs back to text.

Random starts come from tangermeme's `random_one_hot` (uniform ACGT, seeded). Natural starts must be all
A, C, G, T (an N has no base to keep or edit) and all of one length (the oracle's training length where it
has one): the engines edit a batch of equal-length sequences.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from tangermeme.utils import random_one_hot

from r3lm.deploy.fast import named_sequences
from r3lm.dna import encode_sequences, one_hot
from r3lm.errors import InputError

ALPHABET = np.array(list("ACGT"))
Sequences = Iterable[str] | Mapping[str, str] | pd.Series


def random_starts(n_designs: int | None, length: int | None, seed: int) -> tuple[list[str], torch.Tensor]:
    """`n_designs` uniform random sequences of `length`.

    Returns: ids random1, random2, ... and the (n_designs, 4, length) one-hot starts."""
    if isinstance(n_designs, bool) or not isinstance(n_designs, int) or n_designs < 1:
        raise InputError(f"n_designs must be a positive integer with random starts, got {n_designs!r}")
    if length is None:
        raise InputError("random starts need a length: the oracle has no single training length")
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise InputError(f"length must be a positive integer, got {length!r}")
    X = random_one_hot((n_designs, 4, length), random_state=seed).float()
    return [f"random{index}" for index in range(1, n_designs + 1)], X


def natural_starts(sequences: Sequences, length: int | None) -> tuple[list[str], torch.Tensor]:
    """Given starts, checked: ACGT only, and every one of `length` (None: the first one's).

    Returns: their ids (seq1, seq2, ... for a plain list) and the (N, 4, L) one-hot starts."""
    ids, texts = named_sequences(sequences, allow_n=False)
    length = length or len(texts[0])
    for row, (name, text) in enumerate(zip(ids, texts, strict=True), start=1):
        if len(text) != length:
            raise InputError(f"start {name!r} is {len(text)} bp; the designs are {length} bp", row=row,
                             column="sequence")
    codes, _ = encode_sequences(texts)
    return ids, one_hot(torch.from_numpy(codes).long())


def decode(X: torch.Tensor) -> list[str]:
    """(N, 4, L) one-hot -> N sequences."""
    return ["".join(row) for row in ALPHABET[X.argmax(dim=1).cpu().numpy()]]
