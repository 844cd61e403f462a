"""The autoregressive prior (stage 2): conditioning, sampling rules, caching, saving. Tiny models, a few seconds."""
import pytest
import torch

import vqstack
import vqstack.priors
from vqstack.priors import ARPrior, process_logits
from vqstack.priors.sampling import sample_tokens
from vqstack.priors.steppers import KVCacheStepper

TINY = ARPrior.example_kwargs()  # vocab 32, seq_len 16, dim 32, depth 2, heads 2, 3 classes
ATTRIBUTES = {"hair": ["blue", "red", "blonde"], "eyes": ["red", "green"]}


def build(**overrides):
    torch.manual_seed(0)
    return vqstack.build("prior", "ar", **{**TINY, **overrides})


def random_head(prior, std=1.0):
    """The head starts at zero (uniform predictions); a random one makes untrained samples diverse."""
    torch.manual_seed(1)
    torch.nn.init.normal_(prior.head.weight, std=std)
    return prior


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def memorise(prior, labels, sequences, steps):
    """Train ``prior`` to reproduce ``sequences`` (one per label); returns (first loss, last loss)."""
    optimizer = torch.optim.AdamW(prior.parameters(), lr=1e-2, weight_decay=0.0)
    tokens, batch_labels = sequences.repeat(4, 1), labels * 4
    prior.train()
    losses = []
    for _ in range(steps):
        loss = prior(tokens, labels=batch_labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


@pytest.fixture(scope="module")
def class_prior():
    """Class 0 and class 2 memorised, each its own sequence (cond_dropout on, so the null condition learns too)."""
    prior = build(class_names=["cat", "dog", "fox"])
    torch.manual_seed(0)
    sequences = torch.randint(0, 32, (2, 16))
    first, last = memorise(prior, [0, "fox"], sequences, steps=120)
    return prior.eval(), sequences, first, last


# --- building and training ---------------------------------------------------------------------------------------


def test_builds_from_the_registry_with_sizes_only():
    assert "ar" in vqstack.components("prior")
    prior = vqstack.build("prior", "ar", vocab_size=1024, seq_len=256)
    assert (prior.vocab_size, prior.seq_len, prior.num_classes, prior.prefix_len) == (1024, 256, 0, 1)
    assert prior.config.hidden_size == 512 and prior.config.num_hidden_layers == 8
    assert prior.backbone.embed_tokens.num_embeddings == 1024 + 1  # image tokens + the start token


def test_training_forward_returns_loss_and_logits():
    prior = build()
    tokens = torch.randint(0, 32, (4, 4, 4))  # a (B, h, w) grid is flattened in raster order
    out = prior(tokens, labels=[0, 1, 2, None])
    assert isinstance(out, vqstack.priors.PriorOutput)
    assert out.logits.shape == (4, 16, 32) and out.loss.dim() == 0
    assert out.loss.item() == pytest.approx(torch.log(torch.tensor(32.0)).item(), abs=1e-4)  # zero head: uniform
    out.loss.backward()
    assert all(p.grad is not None for p in prior.head.parameters())


def test_bad_tokens_fail_clearly():
    prior = build()
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        prior(torch.full((2, 16), 32))
    with pytest.raises(ValueError, match="seq_len=16"):
        prior(torch.zeros(2, 15, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        prior(torch.zeros(2, 16))


def test_loss_falls_and_each_class_reproduces_its_sequence(class_prior):
    prior, sequences, first, last = class_prior
    assert last < 0.1 * first
    for label, sequence in ((0, sequences[0]), ("cat", sequences[0]), ("fox", sequences[1]), (2, sequences[1])):
        samples = prior.generate(3, labels=label, temperature=0)
        assert torch.equal(samples, sequence.expand(3, -1)), label
    # guidance keeps the memorised class, and sampling (not greedy) finds it too
    assert torch.equal(prior.generate(2, labels="fox", cfg_scale=3.0, generator=seeded()), sequences[1].expand(2, -1))


def test_training_logits_are_next_token_scores_aligned_with_the_tokens():
    """logits[:, i] scores tokens[:, i] from the condition and tokens[:, :i] only (inpaint ranking and NLL rely on
    it), and the training forward's empty pass-through cache changes nothing in the backbone's attention."""
    prior = random_head(build()).eval()
    tokens = torch.randint(0, 32, (2, 16))
    changed = tokens.clone()
    changed[:, 9] = (changed[:, 9] + 1) % 32
    with torch.no_grad():
        logits, after = prior(tokens, labels=[0, 1]).logits, prior(changed, labels=[0, 1]).logits
        # the same logits as the backbone run on [prefix; tokens[:-1]] without any cache, position for position
        ids = torch.cat([prior.condition_tokens([0, 1], 2), tokens[:, :-1]], 1)
        plain = prior.head(prior.backbone(input_ids=ids, use_cache=False).last_hidden_state)
    torch.testing.assert_close(logits, plain, rtol=0, atol=0)
    assert torch.equal(logits[:, :10], after[:, :10])  # positions 0..9 do not see token 9
    assert not torch.allclose(logits[:, 10], after[:, 10])  # position 10 does


def test_the_null_prefix_is_the_unconditional_half_of_guidance():
    prior = build(num_classes=0, attributes=ATTRIBUTES)
    assert prior.conditions.num_tokens == 3 + 4  # per group its values and a null: eyes 2 + 1, hair 3 + 1
    null = prior.condition_tokens(None, 3)
    assert torch.equal(null, prior.null_prefix.expand(3, -1)) and torch.equal(null[0], torch.tensor([34, 38]))
    assert prior.backbone.embed_tokens.num_embeddings == 32 + prior.conditions.num_tokens


def test_attribute_conditioning_works_with_any_subset_of_tags():
    # no per-group dropout: the two sequences are memorised under exactly these tags (and the null one)
    prior = build(num_classes=0, attributes=ATTRIBUTES, group_dropout=0.0)
    assert prior.prefix_len == 2  # one token per attribute group
    torch.manual_seed(0)
    sequences = torch.randint(0, 32, (2, 16))
    memorise(prior, ["blue hair", "red_hair, green eyes"], sequences, steps=120)
    prior.eval()
    assert torch.equal(prior.generate(1, labels="blue hair", temperature=0)[0], sequences[0])
    assert torch.equal(prior.generate(1, labels={"eyes": "green", "hair": "red"}, temperature=0)[0], sequences[1])


def test_cond_dropout_replaces_conditions_by_null_only_in_training():
    prior = build(cond_dropout=0.5)
    seen = []
    prior.backbone.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_ids"][:, 0].clone()),
                                             with_kwargs=True)
    tokens = torch.randint(0, 32, (64, 16))
    prior.train()(tokens, labels=1)
    prior.eval()(tokens, labels=1)
    class_one, null = 32 + 1, 32 + 3
    assert set(seen[0].tolist()) == {class_one, null}
    assert set(seen[1].tolist()) == {class_one}


def test_training_batches_hold_every_mix_of_known_and_null_attribute_groups():
    """"blue hair" alone (eyes null) must be a condition the prior has trained on, not only full or empty ones."""
    prior = build(num_classes=0, attributes=ATTRIBUTES, cond_dropout=0.1, group_dropout=0.2)
    seen = []
    prior.backbone.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_ids"][:, :2].clone()),
                                             with_kwargs=True)
    full = prior.condition_tokens("blue hair,green eyes", 1)[0]
    null = prior.null_prefix
    tokens = torch.randint(0, 32, (256, 16))
    prior.train()(tokens, labels="blue hair,green eyes")
    known = (seen[0] == full).tolist()  # per row: (eyes known, hair known); groups sorted by name
    assert all(((row == full) | (row == null)).all() for row in seen[0])
    assert {tuple(k) for k in known} == {(True, True), (True, False), (False, True), (False, False)}
    # per group: dropped alone (0.2) or with the whole prefix (0.1) -> known with probability 0.9 * 0.8 = 0.72
    assert 0.6 < seen[0].eq(full).float().mean() < 0.85
    prior.eval()(tokens, labels="blue hair,green eyes")
    assert (seen[1] == full).all()
    with pytest.raises(ValueError, match="group_dropout"):
        build(num_classes=0, attributes=ATTRIBUTES, group_dropout=1.0)


# --- labels --------------------------------------------------------------------------------------------------------


def test_labels_as_ids_names_tensors_and_broadcast():
    prior = build(class_names=["cat", "dog", "fox"])
    expected = torch.tensor([[32], [33], [34], [35]])  # 32 + class id; 35 = the null token
    assert torch.equal(prior.condition_tokens([0, "Dog", torch.tensor(2), None], 4), expected)
    assert torch.equal(prior.condition_tokens(torch.tensor([0, 1, 2, -1]), 4), expected)
    assert torch.equal(prior.condition_tokens("fox", 3), torch.full((3, 1), 34))
    assert torch.equal(prior.condition_tokens([1], 2), torch.full((2, 1), 33))
    with pytest.raises(ValueError, match="2 labels for 3 samples"):
        prior.condition_tokens([0, 1], 3)
    with pytest.raises(ValueError, match=r"out of range.*0\.\.2"):
        prior.condition_tokens(3, 1)


def test_unknown_labels_list_the_known_ones_and_suggest():
    prior = build(class_names=["cat", "dog", "fox"])
    with pytest.raises(ValueError, match=r"'cat', 'dog', 'fox'.*Did you mean 'dog'"):
        prior.generate(1, labels="dgo")
    tagged = build(num_classes=0, attributes=ATTRIBUTES)
    with pytest.raises(ValueError, match=r"'blue hair'.*Did you mean 'blonde hair'"):
        tagged.condition_tokens("blond hair", 1)
    with pytest.raises(ValueError, match="ambiguous.*'red eyes', 'red hair'"):
        tagged.condition_tokens("red", 1)
    with pytest.raises(ValueError, match="two values for 'hair'"):
        tagged.condition_tokens("blue hair,red hair", 1)
    with pytest.raises(ValueError, match="unconditional"):
        build(num_classes=0).generate(1, labels=3)
    with pytest.raises(ValueError, match="needs a conditional prior"):
        build(num_classes=0).generate(1, cfg_scale=2.0)


def test_tag_strings_in_any_order_subset_and_spelling():
    prior = build(num_classes=0, attributes=ATTRIBUTES)
    # groups in name order: eyes (red 0, green 1, null 2), then hair (blue 3, red 4, blonde 5, null 6); + 32
    both = torch.tensor([33, 37])
    for label in ("green eyes,blonde hair", "blonde hair, green eyes", "Blonde_Hair,green_eyes",
                  "hair=blonde,eyes:green", {"hair": "blonde", "eyes": "green"}, "blonde,green"):
        assert torch.equal(prior.condition_tokens(label, 1)[0], both), label
    assert torch.equal(prior.condition_tokens("blue hair", 1)[0], torch.tensor([34, 35]))
    assert torch.equal(prior.condition_tokens(None, 1)[0], torch.tensor([34, 38]))  # untagged: all null
    assert torch.equal(prior.condition_tokens(["", "red eyes"], 2), torch.tensor([[34, 38], [32, 38]]))


# --- sampling ------------------------------------------------------------------------------------------------------


def test_generate_shapes_range_and_seed():
    for kwargs in ({"num_classes": 0}, {}, {"num_classes": 0, "attributes": ATTRIBUTES}):
        prior = random_head(build(**kwargs))
        samples = prior.generate(5, generator=seeded(0))
        assert samples.shape == (5, 16) and samples.dtype == torch.long
        assert samples.min() >= 0 and samples.max() < 32
        assert torch.equal(samples, prior.generate(5, generator=seeded(0)))
        assert not torch.equal(samples, prior.generate(5, generator=seeded(1)))


def test_a_bfloat16_prior_samples():
    prior = random_head(build()).to(torch.bfloat16)
    samples = prior.generate(2, labels=1, cfg_scale=2.0, top_p=0.9, generator=seeded())
    assert samples.dtype == torch.long and samples.min() >= 0 and samples.max() < 32


def test_top_k_1_is_greedy():
    prior = random_head(build())
    greedy = prior.generate(4, labels=[0, 1, 2, None], temperature=0)
    assert torch.equal(prior.generate(4, labels=[0, 1, 2, None], top_k=1, generator=seeded(3)), greedy)
    guided = prior.generate(4, labels=1, cfg_scale=2.0, temperature=0)
    assert torch.equal(prior.generate(4, labels=1, cfg_scale=2.0, top_k=1, generator=seeded(3)), guided)


def test_cfg_feeds_the_same_token_to_both_halves():
    prior = random_head(build())
    calls = []
    prior.backbone.embed_tokens.register_forward_pre_hook(lambda m, args: calls.append(args[0].clone()))
    samples = prior.generate(3, labels=[0, 1, 2], cfg_scale=4.0, top_k=8, generator=seeded())
    prefill, *steps = calls
    assert torch.equal(prefill[:, 0], torch.tensor([32, 33, 34, 35, 35, 35]))  # [conditional; null] halves
    assert len(steps) == 15 and all(ids.shape == (6, 1) for ids in steps)
    fed = torch.cat(steps, 1)
    assert torch.equal(fed[:3], fed[3:]), "the two halves of an image were fed different tokens"
    assert torch.equal(fed[:3], samples[:, :-1])


def test_guidance_changes_samples():
    prior = random_head(build(), std=0.3)
    torch.nn.init.normal_(prior.backbone.embed_tokens.weight[32:], std=1.0)  # conditions that matter
    plain = prior.generate(8, labels=1, generator=seeded())
    assert not torch.equal(plain, prior.generate(8, labels=1, cfg_scale=5.0, generator=seeded()))


def test_cfg_scale_1_is_the_conditional_distribution():
    torch.manual_seed(0)
    cond, uncond = torch.randn(4, 32), torch.randn(4, 32)
    guided = process_logits(torch.cat([cond, uncond]), 32, cfg_scale=1.0, top_p=0.9)
    torch.testing.assert_close(guided.softmax(-1), process_logits(cond, 32, top_p=0.9).softmax(-1))
    # and through the model: the guided batch at scale 1 decodes exactly what the unguided one does
    prior = random_head(build())
    prefix = torch.cat([prior.condition_tokens([0, 2], 2), prior.null_prefix.expand(2, -1)])
    stepper = KVCacheStepper(prior.backbone, prior.head, prior.prefix_len + prior.seq_len)
    with torch.inference_mode():
        both = sample_tokens(stepper, prefix, prior.seq_len, prior.vocab_size, cfg_scale=1.0, temperature=0)
    assert torch.equal(both, prior.generate(2, labels=[0, 2], temperature=0))


def test_no_nan_with_guidance_and_filtering():
    torch.manual_seed(0)
    # a head wider than the image vocabulary whose extra (condition) columns are already -inf in both halves:
    # masking after combining keeps them -inf; combining masked logits would give -inf - -inf = NaN
    logits = torch.randn(6, 40)
    logits[:, 32:] = float("-inf")
    for top_k, top_p in ((5, None), (None, 0.8), (3, 0.5), (1, 0.01)):
        probs = process_logits(logits, 32, cfg_scale=4.0, top_k=top_k, top_p=top_p).softmax(-1)
        assert not probs.isnan().any() and probs[:, 32:].sum() == 0
        torch.testing.assert_close(probs.sum(-1), torch.ones(3))
        assert (probs > 0).sum(-1).max() <= (top_k or 32)
    prior = random_head(build())
    samples = prior.generate(4, labels=[0, 1, 2, 0], cfg_scale=7.5, top_k=5, top_p=0.9, temperature=0.7,
                             generator=seeded())
    assert samples.min() >= 0 and samples.max() < 32


def test_known_tokens_are_kept():
    prior = random_head(build())
    known = torch.full((2, 16), -1)
    known[:, :5] = torch.tensor([3, 1, 4, 1, 5])  # a known top: fed in one prefill
    known[0, 9], known[1, 12] = 26, 7             # and scattered known tokens
    samples = prior.generate(2, labels=0, cfg_scale=2.0, known=known, generator=seeded())
    assert torch.equal(samples[known >= 0], known[known >= 0])
    grid = torch.randint(0, 32, (1, 4, 4))
    assert torch.equal(prior.generate(3, known=grid), grid.view(1, 16).expand(3, -1))  # all known, broadcast
    with pytest.raises(ValueError, match="-1 \\(unknown\\)"):
        prior.generate(1, known=torch.full((1, 16), 40))


def test_cached_and_uncached_sampling_agree():
    prior = random_head(build(), std=0.5)
    labels = [0, 1, 2]
    reference = prior.generate(3, labels=labels, temperature=0, use_cache=False)
    for cache in ("preallocated", "dynamic", "static"):
        assert torch.equal(prior.generate(3, labels=labels, temperature=0, cache=cache), reference), cache
    guided = prior.generate(3, labels=labels, cfg_scale=3.0, top_k=4, generator=seeded())
    assert torch.equal(prior.generate(3, labels=labels, cfg_scale=3.0, top_k=4, generator=seeded(), use_cache=False),
                       guided)


def test_generate_restores_training_mode():
    prior = build().train()
    prior.generate(1)
    assert prior.training


# --- saving --------------------------------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    prior = random_head(build(num_classes=0, attributes=ATTRIBUTES, dim=48, heads=4)).eval()
    vqstack.save_component(prior, tmp_path)
    loaded = vqstack.load_component(tmp_path).eval()
    tokens = torch.randint(0, 32, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens, labels="red eyes").logits, prior(tokens, labels="red eyes").logits,
                                   rtol=0, atol=0)
    assert torch.equal(loaded.generate(2, labels="blonde hair", cfg_scale=2.0, generator=seeded()),
                       prior.generate(2, labels="blonde hair", cfg_scale=2.0, generator=seeded()))
