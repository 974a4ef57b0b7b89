"""Parse, batch, bulk-sorting and checkpoint stages alone (pure logic, no Elasticsearch)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from celery_logs._schema import task_entity_update
from pipelines.ship.batch import BOTH, Batcher, Op
from pipelines.ship.bulk import Backoff, BulkSender, ItemResult, RequestFailed
from pipelines.ship.checkpoint import CheckpointStore, FilePosition
from pipelines.ship.parse import Parser, Rejected, entity_update
from pipelines.ship.reader import Line, Source
from tests.ship import records


def _parser(tasks: str | None = "tasks") -> Parser:
    return Parser(index_prefix="logs", tasks_index=tasks)


def test_a_record_becomes_a_create_into_its_daily_index_with_its_event_id_and_its_own_bytes() -> None:
    """The source line is sent byte for byte; the action names the day's index and event.id."""
    line = json.dumps(records.record(2)).encode()
    ops = _parser().parse(line)
    assert ops is not None
    action, source, _ = ops.create.split(b"\n")
    assert json.loads(action) == {"create": {"_index": "logs-2026.11.22", "_id": "r-e00000002"}}
    assert source == line
    assert ops.update is not None
    update_action, update_doc, _ = ops.update.split(b"\n")
    assert json.loads(update_action) == {"update": {"_index": "tasks", "retry_on_conflict": 5, "_id": "r-t0"}}
    assert json.loads(update_doc) == {
        "doc": {
            "task_id": "r-t0", "name": "billing.charge", "service": "billing", "environment": "test",
            "ended_at": "2026-11-22T10:00:02.000002Z", "end_action": "task-succeeded", "state": "SUCCESS",
            "outcome": "success", "duration": 1_000_002,
        },
        "doc_as_upsert": True,
    }


def test_the_fast_entity_update_agrees_with_the_schema_function() -> None:
    """For nested and flat-keyed records alike, entity_update equals _schema.task_entity_update."""
    samples: list[dict[str, object]] = [records.record(i) for i in range(6)]
    samples.append({"@timestamp": "2026-11-22T10:00:00Z", "event.action": "task-started", "celery.task.id": "x"})
    samples.append({"event": {"action": "worker-online"}, "celery": {"worker": "w"}})
    mixed = records.record(3)
    mixed["service.name"] = "flat-wins"  # nested records with some flat keys, as ecs-logging writes them
    mixed["log.level"] = "info"
    samples.append(mixed)
    samples.append({"event": {"action": "task-failed"}, "celery": {"task": {"id": ""}}})
    failed = records.record(2)
    failed["event"] = {**failed["event"], "action": "task-failed", "outcome": "failure"}  # type: ignore[dict-item]
    failed["error"] = {"type": "KeyError", "grouping_key": "g1"}
    samples.append(failed)
    for sample in samples:
        assert entity_update(sample) == task_entity_update(sample)


def test_a_record_without_event_id_gets_a_deterministic_id_from_its_bytes() -> None:
    """Third-party JSON without event.id is indexed under raw-<blake2b-128 of the line>, the same every time."""
    line = b'{"@timestamp":"2026-11-22T23:30:00+02:00","msg":"hello"}'
    a = _parser(None).parse(line)
    b = _parser(None).parse(line)
    assert a is not None and b is not None and a.update is None
    action = json.loads(a.create.split(b"\n")[0])
    assert action["create"]["_index"] == "logs-2026.11.22"  # 21:30 UTC
    assert action["create"]["_id"].startswith("raw-") and len(action["create"]["_id"]) == 36
    assert a.create == b.create


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"not json", "not JSON: Expecting value: line 1 column 1 (char 0)"),
        (b'{"a": "\xff"}', "invalid UTF-8 at byte 7"),
        (b"[1, 2]", "not a JSON object but a list"),
        (b'{"@timestamp": "2026-11-22T10:00:00Z"} trailing', "not JSON: Extra data: line 1 column 40 (char 39)"),
        (b'{"@timestamp": "2026-11-22T10:00:00Z", ', "not JSON: Expecting property name enclosed in double quotes: "
         "line 1 column 40 (char 39)"),
        (b'{"event": {"id": "x"}}', "no @timestamp"),
        (b'{"@timestamp": "yesterday"}', "unparseable @timestamp 'yesterday'"),
        (b'{"@timestamp": "2026-11-22T10:00:00Z", "event": {"id": 7}}',
         "event.id must be a non-empty string of at most 512 bytes"),
    ],
)
def test_lines_that_can_never_be_indexed_are_rejected_with_a_reason(line: bytes, reason: str) -> None:
    """Each kind of bad line is refused with its own one-sentence reason."""
    with pytest.raises(Rejected) as info:
        _parser().parse(line)
    assert info.value.reason == reason


def test_surrounding_blanks_and_a_carriage_return_do_not_matter() -> None:
    """A record with leading spaces and a CRLF ending is indexed under the same id as without them."""
    plain = json.dumps(records.record(1)).encode()
    padded = _parser(None).parse(b"  " + plain + b"\r")
    assert padded is not None
    assert json.loads(padded.create.split(b"\n")[0])["create"]["_id"] == "r-e00000001"


def test_a_blank_line_is_nothing_to_ship() -> None:
    """Whitespace-only lines produce no operation and no error."""
    assert _parser().parse(b"  \r") is None


def _op(i: int, size: int = 10, kind: str = "create") -> Op:
    src = Source(path="f", fd=-1, key=None, offset=0)
    line = Line(src, 0, i, i + 1, b"{}")
    line.remaining = 1
    src.pending.append(line)
    return Op(line, b"x" * size, kind)


def _pair(i: int) -> Op:
    """A record's create and its task's update as one op (the entity index's hot path)."""
    op = _op(i)
    return Op(op.line, b"C" * 6 + b"U" * 4, BOTH, 6)


def test_batches_close_on_count_bytes_and_age() -> None:
    """A batch is handed out at max_docs, before max_bytes would be passed, and after max_wait."""
    now = [0.0]
    b = Batcher(max_docs=3, max_bytes=100, max_wait=1.0, clock=lambda: now[0])
    assert b.add(_op(0)) is None and b.add(_op(1)) is None
    full = b.add(_op(2))
    assert full is not None and len(full.ops) == 3
    assert b.add(_op(3, size=60)) is None
    by_bytes = b.add(_op(4, size=60))
    assert by_bytes is not None and [op.line.start for op in by_bytes.ops] == [3]
    assert b.due() is None
    now[0] = 1.0
    aged = b.due()
    assert aged is not None and [op.line.start for op in aged.ops] == [4]
    assert b.flush() is None


def test_a_create_and_update_op_counts_as_two_bulk_items_toward_max_docs() -> None:
    """max_docs bounds the bulk items of a request, so a create+update op counts twice."""
    b = Batcher(max_docs=3, max_bytes=1000, max_wait=1.0, clock=lambda: 0.0)
    assert b.add(_pair(0)) is None
    full = b.add(_pair(1))
    assert full is not None and (len(full.ops), full.items) == (2, 4)


class _ScriptedSink:
    """Answers each bulk call from a script: a list of item statuses or an exception."""

    def __init__(self, script: list[list[int] | RequestFailed | None]) -> None:
        self.script = script
        self.calls: list[int] = []

    def bulk(self, body: bytes, count: int) -> list[ItemResult] | None:
        self.calls.append(count)
        step = self.script.pop(0)
        if isinstance(step, RequestFailed):
            raise step
        if step is None:
            return None
        assert len(step) == count
        return [(s, None if s < 300 else f"e{s}") for s in step]


def _sender(sink: _ScriptedSink) -> BulkSender:
    return BulkSender(sink, backoff=Backoff(base=0.0, cap=0.0), stop=threading.Event())


def test_items_are_sorted_into_done_retried_alone_and_dead() -> None:
    """201/409 are done, 429/503 are retried on their own, 400 is dead and never retried."""
    sink = _ScriptedSink([[201, 409, 429, 400, 503], [201, 201]])
    ops = [_op(i) for i in range(5)]
    result = _sender(sink).send(ops)
    assert sink.calls == [5, 2]
    assert [op.line.start for op in result.done] == [0, 1, 2, 4]
    assert [(op.line.start, status, reason) for op, status, reason in result.dead] == [(3, 400, "e400")]
    assert (result.created, result.conflicts, result.item_retries) == (3, 1, 2)


def test_whole_request_failures_are_retried_and_413_splits_down_to_the_one_too_large() -> None:
    """Connection errors and 503 retry the same batch; 413 halves it until the offender stands alone."""
    sink = _ScriptedSink([
        RequestFailed(None, "refused"),
        RequestFailed(503, "busy"),
        RequestFailed(413, "too large"),
        [201],
        RequestFailed(413, "too large"),
        RequestFailed(413, "too large"),
        [201],
    ])
    result = _sender(sink).send([_op(0), _op(1), _op(2)])
    assert sink.calls == [3, 3, 3, 1, 2, 1, 1]
    assert [op.line.start for op in result.done] == [0, 2]
    assert [(op.line.start, status) for op, status, _ in result.dead] == [(1, 413)]
    assert result.request_retries == 2


def test_an_answer_without_errors_marks_every_operation_done() -> None:
    """When Elasticsearch says errors: false, all operations are done and counted by kind."""
    sink = _ScriptedSink([None])
    ops = [_op(0), _op(1, kind="update"), _op(2)]
    result = _sender(sink).send(ops)
    assert (result.done, result.created, result.updated, result.item_retries) == (ops, 2, 1, 0)


def test_a_create_and_update_op_that_succeeds_is_one_done_op_counted_as_both() -> None:
    """Both items 2xx (or a replayed create's 409): the op is done whole, its line acknowledged once."""
    sink = _ScriptedSink([[201, 200, 409, 200], None])
    first = _sender(sink).send([_pair(0), _pair(1)])
    assert sink.calls == [4]
    assert ([op.kind for op in first.done], first.created, first.conflicts, first.updated) == ([BOTH, BOTH], 1, 1, 2)
    second = _sender(sink).send([_pair(2), _op(3)])
    assert (second.created, second.updated) == (2, 1)
    assert all(op.line.remaining == 1 for op in [*first.done, *second.done])


def test_the_halves_of_a_create_and_update_op_with_different_fates_go_their_own_ways() -> None:
    """A create 201 with an update 429 retries the update alone; a create 400 dead-letters only the create."""
    sink = _ScriptedSink([[201, 429, 400, 200], [200]])
    result = _sender(sink).send([_pair(0), _pair(1)])
    assert sink.calls == [4, 1]
    assert [(op.line.start, op.kind, op.payload) for op in result.done] == [
        (0, "create", b"CCCCCC"), (1, "update", b"UUUU"), (0, "update", b"UUUU")]
    assert [(op.line.start, op.kind, status) for op, status, _ in result.dead] == [(1, "create", 400)]
    assert (result.created, result.updated, result.item_retries) == (1, 2, 1)
    # Each line now waits for two acknowledgements, one per half.
    assert [op.line.remaining for op in result.done] == [2, 2, 2]


def test_a_create_and_update_op_too_large_alone_is_sent_as_its_two_halves() -> None:
    """413 for a lone create+update op splits it into the create and the update, each sent alone."""
    sink = _ScriptedSink([RequestFailed(413, "too large"), [201], RequestFailed(413, "too large")])
    result = _sender(sink).send([_pair(0)])
    assert sink.calls == [2, 1, 1]
    assert [op.kind for op in result.done] == ["create"]
    assert [(op.kind, status) for op, status, _ in result.dead] == [("update", 413)]


def test_a_409_on_an_update_is_a_race_and_is_retried() -> None:
    """Two upserts of one task document racing give a 409 that is retried, not counted as done."""
    sink = _ScriptedSink([[409], [200]])
    result = _sender(sink).send([_op(0, kind="update")])
    assert (len(result.done), result.updated, result.item_retries) == (1, 1, 1)


def test_when_stopping_nothing_is_retried_and_the_rest_is_abandoned() -> None:
    """After a stop, a failed request is abandoned instead of retried."""
    sink = _ScriptedSink([RequestFailed(None, "refused")])
    stop = threading.Event()
    stop.set()
    result = BulkSender(sink, backoff=Backoff(base=0.0, cap=0.0), stop=stop).send([_op(0), _op(1)])
    assert [op.line.start for op in result.abandoned] == [0, 1]
    assert result.done == []


def test_checkpoint_round_trips_and_a_truncated_file_is_ignored(tmp_path: Path) -> None:
    """Positions survive save/load; a checkpoint cut in half loads as empty instead of failing."""
    store = CheckpointStore(tmp_path / "cp.json")
    store.positions["1:2"] = FilePosition(path="/x/a.jsonl", offset=42, fp_len=42, fp="ab")
    store.save()
    assert CheckpointStore(tmp_path / "cp.json").load().positions == store.positions
    raw = (tmp_path / "cp.json").read_bytes()
    (tmp_path / "cp.json").write_bytes(raw[: len(raw) // 2])
    assert CheckpointStore(tmp_path / "cp.json").load().positions == {}
    assert [p.name for p in tmp_path.iterdir()] == ["cp.json"]  # no temporary file left behind


def test_the_update_is_the_json_of_the_partial_document_whatever_its_values() -> None:
    """Strings (escaped), integers, booleans, floats, None and an integer beyond 64 bits encode as JSON."""
    record = records.record(2)
    extra = {"a": 'q"u\\o\nte é', "n": 12, "b": True, "f": 0.5, "z": None, "l": [1, "x"], "big": 2**70}
    record["celery"]["task"]["name"] = extra  # type: ignore[index]
    ops = _parser().parse(json.dumps(record).encode())
    assert ops is not None and ops.update is not None
    assert json.loads(ops.update.split(b"\n")[1])["doc"]["name"] == extra


def test_the_shipper_collects_less_often_while_it_runs_and_restores_the_thresholds(tmp_path: Path) -> None:
    """During a run the young generation threshold is 100 000; afterwards it is what it was before."""
    import gc

    from pipelines import Shipper, ShipperConfig

    seen: list[tuple[int, int, int]] = []

    class _Sink:
        def bulk(self, body: bytes, count: int) -> list[ItemResult] | None:
            seen.append(gc.get_threshold())
            return None

    data = tmp_path / "in.jsonl"
    records.write(data, 0, 10, run="gc")
    before = gc.get_threshold()
    cfg = ShipperConfig(paths=[str(data)], state_dir=tmp_path / "state", follow=False)
    stats = Shipper(cfg, sink=_Sink()).run_once()
    assert stats.shipped == 10
    assert seen == [(100_000, *before[1:])]
    assert gc.get_threshold() == before
