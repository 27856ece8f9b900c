"""Graph dataset statistics, for the tokenizer's ``features`` and ``dim`` on a new dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from omnimask.io.formats import iter_shard
from omnimask.io.manifest import Manifest
from omnimask.modalities.graph.readers import read_npz


def graph_stats(root: Path, max_samples: Optional[int] = None) -> dict[str, Any]:
    """Sizes, node-label range, largest degree and attribute width over the graphs of ``root``, and
    the ``graph_features`` parameters they call for: the attributes when every graph has them, else
    one-hot node labels when every graph has them, else one-hot degrees."""
    manifest = Manifest.load(root)
    n = with_x = with_labels = 0
    nodes, edges, widths, label_lo, label_hi, degree = [], [], set(), None, None, 0
    for shard in manifest.shards:
        for _, members in iter_shard(manifest.format, root / shard.path):
            g = read_npz(members["npz"])
            n += 1
            nodes.append(g.num_nodes)
            edges.append(g.edge_index.shape[1])
            if g.edge_index.size:
                degree = max(degree, int(np.bincount(g.edge_index[1]).max()))
            if g.x is not None:
                with_x += 1
                widths.add(int(np.asarray(g.x).reshape(g.num_nodes, -1).shape[1]))
            if g.node_labels is not None:
                with_labels += 1
                lo, hi = int(np.min(g.node_labels)), int(np.max(g.node_labels))
                label_lo = lo if label_lo is None else min(label_lo, lo)
                label_hi = hi if label_hi is None else max(label_hi, hi)
            if max_samples is not None and n >= max_samples:
                break
        if max_samples is not None and n >= max_samples:
            break
    if n == 0:
        raise ValueError(f"{root} holds no graphs to compute statistics on")
    if with_x == n and len(widths) == 1:
        overrides = {"features": "attributes", "dim": widths.pop()}
    elif with_labels == n and label_lo is not None and label_lo >= 0:
        overrides = {"features": "labels", "dim": label_hi + 1}
    else:
        overrides = {"features": "degree", "dim": degree + 1}
    summary = (
        f"{n} graphs, nodes mean {np.mean(nodes):.1f} max {max(nodes)}, edges mean {np.mean(edges):.1f} max {max(edges)}, "
        f"max degree {degree}; {with_x} with attributes (widths {sorted(widths) or '-'}), {with_labels} with node labels"
        + (f" in [{label_lo}, {label_hi}]" if label_lo is not None else "")
    )
    return {"samples": n, "max_degree": degree, "label_range": (label_lo, label_hi), "summary": summary, "overrides": overrides}
