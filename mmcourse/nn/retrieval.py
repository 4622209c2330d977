"""Retrieval and zero-shot classification in a joint embedding space.

    sim = similarity(queries, gallery)                       (Q, G) cosine similarities
    recall@k = mean over queries of [a relevant item is among the k most similar]

An item is relevant to a query when it has the query's label; with ``labels = arange(N)`` on
both sides (the i-th query matches only the i-th item) this is instance-level recall.
``chance_recall_at_k`` is the expected recall@k of a random ranking, the level to beat.

Zero-shot classification by prototypes: each class is the normalized mean of its (normalized)
embeddings in one modality; an embedding of another modality gets the class of the most similar
prototype, without any classifier trained on that modality.

k-nearest-neighbour classification: each query gets the majority label of *its own* k most
similar labelled items (not the k closest pairs of the whole query set); ties go to the
smallest label, as in scikit-learn's ``KNeighborsClassifier``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmcourse.nn.contrastive import similarity


def _check_labels(name: str, labels: torch.Tensor, n: int) -> None:
    if not isinstance(labels, torch.Tensor) or labels.shape != (n,):
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"expected {name} of shape ({n},), got {got}")
    if labels.is_floating_point():
        raise TypeError(f"expected integer {name}, got dtype {labels.dtype}")


def recall_at_k(
    sim: torch.Tensor, query_labels: torch.Tensor, gallery_labels: torch.Tensor, k: int
) -> float:
    """Fraction of queries with a gallery item of their own label among their top ``k``.

    sim: (Q, G) similarities of every query with every gallery item.
    """
    if not isinstance(sim, torch.Tensor) or sim.dim() != 2:
        got = tuple(sim.shape) if isinstance(sim, torch.Tensor) else type(sim).__name__
        raise ValueError(f"expected sim of shape (Q, G), got {got}")
    Q, G = sim.shape
    _check_labels("query_labels", query_labels, Q)
    _check_labels("gallery_labels", gallery_labels, G)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= G:
        raise ValueError(f"expected k in [1, G = {G}], got {k!r}")
    top = sim.topk(k, dim=1).indices  # (Q, k)
    hit = (gallery_labels.to(sim.device)[top] == query_labels.to(sim.device)[:, None]).any(1)  # (Q,)
    return hit.double().mean().item()


def chance_recall_at_k(query_labels: torch.Tensor, gallery_labels: torch.Tensor, k: int) -> float:
    """Expected recall@k of a uniformly random ranking.

    A query whose label has n of the G gallery items misses all of them in k draws without
    replacement with probability prod_{i<k} (G - n - i) / (G - i).
    """
    for name, labels in (("query_labels", query_labels), ("gallery_labels", gallery_labels)):
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1:
            got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"expected {name} of shape (N,), got {got}")
        _check_labels(name, labels, labels.shape[0])
    G = gallery_labels.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= G:
        raise ValueError(f"expected k in [1, G = {G}], got {k!r}")
    n = (query_labels.cpu()[:, None] == gallery_labels.cpu()[None, :]).sum(1).double()  # (Q,)
    i = torch.arange(k, dtype=torch.float64)  # (k,)
    miss = ((G - n[:, None] - i).clamp_min(0) / (G - i)).prod(1)  # (Q,)
    return (1.0 - miss).mean().item()


def prototypes(emb: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, d) unit vectors: the normalized mean of the normalized embeddings of each class."""
    if not isinstance(emb, torch.Tensor) or emb.dim() != 2:
        got = tuple(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__
        raise ValueError(f"expected embeddings of shape (N, d), got {got}")
    _check_labels("labels", labels, emb.shape[0])
    labels = labels.to(emb.device)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"expected labels in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    counts = torch.bincount(labels, minlength=num_classes)  # (C,)
    if (counts == 0).any():
        empty = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"every class needs at least one embedding; none for classes {empty}")
    onehot = F.one_hot(labels, num_classes).to(emb.dtype)  # (N, C)
    total = onehot.T @ F.normalize(emb, dim=-1)  # (C, d)
    return F.normalize(total / counts[:, None].to(emb.dtype), dim=-1)


def classify_by_prototype(emb: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
    """(N,) the index of the most similar prototype (cosine) for each embedding (N, d)."""
    if emb.dim() != 2 or protos.dim() != 2 or emb.shape[1] != protos.shape[1]:
        raise ValueError(
            f"expected embeddings (N, d) and prototypes (C, d) with the same d, "
            f"got {tuple(emb.shape)} and {tuple(protos.shape)}"
        )
    return (F.normalize(emb, dim=-1) @ F.normalize(protos, dim=-1).T).argmax(dim=1)  # (N,)


def knn_classify(
    query: torch.Tensor, gallery: torch.Tensor, gallery_labels: torch.Tensor, k: int,
    num_classes: int | None = None,
) -> torch.Tensor:
    """(Q,) the majority label among each query's k most cosine-similar gallery items.

    query (Q, d), gallery (G, d) with labels (G,). For unit vectors the most similar items are
    the nearest in Euclidean distance. Ties in the vote go to the smallest label.
    """
    sim = similarity(query, gallery)  # (Q, G)
    _check_labels("gallery_labels", gallery_labels, gallery.shape[0])
    G = gallery.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= G:
        raise ValueError(f"expected k in [1, G = {G}], got {k!r}")
    labels = gallery_labels.to(sim.device)
    C = int(labels.max()) + 1 if num_classes is None else num_classes
    near = sim.topk(k, dim=1).indices  # (Q, k), each query's own neighbours
    votes = F.one_hot(labels[near], C).sum(dim=1)  # (Q, C)
    return votes.argmax(dim=1)  # the first maximum: the smallest label among ties

