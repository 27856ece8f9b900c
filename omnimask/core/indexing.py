"""Index helpers over token batches: gather rows, select masked rows, split a mask into visible and
hidden indices. Shared by :class:`~omnimask.core.networks.MaskIndex`, encoders, heads and targets."""

from __future__ import annotations

import torch


def gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``x[b, ids[b, i]]``: ``[B, N, ...]`` and ``[B, M]`` -> ``[B, M, ...]``.

    Whole rows picked by ``index_select`` over the flattened batch (row ``b * N + i``), not
    ``torch.gather`` with the index expanded over ``D``, which indexes every value on its own: on the
    CPU an order of magnitude faster for the tiny MAE's tokens, and a backward that adds
    rows (``index_add``) rather than values (``scatter_add``). ``x`` broadcast over the batch
    (``expand``ed, stride 0) is read once, not copied ``B`` times."""
    b, n = ids.shape[0], x.shape[1]
    if x.shape[0] == 1 or x.stride(0) == 0:
        return x[0].index_select(0, ids.reshape(-1)).view(b, ids.shape[1], *x.shape[2:])
    rows = ids + torch.arange(0, b * n, n, device=ids.device).unsqueeze(1)
    return x.flatten(0, 1).index_select(0, rows.reshape(-1)).view(b, ids.shape[1], *x.shape[2:])


def select_rows(x: torch.Tensor, mask: torch.Tensor, count: "int | None" = None) -> torch.Tensor:
    """``x[mask]``: ``x [B, N, ...]``, bool ``mask [B, N]`` -> ``[count, ...]``, rows in row-major order.

    With ``count`` (``mask.sum()``, known on the host) the selection has a static size
    (``nonzero_static``): no device read-back, and ``torch.compile`` traces it, where ``x[mask]``
    breaks the graph (its size depends on the data)."""
    if count is None:
        return x[mask]
    rows = torch.nonzero_static(mask.reshape(-1), size=count).squeeze(1)
    return x.flatten(0, 1).index_select(0, rows)


def predicted_rows(queries: torch.Tensor, pick: "torch.Tensor | None") -> torch.Tensor:
    """The predicted rows ``[B, N_p, D]`` of the query outputs ``[B, N_q, D]`` (``pick`` selects among
    the queries; None: all of them are predicted)."""
    return queries if pick is None else gather_tokens(queries, pick)


def split_ids(mask: torch.Tensor, num_hidden: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Visible and hidden token indices from a boolean mask ``[B, N]`` with ``num_hidden`` True per row.

    Returns ``ids_keep [B, N - num_hidden]``, ``ids_hidden [B, num_hidden]`` (each
    ascending) and ``ids_restore [B, N]`` that puts ``cat(visible, hidden)`` back
    in token order. No host synchronisation: the count comes from the masker.
    """
    n = mask.shape[1]
    ids_shuffle = torch.argsort(mask.to(torch.int8), dim=1, stable=True)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    return ids_shuffle[:, : n - num_hidden], ids_shuffle[:, n - num_hidden :], ids_restore
