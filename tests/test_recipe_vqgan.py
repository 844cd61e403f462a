"""The flagship recipe end to end on a tiny config: outputs, exact resume, and every output a user reads."""
import json

import pytest
import torch
from safetensors.torch import load_file

import vqstack
from helpers.recipes import SHARED_DATA, load_recipe, reset_accelerate, write_image_folder

recipe = load_recipe("vqgan_anime")
TINY = ["--preset", "tiny", "--num-workers", "0", "--batch-size", "4", "--log-every", "1", "--eval-every", "3",
        "--sample-every", "3", "--checkpoint-every", "3"]


def run(*argv):
    reset_accelerate()
    torch.manual_seed(1234)  # anything the run does not seed itself would show up as a mismatch
    return recipe.main([*TINY, *map(str, argv)])


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("images"))


def test_tiny_run_writes_every_output(images, tmp_path):
    result = run("--data", images, "--max-steps", 4, "--output-dir", tmp_path)
    assert result["state"].step == 4
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-4"]
    assert (tmp_path / "samples" / "step-3.png").is_file() and (tmp_path / "samples" / "step-4.png").is_file()
    tokenizer = vqstack.Tokenizer.from_pretrained(tmp_path / "tokenizer")
    assert tokenizer.encode(torch.zeros(1, 3, 32, 32)).shape == (1, 8, 8)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    for key in ("rec_loss", "perceptual_loss", "quantizer_loss", "usage", "perplexity", "lr", "images_per_sec"):
        assert key in steps[0], key
    assert "d_loss" not in steps[0] and "d_loss" in steps[-1], "the discriminator starts at --disc-start (2)"
    # the discriminator's cosine schedule spans the steps it trains (the last two), so it ends with the run
    lr = result["config"]["lr"]
    assert steps[2]["d_lr"] == pytest.approx(lr / 2) and steps[3]["d_lr"] == pytest.approx(0.0, abs=1e-12)
    evals = [r for r in records if "eval/psnr" in r]
    assert [r["step"] for r in evals] == [3, 4]
    for key in ("eval/psnr", "eval/ssim", "eval/stlpips", "eval/usage", "eval/perplexity"):
        assert key in evals[0], key


def test_eval_metrics_do_not_depend_on_the_loss(images, tmp_path):
    """ST-LPIPS is measured by its own frozen VGG16, so it is there (and the same) without a perceptual loss."""
    result = run("--data", images, "--max-steps", 1, "--eval-every", 1, "--perceptual-weight", 0,
                 "--output-dir", tmp_path)
    assert result["state"].step == 1
    record = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][-1]
    tokenizer = vqstack.Tokenizer.from_pretrained(tmp_path / "tokenizer")
    from vqstack.data import ImageDataset, load_image_dataset
    from vqstack.evaluation import evaluate_tokenizer

    data = load_image_dataset(str(images))
    held_out = ImageDataset(data.select(range(len(data) - 2, len(data))), 32, random_flip=False)  # eval_size 2
    batch = torch.stack([held_out[i]["pixel_values"] for i in range(len(held_out))])
    expected = evaluate_tokenizer(tokenizer, [batch], ["psnr", "stlpips"])
    assert record["eval/stlpips"] == pytest.approx(expected["stlpips"], abs=1e-5)
    assert record["eval/psnr"] == pytest.approx(expected["psnr"], abs=1e-4)


class CrashAfterCheckpoint:
    """A plugin that kills the run right after its first checkpoint, as a pre-empted job would die."""

    class Crash(Exception):
        pass

    @vqstack.hookimpl
    def vqstack_on_checkpoint_saved(self, step, path):
        raise self.Crash(step)


def test_resume_is_exact(images, tmp_path, fresh_plugins):
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    run("--data", images, "--max-steps", 6, "--output-dir", straight)
    vqstack.register_plugin(CrashAfterCheckpoint(), name="crash")
    with pytest.raises(CrashAfterCheckpoint.Crash):
        run("--data", images, "--max-steps", 6, "--output-dir", halves)
    vqstack.unregister_plugin("crash")
    # as if the run had logged two more steps and been killed while saving checkpoint-5
    with (halves / "metrics.jsonl").open("a") as log:
        log.write('{"step": 4, "loss": 9.0}\n{"step": 5, "loss": 9.0}\n')
    (halves / "checkpoint-5.tmp").mkdir()
    (halves / "checkpoint-5.tmp" / "model.safetensors").write_bytes(b"half")
    resumed = run("--data", images, "--max-steps", 6, "--output-dir", halves, "--resume", "latest")
    assert resumed["state"].step == 6
    assert not (halves / "checkpoint-5.tmp").exists(), "the stale half-written checkpoint is removed"
    assert not list(halves.glob("*.tmp")) and (halves / "tokenizer" / "config.json").is_file()
    steps = [json.loads(line)["step"] for line in (halves / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert steps == [1, 2, 3, 4, 5, 6], "the resumed run continues its step count"
    for weights in ("model.safetensors", "model_1.safetensors"):  # tokenizer, discriminator
        a, b = load_file(straight / "checkpoint-6" / weights), load_file(halves / "checkpoint-6" / weights)
        assert a.keys() == b.keys()
        worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
        assert worst <= 1e-4, f"{weights}: resumed run differs by {worst}"


def test_resume_from_a_missing_checkpoint_names_the_choices(images, tmp_path):
    from vqstack.training.runtime import UsageError

    with pytest.raises(UsageError, match="not a complete checkpoint folder.*--resume latest"):  # one line, exit 2
        run("--data", images, "--max-steps", 2, "--output-dir", tmp_path, "--resume", tmp_path / "checkpoint-9")


@pytest.mark.parametrize("extra", [[], ["--perceptual-weight", "0"]])
def test_perceptual_weights_without_lpips_names_the_fix(extra):
    args = recipe.build_parser().parse_args([*TINY, "--perceptual-weights", "vgg16.pth", *extra])
    with pytest.raises(SystemExit, match="--perceptual-weights is for the 'lpips' perceptual loss") as err:
        recipe.make_config(args)
    assert "'stlpips'" in str(err.value) if not extra else "off (weight 0)" in str(err.value)


def test_perceptual_weights_reach_the_lpips_loss(tmp_path):
    config = tmp_path / "lpips.json"
    config.write_text(json.dumps({"perceptual": {"name": "lpips", "kwargs": {"net": "vgg"}}}))
    args = recipe.build_parser().parse_args([*TINY, "--config", str(config), "--perceptual-weights", "vgg16.pth"])
    assert recipe.make_config(args)["perceptual"] == {"name": "lpips",
                                                      "kwargs": {"net": "vgg", "backbone_weights": "vgg16.pth"}}


def test_plain_vqvae_never_builds_a_discriminator_or_perceptual_net(images, tmp_path):
    result = run("--data", images, "--max-steps", 2, "--output-dir", tmp_path, "--disc-weight", 0,
                 "--perceptual-weight", 0, "--quantizer", "fsq")
    assert result["discriminator"] is None
    assert result["config"]["tokenizer"]["quantizer"]["name"] == "fsq"
    assert "d_loss" not in result["logs"] and "perceptual_loss" not in result["logs"]


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "anime-faces").is_dir(), reason="../shared/data/anime-faces is absent")
def test_flagship_command_on_real_anime_faces(tmp_path):
    result = run("--data", SHARED_DATA / "anime-faces", "--max-steps", 2, "--output-dir", tmp_path)
    assert result["state"].step == 2 and (tmp_path / "tokenizer" / "model.safetensors").is_file()


@pytest.mark.parametrize("config,message", [
    ({"tokenizer": {"quantiser": {"name": "vq"}}}, "unknown key 'tokenizer.quantiser'. Did you mean 'quantizer'?"),
    ({"los": {"disc_start": 3}}, "unknown key 'los'. Did you mean 'loss'?"),
    ({"loss": {"disc_begin": 3}}, "unknown key 'loss.disc_begin'"),
    ({"discriminator": {"name": "patchgan", "args": {}}}, r"component spec \{name, kwargs\}; unknown keys \['args'\]"),
    ({"tokenizer": {"quantizer": {"name": "vqq", "kwargs": {}}}}, "Unknown quantizer 'vqq'.*Did you mean 'vq'"),
])
def test_config_mistakes_are_named_before_training(images, tmp_path, config, message):
    from vqstack.training.runtime import UsageError

    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(UsageError, match=message):
        run("--data", images, "--max-steps", 1, "--config", path, "--output-dir", tmp_path / "run")
    assert not list((tmp_path / "run").glob("checkpoint-*")), "nothing trained"


def test_a_data_source_that_is_no_data_set_is_one_line(tmp_path):
    """A mistyped --data ends like any other option mistake (UsageError: one line, exit 2), not in a traceback."""
    from vqstack.training.runtime import UsageError

    with pytest.raises(UsageError, match="is neither a folder"):
        run("--data", tmp_path / "no-such-folder", "--max-steps", 1, "--output-dir", tmp_path / "run")


def record_layouts(kinds=("discriminator", "perceptual")):
    """A global forward hook noting, per registry kind, whether each input image batch of a training step (grad
    enabled: evaluation runs without) was channels_last."""
    seen = {kind: [] for kind in kinds}

    def hook(module, inputs, output):
        spec = vqstack.component_spec(module)
        if spec and spec["kind"] in seen and torch.is_grad_enabled():
            seen[spec["kind"]] += [x.is_contiguous(memory_format=torch.channels_last) for x in inputs
                                   if isinstance(x, torch.Tensor) and x.dim() == 4]
    return seen, torch.nn.modules.module.register_module_forward_hook(hook)


@pytest.mark.parametrize("flag", [False, True], ids=["default", "channels-last"])
def test_channels_last_reaches_every_network(images, tmp_path, flag):
    """--channels-last hands the networks NHWC batches (convolutions follow the input's layout); by default the
    real images arrive NCHW, as the data loader stacks them. Weights keep their layout either way."""
    seen, handle = record_layouts()
    try:
        result = run("--data", images, "--max-steps", 1, "--disc-start", 0, "--output-dir", tmp_path,
                     *(["--channels-last"] if flag else []))
    finally:
        handle.remove()
    assert seen["discriminator"] and seen["perceptual"]
    real_images = [seen["discriminator"][1], seen["perceptual"][1]]  # (fake, real) in both calls
    assert real_images == [flag, flag]
    if flag:
        assert all(seen["discriminator"]) and all(seen["perceptual"])
    assert all(p.is_contiguous() for p in result["tokenizer"].parameters())
    vqstack.Tokenizer.from_pretrained(tmp_path / "tokenizer")  # the export loads


def test_bf16_autocast_runs_the_networks_in_bf16_and_distances_in_fp32(images, tmp_path, monkeypatch):
    """--mixed-precision bf16 on a CPU: the encoder and decoder compute in bfloat16, the quantizer's nearest-code
    search in float32."""
    from vqstack.quantizers import vq

    dtypes = {"encoder": set(), "decoder": set(), "distances": set()}
    nearest = vq.nearest_codes

    def recorded_nearest(x, codes, *args, **kwargs):
        dtypes["distances"] |= {x.dtype, codes.dtype}
        return nearest(x, codes, *args, **kwargs)

    monkeypatch.setattr(vq, "nearest_codes", recorded_nearest)
    from vqstack.autoencoders import Decoder, Encoder

    def hook(module, inputs, output):
        for cls, name in ((Encoder, "encoder"), (Decoder, "decoder")):
            if isinstance(module, cls) and module.training:
                dtypes[name].add(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        run("--data", images, "--max-steps", 1, "--mixed-precision", "bf16", "--eval-every", 100,
            "--sample-every", 100, "--output-dir", tmp_path)
    finally:
        handle.remove()
    assert dtypes == {"encoder": {torch.bfloat16}, "decoder": {torch.bfloat16}, "distances": {torch.float32}}


def test_compile_keeps_the_modules_their_weights_and_specs(monkeypatch):
    """--compile swaps each network's forward for a compiled one and nothing else: state-dict keys, registry specs
    and the class stay, so checkpoints and exports are unchanged; a copy made before keeps the eager forward."""
    import copy

    import torch._functorch.config

    monkeypatch.setattr(torch._functorch.config, "donated_buffer", True)  # restored after the test
    module = vqstack.build("discriminator", "patchgan", ch=8, num_layers=2)
    keys, spec = list(module.state_dict()), vqstack.component_spec(module)
    ema_copy = copy.deepcopy(module)
    recipe.compile_networks(module, None)
    assert list(module.state_dict()) == keys and vqstack.component_spec(module) == spec
    assert hasattr(module.forward, "_torchdynamo_orig_callable") and "forward" not in vars(ema_copy)
    assert torch._functorch.config.donated_buffer is False  # the adaptive weight's retain_graph needs it off
