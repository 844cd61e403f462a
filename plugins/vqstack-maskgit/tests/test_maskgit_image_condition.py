"""The maskgit prior reading an image condition: each condition cell added to its image position's input (always
visible), its dropout, guidance on the image, the labels or both, decoding, saving, errors. Tiny models."""
import pytest
import torch

import vqstack
from vqstack.api import check_component, load_component, save_component

TINY = {"vocab_size": 32, "seq_len": 16, "num_classes": 3, "dim": 32, "depth": 2, "heads": 2, "steps": 4}
CONDITIONED = {"image_condition": {"name": "grayscale", "kwargs": {}}, "patch_size": 2}  # images (1, 8, 8)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def build(conditioned=True, **kwargs):
    torch.manual_seed(0)
    prior = vqstack.build("prior", "maskgit", **{**TINY, **(CONDITIONED if conditioned else {}), **kwargs})
    for p in prior.head.parameters():  # a zero head predicts uniformly: give the tests some structure to see
        torch.nn.init.normal_(p, std=0.5)
    return prior.eval()


def images(n, seed=0, channels=1, size=(8, 8)):
    return torch.rand(n, channels, *size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def record_inputs(prior):
    """Every (input_ids, inputs_embeds) the backbone receives, in order; returns (list, hook handle)."""
    seen = []
    handle = prior.backbone.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((kwargs.get("input_ids"), kwargs.get("inputs_embeds"))),
        with_kwargs=True)
    return seen, handle


def test_maskgit_with_an_image_condition_conforms():
    check_component("prior", "maskgit", **CONDITIONED)


def test_the_condition_is_added_to_every_image_position_masked_or_not():
    prior = build()
    tokens = torch.randint(0, 32, (2, 16))
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, ::3] = True
    seen, handle = record_inputs(prior)
    with torch.no_grad():
        prior(tokens, labels=[0, 2], mask=mask, image=images(2))
        words = prior.backbone.embeddings.word_embeddings
        ids = torch.cat([prior.condition_tokens([0, 2], 2), tokens.masked_fill(mask, prior.mask_id)], 1)
        expected = words(ids)
        expected[:, prior.prefix_len:] += prior.image_embed(images(2))
    handle.remove()
    (input_ids, embeds), = seen
    assert input_ids is None and embeds.shape == (2, 1 + 16, 32)  # no extra positions: the same sequence length
    torch.testing.assert_close(embeds, expected, rtol=0, atol=0)


def test_without_an_image_condition_maskgit_is_the_one_it_was():
    before = build(conditioned=False)
    after = build(conditioned=False, image_condition=None, image_dropout=0.3, patch_size=None)
    assert after.image_embed is None
    assert all(torch.equal(value, after.state_dict()[key]) for key, value in before.state_dict().items())
    assert before.state_dict().keys() == after.state_dict().keys()
    tokens = torch.randint(0, 32, (3, 16))
    seen, handle = record_inputs(after)
    torch.manual_seed(2)
    logits = after.train()(tokens, labels=[0, 1, None]).logits
    handle.remove()
    assert seen[0][1] is None  # input_ids, as before
    torch.manual_seed(2)
    torch.testing.assert_close(before.train()(tokens, labels=[0, 1, None]).logits, logits, rtol=0, atol=0)
    before.eval(), after.eval()
    for options in ({}, {"labels": 1, "cfg_scale": 3.0, "top_k": 5}):
        assert torch.equal(before.generate(3, generator=seeded(), **options),
                           after.generate(3, generator=seeded(), **options)), options


def test_loss_is_finite_and_the_condition_changes_the_logits():
    prior = build().train()
    tokens = torch.randint(0, 32, (2, 16))
    mask = torch.ones(2, 16, dtype=torch.bool)
    out = prior(tokens, labels=[0, 1], mask=mask, image=images(2))
    assert torch.isfinite(out.loss) and out.logits.shape == (2, 16, 32)
    out.loss.backward()
    assert prior.image_embed.patchify.weight.grad.abs().sum() > 0
    prior.eval()
    with torch.no_grad():
        one, other, null = (prior(tokens, labels=[0, 1], mask=mask, image=x).logits
                            for x in (images(2), images(2, 1), None))
    assert (one - other).abs().amax(-1).min() > 0 and (one - null).abs().amax(-1).min() > 0


def test_image_dropout_replaces_the_condition_by_null_in_training_only():
    prior = build(image_dropout=0.5)
    seen, handle = record_inputs(prior)
    tokens = torch.randint(0, 32, (64, 16))
    mask = torch.ones(64, 16, dtype=torch.bool)  # every image input is [MASK]: the rest is the condition
    torch.manual_seed(0)
    prior.train()(tokens, mask=mask, image=images(1))
    with torch.no_grad():
        prior.eval()(tokens, mask=mask, image=images(1))
        masked = prior.backbone.embeddings.word_embeddings.weight[prior.mask_id]
        condition, null = prior.image_embed(images(1)), prior.image_embed.null
    handle.remove()
    for (_, embeds), training in zip(seen, (True, False)):
        added = embeds[:, 1:] - masked
        is_null = (added - null).abs().amax((1, 2)) < 1e-6
        is_image = (added - condition).abs().amax((1, 2)) < 1e-6
        assert torch.equal(is_null, ~is_image)  # a whole condition is dropped, or none of it
        assert set(is_null.tolist()) == ({True, False} if training else {False})


def test_generate_with_an_image_is_seeded_and_follows_the_image():
    prior = build(choice_temperature=0.0)
    first = prior.generate(3, labels=1, image=images(3), generator=seeded())
    assert first.shape == (3, 16) and first.min() >= 0 and first.max() < 32
    assert torch.equal(first, prior.generate(3, labels=1, image=images(3), generator=seeded()))
    greedy = prior.generate(2, image=images(2), temperature=0)
    assert not torch.equal(greedy[0], greedy[1])
    assert torch.equal(prior.generate(2, image=images(2)[1], temperature=0), greedy[1].expand(2, -1))


@pytest.mark.parametrize("target, keeps_labels, keeps_image", [("both", False, False), ("image", True, False),
                                                               ("labels", False, True)])
def test_cfg_target_says_what_the_unconditional_half_drops(target, keeps_labels, keeps_image):
    prior = build()
    seen, handle = record_inputs(prior)
    out = prior.generate(2, labels=[0, 2], image=images(2), cfg_scale=3.0, cfg_target=target, generator=seeded())
    handle.remove()
    assert len(seen) == TINY["steps"] and out.min() >= 0 and out.max() < 32
    words = prior.backbone.embeddings.word_embeddings
    condition = prior.image_embed(images(2))
    for _, embeds in seen:
        cond, uncond = embeds.chunk(2)
        assert torch.equal(cond[:, 0], words.weight[[32, 34]])
        assert torch.equal(uncond[:, 0], words.weight[[32, 34]] if keeps_labels else words.weight[[35, 35]])
        image_words = cond[:, 1:] - condition  # the same partial image in both halves
        added = uncond[:, 1:] - image_words
        torch.testing.assert_close(added, condition if keeps_image else prior.image_embed.null.expand(2, 16, -1))


def test_known_tokens_are_kept_with_an_image_and_guidance():
    prior = build()
    known = torch.full((2, 16), -1)
    known[:, ::3] = torch.randint(0, 32, (2, 6))
    for options in ({}, {"cfg_scale": 2.0, "cfg_target": "image"}, {"cfg_scale": 2.0, "cfg_target": "labels"}):
        out = prior.generate(2, labels=1, image=images(2), known=known, generator=seeded(), **options)
        assert torch.equal(out[known >= 0], known[known >= 0]), options


def test_two_condition_images_learn_two_sequences():
    prior = build(num_classes=0, image_dropout=0.0, choice_temperature=0.0)
    for p in prior.head.parameters():
        torch.nn.init.zeros_(p)
    torch.manual_seed(0)
    sequences = torch.randint(0, 32, (2, 16))
    conditions = torch.stack([torch.full((1, 8, 8), -1.0), torch.full((1, 8, 8), 1.0)])
    conditions[1, :, :4] = -1
    optimizer = torch.optim.Adam(prior.parameters(), lr=1e-2)
    prior.train()
    for _ in range(50):
        loss = prior(sequences.repeat(4, 1), image=conditions.repeat(4, 1, 1, 1)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    prior.eval()
    assert torch.equal(prior.generate(2, image=conditions, temperature=0), sequences)


def test_maskgit_save_load_round_trip_keeps_the_condition(tmp_path):
    prior = build(image_condition="lineart", image_dropout=0.2)
    save_component(prior, tmp_path / "prior")
    loaded = load_component(tmp_path / "prior", kind="prior").eval()
    assert loaded.image_condition == prior.image_condition == vqstack.build("condition", "lineart").to_config()
    tokens = torch.randint(0, 32, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens, image=images(2)).logits, prior(tokens, image=images(2)).logits,
                                   rtol=0, atol=0)
    assert torch.equal(loaded.generate(2, labels=1, image=images(2), cfg_scale=2.0, generator=seeded()),
                       prior.generate(2, labels=1, image=images(2), cfg_scale=2.0, generator=seeded()))
    with pytest.raises(ValueError, match="trained for condition lineart"):
        loaded.check_image_condition("grayscale")


@pytest.mark.parametrize("call, message", [
    (lambda p, q: q.generate(2, image=images(2)), "built without an image condition"),
    (lambda p, q: q(torch.zeros(2, 16, dtype=torch.long), image=images(2)), "built without an image condition"),
    (lambda p, q: p.generate(2, image=images(2, channels=3)), r"\(1 or 2, 1, 8, 8\).*got \(2, 3, 8, 8\)"),
    (lambda p, q: p(torch.zeros(2, 16, dtype=torch.long), image=images(2, size=(4, 4))), r"got \(2, 1, 4, 4\)"),
    (lambda p, q: p.generate(2, cfg_scale=2.0, cfg_target="text"), "cfg_target must be one of 'both', 'image'"),
    (lambda p, q: q.generate(2, labels=1, cfg_scale=2.0, cfg_target="image"), "this prior has none"),
], ids=["generate-no-condition", "forward-no-condition", "channels", "size", "cfg-target", "image-target"])
def test_maskgit_image_errors_are_one_line(call, message):
    with pytest.raises(ValueError, match=message) as err:
        call(build(), build(conditioned=False))
    assert "\n" not in str(err.value)
