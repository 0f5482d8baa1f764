"""``dfdgen train`` under torchrun: 2 processes, gloo on CPU, DDP, on the tiny rendered dataset."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap

#: Run by each rank: ``dfdgen train`` with hooks that record the rank's model and the keys of
#: its batches, then write them to OUT/rank<R>.json (argv: OUT, then the dfdgen arguments).
RANK_SCRIPT = textwrap.dedent("""
    import hashlib, json, os, sys
    import dfd_models.train as train
    from generator.cli import main

    out, args = sys.argv[1], sys.argv[2:]
    models, keys = [], []
    build, step = train.build_model, train.train_step

    def keep_model(*a, **kw):
        models.append(build(*a, **kw))
        return models[-1]

    def keep_keys(model, batch, opt):
        keys.extend(batch["key"])
        return step(model, batch, opt)

    train.build_model, train.train_step = keep_model, keep_keys
    main(args, standalone_mode=False)
    state = models[0].state_dict()
    digest = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
    with open(os.path.join(out, f"rank{os.environ['RANK']}.json"), "w") as f:
        json.dump({"digest": digest, "keys": keys, "world_size": int(os.environ["WORLD_SIZE"])}, f)
""")


def test_two_cpu_ranks_train_identical_weights_on_disjoint_data(tiny_dataset, tmp_path, torch):
    script, run = tmp_path / "rank.py", tmp_path / "run"
    script.write_text(RANK_SCRIPT)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        str(script), str(tmp_path), "train", "--shards", str(tiny_dataset), "--model", "sdgs", "--out", str(run),
        "--max-steps", "3", "--set", "data.crop=[32, 32]", "--set", "data.batch_size=2", "--set", "data.workers=0",
        "--set", "model.config.channels=[8, 16]", "--set", "train.ckpt_every=2", "--set", "optim.lr=1e-2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["digest"] == ranks[1]["digest"]  # gradients were averaged every step
    assert len(ranks[0]["keys"]) == len(ranks[1]["keys"]) == 6  # 3 steps of 2 stacks each
    first_epoch = [set(r["keys"][:4]) for r in ranks]  # one pass: 2 shards of 2 stacks per rank
    assert not first_epoch[0] & first_epoch[1] and len(first_epoch[0] | first_epoch[1]) == 8

    # Rank 0 alone wrote the run: one event file, the checkpoints of steps 2 and 3, its weights.
    assert len(list((run / "tb").iterdir())) == 1
    assert sorted(p.name for p in (run / "ckpt").iterdir()) == ["last.pt", "step_0000002.pt", "step_0000003.pt"]
    last = torch.load(run / "ckpt" / "last.pt", weights_only=True)
    state = last["model"]
    digest = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()
    assert digest == ranks[0]["digest"]
    rng = last["rng"]  # every rank's generators, to resume each exactly
    assert len(rng) == 2 and not torch.equal(rng[0]["torch"], rng[1]["torch"])
