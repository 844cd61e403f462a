"""The ar prior reading an image condition (image-to-image translation, issue 21 step 2): the learned patch embedding
read as a prefix, its dropout, guidance on the image, the labels or both, sampling, saving, errors. Tiny models."""
import json

import pytest
import torch

import vqstack
from vqstack.conformance import check_component
from vqstack.priors import ARPrior, build_prior, generate_options, prior_arguments
from vqstack.priors.decode import LlamaDecoder

TINY = ARPrior.example_kwargs()  # vocab 32, seq_len 16 (4x4 grid), dim 32, depth 2, heads 2, 3 classes
GRAY = {"name": "grayscale", "kwargs": {}}
CONDITIONED = {"image_condition": GRAY, "patch_size": 2}  # condition images (1, 8, 8)


def build(**overrides):
    torch.manual_seed(0)
    return vqstack.build("prior", "ar", **{**TINY, **CONDITIONED, **overrides})


def random_head(prior, std=1.0):
    """The head starts at zero (uniform predictions); a random one lets the condition show in the logits."""
    torch.manual_seed(1)
    torch.nn.init.normal_(prior.head.weight, std=std)
    return prior


def images(n, seed=0, channels=1, size=(8, 8)):
    return torch.rand(n, channels, *size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


class RecordEmbeddings:
    """Every inputs_embeds the backbone's forward (training, the reference steppers) or the sampling decode step
    (decode.py) receives, in order, None for token ids; ``remove()`` stops recording."""

    def __init__(self, prior):
        self.seen, self.original = [], LlamaDecoder.__call__
        self.hook = prior.backbone.register_forward_pre_hook(
            lambda module, args, kwargs: self.seen.append(kwargs.get("inputs_embeds")), with_kwargs=True)

        def call(decoder, inputs):
            self.seen.append(inputs if inputs.is_floating_point() else None)
            return self.original(decoder, inputs)

        LlamaDecoder.__call__ = call

    def remove(self) -> None:
        self.hook.remove()
        LlamaDecoder.__call__ = self.original


def record_embeddings(prior):
    """(list of what the model received, handle with remove())."""
    recording = RecordEmbeddings(prior)
    return recording.seen, recording


# --- building -------------------------------------------------------------------------------------------------------


def test_a_prior_records_its_condition_and_reads_it_as_a_prefix():
    prior = build(image_condition="lineart")  # a name: recorded with its defaults filled in
    assert prior.image_condition == vqstack.build("condition", "lineart").to_config()
    assert prior.condition_channels == 1 and prior.condition_size == (8, 8) and prior.grid == (4, 4)
    assert (prior.prefix_len, prior.image_condition_len, prior.context_len) == (1, 16, 17)
    assert prior.config.max_position_embeddings == 1 + 16 + 16
    assert vqstack.build("prior", "ar", **TINY, image_condition={"name": "lowres", "kwargs": {}},
                         patch_size=2).condition_channels == 3
    wide = build(grid=[2, 8], patch_size=4)
    assert wide.condition_size == (8, 32)
    assert wide(torch.randint(0, 32, (2, 16)), image=images(2, size=(8, 32))).logits.shape == (2, 16, 32)
    assert "image_condition=lineart" in repr(prior)


def test_without_an_image_condition_the_prior_is_the_one_it_was():
    """No new parameter, no new random draw, the same ids path: the same weights, logits and samples."""
    torch.manual_seed(0)
    before = vqstack.build("prior", "ar", **TINY)
    after = build(image_condition=None, image_dropout=0.3, patch_size=None)
    assert after.image_embed is None and after.context_len == after.prefix_len == 1
    assert before.state_dict().keys() == after.state_dict().keys()
    assert all(torch.equal(value, after.state_dict()[key]) for key, value in before.state_dict().items())
    random_head(before), random_head(after)
    tokens = torch.randint(0, 32, (3, 16))
    seen, handle = record_embeddings(after)
    torch.manual_seed(2)
    trained = after.train()(tokens, labels=[0, 1, None]).logits
    handle.remove()
    assert seen == [None]  # input_ids, as before
    torch.manual_seed(2)
    torch.testing.assert_close(before.train()(tokens, labels=[0, 1, None]).logits, trained, rtol=0, atol=0)
    for options in ({}, {"labels": 1, "cfg_scale": 3.0, "top_k": 5}, {"temperature": 0, "use_cache": False}):
        assert torch.equal(before.generate(3, generator=seeded(), **options),
                           after.generate(3, generator=seeded(), **options)), options


# --- training -------------------------------------------------------------------------------------------------------


def test_loss_is_finite_and_the_condition_changes_the_logits():
    prior = random_head(build()).train()
    tokens = torch.randint(0, 32, (2, 16))
    out = prior(tokens, labels=[0, 2], image=images(2))
    assert out.logits.shape == (2, 16, 32) and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in prior.image_embed.parameters()
               if p is not prior.image_embed.null)
    prior.eval()
    with torch.no_grad():
        one, other, null = (prior(tokens, labels=[0, 2], image=x).logits for x in (images(2), images(2, 1), None))
        relabelled = prior(tokens, labels=[1, 1], image=images(2)).logits
    for changed in (other, null, relabelled):
        assert (one - changed).abs().amax(-1).min() > 0  # every position of every sample sees the change
    with torch.no_grad():  # one condition image for the batch is the same as that image in every row
        torch.testing.assert_close(prior(tokens, image=images(1)).logits,
                                   prior(tokens, image=images(1).expand(2, -1, -1, -1)).logits)


def test_logits_are_causal_over_the_image_tokens_with_a_condition():
    prior = random_head(build()).eval()
    tokens = torch.randint(0, 32, (2, 16))
    changed = tokens.clone()
    changed[:, 9] = (changed[:, 9] + 1) % 32
    with torch.no_grad():
        logits, after = (prior(t, labels=[0, 1], image=images(2)).logits for t in (tokens, changed))
        # and the same as the backbone over [prefix; condition; tokens[:-1]] without any cache
        embed = prior.backbone.embed_tokens
        inputs = torch.cat([embed(prior.condition_tokens([0, 1], 2)), prior.image_embed(images(2)),
                            embed(tokens[:, :-1])], 1)
        plain = prior.head(prior.backbone(inputs_embeds=inputs, use_cache=False).last_hidden_state[:, 16:])
    torch.testing.assert_close(logits, plain)
    assert torch.equal(logits[:, :10], after[:, :10])  # logits[:, i] does not see tokens[:, i:]
    assert not torch.allclose(logits[:, 10], after[:, 10])


def test_image_dropout_replaces_the_condition_by_null_in_training_only():
    prior = build(image_dropout=0.5, cond_dropout=0.5)
    seen, handle = record_embeddings(prior)
    tokens = torch.randint(0, 32, (64, 16))
    torch.manual_seed(0)
    prior.train()(tokens, labels=1, image=images(1))
    with torch.no_grad():
        prior.eval()(tokens, labels=1, image=images(1))
    handle.remove()
    embed = prior.backbone.embed_tokens.weight
    for inputs, training in zip(seen, (True, False)):
        null_image = (inputs[:, 1:17] == prior.image_embed.null).all(-1).all(-1)
        kept_image = (inputs[:, 1:17] == prior.image_embed(images(1))).all(-1).all(-1)
        null_label = (inputs[:, 0] == embed[32 + 3]).all(-1)
        assert torch.equal(null_image, ~kept_image)  # a whole condition is dropped, or none of it
        pairs = set(zip(null_image.tolist(), null_label.tolist()))
        # drawn apart from the labels' dropout: every mix of dropped and kept appears while training
        assert pairs == ({(a, b) for a in (True, False) for b in (True, False)} if training else {(False, False)})
    with pytest.raises(ValueError, match=r"image_dropout must be in \[0, 1\)"):
        build(image_dropout=1.0)


def test_without_an_image_the_condition_is_the_null():
    prior = random_head(build(num_classes=0)).eval()
    seen, handle = record_embeddings(prior)
    with torch.no_grad():
        prior(torch.randint(0, 32, (2, 16)))
    prior.generate(2, generator=seeded())
    handle.remove()
    for inputs in seen[:2]:  # the forward and the generate prefill
        assert (inputs[:, 1:17] == prior.image_embed.null).all()


# --- sampling -------------------------------------------------------------------------------------------------------


def test_generate_with_an_image_is_seeded_and_follows_the_image():
    prior = random_head(build()).eval()
    first = prior.generate(3, labels=1, image=images(3), generator=seeded())
    assert first.shape == (3, 16) and first.dtype == torch.long and 0 <= first.min() and first.max() < 32
    assert torch.equal(first, prior.generate(3, labels=1, image=images(3), generator=seeded()))
    assert not torch.equal(first, prior.generate(3, labels=1, image=images(3), generator=seeded(1)))
    greedy = prior.generate(2, image=images(2), temperature=0)
    assert not torch.equal(greedy[0], greedy[1])  # two condition images, two samples
    # one image for all n rows
    assert torch.equal(prior.generate(2, image=images(2)[1], temperature=0), greedy[1].expand(2, -1))


@pytest.mark.parametrize("guidance", [{}, {"cfg_scale": 3.0, "cfg_target": "both"},
                                      {"cfg_scale": 3.0, "cfg_target": "image"},
                                      {"cfg_scale": 3.0, "cfg_target": "labels"}],
                         ids=["unguided", "both", "image", "labels"])
def test_cached_and_uncached_sampling_agree_with_an_image(guidance):
    prior = random_head(build(), std=0.5).eval()
    options = {"labels": [0, 1, 2], "image": images(3), **guidance}
    reference = prior.generate(3, temperature=0, use_cache=False, **options)
    for cache in ("preallocated", "dynamic", "static"):
        assert torch.equal(prior.generate(3, temperature=0, cache=cache, **options), reference), cache
    sampled = prior.generate(3, top_k=4, generator=seeded(), **options)
    assert torch.equal(prior.generate(3, top_k=4, generator=seeded(), use_cache=False, **options), sampled)


@pytest.mark.parametrize("target, keeps_labels, keeps_image", [("both", False, False), ("image", True, False),
                                                               ("labels", False, True)])
def test_cfg_target_says_what_the_unconditional_half_drops(target, keeps_labels, keeps_image):
    prior = random_head(build()).eval()
    seen, handle = record_embeddings(prior)
    samples = prior.generate(2, labels=[0, 2], image=images(2), cfg_scale=3.0, cfg_target=target, generator=seeded())
    handle.remove()
    prefill, steps = seen[0], seen[1:]
    assert prefill.shape == (4, 1 + 16, 32) and all(step is None for step in steps)  # then one id at a time
    cond, uncond = prefill.chunk(2)
    embed = prior.backbone.embed_tokens.weight
    condition = prior.image_embed(images(2))
    assert torch.equal(cond[:, 0], embed[[32, 34]]) and torch.equal(cond[:, 1:], condition)
    assert torch.equal(uncond[:, 0], embed[[32, 34]] if keeps_labels else embed[[35, 35]])
    assert torch.equal(uncond[:, 1:], condition if keeps_image else prior.image_embed.null.expand(2, 16, -1))
    assert samples.min() >= 0 and samples.max() < 32


def test_guidance_on_the_image_alone_works_without_labels():
    prior = random_head(build(num_classes=0), std=0.3).eval()
    plain = prior.generate(4, image=images(4), generator=seeded())
    guided = prior.generate(4, image=images(4), cfg_scale=5.0, cfg_target="image", generator=seeded())
    assert not torch.equal(plain, guided)
    assert torch.equal(prior.generate(4, image=images(4), cfg_scale=5.0, generator=seeded()), guided)  # "both"


def test_known_tokens_are_kept_with_an_image_and_guidance():
    prior = random_head(build()).eval()
    known = torch.full((2, 16), -1)
    known[:, :5] = torch.tensor([3, 1, 4, 1, 5])  # a known top: in the prefill after the condition
    known[0, 9], known[1, 12] = 26, 7
    for options in ({}, {"cfg_scale": 2.0, "cfg_target": "image"}, {"use_cache": False}):
        samples = prior.generate(2, labels=0, image=images(2), known=known, generator=seeded(), **options)
        assert torch.equal(samples[known >= 0], known[known >= 0]), options
    grid = torch.randint(0, 32, (1, 4, 4))
    assert torch.equal(prior.generate(3, image=images(1), known=grid), grid.view(1, 16).expand(3, -1))


def test_a_bfloat16_prior_samples_with_an_image():
    prior = random_head(build()).to(torch.bfloat16)
    samples = prior.generate(2, labels=1, image=images(2), cfg_scale=2.0, top_p=0.9, generator=seeded())
    assert samples.dtype == torch.long and samples.min() >= 0 and samples.max() < 32


def test_two_condition_images_learn_two_sequences():
    """A few dozen steps: each condition image alone (no labels) makes greedy decoding give its own sequence."""
    prior = build(num_classes=0, image_dropout=0.0)
    torch.manual_seed(0)
    sequences = torch.randint(0, 32, (2, 16))
    conditions = torch.stack([torch.full((1, 8, 8), -1.0), torch.full((1, 8, 8), 1.0)])  # white, black
    conditions[1, :, :4] = -1  # not just a flipped sign
    optimizer = torch.optim.Adam(prior.parameters(), lr=1e-2)
    prior.train()
    for _ in range(40):
        loss = prior(sequences.repeat(2, 1), image=conditions.repeat(2, 1, 1, 1)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    prior.eval()
    assert torch.equal(prior.generate(2, image=conditions, temperature=0), sequences)
    assert torch.equal(prior.generate(1, image=conditions[1], temperature=0)[0], sequences[1])


# --- saving ---------------------------------------------------------------------------------------------------------


def test_save_load_round_trip_keeps_the_condition(tmp_path):
    prior = random_head(build(image_condition="lineart", image_dropout=0.2, grid=[4, 4])).eval()
    vqstack.save_component(prior, tmp_path)
    recorded = json.loads((tmp_path / "config.json").read_text())["kwargs"]
    assert recorded["image_condition"] == "lineart" and recorded["patch_size"] == 2
    loaded = vqstack.load_component(tmp_path, kind="prior").eval()
    assert loaded.image_condition == prior.image_condition and loaded.image_dropout == 0.2
    tokens = torch.randint(0, 32, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens, labels=1, image=images(2)).logits,
                                   prior(tokens, labels=1, image=images(2)).logits, rtol=0, atol=0)
    assert torch.equal(loaded.generate(2, labels=2, image=images(2), cfg_scale=2.0, generator=seeded()),
                       prior.generate(2, labels=2, image=images(2), cfg_scale=2.0, generator=seeded()))
    loaded.check_image_condition("lineart")
    loaded.check_image_condition(vqstack.build("condition", "lineart"))
    assert loaded.build_image_condition().to_config() == prior.image_condition
    with pytest.raises(ValueError, match="trained for condition lineart .*got grayscale"):
        loaded.check_image_condition("grayscale")
    with pytest.raises(ValueError, match="trained without an image condition"):
        vqstack.build("prior", "ar", **TINY).check_image_condition("lineart")


# --- errors: one line each ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call, message", [
    (lambda p, q: q(torch.zeros(2, 16, dtype=torch.long), image=images(2)), "built without an image condition"),
    (lambda p, q: q.generate(2, image=images(2)), "built without an image condition"),
    (lambda p, q: p(torch.zeros(2, 16, dtype=torch.long), image=images(2, channels=3)),
     r"image must be condition images \(1 or 2, 1, 8, 8\).*got \(2, 3, 8, 8\)"),
    (lambda p, q: p.generate(2, image=images(2, size=(16, 16))), r"\(1 or 2, 1, 8, 8\).*got \(2, 1, 16, 16\)"),
    (lambda p, q: p.generate(2, image=images(3)), r"\(1 or 2, 1, 8, 8\).*got \(3, 1, 8, 8\)"),
    (lambda p, q: p.generate(2, image=torch.zeros(2, 1, 8, 8, dtype=torch.long)), "image must be float"),
    (lambda p, q: p.generate(2, cfg_scale=2.0, cfg_target="colour"),
     r"cfg_target must be one of 'both', 'image', 'labels'.*got 'colour'"),
    (lambda p, q: p.generate(2, cfg_target="all"), "cfg_target must be one of"),
    (lambda p, q: q.generate(2, labels=1, cfg_scale=2.0, cfg_target="image"), "this prior has none"),
    (lambda p, q: vqstack.build("prior", "ar", **{**TINY, **CONDITIONED, "num_classes": 0}).generate(
        2, cfg_scale=2.0, cfg_target="labels"), "takes none"),
    (lambda p, q: build(patch_size=None), "image_condition needs patch_size"),
    (lambda p, q: build(grid=[2, 4]), r"grid \[2, 4\] holds 8 tokens, but seq_len=16"),
    (lambda p, q: build(seq_len=8), "seq_len=8 is not a square grid"),
    (lambda p, q: build(image_condition=vqstack.build("condition", "grayscale")), "pass condition.to_config()"),
    (lambda p, q: build(image_condition={"kwargs": {}}), "A condition config is a registry name"),
], ids=["forward-no-condition", "generate-no-condition", "channels", "size", "rows", "int", "cfg-target",
        "cfg-target-unguided", "image-target-without-image", "labels-target-without-labels", "no-patch-size",
        "grid", "not-square", "condition-object", "bad-config"])
def test_errors_are_one_line(call, message):
    prior, plain = build(), vqstack.build("prior", "ar", **TINY)
    with pytest.raises(ValueError, match=message) as err:
        call(prior, plain)
    assert "\n" not in str(err.value)


# --- the recipe's builder, the pipeline's option check, conformance -------------------------------------------------


class NoImagePrior(ARPrior):
    """A prior that reads no image condition (its constructor does not take one)."""

    def __init__(self, vocab_size, seq_len, num_classes=0, dim=32, depth=1, heads=2):
        super().__init__(vocab_size, seq_len, num_classes, dim, depth, heads)


class IgnoresImage(ARPrior):
    """Takes an image condition and then never reads it: the conformance check must notice."""

    def image_condition_embeddings(self, image, n):
        return super().image_condition_embeddings(None, n)


class ImagePriors:
    @vqstack.hookimpl
    def vqstack_register_priors(self, registry):
        registry.register("no-image", NoImagePrior)
        registry.register("ignores-image", IgnoresImage)


@pytest.fixture
def image_priors(fresh_plugins):
    vqstack.register_plugin(ImagePriors(), name="test-image-priors")
    yield
    vqstack.unregister_plugin("test-image-priors")


def test_build_prior_passes_the_condition_or_names_the_prior_that_cannot_take_it(image_priors):
    run = {"vocab_size": 32, "seq_len": 16, "dim": 32, "depth": 1, "heads": 2, "image_condition": GRAY,
           "patch_size": 2, "image_dropout": 0.2}
    assert build_prior("ar", **run).image_condition == GRAY
    with pytest.raises(ValueError, match=r"prior 'no-image' does not take image_condition, which this run sets"):
        build_prior("no-image", **run)
    assert "patch_size" not in prior_arguments("no-image", **{**run, "image_condition": None})


def test_generate_options_refuses_image_for_a_prior_without_it():
    class Plain:
        def generate(self, n, labels=None, cfg_scale=1.0):
            pass

    with pytest.raises(ValueError, match=r"^image= gives the condition image .*Plain.generate\(\) does not take it"):
        generate_options(Plain(), image=images(1))
    assert generate_options(build(), image=images(1))["image"].shape == (1, 1, 8, 8)


def test_the_conformance_check_reads_the_condition(image_priors):
    check_component("prior", "ar")
    with pytest.raises(AssertionError, match="the condition image does not reach the logits"):
        check_component("prior", "ignores-image")
