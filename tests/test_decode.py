"""Our KV-cached decode step (vqstack/priors/decode.py) against transformers' LlamaModel.forward on the same weights:
the same hidden states position by position, whatever the mix of prefill and single steps, for ids and embeddings,
for grouped-query attention and for bf16 weights. If a transformers release changes Llama's maths, this fails."""
import pytest
import torch
from transformers import LlamaConfig, LlamaModel

from vqstack.priors.decode import LlamaDecoder


def llama(kv_heads: int = 4, seed: int = 0, bias: bool = False) -> LlamaModel:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=50, hidden_size=64, intermediate_size=160, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=64,
                         rope_theta=10000.0, attention_bias=bias, mlp_bias=bias, attn_implementation="sdpa")
    model = LlamaModel(config).eval()
    for p in model.parameters():  # transformers' init leaves some weights at exactly 0/1: make every one matter
        torch.nn.init.normal_(p, std=0.1)
    return model


def reference(model: LlamaModel, inputs: torch.Tensor) -> torch.Tensor:
    key = "inputs_embeds" if inputs.is_floating_point() else "input_ids"
    with torch.no_grad():
        return model(**{key: inputs}, use_cache=False).last_hidden_state


def decode_in_pieces(model: LlamaModel, inputs: torch.Tensor, pieces: list[int]) -> torch.Tensor:
    decoder, outputs, start = LlamaDecoder(model, max_len=inputs.shape[1]), [], 0
    with torch.no_grad():
        for length in pieces:
            outputs.append(decoder(inputs[:, start:start + length]))
            start += length
    assert start == inputs.shape[1] and decoder.length == start
    return torch.cat(outputs, 1)


@pytest.mark.parametrize("pieces", [[20], [1] * 20, [7] + [1] * 13, [5, 3, 1, 11]])
def test_decode_matches_llama_forward_for_any_prefill_and_steps(pieces):
    model = llama()
    ids = torch.randint(0, 50, (3, 20), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(decode_in_pieces(model, ids, pieces), reference(model, ids), atol=1e-5, rtol=1e-4)


def test_decode_takes_embeddings_then_ids():
    model = llama()
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(2))
    embeds = model.embed_tokens(ids).detach()
    decoder = LlamaDecoder(model, max_len=12)
    with torch.no_grad():
        hidden = torch.cat([decoder(embeds[:, :6])] + [decoder(ids[:, t:t + 1]) for t in range(6, 12)], 1)
    torch.testing.assert_close(hidden, reference(model, ids), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("options", [{"kv_heads": 2}, {"bias": True}])
def test_grouped_query_attention_and_biases(options):
    model = llama(**options)
    ids = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(decode_in_pieces(model, ids, [4] + [1] * 6), reference(model, ids),
                               atol=1e-5, rtol=1e-4)


def test_bfloat16_weights_stay_close():
    model = llama().to(torch.bfloat16)
    ids = torch.randint(0, 50, (2, 10), generator=torch.Generator().manual_seed(4))
    ours, theirs = decode_in_pieces(model, ids, [3] + [1] * 7).float(), reference(model, ids).float()
    assert ours.dtype == theirs.dtype == torch.float32
    assert (ours - theirs).abs().max() < 0.05 * theirs.abs().max()  # bf16 keeps ~3 significant digits per op


def test_a_full_cache_says_so():
    decoder = LlamaDecoder(llama(), max_len=4)
    with torch.no_grad():
        decoder(torch.zeros(1, 3, dtype=torch.long))
        with pytest.raises(RuntimeError, match="KV cache full: 5 positions > max_len 4"):
            decoder(torch.zeros(1, 2, dtype=torch.long))
