"""Mutation testing of the core: does the test suite notice a one-token change to the code?

    nice python benchmarks/mutation.py [MODULE ...] [--tests PATH ...] [--max-mutants 40]
        [--timeout S] [--seed 0] [--out benchmarks/results/mutation.json]

Each mutant is one change to one module: a comparison operator (< to <=, == to !=, in to not in,
...), an arithmetic operator (+ to -, * to /, ** to *, // to /, unary minus dropped), a numeric
constant (0 to 1, 1 to 0, c to 2c), a boolean constant (True to False) or `return x` to
`return None`. Docstrings, annotations, f-strings, the messages of `raise` statements and (unless
--mutate-defaults) default argument values are left alone: a change there changes no result.

The real source is never written. src/ is copied to a temporary directory, the mutated module is
written into the copy, and each mutant's tests run in a forked child whose sys.path puts the copy
first; the child checks that the module it imported is the copy's (the run stops if not). torch,
numpy and pytest are imported once, before the first fork, so a mutant costs about its tests'
run time. Bytecode caching is off, so a mutant of the same size and mtime as the last one is
never served from a stale .pyc.

A mutant is killed when its tests fail (or fail to import it), survives when they pass, and times
out past --timeout seconds (default: 3x the unmutated run, plus 10 s). With more candidate
mutations than --max-mutants in a module, a seeded random subset of that size is run. Writes per
module the candidate count, mutants run, killed, survived, timeouts and the surviving mutants
(file:line and the change) to JSON; a survivor is either a gap in the tests or an equivalent
mutant (one that changes no observable behaviour), which only reading it can tell.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# modules -> the fast tests that exercise them
DEFAULT_TESTS: dict[str, list[str]] = {
    "src/gensci/models/sde.py": ["tests/models/test_samplers.py"],
    "src/gensci/models/samplers.py": ["tests/models/test_samplers.py"],
    "src/gensci/inverse/radon.py": ["tests/inverse/test_operators.py"],
    "src/gensci/inverse/operators.py": [
        "tests/inverse/test_operators.py",
        "tests/inverse/test_solvers.py",
    ],
    "src/gensci/inverse/tv.py": ["tests/inverse/test_solvers.py"],
    "src/gensci/inverse/posterior.py": ["tests/inverse/test_posterior.py"],
}
FALLBACK_TESTS = ["tests/models", "tests/inverse"]

KILLED, SURVIVED, TIMEOUT, ERROR = "killed", "survived", "timeout", "error"
EXIT_NOT_COPY, EXIT_NOT_IMPORTED = 99, 98
IMPORTED_TAG = "mutation: module imported from"

COMPARE_SWAP: dict[type, type] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
    ast.In: ast.NotIn, ast.NotIn: ast.In,
}
BINOP_SWAP: dict[type, type] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult,
}


@dataclass
class Site:
    """One candidate mutation: the index-th site of the module's walk, at a source line."""

    index: int
    line: int
    kind: str
    change: str


# -- finding and applying mutations ---------------------------------------------------------------
def _skipped_subtrees(tree: ast.AST, mutate_defaults: bool) -> set[int]:
    """Return ids of nodes whose subtrees hold no behaviour worth mutating."""
    skip: set[int] = set()

    def mark(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                mark(body[0])  # docstring
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            mark(node.returns)
            args = node.args
            for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if a is not None:
                    mark(a.annotation)
            if not mutate_defaults:
                for d in [*args.defaults, *args.kw_defaults]:
                    mark(d)
        elif isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        elif isinstance(node, ast.JoinedStr):
            mark(node)
        elif isinstance(node, ast.Raise):
            mark(node.exc)  # the exception's message; its condition is mutated where it is tested
    return skip


def _mutations(node: ast.AST) -> list[tuple[str, str]]:
    """Return (kind, label) of each mutation this node offers, in a fixed order."""
    out: list[tuple[str, str]] = []
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in COMPARE_SWAP:
                out.append(("compare", f"op{i}"))
    elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in BINOP_SWAP:
        out.append(("arithmetic", "op"))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        out.append(("arithmetic", "drop-minus"))
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool):
            out.append(("boolean", "not"))
        elif isinstance(node.value, (int, float)):
            out.append(("constant", "change"))
    elif isinstance(node, ast.Return) and node.value is not None:
        if not (isinstance(node.value, ast.Constant) and node.value.value is None):
            out.append(("return", "none"))
    return out


def _new_constant(value: int | float) -> int | float:
    if value == 0:
        return type(value)(1)
    if value == 1:
        return type(value)(0)
    return 2 * value


def _apply(node: ast.AST, label: str) -> Callable[[], None]:
    """Mutate node in place by the mutation `label` (from _mutations); return the undo."""
    if isinstance(node, ast.Compare):
        i, ops = int(label[2:]), list(node.ops)
        node.ops[i] = COMPARE_SWAP[type(node.ops[i])]()
        return lambda: setattr(node, "ops", ops)
    if isinstance(node, (ast.BinOp, ast.AugAssign)):
        op = node.op
        node.op = BINOP_SWAP[type(op)]()
        return lambda: setattr(node, "op", op)
    if isinstance(node, ast.UnaryOp):  # -x -> +x
        op = node.op
        node.op = ast.UAdd()
        return lambda: setattr(node, "op", op)
    if isinstance(node, ast.Constant):
        value = node.value
        node.value = (not value) if isinstance(value, bool) else _new_constant(value)
        return lambda: setattr(node, "value", value)
    assert isinstance(node, ast.Return)
    expr = node.value
    node.value = ast.Constant(value=None)
    return lambda: setattr(node, "value", expr)


def _walk(tree: ast.AST, mutate_defaults: bool) -> list[tuple[ast.AST, ast.AST | None, str, str]]:
    """Return (node, parent, kind, label) for every site, in a deterministic order."""
    skip = _skipped_subtrees(tree, mutate_defaults)
    parents: dict[int, ast.AST] = {}
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            parents[id(child)] = parent
    sites = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        for kind, label in _mutations(node):
            sites.append((node, parents.get(id(node)), kind, label))
    return sites


def _context(node: ast.AST, parent: ast.AST | None) -> ast.AST:
    """Return the expression to show around a mutated node: a constant's or minus's parent."""
    if isinstance(node, (ast.Constant, ast.UnaryOp)) and isinstance(parent, ast.expr):
        return parent
    return node


def _short(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def find_sites(source: str, mutate_defaults: bool) -> list[Site]:
    """Return every candidate mutation of the module's source."""
    tree = ast.parse(source)
    sites = []
    for i, (node, parent, kind, label) in enumerate(_walk(tree, mutate_defaults)):
        shown = node if isinstance(node, ast.Return) else _context(node, parent)
        before = ast.unparse(shown)
        undo = _apply(node, label)
        after = ast.unparse(shown)
        undo()
        line = getattr(node, "lineno", getattr(parent, "lineno", 0))
        sites.append(Site(i, line, kind, f"{_short(before)}  ->  {_short(after)}"))
    return sites


def mutant_source(source: str, index: int, mutate_defaults: bool) -> str:
    """Return the module's source with the index-th mutation applied."""
    tree = ast.parse(source)
    node, _, _, label = _walk(tree, mutate_defaults)[index]
    _apply(node, label)
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


# -- running tests in a forked child --------------------------------------------------------------
def run_tests(
    tests: list[str], module: str, copy_src: Path, timeout: float, log: Path
) -> tuple[str, float, int]:
    """Run pytest on `tests` in a forked child importing from copy_src: (outcome, seconds, code)."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 3
        try:
            os.setpgid(0, 0)
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.path.insert(0, str(copy_src))
            import pytest

            code = int(pytest.main([*tests, "-x", "-q", "-p", "no:cacheprovider", "-W", "ignore"]))
            mod = sys.modules.get(module)
            if mod is None:
                code = EXIT_NOT_IMPORTED if code == 0 else code
            else:
                print(f"\n{IMPORTED_TAG} {Path(mod.__file__ or '').resolve()}")
                if not str(Path(mod.__file__ or "").resolve()).startswith(str(copy_src)):
                    code = EXIT_NOT_COPY
        except BaseException:  # noqa: BLE001  (anything escaping is an error of the run)
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        elapsed = time.perf_counter() - start
        if done:
            break
        if elapsed > timeout:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return TIMEOUT, elapsed, -9
        time.sleep(0.05)
    if os.WIFSIGNALED(status):
        return ERROR, elapsed, -os.WTERMSIG(status)
    code = os.WEXITSTATUS(status)
    if code == EXIT_NOT_COPY:
        raise SystemExit(f"{module} was not imported from the copy {copy_src}; stopping")
    if code == 0:
        return SURVIVED, elapsed, code
    if code in (1, 2):  # failed tests; or a collection error: the mutant broke an import
        return KILLED, elapsed, code
    return ERROR, elapsed, code


def module_name(path: str) -> str:
    """Return the dotted name of src/<package>/.../<module>.py."""
    parts = Path(path).with_suffix("").parts
    if parts[0] != "src":
        raise SystemExit(f"{path}: expected a module under src/")
    return ".".join(parts[1:])


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", default=list(DEFAULT_TESTS),
                        help="modules to mutate, paths from the repository root")
    parser.add_argument("--tests", nargs="+", default=None,
                        help="tests to run for every module (default: a fast subset per module)")
    parser.add_argument("--max-mutants", type=int, default=40,
                        help="most mutants run per module (a seeded random subset); 0: all")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per mutant (default: 3x the unmutated run + 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mutate-defaults", action="store_true",
                        help="also mutate default argument values")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/mutation.json")
    args = parser.parse_args(argv)

    os.chdir(ROOT)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.dont_write_bytecode = True  # never serve a mutant from a stale .pyc (nor write any)
    if any(name == "gensci" or name.startswith("gensci.") for name in sys.modules):
        raise SystemExit("gensci is already imported; the children must import the copy")
    # heavy imports shared by every child (none of them imports gensci)
    import numpy  # noqa: F401
    import pytest  # noqa: F401
    import torch

    torch.set_num_threads(1)
    for optional in ("scipy.sparse", "skimage.transform", "skimage.data"):
        try:
            __import__(optional)
        except ImportError:
            pass
    assert not any(n.startswith("gensci") for n in sys.modules), "a preload imported gensci"

    started = time.time()
    report: dict = {
        "command": " ".join(["python", "benchmarks/mutation.py", *(argv or sys.argv[1:])]),
        "max_mutants": args.max_mutants,
        "seed": args.seed,
        "mutate_defaults": args.mutate_defaults,
        "modules": {},
    }
    with tempfile.TemporaryDirectory(prefix="gensci-mutation-") as tmp:
        copy_src = Path(tmp, "src").resolve()
        shutil.copytree(ROOT / "src", copy_src, ignore=shutil.ignore_patterns("__pycache__"))
        log = Path(tmp, "pytest.log")
        for rel in args.modules:
            rel = str(Path(rel))
            real = ROOT / rel
            original = real.read_text()
            digest = hashlib.sha256(original.encode()).hexdigest()
            tests = args.tests or DEFAULT_TESTS.get(rel, FALLBACK_TESTS)
            name = module_name(rel)
            target = copy_src / Path(rel).relative_to("src")
            # baseline: the unmutated module, unparsed from its AST as every mutant is
            target.write_text(ast.unparse(ast.parse(original)) + "\n")
            outcome, base_s, code = run_tests(tests, name, copy_src, 600.0, log)
            if outcome != SURVIVED:
                why = ("never import it" if code == EXIT_NOT_IMPORTED
                       else f"do not pass (exit {code})")
                print(f"{rel}: the unmutated module's tests {why}; the log's end:")
                print(log.read_text()[-3000:])
                return 1
            imported = [line.split(IMPORTED_TAG, 1)[1].strip()
                        for line in log.read_text().splitlines() if IMPORTED_TAG in line]
            timeout = args.timeout if args.timeout is not None else 3 * base_s + 10
            sites = find_sites(original, args.mutate_defaults)
            chosen = sites
            if args.max_mutants and len(sites) > args.max_mutants:
                rng = random.Random(f"{args.seed}:{rel}")
                chosen = sorted(rng.sample(sites, args.max_mutants), key=lambda s: s.index)
            entry: dict = {
                "tests": tests, "imported_from": imported[-1].replace(str(copy_src), "<copy>/src"),
                "baseline_s": round(base_s, 2), "timeout_s": round(timeout, 1),
                "candidates": len(sites), "mutants": len(chosen),
                KILLED: 0, SURVIVED: 0, "timeouts": 0, "errors": 0,
                "survivors": [], "timed_out": [], "errored": [],
            }
            print(f"{rel}: {len(sites)} candidate mutants, running {len(chosen)} "
                  f"(baseline {base_s:.1f} s, timeout {timeout:.0f} s)", flush=True)
            for k, site in enumerate(chosen, 1):
                target.write_text(mutant_source(original, site.index, args.mutate_defaults))
                outcome, secs, code = run_tests(tests, name, copy_src, timeout, log)
                item = {"where": f"{rel}:{site.line}", "kind": site.kind, "change": site.change}
                if outcome == KILLED:
                    entry[KILLED] += 1
                elif outcome == SURVIVED:
                    entry[SURVIVED] += 1
                    entry["survivors"].append(item)
                elif outcome == TIMEOUT:
                    entry["timeouts"] += 1
                    entry["timed_out"].append(item)
                else:
                    entry["errors"] += 1
                    entry["errored"].append({**item, "exit": code})
                print(f"  [{k}/{len(chosen)}] {outcome:8s} {secs:5.1f}s  {item['where']}  "
                      f"{site.change}", flush=True)
            target.write_text(original)
            ran = entry[KILLED] + entry[SURVIVED] + entry["timeouts"]
            entry["score"] = round((entry[KILLED] + entry["timeouts"]) / ran, 3) if ran else None
            if hashlib.sha256(real.read_text().encode()).hexdigest() != digest:
                print(f"warning: {rel} changed on disk during the run (not by this script)")
            report["modules"][rel] = entry
            report["duration_s"] = round(time.time() - started, 1)
            _write_json(args.out, report)
    totals = {key: sum(m[key] for m in report["modules"].values())
              for key in ("mutants", KILLED, SURVIVED, "timeouts", "errors")}
    report["totals"] = totals
    report["duration_s"] = round(time.time() - started, 1)
    _write_json(args.out, report)
    print(json.dumps(totals), f"in {report['duration_s']:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
