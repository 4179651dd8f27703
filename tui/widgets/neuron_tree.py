"""Model ▸ layers ▸ groups of 256 neurons ▸ neurons, and, once a model's attention heads are in its cache, a
layer's heads after its groups. Children are created when a node is expanded, so a model with hundreds of
thousands of neurons never has more than a few hundred tree nodes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from ...core.refs import HeadRef
from ..format import TreeLabel, neuron_label
from ..heads import head_leaf

GROUP = 256
CHUNK = 64

# (layer, neurons) -> a TreeLabel per neuron, or None when that layer shows nothing yet
LabelSource = Callable[[int, "range | tuple[int, ...]"], "list[TreeLabel | None] | None"]
# layer -> a TreeLabel per attention head, or None when the layer's heads are not in the cache
HeadSource = Callable[[int], "list[TreeLabel] | None"]


@dataclass
class NodeInfo:
    kind: str  # "layer" | "group" | "neuron" | "heads" | "head"
    layer: int
    start: int = 0  # group: first neuron; neuron: the neuron; head: the head
    stop: int = 0  # group: one past the last neuron
    loaded: bool = False
    members: tuple[int, ...] | None = None  # a group of a sorted layer: its neurons, in order

    @property
    def neurons(self) -> "range | tuple[int, ...]":
        return self.members if self.members is not None else range(self.start, self.stop)


def node_info(node: TreeNode[NodeInfo]) -> NodeInfo:
    """A layer's, group's or neuron's NodeInfo (every node but the root has one)."""
    assert node.data is not None, "the root has no NodeInfo"
    return node.data


class NeuronTree(Tree[NodeInfo]):
    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False, id="tree.down"),
        Binding("k", "cursor_up", "Up", show=False, id="tree.up"),
        Binding("h,left", "collapse_or_parent", "Collapse", show=False, key_display="h", id="tree.collapse"),
        Binding("l,right", "expand_or_child", "Expand", show=False, key_display="l", id="tree.expand"),
        Binding("home", "first", "First", show=False, id="tree.first"),
        Binding("G,end", "last", "Last", show=False, key_display="G", id="tree.last"),
    ]

    def __init__(
        self,
        title: str,
        neurons: int = 0,
        labels: LabelSource | None = None,
        heads: HeadSource | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(Text(title, style="bold"), **kwargs)
        self.neurons = neurons
        self.labels = labels
        self.heads = heads
        self.order: dict[int, list[int]] = {}  # layer -> neurons in display order (empty: index order)
        self.order_name = ""  # what the order is by ("firing", "label mass")
        self.order_values: dict[int, list[str]] = {}  # layer -> each neuron's sort key, as shown after it
        self._rank: dict[int, dict[int, int]] = {}
        self.show_root = True
        self.guide_depth = 2
        self.root.expand()

    # -- building ----------------------------------------------------------------------
    def layer_nodes(self) -> dict[int, TreeNode[NodeInfo]]:
        return {n.data.layer: n for n in self.root.children if n.data is not None}

    def add_layer(self, layer: int) -> TreeNode[NodeInfo]:
        existing = self.layer_nodes()
        if layer in existing:
            return existing[layer]
        before = next((i for i, n in enumerate(self.root.children) if node_info(n).layer > layer), None)
        label = Text(f"L{layer}", style="bold")
        label.append(f"  {self.neurons} neurons", style="dim")
        return self.root.add(label, NodeInfo("layer", layer), before=before)

    def ensure_loaded(self, node: TreeNode[NodeInfo]) -> None:
        """Create a layer's group nodes or a group's neuron leaves (once)."""
        info = node.data
        if info is None or info.loaded or info.kind in ("neuron", "head"):
            return
        info.loaded = True
        if info.kind == "heads":
            self._add_heads(node)
        elif info.kind == "layer":
            order = self.order.get(info.layer)
            for start in range(0, self.neurons, GROUP):
                stop = min(self.neurons, start + GROUP)
                if order is None:
                    node.add(Text(f"N{start}–{stop - 1}"), NodeInfo("group", info.layer, start, stop))
                else:
                    node.add(
                        Text(f"{self.order_name} #{start + 1}–{stop}", style="italic"),
                        NodeInfo("group", info.layer, start, stop, members=tuple(order[start:stop])),
                    )
            heads = self.heads(info.layer) if self.heads else None
            if heads:
                label = Text(f"heads H0–H{len(heads) - 1}", style="cyan")
                node.add(label, NodeInfo("heads", info.layer, 0, len(heads)))
        else:
            self._add_neurons(node, info.neurons)

    def _leaf_label(self, layer: int, neuron: int, label: TreeLabel | None) -> Text:
        values = self.order_values.get(layer)
        return neuron_label(
            layer,
            neuron,
            label,
            values[neuron] if values is not None else None,
            len(f"L{layer}:N{max(0, self.neurons - 1)}"),
        )

    def _add_neurons(self, node: TreeNode[NodeInfo], neurons: range | tuple[int, ...]) -> None:
        layer = node_info(node).layer
        tops = self.labels(layer, neurons) if self.labels else None
        for i, neuron in enumerate(neurons):
            node.add_leaf(
                self._leaf_label(layer, neuron, tops[i] if tops else None),
                NodeInfo("neuron", layer, neuron, neuron + 1),
            )

    def _head_leaves(self, layer: int) -> list[Text]:
        """The label of each head leaf of ``layer``: its ref, then its label (from ``heads``)."""
        labels = (self.heads(layer) if self.heads else None) or []
        width = len(f"L{layer}:H{max(0, len(labels) - 1)}")
        return [head_leaf(HeadRef(layer, head), label, width) for head, label in enumerate(labels)]

    def _add_heads(self, node: TreeNode[NodeInfo]) -> None:
        layer = node_info(node).layer
        for head, text in enumerate(self._head_leaves(layer)):
            node.add_leaf(text, NodeInfo("head", layer, head, head + 1))

    def _relabel_heads(self, node: TreeNode[NodeInfo]) -> None:
        for leaf, text in zip(node.children, self._head_leaves(node_info(node).layer)):
            leaf.set_label(text)

    def set_order(
        self, orders: dict[int, list[int]], name: str = "", values: dict[int, list[str]] | None = None
    ) -> None:
        """Show each layer's neurons in this order (empty: index order), each with its sort key's value
        (``values[layer][neuron]``, e.g. "0.93" or "12%"). The loaded groups are rebuilt; the neuron under
        the cursor stays under it (its group is opened)."""
        node = self.cursor_node
        keep = node.data if node is not None and node.data is not None and node.data.kind == "neuron" else None
        self.order, self.order_name = dict(orders), name if orders else ""
        self.order_values = dict(values or {}) if orders else {}
        self._rank = {layer: {n: i for i, n in enumerate(order)} for layer, order in self.order.items()}
        for layer_node in self.root.children:
            expanded = layer_node.is_expanded
            layer_node.remove_children()
            node_info(layer_node).loaded = False
            if expanded:
                self.ensure_loaded(layer_node)
        if keep is not None:
            leaf = self.node_for(keep.layer, keep.start)
            if leaf is not None:
                self.call_after_refresh(self.focus_node, leaf)

    async def _on_tree_node_expanded(self, event: Tree.NodeExpanded[NodeInfo]) -> None:
        self.ensure_loaded(event.node)
        await asyncio.sleep(0)

    def relabel(self) -> None:
        """Redraw the neuron labels of every loaded group (after a view or direction switch)."""
        for layer_node in self.root.children:
            for group in layer_node.children:
                shown = node_info(group)
                if not shown.loaded:
                    continue
                if shown.kind == "heads":
                    self._relabel_heads(group)
                    continue
                tops = self.labels(shown.layer, shown.neurons) if self.labels else None
                for i, leaf in enumerate(group.children):
                    neuron = node_info(leaf)
                    leaf.set_label(self._leaf_label(neuron.layer, neuron.start, tops[i] if tops else None))

    def node_for(self, layer: int, neuron: int) -> TreeNode[NodeInfo] | None:
        """The leaf of a neuron, loading and expanding its layer and group on the way."""
        layer_node = self.layer_nodes().get(layer)
        if layer_node is None:
            return None
        self.ensure_loaded(layer_node)
        layer_node.expand()
        at = self._rank[layer][neuron] if layer in self._rank else neuron
        group = layer_node.children[at // GROUP]
        self.ensure_loaded(group)
        group.expand()
        return group.children[at - node_info(group).start]

    def focus_node(self, node: TreeNode[NodeInfo]) -> None:
        _ = self._tree_lines  # rebuild lines so the node has its line number
        self.move_cursor(node)
        self.scroll_to_node(node, animate=False)

    # -- vim-style movement ------------------------------------------------------------
    def action_collapse_or_parent(self) -> None:
        node = self.cursor_node
        if node is None:
            return
        if node.allow_expand and node.is_expanded:
            node.collapse()
        elif node.parent is not None:
            self.move_cursor(node.parent)

    def action_expand_or_child(self) -> None:
        node = self.cursor_node
        if node is None or not node.allow_expand:
            return
        if not node.is_expanded:
            self.ensure_loaded(node)
            node.expand()
        elif node.children:
            _ = self._tree_lines
            self.move_cursor(node.children[0])

    def action_first(self) -> None:
        self.cursor_line = 0

    def action_last(self) -> None:
        self.cursor_line = self.last_line
