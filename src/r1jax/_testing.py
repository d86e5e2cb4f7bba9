"""Small fixtures shared by the tests (and handy for trying the Hugging Face path on a
CPU): a byte-level BPE tokenizer trained in milliseconds, GSM8K-layout JSONL files, and
a tiny random Qwen2 checkpoint directory. Not used by the trainer itself."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

from r1jax import cpu_threads
from r1jax.tasks.gsm8k import R1_TEMPLATE

_DEVICE_FLAG = "--xla_force_host_platform_device_count"
# XLA's CPU collectives abort when a device thread is 40 s late to a rendezvous. The
# "only 7 of 8 threads arrived" aborts once blamed on starvation were a deadlock of the
# client's thread pool (fixed by `r1jax.cpu_threads`); on 2 loaded cores (the suite runs
# two workers) a thread can still be late, so test subprocesses wait up to 5 min, and a
# real hang still fails within the suite's time.
_COLLECTIVE_FLAGS = (
    "--xla_cpu_collective_call_terminate_timeout_seconds=300",
    "--xla_cpu_collective_timeout_seconds=300",
)


# XLA flags the test suite sets to compile faster (`tests/conftest.py`) that change which
# fusions XLA emits, so two differently structured programs that agree bit for bit under
# XLA's defaults (what the trainer runs) may differ in the last bit under them.
FUSION_FLAGS = ("--xla_cpu_use_fusion_emitters",)


def xla_env(devices: int | None = None, env=None, bitwise: bool = False) -> dict:
    """The environment of a test subprocess that runs JAX on the CPU: ``env`` (default
    ``os.environ``, so the suite's XLA flags travel, `tests/conftest.py`) with
    ``JAX_PLATFORMS=cpu`` and ``devices`` fake CPU devices (None: one device), whose
    collectives tolerate a loaded machine, with two CPU client threads per device
    (``NPROC``, `r1jax.cpu_threads`: fewer can hang a collective for good). ``bitwise``:
    without the suite's `FUSION_FLAGS`, for a check that two programs agree bit for bit
    as the trainer compiles them."""
    env = dict(os.environ if env is None else env)
    drop = (_DEVICE_FLAG, *FUSION_FLAGS) if bitwise else (_DEVICE_FLAG,)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(drop)]
    if devices:
        flags.append(f"{_DEVICE_FLAG}={devices}")
        flags += [f for f in _COLLECTIVE_FLAGS if f.split("=")[0] not in " ".join(flags)]
    env["XLA_FLAGS"] = " ".join(flags)
    env["JAX_PLATFORMS"] = "cpu"
    return cpu_threads.pool_env(env)


SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
# (question, GSM8K-style answer with calculator annotations and "#### N")
GSM8K_PROBLEMS = (
    ("Janet has 16 eggs. She eats 3. How many are left?", "16-3=<<16-3=13>>13\n#### 13"),
    ("What is 2+2?", "2+2=<<2+2=4>>4\n#### 4"),
    ("What is 3*3?", "3*3=<<3*3=9>>9\n#### 9"),
    ("Tom has 5 apples and buys 7 more. How many?", "5+7=<<5+7=12>>12\n#### 12"),
    ("A book costs $1,200. What is half of it?", "1200/2=<<1200/2=600>>600\n#### 600"),
    ("Sam walks 3 miles a day for 4 days. How far?", "3*4=<<3*4=12>>12\n#### 12"),
)


def mesh_config(attention: str = "auto"):
    """The smoke config the multi-device checks split over 8 devices
    (`tests/train/mesh_test.py`, `benchmarks/mesh_layout_bench.py`): 8 SFT rows, 8
    prompts a step, 4 query / 2 KV heads (so tensor=2 splits heads), no reward workers,
    and two completion-length buckets (the learner's `lax.switch` runs on the mesh)."""
    from r1jax.configs.arith_tiny import get_config

    c = get_config("smoke")
    with c.unlocked():
        c.sft.rows = 8
        c.rl.prompts_per_iter = 8
        c.reward.num_workers = 0
        c.model.n_heads = 4
        c.model.n_kv_heads = 2
        c.model.head_dim = 8
        c.rl.length_buckets = 2
        c.model.attention = attention
    return c


def left_padded(vocab_size: int, b: int = 3, length: int = 12, seed: int = 0):
    """`(tokens, valid)` `[b, length]` (int32 tokens in 1..vocab_size-1, bool validity):
    random rows left-padded by 0, 3 and 7 positions (the attention tests' batch)."""
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, vocab_size, (b, length)).astype(np.int32)
    valid = np.ones((b, length), bool)
    for i, pad in enumerate((0, 3, 7)[:b]):
        valid[i, :pad] = False
    return jnp.asarray(tokens), jnp.asarray(valid)


def byte_level_bpe(corpus, vocab_size: int = 400, specials=SPECIALS):
    """A `tokenizers.Tokenizer` (byte-level BPE, like Qwen2's and Llama 3's) trained on
    `corpus` (an iterable of strings), with `specials` as added special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer)
    return tok


def write_gsm8k(path, problems=GSM8K_PROBLEMS, files=("train.jsonl", "test.jsonl")) -> str:
    """Writes `problems` as GSM8K JSONL files (`{"question", "answer"}` a line) into the
    directory `path` (created); returns it."""
    os.makedirs(path, exist_ok=True)
    for name in files:
        with open(os.path.join(path, name), "w") as f:
            f.writelines(json.dumps({"question": q, "answer": a}) + "\n" for q, a in problems)
    return os.fspath(path)


def gsm8k_tokenizer(problems=GSM8K_PROBLEMS, vocab_size: int = 400):
    """A BPE tokenizer trained on the R1 prompt of `problems` (prompts stay short)."""
    prompt = R1_TEMPLATE.format(question=problems[-1][0])
    corpus = [prompt + " <think> x </think> <answer> 18 </answer>"]
    return byte_level_bpe(corpus * 3 + [q + a for q, a in problems], vocab_size)


def write_tokenizer(tok, path, eos_token: str = "<|endoftext|>") -> None:
    """`tokenizer.json` and a `tokenizer_config.json` naming the EOS into `path`."""
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": eos_token}, f)


# A parent that has imported what the CLI's validation needs (JAX, flax, the configs) and
# forks one child per command line: each child runs the entry point on a pristine copy
# of that parent, as the console script would after its imports, and exits with the
# entry point's code. The bad-input tests' command lines then skip a JAX import each
# (about 2 s). The parent never initialises a JAX backend (no threads to fork).
_FORKER = """
import json, os, sys, tempfile, traceback
import jax, jax.numpy, flax.nnx, optax  # noqa: F401  (what validation imports)
import r1jax.config, r1jax.main  # noqa: F401
entry = getattr(r1jax.main, sys.argv[1])
for line in sys.stdin:
    args = json.loads(line)
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    pid = os.fork()
    if pid == 0:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.argv = ["-c", *args]  # config_flags reads overrides from sys.argv
        code = 0
        try:
            entry(["prog", *args])
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    out.seek(0)
    err.seek(0)
    result = {"rc": os.waitstatus_to_exitcode(status), "stdout": out.read().decode(),
              "stderr": err.read().decode()}
    print(json.dumps(result), flush=True)
"""


def cli_forked(fn: str, arg_lists, env=None, timeout: int = 900):
    """Runs the entry point `r1jax.main.<fn>` once per command line of `arg_lists`, each
    in a fork of one parent that imported JAX and the CLI (`_FORKER`); returns a
    `subprocess.CompletedProcess` (exit code, stdout, stderr) per command line, in order.
    `env`: the parent's environment (default `os.environ`)."""
    lines = "".join(json.dumps(list(a)) + "\n" for a in arg_lists)
    p = subprocess.run(
        [sys.executable, "-c", _FORKER, fn],
        check=False,
        input=lines,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if p.returncode != 0:
        raise RuntimeError(f"the forking parent failed: {p.stderr[-3000:]}")
    out = [json.loads(x) for x in p.stdout.splitlines() if x.startswith("{")]
    if len(out) != len(arg_lists):
        raise RuntimeError(f"{len(out)} results for {len(arg_lists)} commands: {p.stderr[-3000:]}")
    return [
        subprocess.CompletedProcess(a, r["rc"], r["stdout"], r["stderr"])
        for a, r in zip(arg_lists, out)
    ]


def cache_sized_copies(hlo: str, n_elements: int) -> dict:
    """Copies or transposes of `n_elements`-sized buffers in compiled HLO text, as
    {"loop": in a while loop's body (or a computation it calls), "outside": elsewhere}.
    A fusion that transposes then copies counts once; a bare op counts alone. Membership
    comes from the computation graph, not from op metadata: the copies XLA's copy
    insertion adds carry none (before session 36 they all counted as "outside")."""
    calls, lines_of, comp = {}, {}, None
    for line in hlo.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith("{"):
            comp = line.split("(")[0].replace("ENTRY", "").strip().lstrip("%").split(" ")[0]
            calls[comp], lines_of[comp] = set(), []
        elif comp is not None:
            lines_of[comp].append(line)
            calls[comp] |= set(re.findall(r"(?:calls|body|condition|to_apply)=%([\w.\-]+)", line))
            for branches in re.findall(r"branch_computations=\{([^}]*)\}", line):
                calls[comp] |= set(re.findall(r"%([\w.\-]+)", branches))
    in_loop = set(re.findall(r"body=%([\w.\-]+)", hlo))
    todo = list(in_loop)
    while todo:
        for c in calls.get(todo.pop(), ()):
            if c not in in_loop:
                in_loop.add(c)
                todo.append(c)
    found = {}
    for comp, lines in lines_of.items():
        for i, line in enumerate(lines):
            m = re.search(r"= [a-z0-9]+\[([0-9,]*)\]\S* (?:copy|transpose)\(", line)
            if m and m.group(1) and math.prod(int(d) for d in m.group(1).split(",")) == n_elements:
                where = "loop" if comp in in_loop else "outside"
                found[comp if "fus" in comp else (comp, i)] = where
    return {w: list(found.values()).count(w) for w in ("loop", "outside")}
