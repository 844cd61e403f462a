"""Run under `accelerate launch --num_processes 2`: train with the flagship recipe, then compare every rank's
weights and adaptive weight with rank 0's and write the verdict to <output-dir>/sync.json."""
import json
import os
import sys
from pathlib import Path

import torch

import vqstack

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers.recipes import load_recipe  # noqa: E402


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().float().reshape(-1) for t in tensors])


class CountEvaluations:
    """Counts the evaluations this process runs (the validation-end hook)."""

    count = 0

    @vqstack.hookimpl
    def vqstack_on_validation_end(self, step, metrics):
        CountEvaluations.count += 1


def main(argv):
    vqstack.register_plugin(CountEvaluations(), name="count-evaluations")
    recipe = load_recipe("vqgan_anime")
    result = recipe.train(recipe.build_parser().parse_args(argv))
    accelerator = result["accelerator"]
    tokenizer = result["tokenizer"]
    parts = {
        "codebook": flat(tokenizer.quantizer.state_dict().values()),  # codes, EMA statistics, usage counters
        "generator": flat(tokenizer.state_dict().values()),
        # parameters: BatchNorm running statistics are per-process until DDP broadcasts them at the next forward
        "discriminator": flat(result["discriminator"].parameters()),
        "adaptive_weight": torch.tensor([result["logs"]["adaptive_weight"]]),
        "rec_loss": torch.tensor([result["logs"]["rec_loss"]]),  # differs: each rank saw its own images
    }
    report = {}
    for name, local in parts.items():
        every = accelerator.gather(local.to(accelerator.device)[None]).cpu()  # (processes, n)
        report[name] = {"max_diff": (every - every[0]).abs().max().item(), "processes": every.shape[0]}
    counts = accelerator.gather(torch.tensor([CountEvaluations.count], device=accelerator.device)).tolist()
    report["evaluations"] = {"per_process": counts, "processes": len(counts)}
    if accelerator.is_main_process:
        output_dir = Path(argv[argv.index("--output-dir") + 1])
        (output_dir / "sync.json").write_text(json.dumps(report))
    accelerator.end_training()  # also destroys the process group
    # Skip interpreter teardown: after a CPU optimizer step, torch's gloo backend intermittently aborts the process
    # at exit ("terminate called without an active exception") although the run and the report are complete (see
    # tests/test_distributed_codebook.py). An error above still raises and fails the launch.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
