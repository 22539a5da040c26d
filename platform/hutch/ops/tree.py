"""``hutch result ID --tree``: a workflow drawn from its rows.

Lineage comes from the rows alone: a task's children are the rows whose
``parent_id`` is its id; tasks that a task started as a group (or chord header)
share a ``group_id`` whose ``hutch_groups`` row names that task as its parent;
a chord body's ``parent_id`` is its header group's id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..results.groups import GroupRecord
from ..results.records import FAILURE, SUCCESS, TaskRecord
from ..results.store import ResultStore

MAX_DEPTH = 50
"""Deeper than any sane workflow; guards against a cycle made by hand in SQL."""


@dataclass
class Node:
    label: str
    children: list[Node] = field(default_factory=list)


def workflow_tree(store: ResultStore, node_id: str) -> Node:
    """The tree under a task id or a group id."""
    found = store.get_groups([node_id]).get(node_id)
    if found is not None:
        return _group_node(store, found, 0)
    return _task_node(store, node_id, 0)


def render(node: Node) -> str:
    lines = [node.label]
    _render_children(node, "", lines)
    return "\n".join(lines)


def _render_children(node: Node, indent: str, lines: list[str]) -> None:
    for i, child in enumerate(node.children):
        last = i == len(node.children) - 1
        lines.append(f"{indent}{'└── ' if last else '├── '}{child.label}")
        _render_children(child, indent + ("    " if last else "│   "), lines)


def _task_node(store: ResultStore, task_id: str, depth: int) -> Node:
    record = store.get(task_id)
    node = Node(_task_label(task_id, record))
    if depth < MAX_DEPTH:
        node.children = _children(store, task_id, depth)
    return node


def _children(store: ResultStore, parent_id: str, depth: int) -> list[Node]:
    """What a task (or a chord's header group, for its body) started: tasks, and the
    groups and chords whose rows name it as their parent, each drawn once."""
    child_ids = store.children(parent_id)
    rows = store.get_many(child_ids)
    started = store.get_groups({r.group_id for r in rows.values() if r.group_id})
    shown: set[str] = set()
    out = []
    for child_id in child_ids:
        row = rows.get(child_id)
        group = started.get(row.group_id) if row and row.group_id else None
        if group is not None and group.parent_id == parent_id:
            if group.group_id not in shown:
                shown.add(group.group_id)
                out.append(_group_node(store, group, depth + 1))
        else:
            out.append(_task_node(store, child_id, depth + 1))
    return out


def _group_node(store: ResultStore, group: GroupRecord, depth: int) -> Node:
    kind = f"chord {group.state}" if group.body is not None else "group"
    node = Node(f"{group.group_id} [{kind}, {group.size} tasks]")
    rows = store.get_many(store.group_tasks(group.group_id))
    members = [i for i, row in rows.items() if row.parent_id == group.parent_id]
    order = {task_id: n for n, task_id in enumerate(group.member_ids)}
    for member in sorted(members, key=lambda i: order.get(i, len(order))):
        node.children.append(_task_node(store, member, depth + 1))
    for body in _children(store, group.group_id, depth):
        body.label = f"body: {body.label}"
        node.children.append(body)
    return node


def _task_label(task_id: str, record: TaskRecord | None) -> str:
    if record is None:
        return f"{task_id} PENDING"
    label = f"{task_id} {record.name or '?'} {record.state}"
    if record.state == SUCCESS and record.result is not None:
        text = repr(record.result)
        label += f" -> {text if len(text) <= 60 else text[:57] + '...'}"
    elif record.state == FAILURE:
        label += f" ({record.exception_type}: {record.exception_message})"
    return label

