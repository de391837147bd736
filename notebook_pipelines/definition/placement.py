"""Where nodes go in a serial list: the one implementation of placement.

A serial list (a stage's or step group's ``items`` or ``rollback_items``, a pipeline's
``stages``) holds nodes and ``Parallel`` blocks of nodes. The builder (``x.step(…)``, re-running
a cell replaces a node in its place) and the magics (``--parallel-with``) both place nodes with
these functions; each says what it mutates.

It stands on :mod:`.nodes` (``Parallel``, the leaves); :mod:`.model` calls it.
"""

from __future__ import annotations

from typing import Any

from .nodes import Parallel

__all__ = [
    "attach",
    "block_of",
    "check_sibling",
    "ids_of",
    "item_ids",
    "locate",
    "members",
    "place",
    "remove_ids",
    "take",
]


def ids_of(items: list[Any]) -> list[str]:
    out: list[str] = []
    for it in items:
        out.extend(it.ids if isinstance(it, Parallel) else [it.id])
    return out


def members(item: Any) -> list[Any]:
    """The nodes of one entry of a serial list: a parallel block's nodes, or the node itself."""
    return list(item.items) if isinstance(item, Parallel) else [item]


def locate(items: list[Any], id: str) -> tuple[list[Any], int] | None:
    """``(list, index)`` of the node ``id`` in the serial list ``items``: in the list itself or
    inside one of its parallel blocks; ``None`` when it is not there.

    >>> from notebook_pipelines.definition.nodes import Parallel, Step
    >>> items = [Step("a"), Parallel([Step("b"), Step("c")])]
    >>> where, i = locate(items, "c"); where[i]
    Step('c')
    """
    for i, item in enumerate(items):
        if isinstance(item, Parallel):
            for j, node in enumerate(item.items):
                if node.id == id:
                    return item.items, j
        elif item.id == id:
            return items, i
    return None


def block_of(items: list[Any], id: str) -> int | None:
    """The index of the serial entry of ``items`` that holds ``id`` (itself or its parallel block)."""
    return next((i for i, item in enumerate(items) if id in [n.id for n in members(item)]), None)


def take(items: list[Any], id: str, *, tidy: bool = False) -> Any:
    """Remove the node ``id`` from the serial list ``items`` (or from its parallel block) and
    return it (``None`` when it is not there); mutates ``items``.

    A block left empty goes away. With ``tidy``, a block left with one node becomes that node
    (the magics make blocks implicitly with ``--parallel-with``, so they unmake them too; the
    builder keeps the blocks its ``with x.parallel():`` made).

    >>> from notebook_pipelines.definition.nodes import Parallel, Step
    >>> items = [Parallel([Step("a"), Step("b")]), Step("c")]
    >>> take(items, "b"); items
    Step('b')
    [Parallel(['a']), Step('c')]
    >>> items = [Parallel([Step("a"), Step("b")]), Step("c")]
    >>> take(items, "b", tidy=True); items
    Step('b')
    [Step('a'), Step('c')]
    """
    b = block_of(items, id)
    if b is None:
        return None
    item = items[b]
    if not isinstance(item, Parallel):
        return items.pop(b)
    node = next(n for n in item.items if n.id == id)
    item.items.remove(node)
    if not item.items:
        del items[b]
    elif tidy and len(item.items) == 1:
        items[b] = item.items[0]
    return node


def check_sibling(items: list[Any], id: str, parallel_with: str | None) -> None:
    """Raise ``ValueError`` unless ``parallel_with`` names another node of ``items`` (or is None)."""
    if parallel_with == id:
        raise ValueError(f"`{id}` cannot run in parallel with itself")
    if parallel_with is not None and block_of(items, parallel_with) is None:
        known = ", ".join(n.id for item in items for n in members(item)) or "none"
        raise ValueError(f"no `{parallel_with}` here to run in parallel with `{id}`; here: {known}")


def place(items: list[Any], node: Any, parallel_with: str | None = None) -> None:
    """Put ``node`` into the serial list ``items``; mutates ``items``.

    Without ``parallel_with``: in place of the node with the same id (inside its parallel block
    too), else at the end. With it: in the block of that sibling (a lone sibling becomes a
    parallel block of two); a node that stood elsewhere leaves its old place (``take(tidy=True)``).

    >>> from notebook_pipelines.definition.nodes import Parallel, Step
    >>> items = [Step("unit"), Step("e2e")]
    >>> place(items, Step("lint"), parallel_with="unit"); items
    [Parallel(['unit', 'lint']), Step('e2e')]
    >>> place(items, Step("unit")); items
    [Parallel(['unit', 'lint']), Step('e2e')]
    >>> place(items, Step("e2e"), parallel_with="nope")
    Traceback (most recent call last):
    ...
    ValueError: no `nope` here to run in parallel with `e2e`; here: unit, lint, e2e
    """
    here = locate(items, node.id)
    if parallel_with is None:
        if here is None:
            items.append(node)
        else:
            here[0][here[1]] = node
        return
    check_sibling(items, node.id, parallel_with)
    b = block_of(items, parallel_with)
    assert b is not None  # check_sibling made sure
    if here is not None:
        if isinstance(items[b], Parallel) and here[0] is items[b].items:
            here[0][here[1]] = node  # already in that block: keep its place
            return
        take(items, node.id, tidy=True)
        b = block_of(items, parallel_with)
        assert b is not None  # the sibling stays
    if isinstance(items[b], Parallel):
        items[b].items.append(node)
    else:
        items[b] = Parallel([items[b], node])


def remove_ids(items: list[Any], ids: set[str]) -> list[Any]:
    """Remove nodes with these ids from ``items`` (and its parallel blocks); drop empty blocks."""
    removed = []
    for id in ids:
        while (node := take(items, id)) is not None:
            removed.append(node)
    return removed


def attach(target: list[Any], item: Any) -> None:
    """Put ``item`` into ``target`` (one scope: an execution or a rollback list), replacing the
    nodes with the same ids.

    A single node takes the place of its namesake, inside a parallel block if that is where it
    stood (:func:`place`). A parallel block takes the place of the first node it replaces (the
    nodes it names leave their old places).
    """
    if not isinstance(item, Parallel):
        place(target, item)
        return
    new_ids = item_ids(item)
    position = next((i for i, old in enumerate(target) if item_ids(old) & new_ids), None)
    if position is None:
        target.append(item)
        return
    # the nearest earlier node that is not replaced survives: the block goes after it
    anchor = next((it for it in reversed(target[:position]) if not (item_ids(it) & new_ids)), None)
    remove_ids(target, new_ids)
    index = 0 if anchor is None else next(i for i, it in enumerate(target) if it is anchor) + 1
    target.insert(index, item)


def item_ids(item: Any) -> set[str]:
    return set(item.ids if isinstance(item, Parallel) else [item.id])
