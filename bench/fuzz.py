"""Fuzz the centre's receive path, both codecs and `vigil decode`'s decoder with mutated and
random inputs; prints figures, then one JSON object as the last line.

    python bench/fuzz.py [--inputs N] [--jobs J] [--seed S] [--engine random|atheris]

Default: 1,000,000 inputs over 2 processes. `random` is a seeded structure-aware mutator
(host/centre/fuzzing.py: byte flips, splices, random bytes, and mutated bodies re-stuffed
with a valid CRC so they reach the tag and payload checks). `atheris` (if installed) runs
libFuzzer's coverage-guided loop with that mutator as its custom mutator, one process per
job. Oracles and the JSON keys (inputs, crashes, forged_accepted, replayed_accepted) are
described in host/centre/fuzzing.py.
"""
import argparse
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from host.centre import fuzzing  # noqa: E402


def _random_job(args):
    n, seed = args
    target = fuzzing.FuzzTarget()
    fuzzing.fuzz(n, seed=seed, target=target)
    return target.stats(), target.first_crash


_ATHERIS_CHILD = r"""
import json, random, sys
import atheris
sys.path.insert(0, sys.argv[1])
from host.centre import fuzzing
n, seed, out = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
target = fuzzing.FuzzTarget()
rng = random.Random(seed)

def save():
    stats = target.stats()
    stats["first_crash"] = target.first_crash
    with open(out, "w") as f:
        json.dump(stats, f)

def one(data):
    target.run(data)
    if target.inputs % 50 == 0:  # libFuzzer exits from C: atexit never runs
        save()

def mutator(data, max_size, seed_):
    if rng.random() < 0.5:
        return fuzzing.mutate(rng, target.corpus)[:max_size]
    return atheris.Mutate(data, max_size)

corpus_dir = out + ".corpus"
import os
os.makedirs(corpus_dir, exist_ok=True)
for i, wire in enumerate(target.corpus):
    with open(os.path.join(corpus_dir, "%d" % i), "wb") as f:
        f.write(wire)
atheris.Setup([sys.argv[0], "-runs=%d" % n, "-seed=%d" % seed, "-max_len=1024",
               corpus_dir], one, custom_mutator=mutator)
atheris.Fuzz()
"""


def _atheris_job(n, seed):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "stats.json")
        proc = subprocess.run([sys.executable, "-c", _ATHERIS_CHILD, str(REPO), str(n),
                               str(seed), out], capture_output=True, text=True)
        if not os.path.exists(out):
            raise SystemExit("atheris job failed: %s" % proc.stderr[-2000:])
        with open(out) as f:
            stats = json.load(f)
    crash = stats.pop("first_crash")
    return stats, crash


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inputs", type=int, default=1_000_000)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--engine", choices=("random", "atheris"), default="random")
    args = p.parse_args(argv)
    jobs = max(1, args.jobs)
    share = [args.inputs // jobs + (1 if i < args.inputs % jobs else 0) for i in range(jobs)]
    seeds = [random.Random(args.seed).getrandbits(32) + i for i in range(jobs)]
    start = time.perf_counter()
    if args.engine == "atheris":
        results = [_atheris_job(n, s) for n, s in zip(share, seeds, strict=True)]
    else:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            results = pool.map(_random_job, list(zip(share, seeds, strict=True)))
    elapsed = time.perf_counter() - start
    total = {"inputs": 0, "crashes": 0, "forged_accepted": 0, "replayed_accepted": 0}
    for stats, crash in results:
        for key in total:
            total[key] += stats[key]
        if crash:
            print("first crash: %s" % crash)
    print("engine %s, %d jobs, %.1f s, %.0f inputs/s" % (args.engine, jobs, elapsed,
                                                        total["inputs"] / elapsed))
    total["engine"] = args.engine
    total["seconds"] = round(elapsed, 1)
    print(json.dumps(total))
    return 1 if total["crashes"] or total["forged_accepted"] or total["replayed_accepted"] else 0


if __name__ == "__main__":
    sys.exit(main())
