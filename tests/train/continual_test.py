"""Continual learning: the forgetting metrics on a known R, and `experiments/continual.py
--smoke` end to end (every method, the JSON's shape, its arithmetic, heat maps, resume)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from r1jax import cpu_threads, host_memory
from r1jax.tasks import DOMAINS
from r1jax.train.continual import METHODS, forgetting_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "experiments", "continual.py")

# A 3-task run: task 0 learned to 0.8, dropped to 0.6 then 0.4; task 1 learned to 0.5,
# rose to 0.6 (backward transfer); task 2 never learned (0.0 on its diagonal).
KNOWN_R = [
    [0.8, 0.1, 0.0],
    [0.6, 0.5, 0.1],
    [0.4, 0.6, 0.0],
]


def test_forgetting_metrics_on_a_known_matrix():
    m = forgetting_metrics(KNOWN_R)
    assert m["acc"] == pytest.approx((0.4 + 0.6 + 0.0) / 3)
    assert m["bwt"] == pytest.approx(((0.4 - 0.8) + (0.6 - 0.5)) / 2)
    # forgetting: best earlier accuracy minus final, for tasks 0 and 1
    assert m["forgetting"] == pytest.approx(((0.8 - 0.4) + (0.5 - 0.6)) / 2)
    # retention over the learned tasks (0 and 1; task 2 has R[2,2] = 0), each share
    # capped at 1: task 1's backward transfer does not make up for task 0's loss
    assert m["retention"] == pytest.approx((0.4 / 0.8 + 1.0) / 2)
    assert m["diag"] == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    assert m["unlearned"] == [2]
    # Forgetting counts the best accuracy a task ever had, before its training too.
    zero_shot = forgetting_metrics([[0.2, 0.6, 0.0], [0.1, 0.3, 0.0], [0.1, 0.2, 0.5]])
    assert zero_shot["forgetting"] == pytest.approx(((0.2 - 0.1) + (0.6 - 0.2)) / 2)
    perfect = forgetting_metrics(np.eye(4) * 0.7 + np.tril(np.full((4, 4), 0.7), -1))
    assert perfect["retention"] == pytest.approx(1.0) and perfect["bwt"] == pytest.approx(0.0)
    assert forgetting_metrics([[0.3]]) == {
        "acc": 0.3,
        "diag": 0.3,
        "bwt": 0.0,
        "forgetting": 0.0,
        "retention": 1.0,
        "unlearned": [],
    }
    with pytest.raises(ValueError, match="square"):
        forgetting_metrics([[0.1, 0.2]])


def _run(*args, timeout=600):
    return subprocess.run(
        [sys.executable, SCRIPT, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


SHARED = ("naive", "replay", "ewc_replay")  # run with one shared model (adapter_rank=0)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The default setting (task adapters; the default methods) in one workdir, and one
    shared model (``--override=adapter_rank=0``) with the replay methods in another."""
    w = tmp_path_factory.mktemp("continual")
    out = _run(f"--workdir={w}", "--smoke", "--lambdas=10,1000")
    assert out.returncode == 0, out.stderr[-3000:]
    w0 = tmp_path_factory.mktemp("continual_shared")
    out0 = _run(
        f"--workdir={w0}",
        "--smoke",
        "--lambdas=10,1000",
        "--override=adapter_rank=0",
        f"--methods={','.join(SHARED)}",
    )
    assert out0.returncode == 0, out0.stderr[-3000:]
    return w, out, w0, out0


def test_smoke_writes_every_method_with_consistent_metrics(smoke):
    w, out, w0, out0 = smoke
    res = json.loads((w / "continual.json").read_text())
    shared = json.loads((w0 / "continual.json").read_text())
    assert res["config"]["adapter_rank"] > 0 and shared["config"]["adapter_rank"] == 0
    # one CPU device, one process: the step buffers are reused (r1jax.host_memory)
    if host_memory.glibc() and cpu_threads.forced_host_devices() <= 1:
        assert res["cpu_buffers"] == "on"
    else:
        assert res["cpu_buffers"].startswith("off: ")
    assert {"naive", "ewc", "online_ewc", "progressive"} <= set(res)  # the defaults
    assert "replay" not in res  # it needs one shared model
    assert set(METHODS) <= set(res) | set(shared)
    for results, workdir, stdout, methods in (
        (res, w, out.stdout, ("naive", "ewc", "online_ewc", "progressive")),
        (shared, w0, out0.stdout, SHARED),
    ):
        assert results["domains"] == list(DOMAINS)  # in curriculum order
        for method in methods:
            r = results[method]
            R = np.asarray(r["R"])
            assert R.shape == (10, 10) and ((R >= 0) & (R <= 1)).all()
            got = forgetting_metrics(R)
            for k in ("acc", "diag", "bwt", "forgetting", "retention"):
                assert r[k] == pytest.approx(got[k]), (method, k)
            assert r["seconds"] > 0 and r["params"] > 0
            assert (workdir / f"R_{method}.png").stat().st_size > 1000
            assert method in stdout
    # The λ sweep: both values reported, the chosen one among them.
    for results, method in ((res, "ewc"), (res, "online_ewc"), (shared, "ewc_replay")):
        sweep = results[method]["sweep"]
        assert [s["lambda"] for s in sweep] == [10.0, 1000.0]
        assert results[method]["lambda"] in (10.0, 1000.0)
    # With the task id: the trunk and an adapter per task; EWC stores the trunk's Fisher
    # and anchor. Progressive networks hold a column per task, more than either.
    trunk = shared["naive"]["params"]
    assert res["naive"]["params"] == res["ewc"]["params"] > trunk
    assert res["ewc"]["stored_floats"] == res["ewc"]["params"] + 2 * trunk
    assert res["progressive"]["params"] > 5 * trunk
    assert shared["replay"]["params"] == shared["ewc_replay"]["params"] == trunk
    for method in ("replay", "ewc_replay"):  # smoke: 8 problems per finished task
        assert shared[method]["memory_examples"] == 9 * 8
    assert shared["ewc_replay"]["stored_floats"] == 3 * trunk


def test_a_rerun_reuses_the_finished_cells(smoke):
    w = smoke[0]
    before = (w / "continual.json").read_text()
    out = _run(f"--workdir={w}", "--smoke", "--lambdas=10,1000", "--methods=naive,ewc")
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads((w / "continual.json").read_text())
    old = json.loads(before)
    assert res["naive"] == old["naive"] and res["ewc"] == old["ewc"]


def _plan(*args):
    """``(adapter_rank line, [(method, λ or None, seed, state)])`` of ``--plan``."""
    out = _run("--plan", *args, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    head, _, *lines = out.stdout.splitlines()
    cells = []
    for line in lines:
        method, lam, seed, state, name = line.split()
        assert name.startswith(f"{method}-seed{seed}") and name.endswith(".json")
        cells.append((method, None if lam == "-" else float(lam), int(seed), state))
    return head, cells


def test_plan_shows_each_settings_default_cells_and_writes_nothing(tmp_path):
    w = tmp_path / "w"
    head, cells = _plan(f"--workdir={w}")
    assert head.startswith("adapter_rank 8:")
    grid = [(m, lam) for m, lam, _, _ in cells]
    assert grid == [("naive", None)] + [
        (m, lam) for m in ("ewc", "online_ewc") for lam in (0.1, 1.0, 10.0)
    ] + [("progressive", None)]
    assert {s for *_, s in cells} == {"pending"}
    head, cells = _plan(f"--workdir={w}", "--override=adapter_rank=0", "--seeds=0,3")
    assert head.startswith("adapter_rank 0:")
    assert [(m, lam, seed) for m, lam, seed, _ in cells] == [
        (m, lam, seed)
        for m, lams in (
            ("naive", [None]),
            ("ewc", [0.03, 0.3, 3.0]),
            ("online_ewc", [0.03, 0.3, 3.0]),
            ("progressive", [None]),
            ("replay", [None]),
        )
        for lam in lams
        for seed in (0, 3)
    ]
    assert not w.exists()


def test_plan_marks_the_finished_cells_done(smoke):
    w = smoke[0]
    _, cells = _plan(f"--workdir={w}", "--smoke", "--lambdas=10,1000")
    assert len(cells) == 6 and {s for *_, s in cells} == {"done"}
    _, cells = _plan(f"--workdir={w}", "--smoke", "--lambdas=10,100")  # a new λ
    assert [(m, lam) for m, lam, _, s in cells if s != "done"] == [
        ("ewc", 100.0),
        ("online_ewc", 100.0),
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "--workdir is required"),
        (("--workdir=W", "--methods=naive,rehearse"), "unknown ['rehearse']"),
        (("--workdir=W", "--lambdas=ten"), "--lambdas"),
        (("--workdir=W", "--override=steps=3"), "--override='steps=3'"),
        (("--workdir=W", "--override=steps_per_task=many"), "not a int"),
        (("--workdir=W", "--override=steps_per_task=2.5"), "not a int"),
        (("--workdir=W", "--override=online_gamma=2"), "online_gamma must be in [0, 1]"),
        (("--workdir=W", "--override=adapter_rank=-1"), "adapter_rank must be an int >= 0"),
        (("--workdir=W", "--methods=naive,replay"), "does not apply to ['replay']"),
        (("--workdir=W", "--override=max_prompt_len=60"), "max_prompt_len=60 is too short"),
    ],
)
def test_bad_command_lines_exit_2(args, message, tmp_path):
    args = tuple(a.replace("W", str(tmp_path / "w")) for a in args)
    out = _run(*args, timeout=120)
    assert out.returncode == 2 and message in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "w" / "continual.json").exists()


def test_lengths_are_checked_before_any_training(tmp_path):
    """A prompt longer than max_prompt_len used to fail at the first evaluation (or the
    true Fisher's sampling), after the base model and the first task had trained (a
    traceback); references longer than max_new_tokens silently capped a domain's
    accuracy. Now: a ValueError (exit 2 on the command line) before anything trains,
    and one warning naming the cut-off domains."""
    from r1jax.configs import continual as cfg_lib
    from r1jax.train.continual import run_method

    c = cfg_lib.get_config("smoke")
    assert cfg_lib.check_lengths(cfg_lib.get_config("")) is None  # the measured setting fits
    c.max_prompt_len = 60
    with pytest.raises(ValueError, match=r"max_prompt_len=60 is too short: domain 'fractions'"):
        run_method(c, "naive", 0)  # raised at once: no base model, no step
    # The true Fisher samples from training prompts, which may be longer than the held-out
    # ones: checked for the seeds of the EWC cells (review: a seed-2 EWC cell crashed).
    full = cfg_lib.get_config("")
    full.max_prompt_len = 120
    assert full.fisher_kind == "true" and cfg_lib.check_lengths(full) is None
    assert cfg_lib.check_lengths(full, fisher_seeds=[0, 1, 3]) is None
    with pytest.raises(ValueError, match=r"'rates' has a Fisher \(seed 2\) prompt of 121"):
        cfg_lib.check_lengths(full, fisher_seeds=[2])
    c.max_prompt_len, c.max_new_tokens = 144, 30
    warning = cfg_lib.check_lengths(c)
    assert "max_new_tokens=30 is shorter than some held-out reference solutions" in warning
    assert "fractions " in warning and "caps those domains' accuracy" in warning
    out = _run(f"--workdir={tmp_path / 'w'}", "--plan", "--override=max_new_tokens=30")
    assert out.returncode == 0 and "pending" in out.stdout, out.stderr[-2000:]
    assert out.stderr.count("warning: max_new_tokens=30 is shorter") == 1, out.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (("--workdir={F}", "--smoke"), "--workdir={F} is a file, not a directory"),
        (("--workdir={F}/sub", "--smoke"), "--workdir={F}/sub: {F} is a file, so no directory"),
        (("--workdir={F}", "--plan"), "--workdir={F} is a file, not a directory"),
        (("--workdir={F}/sub", "--plan"), "--workdir={F}/sub: {F} is a file, so no directory"),
        (("--workdir={C}", "--smoke"), "{C}/cells is not a directory"),
        (("--workdir={C}", "--plan"), "{C}/cells is not a directory"),
        (("--workdir={W}", "--smoke", "--bogus"), "Unknown command line flag 'bogus'"),
        (("--workdir={W}", "--smoke=3"), "flag --smoke=3"),
        (("--workdir={W}", "--seeds"), "Missing value for flag --seeds"),
        (("--workdir={W}", "--select=best"), "flag --select=best"),
    ],
)
def test_bad_workdirs_and_flags_exit_2_with_one_line_before_writing(args, message, tmp_path):
    """A --workdir that is (or is below) a file, or whose `cells` is a file, and a flag absl
    cannot parse: one `error:` line, exit code 2, nothing written, whether --plan or not."""
    afile, cdir = tmp_path / "afile", tmp_path / "c"
    afile.write_text("keep me\n")
    cdir.mkdir()
    (cdir / "cells").write_text("not a directory\n")
    paths = {"F": afile, "C": cdir, "W": tmp_path / "w"}
    out = _run(*(a.format(**paths) for a in args), timeout=120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-2000:]
    assert lines[0].startswith("error: ") and message.format(**paths) in lines[0], lines[0]
    assert out.stdout == ""  # --plan printed no cells
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "c"]  # no w/
    assert afile.read_text() == "keep me\n" and os.listdir(cdir) == ["cells"]


def _same(a, b) -> bool:
    """Two pytrees of arrays equal bit for bit."""
    import jax

    return all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))


def _stop_and_resume(c, method, base, stop_after: int, ckpt_dir):
    """``(uninterrupted run, resumed run, tasks trained by the resumed process)``: the
    second run of ``method`` is stopped after task ``stop_after`` and started again from
    its checkpoints in ``ckpt_dir``; both keep their final state."""
    from r1jax.train.continual import run_method

    full = run_method(c, method, 0, base=base, keep_state=True)

    class Stop(Exception):
        pass

    def stop(i, row):
        if i == stop_after:
            raise Stop

    with pytest.raises(Stop):
        run_method(c, method, 0, base=base, ckpt_dir=ckpt_dir, on_task=stop)
    seen = []
    resumed = run_method(
        c,
        method,
        0,
        base=base,
        ckpt_dir=ckpt_dir,
        keep_state=True,
        on_task=lambda i, r: seen.append(i),
    )
    return full, resumed, seen


def test_progressive_measures_the_diagonal_and_the_last_row(monkeypatch):
    """Progressive networks evaluate column i after task i and every column after the
    last task; between, a frozen column's entry is its diagonal one. The accuracy here
    is a checksum of the active columns' weights, so the last row equals the diagonal
    only if no earlier column moved."""
    import jax

    from r1jax.configs.continual import get_config
    from r1jax.train import continual

    c = get_config("smoke")
    c.domains = c.domains[:4]
    n = len(c.domains)
    row, seen = [0], []

    def checksum(self, params, greedy, j):
        seen.append((row[0], j))
        if "columns" not in params["model"]:  # the base model (columns not trained yet)
            return 0.0
        cols = [params["model"]["columns"][k] for k in range(j + 1)]
        total = sum(float(np.abs(np.asarray(x, np.float64)).sum()) for x in jax.tree.leaves(cols))
        return total % 1.0

    monkeypatch.setattr(continual._Evaluator, "accuracy", checksum)
    base = continual.pretrain_base(c, 0)

    def on_task(i, r):
        row[0] = i + 1

    R = np.asarray(continual.run_method(c, "progressive", 0, base=base, on_task=on_task)["R"])
    trained = sorted((i, j) for i, j in seen if j <= i)
    assert trained == sorted({(i, i) for i in range(n)} | {(n - 1, j) for j in range(n)})
    assert len({float(R[j, j]) for j in range(n)}) == n  # the checksums differ by column
    for i in range(n):
        for j in range(i):
            assert R[i, j] == R[j, j], (i, j)  # the last row measured: bit-identical columns
        assert all(R[i, j] == 0.0 for j in range(i + 1, n))  # the base model's


def test_a_stopped_run_resumes_exactly(tmp_path):
    """EWC's Fisher and anchor are checkpointed after each task: a run stopped after task
    4 and started again ends with the uninterrupted run's params, Fisher, anchor and R,
    bit for bit."""
    import jax

    from r1jax.configs.continual import get_config
    from r1jax.train.continual import pretrain_base

    c = get_config("smoke")
    c.steps_per_task = 3
    c.adapter_rank = 0  # one shared model (the adapters' resume: the test below)
    base = pretrain_base(c, 0)
    full, resumed, seen = _stop_and_resume(c, "ewc", base, 4, str(tmp_path / "ckpt"))
    assert seen == [5, 6, 7, 8, 9]  # tasks 0-4 were not trained again
    assert resumed["R"] == full["R"] and resumed["ewc_penalty"] == full["ewc_penalty"]
    assert _same(full["state"], resumed["state"])
    assert int(resumed["state"]["ewc"].tasks) == 9  # consolidated after tasks 0..8
    assert float(np.sum(jax.tree.leaves(resumed["state"]["ewc"].fisher)[0])) > 0


def test_a_stopped_ewc_replay_run_resumes_exactly_and_uses_both(tmp_path):
    """Replay's memory and batches are functions of (seed, task, step): an `ewc_replay`
    run stopped after task 2 ends, once started again, with the uninterrupted run's R,
    penalties and params; those differ from both `replay`'s (the penalty acts) and
    `ewc`'s (the replayed examples act)."""
    from r1jax.configs.continual import get_config
    from r1jax.train.continual import pretrain_base, run_method

    c = get_config("smoke")
    c.domains = tuple(DOMAINS[:4])
    c.steps_per_task = 3
    c.adapter_rank = 0  # replay's batches mix tasks: one shared model
    base = pretrain_base(c, 0)
    full, resumed, seen = _stop_and_resume(c, "ewc_replay", base, 2, str(tmp_path / "ckpt"))
    assert seen == [3]
    assert full["memory_examples"] == 3 * c.replay_examples
    assert len(full["ewc_penalty"]) == 4 and full["ewc_penalty"][-1] > 0
    assert resumed["R"] == full["R"] and resumed["ewc_penalty"] == full["ewc_penalty"]
    assert _same(full["state"], resumed["state"])
    for other in ("replay", "ewc"):
        alone = run_method(c, other, 0, base=base, keep_state=True)
        assert not _same(alone["state"]["policy"], full["state"]["policy"]), other


def test_fisher_rows_and_sequence_logp():
    """The empirical Fisher's rows are the reference solutions; the true Fisher's rows are
    what the policy's sampler wrote; `sequence_logp` is minus the SFT cross-entropy of
    the same example times its token count."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from r1jax.config import model_config
    from r1jax.configs.continual import get_config
    from r1jax.models.transformer import CausalLM
    from r1jax.tasks import get_task, sample_mixture
    from r1jax.tokenizer import CharTokenizer
    from r1jax.train.continual import fisher_rows, sequence_logp
    from r1jax.train.sft_step import pack_examples, sft_loss
    from r1jax.train.state import Graphs, init_params

    c = get_config("smoke")
    tok = CharTokenizer()
    task = get_task("physics")
    length = c.max_prompt_len + c.max_new_tokens
    c.fisher_kind = "empirical"
    emp = fisher_rows(c, task, tok, 0)
    assert emp["tokens"].shape == (c.fisher_examples, length)
    rng = np.random.default_rng([0, 7, c.domains.index("physics")])
    problems = sample_mixture(task, rng, c.fisher_examples, "train")
    for i, p in enumerate(problems):
        assert tok.decode(emp["targets"][i][emp["loss_mask"][i]].tolist()) == p.solution
        n_prompt = int(np.argmax(emp["loss_mask"][i])) + 1
        assert tok.decode(emp["tokens"][i][:n_prompt].tolist()) == task.format_prompt(p)
    written = np.full((c.fisher_examples, c.max_new_tokens), tok.pad_id, np.int32)
    written[:, :4] = tok.encode("7=7\n")
    c.fisher_kind = "true"
    true = fisher_rows(c, task, tok, 0, sampler=lambda *a: written, params=None)
    assert tok.decode(true["targets"][0][true["loss_mask"][0]].tolist()) == "7=7\n"
    assert int(true["loss_mask"][0].sum()) == 4  # the sampled tokens (no EOS was written)

    cfg = model_config(c, tok.vocab_size)
    params, _ = init_params(cfg, None, 0)
    graph = nnx.graphdef(nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(0))))
    graphs = Graphs(graph, None, cfg)
    lp = float(sequence_logp(graphs, params, jax.tree.map(lambda x: jnp.asarray(x[1]), emp)))
    n_prompt = int(np.argmax(emp["loss_mask"][1])) + 1
    n_tok = int(emp["loss_mask"][1].sum())
    seq = emp["tokens"][1][: n_prompt + n_tok].tolist()
    batch = pack_examples([(seq[:n_prompt], seq[n_prompt:])], 1, length, tok.pad_id)
    ce, _ = sft_loss(params, batch, graphs)
    assert lp == pytest.approx(-float(ce) * n_tok, rel=1e-4)


def test_replay_batches_mix_the_earlier_tasks_memory_at_the_set_share():
    """`replay`'s batch of task i: about `replay_fraction` of its examples come from the
    memories of tasks 0..i-1 (problems fixed per task and seed), the rest are task i's;
    a pure function of (seed, task, step); the first task's batch is naive's."""
    from r1jax.configs.continual import get_config
    from r1jax.tasks import get_task
    from r1jax.tokenizer import CharTokenizer
    from r1jax.train.continual import _memory, _replay_batch, _sft_batch

    c = get_config()
    c.replay_examples = 16
    tok = CharTokenizer()
    tasks = [get_task(n) for n in DOMAINS]
    first = _replay_batch(c, tasks, tok, 0, 0, 5)
    naive = _sft_batch(c, tasks[0], tok, 0, 0, 5)
    assert _same(first, naive)

    def questions(batch):  # the prompt of every packed example
        out = []
        for row, seg in zip(batch.tokens, batch.segments):
            for s in range(1, int(seg.max()) + 1):
                text = tok.decode(row[seg == s].tolist())
                out.append(text[: text.index("\n") + 1])
        return out

    memory = {j: {q for q, _ in _memory(tasks[j], 0, j, 16)} for j in range(3)}
    old, new, replayed = 0, 0, set()
    for step in range(4):
        batch = _replay_batch(c, tasks, tok, 0, 3, step)
        again = _replay_batch(c, tasks, tok, 0, 3, step)
        assert _same(batch, again)
        for q in questions(batch):
            owner = [j for j in range(4) if q.split(":")[0] in tasks[j].headers]
            assert len(owner) == 1, q
            if owner[0] < 3:  # an earlier domain's question comes from its memory
                assert q in memory[owner[0]], q
                old += 1
                replayed.add(owner[0])
            else:
                new += 1
    assert abs(old / (old + new) - c.replay_fraction) < 0.08, (old, new)
    assert replayed == {0, 1, 2}  # every finished task is replayed
    c.replay_fraction = 0.0
    plain = questions(_replay_batch(c, tasks, tok, 0, 3, 0))
    assert all(q.split(":")[0] in tasks[3].headers for q in plain)


def test_task_adapters_are_kept_per_task_and_a_stopped_run_resumes_exactly(tmp_path):
    """`adapter_rank > 0`: each task trains the shared trunk and its own LoRA adapter. A
    finished task's adapter is never trained again (bit-identical after two more tasks,
    while the trunk moves), EWC's Fisher and anchor cover the trunk only and its penalty
    acts (another trunk than naive's), and a stopped run resumes exactly."""
    import jax

    from r1jax.configs.continual import get_config
    from r1jax.train.continual import pretrain_base, run_method

    c = get_config("smoke")
    c.domains = tuple(DOMAINS[:4])
    c.steps_per_task = 3
    c.adapter_rank = 4
    base = pretrain_base(c, 0)
    full, resumed, seen = _stop_and_resume(c, "ewc", base, 1, str(tmp_path / "ckpt"))
    assert seen == [2, 3]
    assert resumed["R"] == full["R"] and resumed["ewc_penalty"] == full["ewc_penalty"]
    assert _same(full["state"], resumed["state"])
    st = full["state"]
    assert sorted(st["adapters"]) == ["0", "1", "2", "3"]
    assert jax.tree.structure(st["ewc"].fisher) == jax.tree.structure(base)  # the trunk's
    assert full["ewc_penalty"][-1] > 0
    trunk = sum(x.size for x in jax.tree.leaves(base))
    adapter = sum(x.size for x in jax.tree.leaves(st["adapters"]["0"]))
    assert (
        full["params"] == trunk + 4 * adapter and full["stored_floats"] == 3 * trunk + 4 * adapter
    )

    c2 = c.copy_and_resolve_references()
    c2.domains = tuple(DOMAINS[:2])
    two = run_method(c2, "ewc", 0, base=base, keep_state=True)["state"]
    for j in ("0", "1"):  # the same after tasks 2 and 3 trained
        assert _same(two["adapters"][j], st["adapters"][j]), j
    assert not _same(two["trunk"], st["trunk"])
    naive = run_method(c, "naive", 0, base=base, keep_state=True)["state"]
    assert "ewc" not in naive and not _same(naive["trunk"], st["trunk"])
    assert not _same(naive["adapters"]["3"], st["adapters"]["3"])
