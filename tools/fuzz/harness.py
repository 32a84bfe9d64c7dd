"""A small crash-tolerant fuzzing harness shared by fuzz_safetensors.py and fuzz_pth.py.

The fuzz target runs IN-PROCESS in a child interpreter (``--child``), so a crash in the Swift
engine or the C extension kills that child, not the fuzzer. The parent (the supervisor) watches
it through a shared memory page of counters: the index of the input being executed and the
outcome counts. When the child dies, the supervisor regenerates the input that was running
(inputs are a pure function of ``(seed, index)``), saves it under ``<out>/crash-<index>.bin``
with the child's stderr (faulthandler traceback), and starts a new child at the next index.
When the index stops moving for ``--timeout`` seconds, the child is killed and the input saved
as ``hang-<index>.bin``. An exception that is not a ``swiftcam.SwiftCAMError`` is an
"unexpected" outcome: the input goes to ``unexpected-<index>.bin`` with its traceback.

Every input can be regenerated: ``--reproduce INDEX --seed S`` writes input INDEX of seed S,
and ``--replay FILE`` runs one file in-process and prints its outcome.

Engines: ``plain`` (default) is this seeded structure-aware mutator; ``atheris`` runs the same
mutator as atheris's custom mutator under libFuzzer (coverage feedback covers the Python layer
only: the Swift engine is not instrumented), with libFuzzer's own crash/timeout handling.
"""

import argparse
import json
import mmap
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Counter slots in the shared page (int64 each).
INDEX, EXECUTIONS, OK, EXPECTED, UNEXPECTED = range(5)
ERROR_CLASSES = ("FileFormatError", "UnsafePickleError", "WeightsError", "UnsupportedModelError",
                 "SwiftCAMIOError", "ModelFileNotFoundError", "InvalidInputError",
                 "InputShapeError", "OutOfMemoryError", "UnknownLayerError", "SwiftCAMError")
FIRST_CLASS_SLOT = 8
SLOTS = FIRST_CLASS_SLOT + len(ERROR_CLASSES) + 1  # + "other SwiftCAMError subclass"
PAGE = 8 * SLOTS


class Counters:
    """int64 counters in a file mapped by both processes."""

    def __init__(self, path, create=False):
        if create:
            with open(path, "wb") as file:
                file.write(bytes(PAGE))
        self.file = open(path, "r+b")
        self.map = mmap.mmap(self.file.fileno(), PAGE)

    def __getitem__(self, slot):
        return struct.unpack_from("<q", self.map, 8 * slot)[0]

    def __setitem__(self, slot, value):
        struct.pack_into("<q", self.map, 8 * slot, value)

    def add(self, slot, amount=1):
        self[slot] = self[slot] + amount

    def close(self):
        self.map.close()
        self.file.close()


def input_rng(seed, index):
    """The random generator of input ``index``: a pure function of (seed, index)."""
    return random.Random(f"swiftcam-fuzz/{seed}/{index}")


def scratch_directory():
    """A directory in memory when possible (inputs are written once per execution)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix="swiftcam-fuzz-", dir=base)


def classify(error):
    """The counter slot of an expected exception, or None when it is unexpected."""
    import swiftcam
    if not isinstance(error, swiftcam.SwiftCAMError):
        return None
    name = type(error).__name__
    if name in ERROR_CLASSES:
        return FIRST_CLASS_SLOT + ERROR_CLASSES.index(name)
    return FIRST_CLASS_SLOT + len(ERROR_CLASSES)


def run_one(target, path):
    """Execute one input file. Returns (label, slot, traceback text or None)."""
    try:
        target.execute(path)
    except KeyboardInterrupt:
        raise
    except BaseException as error:  # noqa: BLE001: the point is to sort every outcome
        slot = classify(error)
        if slot is None:
            return f"unexpected {type(error).__module__}.{type(error).__qualname__}: {error}", \
                None, traceback.format_exc()
        return f"expected {type(error).__name__}: {error}", slot, None
    return "ok", None, None


def _unexpected_kind(label, trace):
    """Exception type plus the innermost frame: one kind per distinct bug, roughly."""
    kind = label.split(":", 1)[0].replace("unexpected ", "")
    frames = [line.strip() for line in (trace or "").splitlines()
              if line.strip().startswith("File ")]
    if frames:
        where = frames[-1].split(",")
        kind += " at " + os.path.basename(where[0].split('"')[1]) + where[1].replace(" line ", ":")
    return kind


def _saved_kinds(out):
    """How many inputs of each unexpected kind earlier children saved (from unexpected.log)."""
    saved = {}
    log = out / "unexpected.log"
    if log.is_file():
        for line in log.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2:
                saved[parts[1]] = saved.get(parts[1], 0) + 1
    return saved


# -- the child: executes inputs start..runs-1 -----------------------------------------------------


def limit_memory(megabytes):
    """Cap the address space, so that an input that makes the code under test allocate
    without bound fails with MemoryError instead of exhausting a shared machine."""
    if megabytes > 0:
        import resource
        limit = megabytes << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))


def child_main(target, args):
    limit_memory(args.memory_limit_mb)
    counters = Counters(args.counters)
    out = Path(args.out)
    own_scratch = args.scratch is None  # the supervisor passes (and later removes) its own
    scratch = scratch_directory() if own_scratch else args.scratch
    path = os.path.join(scratch, "input" + target.suffix)
    saved = _saved_kinds(out)
    try:
        for index in range(args.start, args.runs):
            data = target.generate(input_rng(args.seed, index))
            counters[INDEX] = index
            with open(path, "wb") as file:
                file.write(data)
            label, slot, trace = run_one(target, path)
            if label == "ok":
                counters.add(OK)
            elif slot is not None:
                counters.add(EXPECTED)
                counters.add(slot)
            else:
                counters.add(UNEXPECTED)
                kind = _unexpected_kind(label, trace)
                with open(out / "unexpected.log", "a") as log:
                    log.write(f"{index}\t{kind}\t{label[:200]!r}\n")
                saved[kind] = saved.get(kind, 0) + 1
                if saved[kind] <= args.keep_per_kind:
                    (out / f"unexpected-{index}{target.suffix}").write_bytes(data)
                    (out / f"unexpected-{index}.txt").write_text(f"{label}\n\n{trace}")
            counters.add(EXECUTIONS)
    finally:
        if own_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
        counters.close()


# -- the supervisor -------------------------------------------------------------------------------


def supervise(target, args, script):
    # A child killed by a crash or a hang cannot clean up: the supervisor owns the directory
    # the inputs are written to.
    scratch = scratch_directory()
    try:
        return _supervise(target, args, script, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _supervise(target, args, script, scratch):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    counters_path = out / "counters.bin"
    counters = Counters(counters_path, create=True)
    log_path = out / "child-stderr.log"
    crashes, hangs = [], []
    start = 0
    started = time.monotonic()
    environment = dict(os.environ)
    environment.setdefault("OPENBLAS_NUM_THREADS", "1")
    environment["PYTHONFAULTHANDLER"] = "1"
    last_report = started
    while start < args.runs:
        counters[INDEX] = start
        with open(log_path, "ab") as log:
            log.write(f"--- child from input {start}\n".encode())
            log.flush()
            log_offset = log.tell()
            child = subprocess.Popen(
                [sys.executable, script, "--child", "--start", str(start), "--runs",
                 str(args.runs), "--seed", str(args.seed), "--out", str(out), "--counters",
                 str(counters_path), "--memory-limit-mb", str(args.memory_limit_mb),
                 "--scratch", scratch],
                stderr=log, stdout=log, env=environment)
        seen, seen_at = None, time.monotonic()
        hung = False
        while child.poll() is None:
            time.sleep(0.05)
            now = time.monotonic()
            progress = (counters[INDEX], counters[EXECUTIONS])
            if progress != seen:
                seen, seen_at = progress, now
            elif now - seen_at > args.timeout + (5.0 if seen[0] == start else 0.0):
                # (the first input of a child also waits for the interpreter's start-up)
                child.kill()
                child.wait()
                hung = True
                break
            if args.progress and now - last_report > args.progress:
                last_report = now
                print(f"  {counters[EXECUTIONS]} executions, {len(crashes)} crashes, "
                      f"{len(hangs)} hangs, {counters[UNEXPECTED]} unexpected, "
                      f"{counters[EXECUTIONS] / (now - started):.0f}/s", flush=True)
        if child.returncode == 0 and not hung:
            break
        if child.returncode > 0 and not hung:
            # A Python-level failure of the harness itself (an import error, a full disk...),
            # not a crash of the code under test: stop and show it.
            with open(log_path, "rb") as log:
                log.seek(log_offset)
                print(log.read().decode(errors="replace")[-4000:], file=sys.stderr)
            raise SystemExit(f"the fuzzing child failed with exit status {child.returncode}")
        index = counters[INDEX]
        data = target.generate(input_rng(args.seed, index))
        kind = "hang" if hung else "crash"
        artifact = out / f"{kind}-{index}{target.suffix}"
        artifact.write_bytes(data)
        with open(log_path, "rb") as log:
            log.seek(log_offset)
            stderr_tail = log.read().decode(errors="replace")[-4000:]
        (out / f"{kind}-{index}.txt").write_text(
            f"{kind} at input {index} (seed {args.seed}), return code {child.returncode}\n"
            f"reproduce: python3 {os.path.relpath(script, REPO_ROOT)} --seed {args.seed} "
            f"--reproduce {index} --out {artifact}\n\n{stderr_tail}")
        (hangs if hung else crashes).append(index)
        counters.add(EXECUTIONS)
        start = index + 1
        if len(crashes) + len(hangs) > args.max_failures:
            print(f"stopping: more than {args.max_failures} crashes and hangs", flush=True)
            break
    elapsed = time.monotonic() - started
    summary = {
        "target": target.name,
        "engine": "plain",
        "seed": args.seed,
        "runs": args.runs,
        "memory_limit_mb": args.memory_limit_mb,
        "timeout_s": args.timeout,
        "executions": counters[EXECUTIONS],
        "loaded_ok": counters[OK],
        "expected_errors": counters[EXPECTED],
        "expected_by_class": {name: counters[FIRST_CLASS_SLOT + i]
                              for i, name in enumerate(ERROR_CLASSES + ("other",))
                              if counters[FIRST_CLASS_SLOT + i]},
        "unexpected_exceptions": counters[UNEXPECTED],
        "unexpected_by_kind": _saved_kinds(out),
        "crashes": crashes,
        "hangs": hangs,
        "seconds": round(elapsed, 1),
        "per_second": round(counters[EXECUTIONS] / elapsed, 1) if elapsed else None,
        "artifacts": str(out),
    }
    counters.close()
    os.unlink(counters_path)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# -- atheris --------------------------------------------------------------------------------------


def atheris_main(target, args):
    import atheris

    with atheris.instrument_imports():
        import swiftcam  # noqa: F401  (instrumented: coverage feedback from the Python layer)
    # libFuzzer ends the process without running Python's exit handlers: the input file lives
    # in the artifact directory rather than in a temporary one.
    path = os.path.join(args.out, "input" + target.suffix)
    corpus = Path(args.out) / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for name, data in target.seeds():
        (corpus / name).write_bytes(data)

    def test_one_input(data):
        with open(path, "wb") as file:
            file.write(data)
        label, slot, trace = run_one(target, path)
        if label.startswith("unexpected"):
            raise RuntimeError(f"{label}\n{trace}")

    def custom_mutator(data, max_size, seed):
        data = target.mutate(random.Random(seed), bytes(data))
        return data[:max_size]

    max_len = max(len(data) for _, data in target.seeds()) * 2
    argv = [sys.argv[0], f"-runs={args.runs}", f"-seed={args.seed or 1}",
            f"-timeout={int(args.timeout)}", f"-max_len={max_len}", "-rss_limit_mb=4096",
            f"-artifact_prefix={Path(args.out).resolve()}/", "-print_final_stats=1", str(corpus)]
    atheris.Setup(argv, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


# -- command line ---------------------------------------------------------------------------------


def main(target, script, argv=None):
    parser = argparse.ArgumentParser(description=target.description)
    parser.add_argument("--runs", type=int, default=1000, help="inputs to execute")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (inputs depend on it)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds one input may take before it counts as a hang")
    parser.add_argument("--out", default=None, help="artifact directory (default: a temp dir)")
    parser.add_argument("--engine", choices=("plain", "atheris"), default="plain")
    parser.add_argument("--progress", type=float, default=0.0,
                        help="print progress every this many seconds (0: never)")
    parser.add_argument("--max-failures", type=int, default=50)
    parser.add_argument("--keep-per-kind", type=int, default=10,
                        help="inputs saved per kind of unexpected exception (all are logged)")
    parser.add_argument("--memory-limit-mb", type=int, default=4096,
                        help="address-space limit of the process running the inputs (0: none)")
    parser.add_argument("--reproduce", type=int, default=None, metavar="INDEX",
                        help="write input INDEX of --seed to --out (a file) and exit")
    parser.add_argument("--replay", default=None, metavar="FILE",
                        help="execute one input file in-process and print the outcome")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--counters", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.reproduce is not None:
        data = target.generate(input_rng(args.seed, args.reproduce))
        destination = args.out or f"input-{args.seed}-{args.reproduce}{target.suffix}"
        Path(destination).write_bytes(data)
        print(f"wrote {len(data)} bytes to {destination}")
        return 0
    if args.replay is not None:
        limit_memory(args.memory_limit_mb)
        label, _, trace = run_one(target, args.replay)
        print(label)
        if trace:
            print(trace)
        return 1 if label.startswith("unexpected") else 0
    if args.out is None:
        args.out = tempfile.mkdtemp(prefix=f"swiftcam-{target.name}-")
    if args.child:
        child_main(target, args)
        return 0
    if args.engine == "atheris":
        limit_memory(args.memory_limit_mb)
        atheris_main(target, args)
        return 0
    summary = supervise(target, args, script)
    print(json.dumps(summary, indent=2))
    failed = summary["crashes"] or summary["hangs"] or summary["unexpected_exceptions"]
    return 1 if failed else 0
