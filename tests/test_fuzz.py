"""The mutation fuzzer (``fuzzing/``) over every modality's preprocessing, short: ``SHORT`` seeded mutants of
each modality's real inputs. ``OMNIMASK_FUZZ_LONG=1`` runs the long mode (``LONG`` per modality) instead."""

import os
from pathlib import Path

import pytest

from fuzzing.mutations import MUTATIONS, mutate
from fuzzing.run import LONG, SHORT, Checker, Mutant, fuzz, table
from omnimask.cli.demo import DEMOS
from omnimask.core.seeding import rng

LONG_RUN = os.environ.get("OMNIMASK_FUZZ_LONG", "") not in ("", "0")


def test_mutations_are_pure_functions_of_their_seed():
    data = bytes(range(256)) * 40
    for i in range(50):
        assert mutate(data, rng("t", i)) == mutate(data, rng("t", i))
    for m in MUTATIONS:
        assert m(data, rng("t", m.__name__)) == m(data, rng("t", m.__name__))
    assert len({mutate(data, rng("t", i))[0] for i in range(50)}) > 40


def test_every_modality_survives_its_mutants():
    """No crash, every input accounted for, every quarantine with a reason, every kept sample through the
    loader, no input slower than ``max_seconds``; figures printed (``pytest -s``)."""
    count = LONG if LONG_RUN else SHORT
    results = fuzz(sorted(DEMOS), seed=0, count=count, budget=7200 if LONG_RUN else 40, max_seconds=30, jobs=2 if LONG_RUN else 1)
    print("\n" + table(results))
    failures = [f"{r['modality']}: {f}" for r in results for f in r["failures"]]
    assert not failures, "\n".join(failures)
    for r in results:  # the time budget may cut a slow machine's run short, never to nothing
        assert r["mutants"] >= min(count, 30), r
    assert sum(r["kept"] for r in results) > 0 and sum(r["quarantined"] for r in results) > 0


FOUND = Path(__file__).parent / "data" / "fuzz"
REGRESSIONS = {
    # mutant file (checked in, small) -> (modality, what its quarantine reason says)
    "image-seed0-96.jpg": ("image", "corrupt JPEG data"),  # Pillow decoded past the damage the loader's libjpeg refuses
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_mutants_the_fuzzer_found_stay_handled(tmp_path, name):
    """Each input the fuzzer once broke an invariant with, run through the same checks again."""
    modality, reason = REGRESSIONS[name]
    path = tmp_path / "input" / name
    path.parent.mkdir()
    path.write_bytes((FOUND / name).read_bytes())
    checker = Checker(modality, tmp_path, max_seconds=30)
    out = checker.run(Mutant(0, name, path, []))
    assert not out.failures, out.failures
    assert out.kept + out.quarantined == 1 and out.quarantined == 1
    assert reason in " ".join(checker.last_reasons)
