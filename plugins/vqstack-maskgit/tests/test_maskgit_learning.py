"""A tiny maskgit prior learns a toy distribution on CPU in a few seconds.

Toy data: each image is one token repeated; class c uses the values 2c and 2c + 1. A model that learned it samples
constant sequences of its class's values, and, being bidirectional, fills a hole from the token AFTER it.
"""
import pytest
import torch

import vqstack

CLASSES, SEQ_LEN = 4, 16


def toy_batch(batch: int):
    labels = torch.randint(0, CLASSES, (batch,))
    values = 2 * labels + torch.randint(0, 2, (batch,))
    return values[:, None].expand(-1, SEQ_LEN), labels


@pytest.fixture(scope="module")
def trained():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # this model is tiny: one thread beats two contended ones
    try:
        torch.manual_seed(0)
        prior = vqstack.build("prior", "maskgit", vocab_size=2 * CLASSES, seq_len=SEQ_LEN, num_classes=CLASSES,
                              dim=32, depth=2, heads=2, steps=8)
        optimizer = torch.optim.AdamW(prior.parameters(), lr=3e-3)
        for _ in range(300):
            tokens, labels = toy_batch(64)
            loss = prior(tokens, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        yield prior.eval()
    finally:
        torch.set_num_threads(before)


def class_accuracy(samples: torch.Tensor, labels: torch.Tensor) -> float:
    return ((samples // 2) == labels[:, None]).float().mean().item()


def constant_rows(samples: torch.Tensor) -> float:
    return (samples == samples[:, :1]).all(1).float().mean().item()


def test_maskgit_learns_class_conditional_toy_data(trained):
    labels = torch.arange(CLASSES).repeat(16)
    samples = trained.generate(len(labels), labels=labels, generator=torch.Generator().manual_seed(0))
    assert class_accuracy(samples, labels) > 0.85
    assert constant_rows(samples) > 0.6  # parallel decoding still makes whole images agree with themselves
    with torch.no_grad():
        tokens, labels = toy_batch(256)
        assert trained(tokens, labels=labels).loss < 0.6  # log(8) = 2.08 at the start


def test_maskgit_guided_samples_follow_their_class(trained):
    labels = torch.arange(CLASSES).repeat(8)
    samples = trained.generate(len(labels), labels=labels, cfg_scale=3.0, top_k=4,
                               generator=torch.Generator().manual_seed(1))
    assert class_accuracy(samples, labels) > 0.9


def test_maskgit_inpainting_sees_the_token_after_the_hole(trained):
    # only the LAST token is known: an autoregressive prior could not see it while filling the rest
    values = torch.arange(2 * CLASSES).repeat(4)
    known = torch.full((len(values), SEQ_LEN), -1)
    known[:, -1] = values
    samples = trained.generate(len(values), known=known, generator=torch.Generator().manual_seed(2))
    assert torch.equal(samples[:, -1], values)
    assert (samples[:, :-1] == values[:, None]).float().mean() > 0.7
