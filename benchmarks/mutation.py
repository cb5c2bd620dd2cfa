"""Mutation run: small deliberate bugs in lead_core, and whether the tests notice them.

Each mutant is one small change to one source file of a scratch copy of the working tree, or of
`--tree DIR` (lead_core, components, pipelines, images, tests, pyproject.toml; the tree itself is never
touched).
For each mutant the test files that cover its module run (`pytest -x -m "not slow"`, with a time
limit); a failing run kills the mutant, a passing one lets it survive. Each set of test files is
first run once on the unmutated copy: where that fails (a tree in the middle of an edit), its
mutants are reported as not judged instead of killed.

Two kinds of mutant:
  - named: the bugs of issue 12 part 9, written by hand (trainer ignoring tau_d / tau_l / reweight,
    mining excluding by min_relevance, weighted selection never re-drawn, ...); `--named-only`;
  - generated: a seeded sample of operator swaps (< <=, == !=, + -, * /, and or), constant
    changes (n -> n+1, x -> 2x, True <-> False), dropped `not`/unary minus, and removed
    statements (a call statement or a `raise` replaced by `pass`), over lead_core/losses, train,
    mine and evaluate. Docstrings, log calls, exception messages and annotations are not mutated.

    python benchmarks/mutation.py [--sample 40] [--seed 0] [--timeout 240] [--named-only | --generated-only]
    python benchmarks/mutation.py --list            # the mutants and their test files

Prints a table (one row per mutant) and writes benchmarks/results/mutation.json. Wall time here:
6–60 s per mutant (one pytest process each, torch import included; the train files take longest),
16 min for the 40-mutant sample on the shared 2-core machine.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "mutation.json"
COPIED = ("lead_core", "components", "pipelines", "images", "tests", "pyproject.toml")

# Which test files cover which source files (prefix match on the path); fast files only.
TESTS: list[tuple[str, list[str]]] = [
    ("lead_core/losses/objectives.py", ["tests/train/test_train.py", "tests/train/test_lead_step.py"]),
    ("lead_core/losses/", ["tests/losses"]),
    ("lead_core/distributed.py", ["tests/train/test_ddp.py"]),
    ("lead_core/train/checkpoint.py", ["tests/train/test_resume.py"]),
    ("lead_core/train/data.py", ["tests/train/test_data.py", "tests/train/test_train.py"]),
    ("lead_core/train/stage.py", ["tests/train/test_config.py", "tests/train/test_train.py"]),
    ("lead_core/train/", ["tests/train/test_train.py", "tests/train/test_lead_step.py"]),
    ("lead_core/mine/", ["tests/stages/test_mine.py"]),
    ("lead_core/evaluate/", ["tests/evaluate/test_evaluate.py"]),
    (
        "lead_core/artifacts.py",
        ["tests/test_artifacts.py", "tests/data/test_io.py", "tests/train/test_resume.py"],
    ),
    ("components/", ["tests/pipeline/test_code_fingerprint.py", "tests/pipeline/test_pipeline.py"]),
]
GENERATED_FROM = ("lead_core/losses", "lead_core/train", "lead_core/mine", "lead_core/evaluate")


@dataclass
class Mutant:
    name: str
    path: str  # relative to the repository root
    description: str
    old: str = ""  # named mutants: exact text replaced (must occur once)
    new: str = ""
    site: int = -1  # generated mutants: index into mutation_sites(path)
    line: int = 0
    tests: tuple[str, ...] = ()  # overrides TESTS
    variants: tuple[tuple[str, str], ...] = ()  # other (path, old) spellings of the same site


# The bugs of issue 12 part 9. `tests` lists the files that should catch each one.
NAMED = [
    Mutant(
        "trainer-ignores-tau_d",
        "lead_core/losses/objectives.py",
        "lead_loss gets tau_d=1.0 whatever the config says",
        "tau_d=config.tau_d,",
        "tau_d=1.0,",
    ),
    Mutant(
        "trainer-ignores-tau_l",
        "lead_core/losses/objectives.py",
        "lead_loss gets tau_l=10.0 whatever the config says",
        "tau_l=config.tau_l,",
        "tau_l=10.0,",
    ),
    Mutant(
        "trainer-ignores-reweight",
        "lead_core/losses/objectives.py",
        "lead_loss gets reweight=True whatever the config says",
        "reweight=config.reweight,",
        "reweight=True,",
    ),
    Mutant(
        "mine-excludes-by-min_relevance",
        "lead_core/mine/stage.py",
        "negatives exclude documents judged >= min_relevance instead of >= exclude_relevance",
        "excluded = _judged(qrels, exclude_relevance)",
        "excluded = _judged(qrels, min_relevance)",
    ),
    Mutant(
        "weighted-selection-never-redrawn",
        "lead_core/losses/objectives.py",
        "weighted selection is drawn once, like last/skip",
        'if config.selection in ("last", "skip"):',
        'if config.selection in ("last", "skip", "weighted"):',
    ),
    Mutant(
        "resume-accepts-another-world-size",
        "lead_core/train/checkpoint.py",
        "check_compatible no longer compares the world size",
        'if state.get("world_size") != world_size:',
        "if False:",
        tests=(
            "tests/train/test_resume.py",
            "tests/train/test_ddp.py::test_two_process_gloo_shares_negatives_and_gradients",
        ),
    ),
    Mutant(
        "atomic_path-accepts-nothing-written",
        "lead_core/artifacts.py",
        "a stage that wrote nothing is committed as a success",
        "if not (tmp.exists() or tmp.is_symlink()):",
        "if False:",
        variants=(("lead_core/artifacts.py", "if not tmp.exists():"),),
    ),
    Mutant(
        "fingerprint-never-reaches-tasks",
        "components/placement.py",
        "TaskPlacer drops LEAD_CODE_FINGERPRINT",
        "if self.fingerprint:",
        "if False:",
    ),
    Mutant(
        "local-run-without-fingerprint",
        "pipelines/lead_msmarco.py",
        "a local run builds the pipeline without the code fingerprint",
        "fingerprint=code_fingerprint()",
        'fingerprint=""',
        tests=("tests/pipeline/test_code_fingerprint.py",),
    ),
    Mutant(
        "gather-backward-without-all-reduce",
        "lead_core/distributed.py",
        "the gathered passages' gradient is this rank's only",
        "dist.all_reduce(grad)  # SUM",
        "pass",
        variants=(("lead_core/train/distributed.py", "dist.all_reduce(grad)  # SUM"),),
        tests=("tests/train/test_ddp.py::test_two_process_gloo_shares_negatives_and_gradients",),
    ),
    Mutant(
        "ddp-lead-positives-of-rank-0",
        "lead_core/losses/objectives.py",
        "every rank's LEAD positives sit in rank 0's block of the gathered passages",
        "positives = batch.positives(student_scores.shape[-1], student_scores.device)",
        "positives = positive_mask(batch.num_queries, batch.group_size, student_scores.shape[-1], 0, student_scores.device)",
        tests=("tests/train/test_ddp.py::test_two_process_gloo_shares_negatives_and_gradients",),
    ),
    Mutant(
        "ddp-joint-teacher-not-synchronised",
        "lead_core/train/trainer.py",
        "the jointly trained teacher is not wrapped in DDP: its gradients stay per rank",
        "self.teacher_ddp = self._wrap(self.teacher)",
        "self.teacher_ddp = self.teacher",
        tests=("tests/train/test_ddp.py::test_two_process_gloo_shares_negatives_and_gradients",),
    ),
]


# ------------------------------------------------------------------------- generated mutants
_COMPARE_SWAP = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_BINOP_SWAP = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
}
_LOG_NAMES = {"log", "logging", "logger", "warnings"}


def _skipped_subtrees(tree: ast.AST) -> set[int]:
    """ids of nodes never mutated: docstrings, log calls, raise/assert messages, annotations."""
    skip: set[int] = set()

    def mark(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                mark(body[0])
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                if func.value.id in _LOG_NAMES or func.attr in {"set_postfix", "getLogger"}:
                    mark(node)
            if isinstance(func, ast.Name) and func.id in {"print", "_help", "field"}:
                mark(node)  # output text, and config-field metadata (help strings)
        if isinstance(node, ast.Raise):
            mark(node.exc)
        if isinstance(node, ast.Assert):
            mark(node.msg)
        if isinstance(node, ast.JoinedStr):
            mark(node)
        if isinstance(node, (ast.AnnAssign, ast.arg)):
            mark(node.annotation)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            mark(node.returns)
        if isinstance(node, ast.ImportFrom | ast.Import):
            mark(node)
    return skip


def mutation_sites(source: str) -> list[tuple[int, str]]:
    """(line, description) of every site in `source`, in a fixed order (see `apply_site`)."""
    return [(line, what) for line, what, _ in _sites(ast.parse(source))]


def _sites(tree: ast.AST):
    """Yields (line, description, apply) for every mutation site of `tree`; apply() mutates it."""
    skip = _skipped_subtrees(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in _COMPARE_SWAP:
                    new = _COMPARE_SWAP[type(op)]

                    def apply(node=node, i=i, new=new):
                        node.ops[i] = new()

                    yield line, f"{type(op).__name__} -> {new.__name__}", apply
        elif isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAP:
            new = _BINOP_SWAP[type(node.op)]

            def apply(node=node, new=new):
                node.op = new()

            yield line, f"{type(node.op).__name__} -> {new.__name__}", apply
        elif isinstance(node, ast.BoolOp):
            new = ast.Or if isinstance(node.op, ast.And) else ast.And

            def apply(node=node, new=new):
                node.op = new()

            yield line, f"{type(node.op).__name__} -> {new.__name__}", apply
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):

            def apply(node=node):
                node.op = ast.UAdd() if isinstance(node.op, ast.USub) else _Identity()

            yield line, f"drop {type(node.op).__name__}", apply
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
            value = node.value
            if isinstance(value, bool):
                new_value = not value
            elif isinstance(value, int):
                new_value = value + 1
            else:
                new_value = value * 2 if value else 1.0

            def apply(node=node, new_value=new_value):
                node.value = new_value

            yield line, f"constant {value!r} -> {new_value!r}", apply
        for field_name in ("body", "orelse", "finalbody"):
            statements = getattr(node, field_name, None)
            if not isinstance(statements, list):
                continue
            for index, stmt in enumerate(statements):
                removable = isinstance(stmt, ast.Raise) or (
                    isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
                )
                if not removable or id(stmt) in skip or id(getattr(stmt, "value", None)) in skip:
                    continue

                def apply(statements=statements, index=index):
                    statements[index] = ast.Pass()

                kind = "raise" if isinstance(stmt, ast.Raise) else "call"
                yield stmt.lineno, f"remove {kind} statement", apply


class _Identity(ast.unaryop):
    """Marks a `not` to drop; `_unparse` replaces `not x` by `x`."""


class _DropIdentity(ast.NodeTransformer):
    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        self.generic_visit(node)
        return node.operand if isinstance(node.op, _Identity) else node


def apply_site(source: str, site: int) -> str:
    tree = ast.parse(source)
    for i, (_, _, apply) in enumerate(_sites(tree)):
        if i == site:
            apply()
            break
    else:
        raise IndexError(f"no mutation site {site}")
    tree = _DropIdentity().visit(tree)
    return ast.unparse(ast.fix_missing_locations(tree))


def generated(sample: int, seed: int, root: Path = REPO) -> list[Mutant]:
    """A seeded sample of `sample` generated mutants, spread evenly over the four packages."""
    rng = random.Random(seed)
    per_package: dict[str, list[Mutant]] = {}
    for package in GENERATED_FROM:
        for path in sorted((root / package).rglob("*.py")):
            rel = str(path.relative_to(root))
            for i, (line, what) in enumerate(mutation_sites(path.read_text())):
                name = f"{rel.removeprefix('lead_core/').removesuffix('.py')}:{line}:{i}"
                per_package.setdefault(package, []).append(Mutant(name, rel, what, site=i, line=line))
    chosen: list[Mutant] = []
    share = sample // len(per_package)
    for mutants in per_package.values():
        chosen += rng.sample(mutants, min(share, len(mutants)))
    return chosen


# ------------------------------------------------------------------------------------ running
def tests_for(mutant: Mutant, root: Path) -> list[str]:
    if mutant.tests:
        return list(mutant.tests)
    for prefix, files in TESTS:
        if mutant.path.startswith(prefix):
            present = [f for f in files if (root / f.split("::")[0]).exists()]
            if present:  # never an empty list: pytest would then run the whole suite
                return present
    raise ValueError(f"no test file for {mutant.path}")


def resolve(mutant: Mutant, root: Path) -> Mutant:
    """The first of the mutant's spellings that applies to the tree at `root` (code moves)."""
    for path, old in ((mutant.path, mutant.old), *mutant.variants):
        if (root / path).is_file() and (not old or (root / path).read_text().count(old) == 1):
            return replace(mutant, path=path, old=old, variants=())
    return mutant


def mutate(mutant: Mutant, source: str) -> str:
    if mutant.site >= 0:
        return apply_site(source, mutant.site)
    if source.count(mutant.old) != 1:
        raise ValueError(
            f"{mutant.path}: {mutant.old!r} occurs {source.count(mutant.old)} times (code changed?)"
        )
    return source.replace(mutant.old, mutant.new)


def _pytest(root: Path, tests: list[str], timeout: float) -> tuple[str, str]:
    """("passed" | "failed" | "timeout", the first failure or the summary line)."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow"]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.setdefault("LEAD_DATASETS", str(REPO.parent / "shared" / "datasets"))
    try:
        done = subprocess.run(
            command + tests, cwd=root, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return "timeout", f"tests ran past {timeout:.0f} s"
    lines = done.stdout.strip().splitlines() or [""]
    failed = [ln for ln in lines if ln.startswith(("FAILED", "ERROR"))]
    return ("passed" if done.returncode == 0 else "failed"), (failed[0] if failed else lines[-1])


def run_mutant(mutant: Mutant, root: Path, timeout: float, baselines: dict) -> dict:
    """Apply `mutant` in the scratch tree `root`, run its tests, restore the file. `baselines`
    caches the unmutated outcome of each test set: a mutant is only judged where it passes."""
    mutant = resolve(mutant, root)
    path = root / mutant.path
    original = path.read_text() if path.is_file() else ""
    try:
        row = {**asdict(mutant), "tests": tests_for(mutant, root)}
        mutated = mutate(mutant, original)
    except (ValueError, IndexError) as err:
        return {**asdict(mutant), "status": "not applied", "detail": str(err), "seconds": 0.0}
    key = tuple(row["tests"])
    if key not in baselines:
        baselines[key] = _pytest(root, row["tests"], timeout)
        print(f"  (unmutated: {baselines[key][0]}: {' '.join(key)})", flush=True)
    if baselines[key][0] != "passed":
        return {**row, "status": "no baseline", "detail": baselines[key][1], "seconds": 0.0}
    path.write_text(mutated)
    started = time.perf_counter()
    try:
        outcome, detail = _pytest(root, row["tests"], timeout)
    finally:
        path.write_text(original)
    status = {"passed": "survived", "failed": "killed", "timeout": "timeout"}[outcome]
    return {**row, "status": status, "detail": detail, "seconds": round(time.perf_counter() - started, 1)}


def scratch_copy(tree: Path) -> Path:
    root = Path(tempfile.mkdtemp(prefix="lead-mutation-"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        source = tree / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=ignore)
        else:
            shutil.copy2(source, root / name)
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=40, help="generated mutants (spread over 4 packages)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated sample")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per mutant's test run")
    parser.add_argument("--named-only", action="store_true", help="only the named mutants of issue 12")
    parser.add_argument("--generated-only", action="store_true", help="only the generated sample")
    parser.add_argument("--only", nargs="*", help="run only mutants with these names")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--tree", type=Path, default=REPO, help="the tree to copy and mutate (default: this checkout)"
    )
    args = parser.parse_args(argv)

    root = scratch_copy(args.tree)
    rows, baselines = [], {}
    started = time.perf_counter()
    try:
        mutants = ([] if args.generated_only else list(NAMED)) + (
            [] if args.named_only else generated(args.sample, args.seed, root)
        )
        if args.only:
            mutants = [m for m in mutants if m.name in set(args.only)]
        if args.list:
            for m in mutants:
                m = resolve(m, root)
                where = f"{m.path}:{m.line}" if m.line else m.path
                print(f"{m.name:40s} {where:36s} {m.description}  <- {' '.join(tests_for(m, root))}")
            return 0
        print(f"{'mutant':40s} {'status':11s} {'s':>6s}  what")
        for mutant in mutants:
            row = run_mutant(mutant, root, args.timeout, baselines)
            rows.append(row)
            print(
                f"{row['name']:40s} {row['status']:11s} {row['seconds']:6.1f}  {row['description']}",
                flush=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    counts = {
        s: sum(r["status"] == s for r in rows)
        for s in ("killed", "survived", "timeout", "not applied", "no baseline")
    }
    print(
        f"\n{len(rows)} mutants: {counts['killed']} killed, {counts['survived']} survived, "
        f"{counts['timeout']} timed out, {counts['not applied']} not applied, "
        f"{counts['no baseline']} not judged (their tests fail unmutated) "
        f"({time.perf_counter() - started:.0f} s)"
    )
    for row in rows:
        if row["status"] == "survived":
            print(f"  survived: {row['name']} ({row['path']}:{row['line']}) {row['description']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"counts": counts, "seconds": round(time.perf_counter() - started, 1), "sample": args.sample}
    args.out.write_text(json.dumps({**summary, "seed": args.seed, "mutants": rows}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
