"""The maskgit prior: registration, conformance, the masked objective, decoding, conditions, errors, saving."""
import math

import pytest
import torch

import vqstack
from vqstack.api import check_component, load_component, save_component
from vqstack_maskgit.schedule import masked_after_pass, training_mask, training_mask_counts

TINY = {"vocab_size": 32, "seq_len": 16, "dim": 32, "depth": 2, "heads": 2}
ATTRIBUTES = {"hair": ["blue", "red", "green"], "eyes": ["red", "brown"]}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Models this small run faster on one thread than contending for two on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def build(**kwargs):
    torch.manual_seed(0)
    prior = vqstack.build("prior", "maskgit", **{**TINY, **kwargs})
    for p in prior.head.parameters():  # a zero head predicts uniformly: give the tests some structure to see
        torch.nn.init.normal_(p, std=0.5)
    return prior.eval()


def record_inputs(prior):
    """Every input_ids the backbone receives, in order; returns (list, hook handle)."""
    seen = []
    handle = prior.backbone.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["input_ids"].clone()), with_kwargs=True)
    return seen, handle


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


# --- registration and conformance ----------------------------------------------------------------------------------

def test_maskgit_is_registered_by_its_entry_point():
    assert "maskgit" in vqstack.components("prior")
    assert type(vqstack.build("prior", "maskgit", **TINY)).__module__ == "vqstack_maskgit.prior"


@pytest.mark.parametrize("overrides", [{}, {"num_classes": 0}, {"num_classes": 0, "attributes": ATTRIBUTES}],
                         ids=["class", "unconditional", "attributes"])
def test_maskgit_conformance(overrides):
    check_component("prior", "maskgit", **overrides)


# --- training objective --------------------------------------------------------------------------------------------

def test_maskgit_loss_counts_only_masked_positions():
    prior = build(num_classes=3).train()
    tokens = torch.randint(0, 32, (4, 16))
    mask = torch.rand(4, 16) < 0.4
    mask[:, 0] = True
    seen, handle = record_inputs(prior)
    out = prior(tokens, labels=[0, 1, 2, None], mask=mask)
    handle.remove()
    image_input = seen[0][:, prior.prefix_len:]
    assert torch.equal(image_input == prior.mask_id, mask)  # masked positions hidden, the rest visible as is
    assert torch.equal(image_input[~mask], tokens[~mask])
    expected = torch.nn.functional.cross_entropy(out.logits[mask].float(), tokens[mask])
    torch.testing.assert_close(out.loss, expected)
    out.logits.retain_grad()
    out.loss.backward()
    assert out.logits.grad[~mask].abs().max() == 0 and out.logits.grad[mask].abs().sum() > 0


def test_maskgit_default_training_mask_hides_some_positions_per_sample():
    prior = build().train()
    tokens = torch.randint(0, 32, (64, 16))
    seen, handle = record_inputs(prior)
    out = prior(tokens)
    handle.remove()
    mask = seen[0][:, prior.prefix_len:] == prior.mask_id
    assert mask.sum(1).min() >= 1 and out.logits.shape == (64, 16, 32)
    out.logits.retain_grad()
    out.loss.backward()
    assert out.logits.grad[~mask].abs().max() == 0


def test_maskgit_mask_counts_follow_the_cosine_schedule():
    r = torch.tensor([0.0, 0.5, 0.9, 0.999999])
    assert training_mask_counts(r, 16).tolist() == [16, math.ceil(math.cos(math.pi / 4) * 16),
                                                   math.ceil(math.cos(0.45 * math.pi) * 16), 1]
    torch.manual_seed(0)
    counts = training_mask(20000, 16).sum(1)
    observed = torch.bincount(counts, minlength=17)[1:].double() / len(counts)
    # P(count = k) = P(k - 1 < cos(pi r / 2) * L <= k) for r ~ U(0, 1)
    expected = torch.tensor([(math.acos((k - 1) / 16) - math.acos(k / 16)) * 2 / math.pi for k in range(1, 17)])
    assert (observed - expected).abs().sum() / 2 < 0.03  # total variation distance


def test_maskgit_training_masks_come_from_the_global_rng_and_eval_leaves_it_alone():
    prior = build().train()
    tokens = torch.randint(0, 32, (8, 16))
    torch.manual_seed(1)
    first = prior(tokens).loss
    torch.manual_seed(1)
    assert torch.equal(prior(tokens).loss, first)  # a seeded (or resumed) run masks the same tokens
    prior.eval()
    state = torch.random.get_rng_state()
    with torch.no_grad():
        a, b = prior(tokens).loss, prior(tokens).loss
    assert torch.equal(a, b)  # a comparable validation loss
    assert torch.equal(torch.random.get_rng_state(), state)  # validation does not shift the training stream


# --- generation ----------------------------------------------------------------------------------------------------

def test_maskgit_generate_shape_range_and_determinism():
    prior = build(num_classes=3)
    out = prior.generate(5, labels=2, generator=seeded(0))
    assert out.dtype == torch.long and out.shape == (5, 16)
    assert out.min() >= 0 and out.max() < 32
    assert torch.equal(prior.generate(5, labels=2, generator=seeded(0)), out)
    assert not torch.equal(prior.generate(5, labels=2, generator=seeded(1)), out)
    assert prior.training is False


def test_maskgit_greedy_decoding_needs_no_generator():
    prior = build(choice_temperature=0.0)
    assert torch.equal(prior.generate(3, temperature=0), prior.generate(3, temperature=0))


@pytest.mark.parametrize("steps", [1, 3, None])
@pytest.mark.parametrize("cfg_scale", [1.0, 2.5])
def test_maskgit_generate_makes_exactly_steps_backbone_passes(steps, cfg_scale):
    prior = build(num_classes=3, steps=7)
    seen, handle = record_inputs(prior)
    prior.generate(3, labels=1, cfg_scale=cfg_scale, steps=steps, generator=seeded())
    handle.remove()
    assert len(seen) == (steps or 7)
    assert all(ids.shape[0] == (6 if cfg_scale != 1 else 3) for ids in seen)  # guidance: one batch per pass


def test_maskgit_passes_unmask_tokens_on_the_cosine_schedule():
    prior = build(steps=5)
    seen, handle = record_inputs(prior)
    prior.generate(2, generator=seeded())
    handle.remove()
    masked = [int((ids[0, prior.prefix_len:] == prior.mask_id).sum()) for ids in seen]
    expected, remaining = [16], torch.tensor([16])
    for t in range(4):
        remaining = masked_after_pass(t, 5, torch.tensor([16]), remaining)
        expected.append(int(remaining))
    assert masked == expected == [16, 15, 12, 9, 4]  # floor(cos(pi/2 * t/5) * 16) after pass t


def test_maskgit_known_tokens_are_kept_and_visible_in_every_pass():
    prior = build(num_classes=3)
    known = torch.full((1, 4, 4), -1)
    known[0, 0] = torch.arange(4)
    known[0, 3, 3] = 9  # after the hole in raster order: still visible context
    seen, handle = record_inputs(prior)
    out = prior.generate(3, labels=0, generator=seeded(), known=known)
    handle.remove()
    flat = known.flatten(1).expand(3, -1)
    kept = flat >= 0
    assert torch.equal(out[kept], flat[kept])
    assert out[~kept].min() >= 0 and out[~kept].max() < 32
    for ids in seen:
        assert torch.equal(ids[:, prior.prefix_len:][kept], flat[kept])


def test_maskgit_known_rows_may_differ_and_fully_known_rows_need_no_pass():
    prior = build()
    known = torch.randint(0, 32, (2, 16))
    known[1, 5:] = -1
    out = prior.generate(2, known=known, generator=seeded())
    assert torch.equal(out[0], known[0]) and torch.equal(out[1, :5], known[1, :5]) and out[1].min() >= 0
    seen, handle = record_inputs(prior)
    assert torch.equal(prior.generate(2, known=known[:1].expand(2, -1)), known[:1].expand(2, -1))
    handle.remove()
    assert seen == []


@pytest.mark.parametrize("options", [{"top_k": 1}, {"top_k": 3}, {"top_p": 0.5}, {"temperature": 0}])
def test_maskgit_guided_halves_share_their_sampled_tokens(options):
    prior = build(num_classes=0, attributes=ATTRIBUTES)
    seen, handle = record_inputs(prior)
    out = prior.generate(3, labels="blue hair", cfg_scale=4.0, generator=seeded(), **options)
    handle.remove()
    for ids in seen:
        cond, uncond = ids.chunk(2)
        assert torch.equal(cond[:, prior.prefix_len:], uncond[:, prior.prefix_len:])
        assert torch.equal(uncond[:, :prior.prefix_len], prior.null_prefix.expand(3, -1))
    assert out.min() >= 0 and out.max() < 32  # a NaN from -inf - -inf would have sampled garbage or raised


def test_maskgit_labels_as_tags_and_class_names():
    prior = build(num_classes=0, attributes=ATTRIBUTES)
    seen, handle = record_inputs(prior)
    prior.generate(2, labels=["blue hair,red eyes", {"eyes": "brown"}], generator=seeded(), steps=2)
    handle.remove()
    assert torch.equal(seen[0][:, :2], prior.condition_tokens(["red eyes,blue hair", "brown eyes"], 2))
    with pytest.raises(ValueError, match="Did you mean 'blue hair'"):
        prior.generate(1, labels="blu hair")

    named = build(class_names=["cat", "dog"])
    assert named.num_classes == 2 and named.conditions.mode == "class"
    seen, handle = record_inputs(named)
    named.generate(1, labels="dog", generator=seeded(), steps=1)
    handle.remove()
    assert int(seen[0][0, 0]) == named.vocab_size + 1


# --- errors: one line each -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda p: p.generate(2, cfg_scale=3.0), "needs a conditional prior"),
    (lambda p: p.generate(2, known=torch.full((2, 16), 32)), r"known tokens must be -1 \(unknown\) or in \[0, 32\)"),
    (lambda p: p.generate(2, known=torch.full((2, 16), -2)), r"known tokens must be -1"),
    (lambda p: p.generate(2, known=torch.full((2, 15), -1)), "known hold 15 tokens per sample"),
    (lambda p: p.generate(2, known=torch.full((3, 16), -1)), "known has 3 rows for n=2"),
    (lambda p: p.generate(2, known=torch.full((2, 16), -1.0)), "known must be an integer tensor"),
    (lambda p: p.generate(2, steps=0), "steps must be a positive int"),
    (lambda p: p.generate(2, steps=2.5), "steps must be a positive int"),
    (lambda p: p.generate(2, steps=True), "steps must be a positive int"),
    (lambda p: p.generate(0), "n must be a positive int"),
    (lambda p: p.generate(1, top_k=0), "top_k must be None or an int >= 1"),
    (lambda p: p.generate(1, labels=1), "unconditional"),
    (lambda p: p(torch.full((2, 16), 32)), r"tokens must lie in \[0, 32\)"),
    (lambda p: p(torch.zeros(2, 16)), "tokens must be an integer tensor"),
    (lambda p: p(torch.zeros(2, 16, dtype=torch.long), mask=torch.zeros(2, 16, dtype=torch.bool)),
     "at least one True"),
], ids=["cfg-unconditional", "known-high", "known-low", "known-length", "known-rows", "known-float", "steps-0",
        "steps-float", "steps-bool", "n-0", "top-k", "label-unconditional", "tokens-range", "tokens-float",
        "empty-mask"])
def test_maskgit_errors_are_one_line(call, message):
    prior = build(num_classes=0)
    with pytest.raises(ValueError, match=message) as err:
        call(prior)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"mask_schedule": "cosin"},
     r"Unknown mask_schedule 'cosin'; choose from \['cosine', 'linear', 'sqrt', 'square'\]"),
    ({"steps": 0}, "steps must be a positive int"),
    ({"choice_temperature": -1.0}, "choice_temperature must be a number >= 0"),
    ({"dim": 30, "heads": 4}, "must be divisible by heads"),
    ({"cond_dropout": 1.0}, r"cond_dropout must be in \[0, 1\)"),
    ({"mlp_dim": 0}, "mlp_dim must be a positive int"),
    ({"vocab_size": 0}, "vocab_size must be a positive int"),
])
def test_maskgit_bad_arguments_are_one_line_errors(kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        vqstack.build("prior", "maskgit", **{**TINY, **kwargs})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("schedule", ["linear", "square", "sqrt"])
def test_maskgit_other_schedules_decode(schedule):
    prior = build(mask_schedule=schedule, steps=4)
    out = prior.generate(2, generator=seeded())
    assert out.shape == (2, 16) and out.min() >= 0


# --- saving ----------------------------------------------------------------------------------------------------------

def test_maskgit_save_load_round_trip(tmp_path):
    prior = build(num_classes=0, attributes=ATTRIBUTES, steps=5, choice_temperature=2.0, mask_schedule="square")
    save_component(prior, tmp_path / "prior")
    loaded = load_component(tmp_path / "prior").eval()
    assert type(loaded) is type(prior)
    assert (loaded.steps, loaded.choice_temperature, loaded.mask_schedule) == (5, 2.0, "square")
    assert loaded.conditions.groups == prior.conditions.groups
    for key, value in prior.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    labels = ["green hair", None, "brown eyes"]
    assert torch.equal(loaded.generate(3, labels=labels, cfg_scale=2.0, generator=seeded(3)),
                       prior.generate(3, labels=labels, cfg_scale=2.0, generator=seeded(3)))
