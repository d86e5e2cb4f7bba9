"""What each device computes and sends in the trainer's programs on a mesh, with the
model's activation layout (`models.transformer.batch_sharded`) on and off.

  python benchmarks/mesh_layout_bench.py [--meshes="8,1,1;2,4,1;2,2,2;1,1,8"] [--side_by_side]

Compile-only (nothing is timed, so the machine's load does not matter): for each mesh
(data,fsdp,tensor over 8 fake CPU devices, the flag is set here) and each layout
setting, a fresh interpreter builds the `Experiment` of the mesh test's configuration
(`r1jax._testing.mesh_config`: the smoke config, 8 SFT rows, 8 prompts x 8 samples, 4
query / 2 KV heads, two length buckets) and compiles its SFT step, its RL iteration's two programs (rollout,
learner) and its evaluation decoder (greedy, the 8 held-out prompts; "off": the plain
decoder the trainer used before `evaluate.make_mesh_decoder`). Printed per program: the flops per device from XLA's cost analysis of the
partitioned program, as a share of the one-device program's (a loop's body counted
once), the bytes of the collectives in the optimized HLO by kind (per device, result
shapes summed; a collective inside a loop counted once), and how many times XLA's SPMD
partitioner logged "Involuntary full rematerialization" while compiling the mesh's
programs.

"off" traces the same programs with the layout's constraints switched off (the program
before this change). `--side_by_side` keeps XLA:CPU's fused q/k/v and gate/up
projections in the cached passes (sampling, the grouped learner pass); by default they
are off here as on accelerators, where `SIDE_BY_SIDE_BACKENDS` does not fuse them (a
concatenated tensor-split kernel needs collective-permutes to split again, a CPU-only
cost).
"""

import argparse
import collections
import json
import os
import platform
import re
import subprocess
import sys

_KINDS = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "pred": 1, "s8": 1, "u8": 1}
_COLLECTIVE = re.compile(r"= (\(?[^=]*?\)?) (" + "|".join(_KINDS) + r")(-start)?\(")


def collective_bytes(hlo: str) -> dict:
    """Bytes per collective kind in an optimized HLO text (result shapes summed)."""
    out = collections.Counter()
    for line in hlo.splitlines():
        m = _COLLECTIVE.search(line)
        if not m:
            continue
        for dtype, dims in re.findall(r"(\w+)\[([\d,]*)\]", m.group(1)):
            n = 1
            for d in filter(None, dims.split(",")):
                n *= int(d)
            out[m.group(2)] += n * _BYTES.get(dtype, 4)
    return dict(out)


def _child(shape, layout: bool, side_by_side: bool):
    """Compiles the mesh's programs; prints one JSON line {program: [flops, bytes]}."""
    import jax
    import numpy as np

    from r1jax import parallel
    from r1jax._testing import mesh_config
    from r1jax.evaluate import make_decoder
    from r1jax.models import transformer
    from r1jax.train.experiment import Experiment

    if not layout:
        transformer._context_mesh = lambda x: None
    if not side_by_side:
        transformer.SIDE_BY_SIDE_BACKENDS = ()
    c = mesh_config()
    exp = Experiment(c, "/tmp/unused", mesh=parallel.make_mesh(*shape))
    state = exp.init_state
    programs = [("sft", exp.sft_fn, (state, exp.sft_batch(0)))]
    rl_state = exp.start_rl(state)
    programs += list(exp.rl_fn.programs(rl_state, exp.rl_batch(0)))
    # The evaluation decoder (greedy, the held-out prompts); "off": the plain decoder
    # the trainer used before `evaluate.make_mesh_decoder`.
    kw = {"max_new_tokens": c.max_new_tokens, "eos_id": exp.eos_id, "pad_id": exp.pad_id}
    decode = exp.greedy_fn if layout else make_decoder(exp.graphs.policy, **kw)
    tok, mask = exp.encode_prompts([exp.prompt_text(p) for p in exp.heldout()])
    params = exp.eval_params(rl_state)
    programs.append(("decode", decode, (params, tok, mask, jax.random.PRNGKey(0), np.int32(0))))
    out = {}
    for name, fn, args in programs:
        compiled = fn.lower(*args).compile()
        out[name] = [compiled.cost_analysis()["flops"], collective_bytes(compiled.as_text())]
    exp.close()
    print(json.dumps(out))


def _run(shape, layout, side_by_side):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
    env["XLA_FLAGS"] = " ".join([*flags, "--xla_force_host_platform_device_count=8"])
    args = [sys.executable, __file__, "--child", json.dumps([list(shape), layout, side_by_side])]
    r = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    remats = r.stderr.count("Involuntary full rematerialization")
    return json.loads(r.stdout.strip().splitlines()[-1]), remats


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--meshes", default="8,1,1;2,4,1;2,2,2;1,1,8")
    ap.add_argument("--side_by_side", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        shape, layout, side_by_side = json.loads(a.child)
        return _child(tuple(shape), layout, side_by_side)
    meshes = [tuple(int(x) for x in m.split(",")) for m in a.meshes.split(";")]
    base, _ = _run((1, 1, 1), True, a.side_by_side)
    print(
        f"# {platform.processor() or platform.machine()}, 8 fake CPU devices, "
        f"side_by_side={a.side_by_side}"
    )
    print(
        "| mesh | layout | program | flops/device (share of 1 device) | collective KB "
        "(gather / reduce / reduce-scatter / all-to-all / permute) | involuntary remats |"
    )
    print("|---|---|---|---|---|---|")
    for shape in meshes:
        for layout in (False, True):
            progs, remats = _run(shape, layout, a.side_by_side)
            for i, (name, (flops, by)) in enumerate(progs.items()):
                kb = " / ".join(
                    f"{by.get(k, 0) / 1024:.0f}"
                    for k in (
                        "all-gather",
                        "all-reduce",
                        "reduce-scatter",
                        "all-to-all",
                        "collective-permute",
                    )
                )
                share = flops / base[name][0]
                print(
                    f"| {shape} | {'on' if layout else 'off'} | {name} | {flops:.3g} "
                    f"({share:.2f}) | {kb} | {remats if i == 0 else ''} |"
                )


if __name__ == "__main__":
    main()
