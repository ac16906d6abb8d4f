"""Design engines in tangermeme's style, `f(model, X, ...)`: a model whose one output (N, 1) is to be maximised
(an `Objective`), starts X (N, 4, L) one-hot, designs (N, 4, L) back.

* `ledidi_design` (the default): ledidi 2.2 (Schreiber et al.), a Gumbel-softmax straight-through designer
  that learns a weight matrix over the start's one-hot. One ledidi designer edits one sequence, so the N
  starts are laid end to end as one (1, 4, N x L) template and `SideBySide` scores each part as its own
  sequence: one designer, one optimiser step per iteration, fits all N weight matrices at once (the parts'
  losses add, so each part's gradient is its own). Each iteration draws `samples` sequences per start; at
  the end the best iteration's draws and `draws` more from the learned weights are scored and the best
  draw per start kept.
* `greedy_design`: tangermeme's `greedy_substitution`, one base at a time, the best single substitution
  of the whole sequence per step, until no substitution raises the objective by more than `tol`.

An edit budget (at most k bases differ from the start) holds exactly in both. Greedy makes one
substitution per step and runs at most k steps. Ledidi is steered by its input loss, here each draw's
edits beyond k (`EditsOverBudget`), and every draw still over k is then cut to k by `cap_edits`: revert
the edit whose loss costs the objective least, one at a time. (ledidi's `greedy_pruning` reverts edits
while the output moves less than a threshold; it does not stop at a count, so it cannot promise k.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numba
import torch
from ledidi import Ledidi
from tangermeme.design import greedy_substitution
from tangermeme.predict import predict
from torch import nn

if "NUMBA_THREADING_LAYER" not in os.environ:
    # numba's default OpenMP layer loads the system libgomp beside the one torch ships: once a numba parallel
    # loop has run (tangermeme's greedy tiling, memelite's TOMTOM), two OpenMP runtimes hold the cores and
    # every later torch op slows down (the explanations' generation ran 4x slower). Numba's own workqueue
    # layer starts no second runtime. Set before the first parallel loop, which is when numba picks a layer.
    numba.config.THREADING_LAYER = "workqueue"


@dataclass(frozen=True)
class LedidiSettings:
    """ledidi's knobs (its names in brackets) with defaults tuned on the demo CNN (benchmarks/design.py).

    iterations [max_iter], patience [early_stopping_iter], samples [batch_size]: Gumbel draws per start and
    iteration; lr; tau; eps: the start's bases lead the others by log(1 + 1/eps) in the logits, so a small
    eps keeps the start unless an edit pays; None: ledidi's 1e-4 under a budget, 1.0 without one (a random
    start is no prior: on the demo CNN, 10 HepG2 designs reached a MinGap median of 10.1 at eps 1 against
    8.5 at 1e-4, 200 iterations); edit_weight [l]: the objective one edit over the budget costs; draws:
    extra draws per start from the learned weights; batch_size: sequences per forward pass when scoring.
    """

    iterations: int = 200
    patience: int = 50
    samples: int = 4
    lr: float = 1.0
    tau: float = 1.0
    eps: float | None = None
    edit_weight: float = 0.3
    draws: int = 4
    batch_size: int = 512


@dataclass(frozen=True)
class GreedySettings:
    """tangermeme `greedy_substitution`'s knobs: max_iter (substitutions per start, at most), tol (the least
    improvement that continues), batch_size (sequences per forward pass)."""

    max_iter: int = 1000
    tol: float = 1e-3
    batch_size: int = 800


class SideBySide(nn.Module):
    """N sequences of `length` laid end to end, (B, 4, N x length) -> (B, N): each part's own model output."""

    def __init__(self, model: nn.Module, length: int) -> None:
        super().__init__()
        self.model, self.length = model, length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(unstack(x, self.length)).reshape(x.shape[0], -1)


def stack(X: torch.Tensor) -> torch.Tensor:
    """(N, 4, L) -> (1, 4, N x L), sequences end to end."""
    return X.permute(1, 0, 2).reshape(1, X.shape[1], -1)


def unstack(x: torch.Tensor, length: int) -> torch.Tensor:
    """(B, 4, N x L) -> (B x N, 4, L), the inverse of `stack` per draw."""
    draws, channels = x.shape[:2]
    return x.reshape(draws, channels, -1, length).permute(0, 2, 1, 3).reshape(-1, channels, length)


class EditsOverBudget:
    """ledidi input loss: per draw and start, the edits beyond `budget`, summed over starts. ledidi divides
    an input loss by 2 x draws (two changed one-hot entries per edit), so this returns twice the sum."""

    def __init__(self, budget: int, length: int) -> None:
        self.budget, self.length = budget, length

    def __call__(self, X_hat: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        changed = unstack((X_hat - X).abs(), self.length).sum(dim=(1, 2)) / 2
        return 2 * torch.relu(changed - self.budget).sum()


def _negative_total(y_hat: torch.Tensor, y_bar: torch.Tensor) -> torch.Tensor:
    """ledidi output loss: minus the objective summed over starts, averaged over draws (y_bar is unused)."""
    return -y_hat.sum(dim=1).mean()


def ledidi_design(model: nn.Module, X: torch.Tensor, *, budget: int | None = None, seed: int = 0,
                  settings: LedidiSettings = LedidiSettings()) -> torch.Tensor:
    """Ledidi designs from each start.

    Args:
        model: (N, 4, L) -> (N, 1), differentiable, to be maximised (an `Objective`).
        X: (N, 4, L) one-hot starts.
        budget: at most this many edits per start; None: no limit (the start is only where the search begins).
        seed: seeds the Gumbel draws (ledidi's random_state); the same seed gives the same designs.
        settings: ledidi's knobs.

    Returns:
        (N, 4, L) one-hot designs.
    """
    if budget == 0:
        return X.clone()
    length, template = X.shape[-1], stack(X.float())
    designer = _designer(model, template, length, budget, seed, settings).to(X.device)
    best = designer.fit_transform(template, torch.zeros(1, len(X), device=X.device))
    with torch.no_grad():
        drawn = torch.cat([best, *(designer(template) for _ in range(settings.draws))])
    candidates = unstack(drawn.detach(), length).reshape(-1, len(X), *X.shape[1:])  # (draws, N, 4, L)
    return best_draws(model, X, candidates, budget, batch_size=settings.batch_size)


def _designer(model: nn.Module, template: torch.Tensor, length: int, budget: int | None, seed: int,
              settings: LedidiSettings) -> Ledidi:
    """One ledidi designer over the side-by-side template; without a budget, edits are free (l = 0)."""
    eps = settings.eps if settings.eps is not None else (1.0 if budget is None else 1e-4)
    return Ledidi(SideBySide(model, length), shape=tuple(template.shape[1:]), output_loss=_negative_total,
                  input_loss=EditsOverBudget(budget or 0, length), l=0.0 if budget is None else settings.edit_weight,
                  tau=settings.tau, batch_size=settings.samples, max_iter=settings.iterations,
                  early_stopping_iter=settings.patience, lr=settings.lr, eps=eps, verbose=False, random_state=seed)


def best_draws(model: nn.Module, X: torch.Tensor, candidates: torch.Tensor, budget: int | None, *,
               batch_size: int) -> torch.Tensor:
    """Per start, the draw (cut to the budget) with the highest objective: (draws, N, 4, L) -> (N, 4, L)."""
    draws = candidates.shape[0]
    flat = candidates.reshape(-1, *X.shape[1:])
    if budget is not None:
        flat = cap_edits(model, X.repeat(draws, 1, 1), flat, budget, batch_size=batch_size)
    scores = predict(model, flat, batch_size=batch_size, device=X.device)[:, 0].reshape(draws, -1)
    return flat.reshape(candidates.shape)[scores.argmax(dim=0), torch.arange(len(X))]


@torch.no_grad()
def cap_edits(model: nn.Module, X: torch.Tensor, X_hat: torch.Tensor, budget: int, *,
              batch_size: int = 512) -> torch.Tensor:
    """Each design with at most `budget` edits: while one has more, revert its edit whose reversion leaves the
    highest objective (all of a round's reversions scored in one batch).

    Args:
        model: (N, 4, L) -> (N, 1), to be maximised.
        X: (N, 4, L) starts. X_hat: (N, 4, L) designs.
        budget: edits allowed per design.
        batch_size: sequences per forward pass.

    Returns:
        (N, 4, L) designs, each within `budget` edits of its start.
    """
    X_hat = X_hat.clone()
    while True:
        edited = (X_hat != X).any(dim=1)
        over = torch.nonzero(edited.sum(dim=1) > budget).flatten()
        if len(over) == 0:
            return X_hat
        part, position = torch.nonzero(edited[over], as_tuple=True)
        rows = over[part]
        reverted = X_hat[rows]
        reverted[torch.arange(len(rows)), :, position] = X[rows, :, position]
        scores = predict(model, reverted, batch_size=batch_size, device=X.device)[:, 0]
        for index, row in enumerate(over):
            mine = torch.nonzero(part == index).flatten()
            undo = position[mine[scores[mine].argmax()]]
            X_hat[row, :, undo] = X[row, :, undo]


def greedy_design(model: nn.Module, X: torch.Tensor, *, budget: int | None = None,
                  settings: GreedySettings = GreedySettings()) -> torch.Tensor:
    """tangermeme greedy substitution from each start (deterministic: no seed).

    Args:
        model: (N, 4, L) -> (N, 1), to be maximised (y=None: greedy_substitution maximises the output).
        X: (N, 4, L) one-hot starts.
        budget: at most this many substitutions, so edits; None: up to `settings.max_iter`.
        settings: greedy_substitution's knobs.

    Returns:
        (N, 4, L) one-hot designs.
    """
    steps = settings.max_iter if budget is None else min(budget, settings.max_iter)
    if steps == 0:
        return X.clone()
    return torch.cat([greedy_substitution(model, X[index:index + 1].float(), max_iter=steps, tol=settings.tol,
                                          batch_size=settings.batch_size, device=X.device)
                      for index in range(len(X))])
