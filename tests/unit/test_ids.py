"""Message ids: unique across nodes and sortable by time."""

from mics.types import MsgIdFactory


def test_ids_sort_by_time_and_never_repeat():
    ids = MsgIdFactory("node-a")
    made = [ids.make(1000 + i // 3) for i in range(300)]
    assert len(set(made)) == 300 and made == sorted(made) and all(len(m) == 32 for m in made)


def test_two_nodes_never_make_the_same_id_in_the_same_millisecond():
    a, b = MsgIdFactory("node-a"), MsgIdFactory("node-b")
    assert {a.make(5) for _ in range(100)}.isdisjoint({b.make(5) for _ in range(100)})
