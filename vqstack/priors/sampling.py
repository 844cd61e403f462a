"""Sampling from an autoregressive prior: logits processing and the cached decoding loop.

Per step, in this order (the order matters):
    1. classifier-free guidance: combine the [conditional; unconditional] halves, uncond + s * (cond - uncond);
    2. mask invalid tokens with -inf (after combining: -inf - -inf would be NaN);
    3. temperature, top-k, top-p;
    4. sample ONE token per image and feed it to both halves, so they describe the same partial image.

The loop calls a stepper (steppers.py: the model one token at a time, with its KV cache or without) and imports
no transformers itself, so a plugin prior may use it with any model.
"""
from __future__ import annotations

import inspect

import torch

# --- logits processing ---------------------------------------------------------------------------------------------


def cfg_combine(logits: torch.Tensor, scale: float) -> torch.Tensor:
    """(2n, V) logits of [conditional; unconditional] rows -> (n, V) guided logits."""
    cond, uncond = logits.chunk(2)
    return uncond + scale * (cond - uncond)


def mask_invalid(logits: torch.Tensor, num_valid: int) -> torch.Tensor:
    """-inf for every token id >= num_valid (condition tokens, padding), so they can never be sampled."""
    if logits.shape[-1] > num_valid:
        logits = logits.clone()
        logits[..., num_valid:] = float("-inf")
    return logits


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits per row (ties with the k-th included), -inf elsewhere."""
    if k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus: keep the smallest set of likeliest tokens whose probability reaches p (always at least one)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    # drop a token when the tokens before it already hold p of the mass
    drop_sorted = (probs.cumsum(-1) - probs) >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def check_sampling_options(temperature: float, top_k: int | None, top_p: float | None, cfg_scale: float) -> None:
    """Refuse bad sampling options in one line each, before any work: a prior's ``generate`` calls it first.

    temperature  >= 0 (0 = greedy)
    top_k        None or an int >= 1
    top_p        None or in (0, 1]
    cfg_scale    a number, not NaN (1 = no guidance; whether the prior is conditional is the prior's to check)
    """
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}.")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or an int >= 1, got {top_k!r}.")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must be None or in (0, 1], got {top_p!r}.")
    if not isinstance(cfg_scale, (int, float)) or cfg_scale != cfg_scale:
        raise ValueError(f"cfg_scale must be a number (1 = no guidance), got {cfg_scale!r}.")


# generate()'s optional arguments (beyond the contract's): why a caller passes each, said when a prior lacks it
OPTIONAL_GENERATE_ARGUMENTS = {
    "known": "known= keeps an image's tokens (-1 where to sample), which inpainting and outpainting need; "
             "{prior}.generate() does not take it: use a prior that does (ar, maskgit).",
    "steps": "steps={value} sets the decoding passes of a parallel-decoding prior (maskgit); this prior ({prior}) "
             "samples one token per pass: drop steps.",
    "image": "image= gives the condition image of image-to-image translation; {prior}.generate() does not take it: "
             "use a prior trained with an image condition (ar, maskgit).",
    "cfg_target": "cfg_target={value!r} picks which condition guidance drops (labels, image or both); "
                  "{prior}.generate() does not take it: drop cfg_target.",
}


def takes_argument(function, name: str) -> bool:
    """Whether ``function`` takes the keyword argument ``name`` (a ``**kwargs`` takes any)."""
    parameters = inspect.signature(function).parameters
    return name in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def generate_options(prior, **options) -> dict:
    """The optional ``generate`` arguments a caller sets (None = not set), for ``prior.generate(..., **options)``;
    one that ``prior.generate`` does not take is refused in one line, not left to a raw TypeError mid-way.

        generate_options(prior, known=known, steps=None)   # -> {"known": known}, or ValueError"""
    chosen = {name: value for name, value in options.items() if value is not None}
    for name, value in chosen.items():
        if not takes_argument(prior.generate, name):
            message = OPTIONAL_GENERATE_ARGUMENTS.get(name, "{prior}.generate() takes no " + name + "=.")
            raise ValueError(message.format(prior=type(prior).__name__, value=value))
    return chosen


def process_logits(logits: torch.Tensor, num_valid: int, cfg_scale: float | None = None, temperature: float = 1.0,
                   top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Raw next-token logits (B, V') -> the float32 logits to sample from, (n, V').

    With ``cfg_scale`` the rows are [conditional; unconditional] halves (B = 2n) and are combined first."""
    logits = logits.float()  # a bf16 model still samples from fp32 probabilities
    if cfg_scale is not None:
        logits = cfg_combine(logits, cfg_scale)
    logits = mask_invalid(logits, num_valid)
    if temperature > 0 and temperature != 1:
        logits = logits / temperature
    if top_k is not None:
        logits = filter_top_k(logits, top_k)
    if top_p is not None:
        logits = filter_top_p(logits, top_p)
    return logits


def sample_from_logits(logits: torch.Tensor, generator: torch.Generator | None = None,
                       greedy: bool = False) -> torch.Tensor:
    """One token per row of (n, V) processed logits -> long (n,)."""
    if greedy:
        return logits.argmax(-1)
    probs = logits.softmax(-1)
    # Exponential race: argmax(p / E) with E = -log(U) ~ Exp(1) is an exact categorical sample (and 4x cheaper on
    # CPU than exponential_ or multinomial). U < 1, so E > 0: a filtered-out token's p = 0 never wins. The noise is
    # drawn on the generator's device, so one CPU generator gives the same tokens whatever device the model is on.
    device = generator.device if generator is not None else probs.device
    noise = torch.rand(probs.shape, device=device, generator=generator).log_().neg_().to(probs.device)
    return (probs / noise).argmax(-1)


# --- the loop ----------------------------------------------------------------------------------------------------


def leading_known(known: torch.Tensor | None) -> int:
    """How many first positions are known for every sample (they are fed in one prefill, not sampled)."""
    if known is None:
        return 0
    unknown = (known < 0).any(0)
    return int(unknown.float().argmax()) if unknown.any() else known.shape[1]


def sample_tokens(step, prefix: torch.Tensor, seq_len: int, num_valid: int, cfg_scale: float | None = None,
                  temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                  generator: torch.Generator | None = None, known: torch.Tensor | None = None,
                  condition: torch.Tensor | None = None) -> torch.Tensor:
    """Sample ``seq_len`` tokens after ``prefix`` (B, P) condition tokens -> long (n, seq_len).

    ``step(ids)`` appends ids (B, T) and returns next-token logits (B, V'). With ``cfg_scale`` the prefix rows are
    [conditional; unconditional] halves (B = 2n): their logits are combined and each sampled token goes to both.
    ``known`` (n, seq_len), -1 where unknown, forces its tokens. ``condition`` (B, C, dim), the embeddings of an
    image condition read as a prefix, follows the prefix ids: the prefill is then [step.embed(prefix); condition;
    step.embed(known leading tokens)] as embeddings (``step`` takes (B, T, dim) too), and the steps are ids."""
    guided = cfg_scale is not None
    n = prefix.shape[0] // 2 if guided else prefix.shape[0]
    out = torch.empty(n, seq_len, dtype=torch.long, device=prefix.device)
    start = leading_known(known)
    lead = None
    if start:  # known leading tokens join the prefill: one forward for all of them
        out[:, :start] = known[:, :start]
        lead = known[:, :start].repeat(2, 1) if guided else known[:, :start]
    if start == seq_len:
        return out
    if condition is None:
        prefill = prefix if lead is None else torch.cat([prefix, lead], 1)
    else:
        parts = [step.embed(prefix), condition] + ([] if lead is None else [step.embed(lead)])
        prefill = torch.cat(parts, 1)
    logits = step(prefill)
    for t in range(start, seq_len):
        token = sample_from_logits(process_logits(logits, num_valid, cfg_scale, temperature, top_k, top_p),
                                   generator, greedy=temperature == 0)
        if known is not None:
            token = torch.where(known[:, t] >= 0, known[:, t], token)
        out[:, t] = token
        if t + 1 < seq_len:
            # the SAME token for the conditional and the unconditional half of each image
            logits = step((torch.cat([token, token]) if guided else token)[:, None])
    return out
