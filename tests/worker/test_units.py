"""Pure logic of the worker side: redaction, bounds, rendering, ids, settings, rotation, grouping keys."""

from __future__ import annotations

import datetime
import json
import os
import random
import subprocess
import sys
import textwrap
import time
import uuid
import weakref
from pathlib import Path

import pytest

import celery_logs
from celery_logs._encode import _EventIds, iso_timestamp, render_json, truncate_middle
from celery_logs._exceptions import error_fields, grouping_key
from celery_logs._output import JsonLinesFile
from celery_logs._redact import Redactor
from celery_logs._settings import DEFAULT_REDACT_KEYS, resolve

ROOT = Path(__file__).resolve().parents[2]


def test_redaction_at_any_depth_and_any_case() -> None:
    """Secret-looking keys become '[REDACTED]' in nested dicts, lists and tuples, whatever their case."""
    r = Redactor(limit=2048)
    value = {"user": "bob", "Password": "p", "nested": [{"X-Api-Key": "k", "items": ({"session_id": 1},)}]}
    assert r.repr(value) == (
        "{'user': 'bob', 'Password': '[REDACTED]', "
        "'nested': [{'X-Api-Key': '[REDACTED]', 'items': ({'session_id': '[REDACTED]'},)}]}"
    )


def test_bounded_repr_of_a_huge_value() -> None:
    """A 5 MB string argument becomes exactly `limit` characters ending with a truncation marker."""
    r = Redactor(limit=100)
    text = r.repr(("a", "x" * 5_000_000))
    assert len(text) == 100
    assert text.startswith("('a', 'xxxx")
    assert text.endswith("...[truncated]")
    assert r.repr((1, "two")) == "(1, 'two')"


def test_flat_values_and_huge_numbers() -> None:
    """Plain scalars render as repr; an int too long to print does not raise; secrets in flat dicts go."""
    r = Redactor(limit=100)
    assert r.repr([1, 2.5, None, True, "s"]) == "[1, 2.5, None, True, 's']"
    assert r.repr({"a": 1, "token": "t"}) == "{'a': 1, 'token': '[REDACTED]'}"
    assert r.repr([10**5000]) == "[<unrepresentable int>]"
    assert r.repr(["x" * 1000]) == "['" + "x" * 84 + "...[truncated]"


def test_nested_plain_values_take_the_builtin_repr_and_it_is_what_the_walk_writes() -> None:
    """Celery's args of tuples and dicts render as repr, identical to the walk; secrets and bounds still hold."""
    r = Redactor(limit=200)
    plain = [((1, 2),), ({"a": [1, "b"], "c": (None,)},), [[1.5], {"d": {"e": True}}]]
    for value in plain:
        walked: list[str] = []
        r._walk(value, walked, 0, [201])
        assert r._is_flat(value)
        assert r.repr(value) == repr(value) == "".join(walked)
    assert r.repr(({"user": {"password": "p"}},)) == "({'user': {'password': '[REDACTED]'}},)"
    assert r._is_flat([[[1]]]) and not r._is_flat([[[[1]]]])  # over three levels: the walk decides
    assert not r._is_flat([list(range(40)), list(range(40))])  # over 64 items in all
    assert r.repr([["x" * 150], ["y" * 150]]) == "[['" + "x" * 150 + "'], ['" + "y" * 27 + "...[truncated]"


def test_remembered_verdicts_stay_right_and_bounded() -> None:
    """Asking again gives the same answer; made-up keys past the bound are still judged; a str subclass
    is judged by its own text methods, never by a remembered plain-str answer."""

    class Shouty(str):
        def lower(self) -> str:
            return "token"

    r = Redactor(limit=100)
    for _ in range(2):
        assert r.repr({"a": 1, "Api-Key": 2}) == "{'a': 1, 'Api-Key': '[REDACTED]'}"
    keys = [f"k{i}" for i in range(3000)] + [f"password{i}" for i in range(10)]
    assert all(not r.is_secret(k) for k in keys[:3000])
    assert all(r.is_secret(k) for k in keys[3000:])
    assert len(r._verdicts) <= 1024
    assert r.is_secret(Shouty("plain")) and not r.is_secret("plain")


def test_configured_keys_add_to_the_defaults() -> None:
    """Extra redact keys never remove the default ones."""
    settings = resolve({"service": "s", "redact_keys": ["ssn"]}, environ={})
    assert settings.redact_keys == (*DEFAULT_REDACT_KEYS, "ssn")
    r = Redactor(keys=settings.redact_keys, limit=200)
    assert r.repr({"ssn": 1, "token": 2, "ok": 3}) == "{'ssn': '[REDACTED]', 'token': '[REDACTED]', 'ok': 3}"


def test_one_record_is_one_line_whatever_the_values() -> None:
    """Newlines, quotes, U+2028 and non-ASCII stay escaped inside the value; the line parses back."""
    record = {"message": 'a\nb"c\u2028d\r\x85é', "labels": {"k": "}\n{\"forged\":1}"}}
    line = render_json(record)
    assert line.endswith("\n")
    assert line.count("\n") == 1
    assert line.isascii()
    assert len(line[:-1].splitlines()) == 1
    assert json.loads(line) == record


def test_event_ids_are_uuid7_unique_and_ordered() -> None:
    """Ids from one process strictly increase even within one microsecond, and carry version 7."""
    ids_of = _EventIds()
    now = 1_795_000_000_123_456_789
    ids = [ids_of.next(now) for _ in range(1000)] + [ids_of.next(now + 1_000_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(i[14] == "7" and i[19] in "89ab" for i in ids)
    assert int(ids[0].replace("-", "")[:12], 16) == now // 1_000_000


def test_event_ids_are_the_uuid7_layout_bit_for_bit() -> None:
    """Each id is the canonical text of the UUIDv7 made of its time, sub-millisecond bits and random bits."""
    ids_of = _EventIds()
    ids_of.next(0)  # the first id seeds the generator for this process; then seed it as the check does
    ids_of._rng.seed(11)
    ids_of._last = 0
    bits = random.Random(11)
    pick = random.Random(3)
    now = 1_795_000_000_000_000_000
    for _ in range(20_000):
        now += pick.choice((1_000_000, 1_234_567, 244_141, 999_999_999, pick.randrange(1, 10**9)))
        stamp = ((now // 1_000_000) << 12) | ((now % 1_000_000) * 4096 // 1_000_000)
        expected = uuid.UUID(int=((stamp >> 12) << 80) | (7 << 76) | ((stamp & 0xFFF) << 64) | (0b10 << 62)
                             | bits.getrandbits(62))
        assert ids_of.next(now) == str(expected)


def test_received_requests_are_held_weakly_and_swept() -> None:
    """The main process's memory of received requests keeps none alive, and forgets the dead ones when swept."""
    from celery_logs import _lifecycle

    class Request:
        """Stands in for Celery's request: only its identity matters here."""

    live = [Request(), Request()]
    saved = dict(_lifecycle._received)
    _lifecycle._received.clear()
    try:
        for i, request in enumerate(live):
            _lifecycle._received[f"live-{i}"] = weakref.ref(request)
        for i in range(3):
            _lifecycle._received[f"gone-{i}"] = weakref.ref(Request())  # no other reference: dead at once
        assert _lifecycle._received_request("live-1") is live[1]
        assert _lifecycle._received_request("gone-0") is None
        assert _lifecycle._received_request("never") is None
        assert _lifecycle._received_request(17) is None
        _lifecycle._sweep_received()
        assert sorted(_lifecycle._received) == ["live-0", "live-1"]
        assert _lifecycle._received_sweep_at == [1024]
    finally:
        _lifecycle._received.clear()
        _lifecycle._received.update(saved)


def test_timestamp_format() -> None:
    """`@timestamp` is UTC with microseconds and a Z."""
    assert iso_timestamp(1_795_000_000_123_456_789) == "2026-11-18T11:06:40.123456Z"
    assert iso_timestamp(1_795_000_000_000_000_000) == "2026-11-18T11:06:40.000000Z"
    assert iso_timestamp(1_795_000_000_000_001_999) == "2026-11-18T11:06:40.000001Z"
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    pick = random.Random(5)
    for _ in range(20_000):
        ns = pick.randrange(0, 4_000_000_000 * 10**9)
        expected = epoch + datetime.timedelta(microseconds=ns // 1000)
        assert iso_timestamp(ns) == expected.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_stack_trace_truncation_keeps_the_end() -> None:
    """A long traceback keeps its head and its last exception line, within the bound."""
    text = "Traceback\n" + "frame\n" * 10_000 + "ValueError: last"
    cut = truncate_middle(text, 1000)
    assert len(cut) == 1000
    assert cut.startswith("Traceback\n")
    assert cut.endswith("ValueError: last")


def test_settings_precedence_keyword_config_environment_default() -> None:
    """Keyword argument beats Celery config beats environment variable beats default."""
    environ = {"CELERY_LOGS_SERVICE": "env", "CELERY_LOGS_HEARTBEAT_INTERVAL": "7", "CELERY_LOGS_LOG_RESULTS": "yes",
               "CELERY_LOGS_ENVIRONMENT": "env-env"}
    config = {"celery_logs_service": "conf", "celery_logs_heartbeat_interval": 3}
    s = resolve({"service": "kw"}, config=config, environ=environ)
    assert (s.service, s.heartbeat_interval, s.log_results, s.environment) == ("kw", 3.0, True, "env-env")
    s = resolve({}, config=config, environ=environ)
    assert s.service == "conf"
    s = resolve({}, config={}, environ=environ)
    assert (s.service, s.heartbeat_interval) == ("env", 7.0)
    assert resolve({"service": "x"}, environ={}).heartbeat_interval == 5.0
    assert resolve({"service": "x"}, environ={}).stdout is True  # no log_dir: containers log to stdout


def test_bad_settings_name_their_source() -> None:
    """A bad value gives one clear error naming the variable; no service is an error too."""
    with pytest.raises(celery_logs.SettingsError, match=r"CELERY_LOGS_HEARTBEAT_INTERVAL='-1'"):
        resolve({"service": "s"}, environ={"CELERY_LOGS_HEARTBEAT_INTERVAL": "-1"})
    with pytest.raises(celery_logs.SettingsError, match=r"Celery setting celery_logs_stdout='maybe'"):
        resolve({"service": "s"}, config={"celery_logs_stdout": "maybe"}, environ={})
    with pytest.raises(celery_logs.SettingsError, match="no service name"):
        resolve({}, environ={})


def test_rotation_by_rename(tmp_path: Path) -> None:
    """Past max_bytes the file is renamed to .1 (older ones shift), keeping backup_count files, whole lines."""
    out = JsonLinesFile(tmp_path, "svc", max_bytes=1000, backup_count=2)
    for i in range(100):
        out.write({"n": i, "pad": "p" * 40})
    out.close()
    base = f"svc.{os.getpid()}.jsonl"
    assert sorted(p.name for p in tmp_path.iterdir()) == [base, f"{base}.1", f"{base}.2"]
    kept: list[int] = []
    for name in (f"{base}.2", f"{base}.1", base):
        data = (tmp_path / name).read_bytes()
        assert data.endswith(b"\n")
        assert len(data) <= 1000
        kept += [json.loads(line)["n"] for line in data.splitlines()]
    assert kept == list(range(100 - len(kept), 100))


def test_forked_child_writes_its_own_file(tmp_path: Path) -> None:
    """After fork the child's records go to <service>.<child pid>.jsonl, the parent's file is untouched."""
    out = JsonLinesFile(tmp_path, "svc", max_bytes=0, backup_count=0)
    out.write({"who": "parent"})
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            out.write({"who": "child"})
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    out.write({"who": "parent-again"})
    out.close()
    assert (tmp_path / f"svc.{pid}.jsonl").read_text() == '{"who":"child"}\n'
    assert (tmp_path / f"svc.{os.getpid()}.jsonl").read_text() == '{"who":"parent"}\n{"who":"parent-again"}\n'


def _fail(kind: str, value: int) -> None:
    def inner() -> None:
        if kind == "key":
            {}[value]
        raise ValueError(f"bad {value}")

    try:
        inner()
    except KeyError as exc:
        raise RuntimeError(f"wrapped {value}") from exc


def _key_of(kind: str, value: int) -> str:
    try:
        _fail(kind, value)
    except Exception as exc:
        return grouping_key(exc)
    raise AssertionError("did not raise")


def test_grouping_key_ignores_messages_and_ids() -> None:
    """The same bug with different values has one key; another exception path has another."""
    assert _key_of("key", 1) == _key_of("key", 2)
    assert _key_of("value", 1) == _key_of("value", 99)
    assert _key_of("key", 1) != _key_of("value", 1)


def test_grouping_key_is_stable_across_processes_and_line_shifts(tmp_path: Path) -> None:
    """Fresh interpreters (another run, another host) and code moved down by lines give the same key."""
    code = textwrap.dedent(
        """
        {pad}
        import celery_logs
        def lookup(table, key):
            return table[key]
        def task():
            try:
                lookup({{}}, "acct")
            except KeyError as exc:
                raise RuntimeError("charge failed " + str(id(exc))) from exc
        try:
            task()
        except RuntimeError as exc:
            print(celery_logs.grouping_key(exc))
        """
    )
    keys = set()
    for pad in ("", "\n\n\n# moved\n"):
        script = tmp_path / "bug.py"
        script.write_text(code.format(pad=pad))
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "random"}
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, check=True)
        keys.add(proc.stdout.strip())
    assert len(keys) == 1
    assert len(keys.pop()) == 32


def test_error_fields_of_a_chained_exception() -> None:
    """error.* holds the qualified type, the message and both chained tracebacks."""
    try:
        _fail("key", 5)
    except RuntimeError as exc:
        fields = error_fields(exc)
    assert fields["type"] == "RuntimeError"
    assert fields["message"] == "wrapped 5"
    assert "KeyError: 5" in fields["stack_trace"]
    assert "The above exception was the direct cause" in fields["stack_trace"]


def test_import_changes_no_global_state() -> None:
    """Importing celery_logs touches neither logging, structlog nor Celery's signals."""
    code = textwrap.dedent(
        """
        import logging, structlog, celery.signals as s
        before = (list(logging.getLogger().handlers), structlog.is_configured(),
                  len(s.task_prerun.receivers), len(s.setup_logging.receivers))
        import celery_logs
        after = (list(logging.getLogger().handlers), structlog.is_configured(),
                 len(s.task_prerun.receivers), len(s.setup_logging.receivers))
        import sys
        assert before == after, (before, after)
        assert "elasticsearch" not in sys.modules and "pipelines" not in sys.modules
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_forked_child_does_not_inherit_a_held_lock(tmp_path: Path) -> None:
    """A lock held by another parent thread at fork time (the heartbeat) does not block the child."""
    import threading

    from celery_logs import _encode, _process

    _process.watch_forks(_encode.after_fork)
    out = JsonLinesFile(tmp_path, "svc", max_bytes=0, backup_count=0)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with _encode._IDS._lock, out._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                out.write({"id": _encode.event_id(1)})
            finally:
                os._exit(0)
        deadline = time.monotonic() + 10
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the child's exit
        if done[0] == 0:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        assert done[0] == pid, "child blocked on a lock inherited from the parent"
    finally:
        release.set()
        holder.join()
    assert (tmp_path / f"svc.{pid}.jsonl").read_text().startswith('{"id":"')


def test_unusable_log_dir_is_a_clear_settings_error(tmp_path: Path) -> None:
    """A log_dir that cannot be created gives one SettingsError naming it, not an OSError traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(celery_logs.SettingsError, match=r"cannot write to log_dir .*file/logs"):
        celery_logs.install(service="s", log_dir=blocker / "logs")
    assert not celery_logs.installed()


def test_error_fields_take_a_traceback_given_as_text() -> None:
    """Celery's main process passes ExceptionInfo.traceback (a string): it is the stack trace, nothing raises."""
    from celery.exceptions import Reject

    text = 'Traceback (most recent call last):\n  File "t.py", line 3, in run\nReject: no'
    fields = error_fields(Reject("no", requeue=False), text)
    assert fields["type"] == "celery.exceptions.Reject"
    assert fields["stack_trace"] == text + "\n"
    assert fields["grouping_key"] == error_fields(Reject("other"), "another text")["grouping_key"]
    try:
        raise KeyError("k")
    except KeyError as exc:
        live = error_fields(exc, "ignored: the exception has its own frames")
    assert live["stack_trace"].startswith("Traceback (most recent call last):\n  File ")
