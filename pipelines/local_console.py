"""A quiet console for local (kfp.local) pipeline runs: one line per task on the terminal, each task's
full output in a log file.

kfp.local writes everything to the process's stdout: its own log records (through a handler it puts on
the root logger around each task, bound to `sys.stdout` at that moment) and each task's output, which
it streams with `print`, line by line, from the thread that runs the task (several threads under
`dsl.ParallelFor`). So for the run `sys.stdout` and `sys.stderr` are swapped for a router that appends
every line to the log of the task its thread is running (lines outside a task: `pipeline.log`), and a
filter on the root logger reads the task events (start, cache hit, end) from kfp's records. Both hooks
are public (`contextlib.redirect_stdout`, `logging.Filter`; nothing of kfp's is patched); only the
wording of kfp's messages is kfp's: it is matched here alone (`kfp_event`, `_RULE`), and
tests/pipeline/test_local_console.py fails if it changes.
"""

import builtins
import contextlib
import io
import logging
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TextIO

TAIL_LINES = 20  # lines of a failed task's log printed on the console

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# kfp.local's messages (kfp/local/task_dispatcher.py, orchestrator/task_executor.py), colours removed.
_START = re.compile(r"Executing task '(?P<task>[^']+)'$")
_END = re.compile(r"Task '(?P<task>[^']+)' finished with status (?P<status>SUCCESS|FAILURE)$")
_CACHE_HIT = re.compile(r"Task (?P<task>\S+) cache hit \(key=")
_RULE = re.compile(r"-{20,}$")  # kfp's horizontal line after each task's outputs


class TaskFailed(RuntimeError):
    """A task of a quiet run failed; the console has shown its log's path and last lines."""


class KfpEvent(NamedTuple):
    kind: str  # "start", "end" or "cached"
    task: str  # the task's name in the pipeline spec ("ingest-2")
    ok: bool = True  # "end": whether the task succeeded


_RANK = {"cached": 0, "ran": 1, "failed": 2}  # a name's outcome over several runs (ParallelFor): the worst


@dataclass
class ConsoleRun:
    """What `task_console` yields: where this run's task logs are and what became of each task."""

    logs: Path | None  # None: verbose (no logs written)
    # task name -> "cached", "ran" or "failed"; a task of a branch not taken (dsl.If) is absent
    outcomes: dict[str, str] = field(default_factory=dict)

    def record(self, event: KfpEvent) -> None:
        outcome = {"cached": "cached", "start": "ran", "end": "ran" if event.ok else "failed"}[event.kind]
        before = self.outcomes.get(event.task)
        if before is None or _RANK[outcome] >= _RANK[before]:
            self.outcomes[event.task] = outcome


def kfp_event(message: str) -> KfpEvent | None:
    """The task event one of kfp.local's log messages reports, or None."""
    text = _ANSI.sub("", message).strip()
    if m := _START.match(text):
        return KfpEvent("start", m["task"])
    if m := _END.match(text):
        return KfpEvent("end", m["task"], m["status"] == "SUCCESS")
    if m := _CACHE_HIT.match(text):
        return KfpEvent("cached", m["task"])
    return None


class _Task:
    def __init__(self, log: Path, started: float):
        self.log, self.started = log, started
        self.label = log.stem  # what the console calls it: "distill.2" for a second run of "distill"
        self.file = log.open("a", encoding="utf-8", buffering=1)  # by line: `tail -f` follows a running task
        self.ended = False
        self.tail: list[str] = []  # its last lines when it failed


def _current_stderr(router: TextIO) -> TextIO:
    stream = sys.stderr
    if stream is router or getattr(stream, "closed", False):
        return sys.__stderr__
    return stream


class _Router(io.TextIOBase):
    """Stands in for sys.stdout / sys.stderr: each complete line goes to the log of the task that the
    writing thread runs, else to pipeline.log; task events print one line each on `console`."""

    def __init__(self, run: ConsoleRun, console: TextIO, names: Mapping[str, str]):
        self.run, self.console, self.names = run, console, names
        self.lock = threading.RLock()
        self.pipeline_log = (run.logs / "pipeline.log").open("a", encoding="utf-8", buffering=1)
        self.current: dict[int, _Task] = {}  # thread id -> task
        self.partial: dict[int, str] = {}  # thread id -> text written since its last newline
        self.width = max((len(n) for n in names.values()), default=0)
        self.failed: list[_Task] = []
        # After the run, writes go to sys.stderr as it is at write time (a logging handler made
        # during the run keeps this object as its stream; writing to the closed logs printed
        # "Logging error" tracebacks, and so did the stderr of the run's time once it was closed).
        self.finished = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self.finished:
            return _current_stderr(self).write(text)
        with self.lock:
            thread = threading.get_ident()
            *lines, rest = (self.partial.pop(thread, "") + text).split("\n")
            for line in lines:
                self._line(thread, line)
            if rest:
                self.partial[thread] = rest
        return len(text)

    def flush(self) -> None:
        if self.finished:
            _current_stderr(self).flush()
            return
        with self.lock:
            for task in self.current.values():
                task.file.flush()
            self.pipeline_log.flush()

    def _line(self, thread: int, line: str) -> None:
        task = self.current.get(thread)
        (task.file if task else self.pipeline_log).write(_ANSI.sub("", line) + "\n")
        if task and task.ended and _RULE.match(line):
            self._close(thread)  # the task's outputs are written: later lines are not its

    def _close(self, thread: int) -> None:
        task = self.current.pop(thread, None)
        if task:
            task.file.close()

    def _log_path(self, label: str) -> Path:
        """`<label>.log`, or `<label>.<n>.log` for a task that runs again (ParallelFor iterations)."""
        path, n = self.run.logs / f"{label}.log", 1
        while path.exists():
            n += 1
            path = self.run.logs / f"{label}.{n}.log"
        return path

    def _say(self, label: str, what: str) -> None:
        # write, not print: while a task streams (in parallel: another task), kfp's print first
        # prints an indent to sys.stdout, i.e. into the router
        self.console.write(f"{label:<{self.width}}  {what}\n")
        self.console.flush()

    def event(self, event: KfpEvent, at: float, thread: int) -> None:
        with self.lock:
            self.run.record(event)
            label = self.names.get(event.task, event.task)
            if event.kind == "cached":
                self._close(thread)
                self.pipeline_log.write(f"{label}: served from the local cache\n")
                self._say(label, "cached")
            elif event.kind == "start":
                self._close(thread)
                self.current[thread] = _Task(self._log_path(label), at)
            elif (task := self.current.get(thread)) and not task.ended:
                task.ended = True
                seconds = f"{at - task.started:7.1f} s"
                if event.ok:
                    self._say(task.label, f"ran     {seconds}")
                    return
                self.failed.append(task)
                self._say(task.label, f"FAILED  {seconds}  full log: {task.log}")
                task.file.flush()
                with task.log.open(encoding="utf-8", errors="replace") as f:
                    tail = [line.rstrip() for line in deque(f, maxlen=TAIL_LINES + 5)]
                while tail and not tail[-1]:  # kfp ends a task's stream with blank lines
                    tail.pop()
                task.tail = tail[-TAIL_LINES:]

    def print_failure(self, task: _Task) -> None:
        """The failed task's last lines (as they were when it failed), printed when the run has
        ended: tasks that ran beside it print their lines after its failure, and the error should
        be what the user sees last."""
        self.console.write(f"{task.label} failed; its last lines:\n")
        for line in task.tail:
            self.console.write(f"    | {line}\n")
        self.console.flush()

    def close_all(self) -> None:
        """Close every log; from now on writes go to the current sys.stderr."""
        with self.lock:
            if self.finished:
                return
            for thread, text in list(self.partial.items()):
                self._line(thread, text)
            self.partial.clear()
            for thread in list(self.current):
                self._close(thread)
            self.pipeline_log.close()
            self.finished = True


class _EventFilter(logging.Filter):
    """Reads kfp.local's task events from records logged on the root logger; drops nothing."""

    def __init__(self, on_event: Callable[[KfpEvent, float, int], None]):
        super().__init__()
        self.on_event = on_event  # (event, its time, the thread that logged it)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "root" and (event := kfp_event(record.getMessage())):
            self.on_event(event, record.created, record.thread)
        return True


@contextlib.contextmanager
def _task_events(on_event: Callable[[KfpEvent, float, int], None]) -> Iterator[None]:
    """Calls `on_event` for each task event kfp.local logs meanwhile."""
    root = logging.getLogger()
    level, event_filter = root.level, _EventFilter(on_event)
    if root.getEffectiveLevel() > logging.INFO:  # kfp logs cache hits at INFO, with no handler of its own
        root.setLevel(logging.INFO)
    root.addFilter(event_filter)
    try:
        yield
    finally:
        root.removeFilter(event_filter)
        root.setLevel(level)


@contextlib.contextmanager
def task_console(
    log_dir: Path, names: Mapping[str, str] | None = None, verbose: bool = False
) -> Iterator[ConsoleRun]:
    """Run a kfp.local pipeline inside this to get one console line per task (its label: `names`
    maps task names to labels, e.g. stage names; cached or ran, seconds) and its full output in
    `log_dir/<label>.log`; a failed task's line gives its log's path, followed by its last lines.
    `verbose`: nothing changes on the console (kfp.local prints everything, as without this).

    Yields a `ConsoleRun`: its `logs`, the folder of the logs (`log_dir/<local time>`, a new one per
    run; verbose: None, no logs are written), and its `outcomes`, filled as tasks start, end or
    come from the cache (in both modes). kfp.local's error for a failed task becomes a
    `TaskFailed` (a RuntimeError) that names the task and its log.
    """
    with _print_restored():
        if verbose:
            run = ConsoleRun(None)
            with _task_events(lambda event, at, thread: run.record(event)):
                yield run
        else:
            with _quiet(log_dir, names or {}) as run:
                yield run


@contextlib.contextmanager
def _print_restored() -> Iterator[None]:
    """`builtins.print` as it was, after the block. kfp.local swaps it for an indenting print around
    each task and then puts back the one it found; ParallelFor iterations (threads) find and put
    back each other's, so one indenting print can outlive the run (numba's import then fails on it:
    it registers `print` by its name, which kfp's function does not have)."""
    original = builtins.print
    try:
        yield
    finally:
        builtins.print = original


@contextlib.contextmanager
def _quiet(log_dir: Path, names: Mapping[str, str]) -> Iterator[ConsoleRun]:
    """task_console without `verbose`."""
    run_logs = Path(log_dir) / time.strftime("%Y-%m-%d-%H-%M-%S")
    while run_logs.exists():  # two runs in one second
        run_logs = run_logs.with_name(run_logs.name + "-1")
    run_logs.mkdir(parents=True)
    console = sys.stdout
    print(f"task logs: {run_logs}", file=console, flush=True)
    run = ConsoleRun(run_logs)
    router = _Router(run, console, names)
    try:
        with (
            _task_events(router.event),
            contextlib.redirect_stdout(router),
            contextlib.redirect_stderr(router),
        ):
            yield run
    except RuntimeError as err:
        if not router.failed:
            raise
        task = router.failed[0]
        router.close_all()
        router.print_failure(task)
        raise TaskFailed(f"task {task.label} failed; its log: {task.log}") from err
    finally:
        router.close_all()
