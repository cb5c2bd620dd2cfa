"""The quiet console of local runs (pipelines/local_console.py) on a tiny two-task pipeline through
kfp.local's SubprocessRunner (and DockerRunner, where an engine and the CPU image are there): one
line per task, full output in per-task log files, a failed task's log path and last lines, everything
as before with verbose. It also fails if kfp.local rewords the messages the console reads."""

import builtins
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from kfp import dsl, local
from kfp.dsl import Dataset, Input, Output

from pipelines import cli
from pipelines.local_console import TaskFailed, kfp_event, task_console

REPO = Path(__file__).resolve().parents[2]


def make(text: str, fail: bool, out: Output[Dataset]):
    for i in range(30):
        print(f"make line {i}")
    if fail:
        raise ValueError("make was told to fail")
    with open(out.path, "w") as f:
        f.write(text)


def shout(data: Input[Dataset]) -> str:
    with open(data.path) as f:
        text = f.read().upper()
    print(f"shout says {text}")
    return text


def demo_pipeline(base_image: str):
    make_task = dsl.component(make, base_image=base_image, install_kfp_package=False)
    shout_task = dsl.component(shout, base_image=base_image, install_kfp_package=False)

    @dsl.pipeline(name="console-demo")
    def demo(text: str, fail: bool = False) -> str:
        made = make_task(text=text, fail=fail)
        return shout_task(data=made.outputs["out"]).output

    return demo


NAMES = {"make": "make-stage", "shout": "shout-stage"}


def _docker_image() -> str:
    """The CPU image (LEAD_TEST_IMAGE, else this code's), or a skip (a failure under
    LEAD_REQUIRE_CONTAINERS=1, as in test_containers.py)."""
    from images.reference import image_ref

    def missing(reason: str):
        if os.environ.get("LEAD_REQUIRE_CONTAINERS") == "1":
            pytest.fail(f"{reason} (LEAD_REQUIRE_CONTAINERS=1)")
        pytest.skip(reason)

    docker = pytest.importorskip("docker")
    ref = os.environ.get("LEAD_TEST_IMAGE") or image_ref("cpu")
    try:
        docker.from_env().images.get(ref)
    except docker.errors.ImageNotFound:
        missing(f"no image {ref}: python images/build.py --variant cpu")
    except docker.errors.DockerException as err:
        missing(f"no container engine reachable: {' '.join(str(err).split())[:200]}")
    return ref


@pytest.fixture(params=["subprocess", "docker"])
def local_run(request, tmp_path):
    """(the demo pipeline for this runner, the folder for the task logs), kfp.local initialised."""
    if request.param == "docker":
        image = _docker_image()
        # as this user, so the task folders under tmp_path are writable
        runner = local.DockerRunner(user=f"{os.getuid()}:{os.getgid()}", network_mode="host")
    else:
        image, runner = "python:3.11", local.SubprocessRunner(use_venv=False)
    local.init(
        runner=runner,
        pipeline_root=str(tmp_path / "root"),
        enable_caching=True,
        cache_root=str(tmp_path / "cache"),
        raise_on_error=True,
    )
    return demo_pipeline(image), tmp_path / "logs"


def test_quiet_run_prints_one_line_per_task_and_logs_the_full_output(local_run, capsys):
    demo, log_dir = local_run
    with task_console(log_dir, NAMES) as run:
        assert demo(text="hello").output == "HELLO"
    logs = run.logs
    assert run.outcomes == {"make": "ran", "shout": "ran"}
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == f"task logs: {logs}"
    assert re.fullmatch(r"make-stage +ran +\d+\.\d s", lines[1])
    assert re.fullmatch(r"shout-stage +ran +\d+\.\d s", lines[2])
    assert len(lines) == 3 and err == ""
    assert "executor_input" not in out and "make line" not in out
    make_log = (logs / "make-stage.log").read_text()
    assert "Got executor_input" in make_log and '"parameterValues"' in make_log
    assert all(f"make line {i}" in make_log for i in range(30))
    assert "shout says HELLO" in (logs / "shout-stage.log").read_text()
    assert "shout says" not in make_log  # each task's output in its own log
    # What kfp logs after the last task is the pipeline's, not that task's.
    assert "Pipeline 'console-demo' finished with status SUCCESS" in (logs / "pipeline.log").read_text()
    assert "Pipeline 'console-demo'" not in (logs / "shout-stage.log").read_text()

    with task_console(log_dir, NAMES) as run:  # the same inputs again: both from the cache
        demo(text="hello")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines[1:]] == [["make-stage", "cached"], ["shout-stage", "cached"]]
    assert sorted(p.name for p in run.logs.iterdir()) == ["pipeline.log"]
    assert run.outcomes == {"make": "cached", "shout": "cached"}


def test_a_failed_task_prints_its_log_path_and_last_lines(local_run, capsys):
    demo, log_dir = local_run
    with pytest.raises(TaskFailed) as failed, task_console(log_dir, NAMES) as run:
        demo(text="hello", fail=True)
    assert run.outcomes == {"make": "failed"}  # shout never started
    out = capsys.readouterr().out
    lines = out.splitlines()
    log = run.logs / "make-stage.log"
    assert str(failed.value) == f"task make-stage failed; its log: {log}"
    assert re.fullmatch(rf"make-stage +FAILED +\d+\.\d s  full log: {re.escape(str(log))}", lines[1])
    assert lines[2] == "make-stage failed; its last lines:"  # printed when the run has ended
    tail = lines[3:]
    assert len(tail) == 20 and all(line.startswith("    | ") for line in tail)
    assert tail[-1].endswith("ValueError: make was told to fail")
    assert "make line 29" in out and "make line 0" not in out  # the last lines only
    assert "make line 0" in log.read_text()  # the whole output is in the log
    assert "shout" not in out


def _cli_on_a_folder_that_is_no_dataset(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    """lead_msmarco.py --local on a folder that is no dataset: ingest fails after the identity step."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes.txt").write_text("not a dataset")
    cmd = [sys.executable, "pipelines/lead_msmarco.py", "--local", "--profile", "smoke", *extra]
    cmd += ["--dataset", str(tmp_path / "data"), "--workdir", str(tmp_path / "work")]
    tracking_off = {"MLFLOW_TRACKING_URI": ""}
    env = {**os.environ, "LEAD_CODE_FINGERPRINT": "test-local-console", **tracking_off}
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    return done


def test_the_cli_names_the_failed_stage_its_log_and_last_lines_without_a_traceback(tmp_path):
    done = _cli_on_a_folder_that_is_no_dataset(tmp_path)
    failed = re.search(r"^(ingest-\w+) +FAILED +\d+\.\d s  full log: (\S+)$", done.stdout, re.M)
    assert failed, done.stdout
    stage, log = failed[1], Path(failed[2])
    assert log.parent.parent == tmp_path / "work" / "logs" and log.name == f"{stage}.log"
    assert "Got executor_input" in log.read_text() and "Got executor_input" not in done.stdout
    assert done.stdout.rstrip().endswith("(is this a BEIR dataset folder?)")  # the last of its lines
    assert done.stderr.splitlines()[-1] == f"lead-msmarco: task {stage} failed; its log: {log}"
    assert "Traceback" not in done.stderr


def test_the_cli_with_verbose_prints_what_kfp_prints_and_its_error(tmp_path):
    done = _cli_on_a_folder_that_is_no_dataset(tmp_path, "--verbose")
    assert "Got executor_input" in done.stdout and "Executing task" in done.stdout
    assert "(is this a BEIR dataset folder?)" in done.stdout
    assert "task logs:" not in done.stdout and not (tmp_path / "work" / "logs").exists()
    assert "RuntimeError: Pipeline" in done.stderr  # kfp.local's error, as without the console


def test_verbose_prints_what_kfp_prints(local_run, capsys):
    demo, log_dir = local_run
    with task_console(log_dir, NAMES, verbose=True) as run:
        demo(text="loud")
    out = capsys.readouterr().out
    assert "Got executor_input" in out and "make line 29" in out and "shout says LOUD" in out
    assert not log_dir.exists() and run.logs is None  # no logs written
    assert run.outcomes == {"make": "ran", "shout": "ran"}  # still known (the run's summary)
    with task_console(log_dir, NAMES, verbose=True) as run:
        demo(text="loud")
    assert run.outcomes == {"make": "cached", "shout": "cached"}


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def echo(item: int) -> int:
    import time

    for i in range(5):
        print(f"item {item} line {i}", flush=True)
        time.sleep(0.1)  # the iterations' output interleaves
    return item


@dsl.pipeline(name="console-loop")
def loop():
    with dsl.ParallelFor(items=[1, 2, 3]) as item:
        echo(item=item)


@pytest.mark.parametrize("verbose", [False, True])
def test_print_is_the_builtin_it_was_after_the_run(tmp_path, verbose):
    """ParallelFor iterations, in threads, can leave kfp's indenting print in builtins (each puts
    back the print it found, which may be another's); numba's import then fails in this process."""
    original = builtins.print
    try:
        with task_console(tmp_path / "logs", verbose=verbose):
            builtins.print = lambda *args, **kwargs: None  # what the threads' race leaves behind
        assert builtins.print is original
    finally:
        builtins.print = original


def test_parallel_iterations_each_get_their_own_log_and_line(tmp_path, capsys):
    """ParallelFor runs its iterations in threads of this process, all named "echo"."""
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    with task_console(tmp_path / "logs") as run:
        loop()
    logs = run.logs
    assert run.outcomes == {"echo": "ran"}  # one name for the three iterations
    lines = capsys.readouterr().out.splitlines()[1:]
    assert sorted(line.split()[:2] for line in lines) == [
        ["echo", "ran"],
        ["echo.2", "ran"],
        ["echo.3", "ran"],
    ]
    # one plain line each, whichever iteration was streaming meanwhile
    assert all(re.fullmatch(r"echo(\.\d)? +ran +\d+\.\d s", line) for line in lines), lines
    items = []
    for name in ("echo", "echo.2", "echo.3"):
        log = (logs / f"{name}.log").read_text()
        found = set(re.findall(r"item (\d) line \d", log))
        assert len(found) == 1 and len(re.findall(r"item \d line \d", log)) == 5, (name, log)
        items += found
    assert sorted(items) == ["1", "2", "3"]


@dsl.pipeline(name="console-branch")
def branch(flag: str):
    with dsl.If(flag == "a"):
        echo(item=1)
    with dsl.Else():
        echo(item=2)


def test_a_branch_not_taken_has_no_outcome(tmp_path, capsys):
    """What the pipeline summary's "skipped" list is: the tasks of a dsl.If branch not taken."""
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    with task_console(tmp_path / "logs") as run:
        branch(flag="b")
    assert run.outcomes == {"echo-2": "ran"}


@pytest.mark.parametrize(
    "message, event",
    [
        ("Executing task \x1b[96m'ingest-2'\x1b[0m", ("start", "ingest-2", True)),
        ("Task \x1b[96m'train'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m", ("end", "train", True)),
        ("Task \x1b[96m'train'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m", ("end", "train", False)),
        ("Task mine cache hit (key=0123456789ab); skipping execution.", ("cached", "mine", True)),
        ("Task \x1b[96m'train'\x1b[0m outputs:", None),
    ],
)
def test_kfp_messages_are_read_as_task_events(message, event):
    assert kfp_event(message) == (event and tuple(event))


def test_a_log_handler_made_during_the_run_writes_to_stderr_afterwards(tmp_path, capsys):
    """A logging handler created inside the console (mlflow, a library's basicConfig) keeps the
    console's stand-in for sys.stderr as its stream; after the run it must reach the real stderr,
    not the closed task logs (that printed 'Logging error' tracebacks into later output)."""
    import logging

    logger = logging.getLogger("lead-test-late-handler")
    logger.propagate = False
    with task_console(tmp_path / "logs", {}):
        handler = logging.StreamHandler()  # its stream: sys.stderr as it is now (the stand-in)
    logger.addHandler(handler)
    try:
        logger.warning("after the run")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "after the run" in err and "Logging error" not in err, err


def test_after_the_run_writes_follow_the_current_stderr(tmp_path, monkeypatch):
    """The stderr of the run's time may be closed later (pytest closes a test's capture; the next
    test logs through a handler the run made): writes go to whatever sys.stderr is at write time."""
    import io

    during = io.StringIO()
    monkeypatch.setattr(sys, "stderr", during)
    with task_console(tmp_path / "logs", {}):
        stand_in = sys.stderr
    during.close()
    later = io.StringIO()
    monkeypatch.setattr(sys, "stderr", later)
    stand_in.write("a later line\n")
    stand_in.flush()
    assert later.getvalue() == "a later line\n"


def test_the_tasks_temporary_folders_go_to_the_workdir_and_tmpdir_is_restored(tmp_path, monkeypatch):
    """kfp's command for Python components leaves a `mktemp -d` folder per task: under the run's
    folder, and TMPDIR as it was after the run (a later test's subprocesses, chromium among them,
    failed when a run's TMPDIR outlived the folder)."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    with cli.tasks_tmpdir(tmp_path / "work" / "tmp"):
        branch(flag="b")
    assert os.environ["TMPDIR"] == str(tmp_path)
    assert [p.name for p in (tmp_path / "work" / "tmp").glob("*/*")] == ["ephemeral_component.py"]
    assert not list(tmp_path.glob("tmp.*"))
