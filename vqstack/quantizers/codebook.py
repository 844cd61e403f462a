"""Shared codebook machinery: chunked nearest-code search, k-means init, dead-code restart, process sync.

Everything here runs in fp32 with autocast off: bf16 distances mis-assign close codes, and bf16 EMA sums drift.
Nothing builds a tokens x codes table: the search walks the tokens in row chunks whose distance block fits
``SEARCH_CHUNK_BYTES``, and counts / sums use ``index_add_`` (never a one-hot matmul).

A training forward never reads a device tensor back to the host (no ``.item()``, ``bool(t)``, ``nonzero``,
``bincount``, boolean-mask indexing): on a GPU each such read stalls the pipeline. Dead-code restarts work on
fixed-size tensors with ``torch.where``, and whether the codebook is initialised is mirrored in a Python flag.
The two decisions that choose whether to run a collective (retry k-means, restart dead codes) reach the host one
forward late through :class:`HostFlag`, a non-blocking copy.

A batch that is not finite (any NaN or inf in the search vectors, on any process) updates nothing: no k-means,
no restart, no usage or EMA statistic. The gate is a 0-dim device tensor applied with ``torch.where``.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .base import Quantizer, QuantizerOutput, code_counts, usage_metrics

# Bytes of one chunk's (rows x codes) fp32 distance block. CPU: chosen with
# `benchmarks/quantizer_speed.py --sweep-chunks` on a 2-core Sapphire Rapids (16k x 16k search, best of 6):
# 16 MB was fastest at D=256 (0.56 s vs 0.59 s for 8 or 32 MB, 0.65 s for 64 MB) and tied for fastest at D=8;
# fewer chunks also mean fewer thread barriers when other processes share the cores. Accelerators: large enough
# for efficient kernels, still bounded (not measured here: no GPU in this workplace).
SEARCH_CHUNK_BYTES = {"cpu": 16 * 2**20}
DEFAULT_CHUNK_BYTES = 64 * 2**20


# --- processes ---------------------------------------------------------------------------------------------


def distributed() -> bool:
    """True inside an initialised torch.distributed process group."""
    return dist.is_available() and dist.is_initialized()


def is_main_process() -> bool:
    return not distributed() or dist.get_rank() == 0


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over processes in place (no-op in one process)."""
    if distributed():
        dist.all_reduce(tensor)
    return tensor


def differentiable_all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over processes, with gradients flowing back to every process's share (no-op in one
    process). A loss computed from the sum on every rank then gets, after DDP averages the ranks' gradients, the
    gradient of the global loss."""
    if distributed():
        from torch.distributed.nn.functional import all_reduce

        return all_reduce(tensor)
    return tensor


def broadcast_(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Overwrite ``tensor`` with rank ``src``'s copy in place (no-op in one process)."""
    if distributed():
        dist.broadcast(tensor, src)
    return tensor


@torch.no_grad()
def all_finite(x: torch.Tensor) -> torch.Tensor:
    """Whether every element of ``x``, on every process, is finite: a 0-dim bool tensor on ``x``'s device (one
    scalar all_reduce, no host read). Every process gets the same answer, so all of them skip a bad batch together
    and their codebooks stay identical."""
    bad = torch.isfinite(x).all().logical_not().float()
    return all_reduce_sum_(bad) == 0


class HostFlag:
    """A device bool the host reads one training forward later, without waiting on the current step.

    ``post`` queues a copy into host memory (pinned and non-blocking on CUDA) and records an event after it;
    ``take``, in a later forward, waits for that event and returns the value, or None when nothing was posted since
    the last ``take`` / ``clear``. By then the device has normally passed the event long ago (the training loop
    syncs at every optimizer step); at worst ``take`` waits for the previous forward's kernels queued before the
    post, never for the current step's. Processes that post the same device value at the same forward read the same
    answer at the same forward, so it may decide whether to run a collective. On CPU the copy is immediate; other
    accelerators make a plain (blocking) copy. A deepcopy or pickle of the owner starts with nothing posted."""

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self._host, self._event = None, None

    def post(self, flag: torch.Tensor) -> None:
        flag = flag.detach().reshape(())
        if flag.is_cuda:
            # into pinned memory, non-blocking: queued on the stream, not waited for (pageable memory would block)
            self._host = torch.empty((), dtype=flag.dtype, pin_memory=True).copy_(flag, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record(torch.cuda.current_stream(flag.device))
        else:
            self._host, self._event = flag.to("cpu", copy=True), None  # a copy: ``flag`` may be a live buffer

    def take(self) -> bool | None:
        host, event = self._host, self._event
        self.clear()
        if host is None:
            return None
        if event is not None:
            event.synchronize()
        return torch.is_nonzero(host)  # host memory: this reads no device

    def __deepcopy__(self, memo) -> "HostFlag":
        return HostFlag()

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.clear()


def fp32(device: torch.device | str):
    """Autocast off on ``device``'s type, so distances and updates stay fp32 under bf16/fp16 training."""
    return torch.autocast(torch.device(device).type, enabled=False)


# --- argument checks -------------------------------------------------------------------------------------


def check_dim(value, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


def check_unit_interval(value, name: str) -> None:
    if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}.")


def check_indices(indices: torch.Tensor, codebook_size: int, who: str, ndim: int = 3) -> None:
    shape = "(B, H, W)" if ndim == 3 else "(B, H, W, Q)"
    if indices.dim() != ndim or indices.dtype != torch.long:
        raise ValueError(f"{who}.indices_to_codes expects long indices of shape {shape}, "
                         f"got {indices.dtype} of shape {tuple(indices.shape)}.")
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= codebook_size):
        raise ValueError(f"{who}.indices_to_codes: indices must lie in [0, {codebook_size}), "
                         f"got [{int(indices.min())}, {int(indices.max())}].")


# --- search ------------------------------------------------------------------------------------------------


def chunk_rows(num_codes: int, chunk_bytes: int | None = None, device: torch.device | str = "cpu") -> int:
    """Rows per search chunk so that one (rows x num_codes) fp32 block stays within ``chunk_bytes`` (default:
    the device type's budget)."""
    budget = chunk_bytes or SEARCH_CHUNK_BYTES.get(torch.device(device).type, DEFAULT_CHUNK_BYTES)
    return max(1, budget // (4 * max(num_codes, 1)))


@torch.no_grad()
def nearest_codes(x: torch.Tensor, codes: torch.Tensor, cosine: bool = False,
                  chunk_size: int | None = None) -> torch.Tensor:
    """Index of the nearest code for each row of ``x`` (N, d) among ``codes`` (K, d), as long (N,).

    Euclidean: argmin of ‖e‖² − 2·x·eᵀ (‖x‖² is constant per row), one ``addmm`` per row chunk into a reused
    buffer. ``cosine``: argmax of x·eᵀ, for l2-normalised rows and codes. Always fp32, autocast off.
    """
    with fp32(x.device):
        x = x.detach().float()
        codes = codes.detach().float()
        n, k = x.shape[0], codes.shape[0]
        rows = min(n, chunk_size or chunk_rows(k, device=x.device))
        out = torch.empty(n, dtype=torch.long, device=x.device)
        if n == 0:
            return out
        codes_t = codes.t()
        block = torch.empty(rows, k, dtype=torch.float32, device=x.device)
        best = torch.empty(n, dtype=torch.float32, device=x.device)
        if not cosine:
            bias = codes.square().sum(1)
        # torch.min/max(dim) with out= is ~2x faster than argmin/argmax on CPU and allocates nothing
        for start in range(0, n, rows):
            xc = x[start:start + rows]
            d, stop = block[: xc.shape[0]], start + xc.shape[0]
            if cosine:
                torch.mm(xc, codes_t, out=d)
                torch.max(d, dim=1, out=(best[start:stop], out[start:stop]))
            else:
                torch.addmm(bias, xc, codes_t, beta=1, alpha=-2, out=d)
                torch.min(d, dim=1, out=(best[start:stop], out[start:stop]))
        return out


@torch.no_grad()
def code_stats(x: torch.Tensor, indices: torch.Tensor, num_codes: int, sums: bool = True):
    """Per-code counts (K,) and, if ``sums``, per-code vector sums (K, d), summed over processes, fp32."""
    with fp32(x.device):
        counts = code_counts(indices, num_codes)
        if not sums:
            return all_reduce_sum_(counts), None
        x = x.detach().float()
        # one all_reduce for both: sums with the counts as an extra column
        packed = torch.zeros(num_codes, x.shape[1] + 1, dtype=torch.float32, device=x.device)
        packed[:, :-1].index_add_(0, indices, x)
        packed[:, -1] = counts
        all_reduce_sum_(packed)
        return packed[:, -1], packed[:, :-1]


# --- sampling, k-means -------------------------------------------------------------------------------------


@torch.no_grad()
def sample_rows_synced(x: torch.Tensor, num: int) -> torch.Tensor:
    """``num`` random rows of rank 0's ``x``, broadcast so every process gets the same rows.

    The first min(N, num) rows are distinct (a random permutation); when N < num, random repeats fill the rest."""
    out = torch.empty(num, x.shape[1], dtype=torch.float32, device=x.device)
    if is_main_process():
        n = x.shape[0]
        pick = torch.randperm(n, device=x.device)[:num]
        if n < num:
            pick = torch.cat([pick, torch.randint(n, (num - n,), device=x.device)])
        out.copy_(x.index_select(0, pick))
    return broadcast_(out)


@torch.no_grad()
def kmeans(x: torch.Tensor, num_codes: int, iters: int = 10, cosine: bool = False):
    """Lloyd's k-means on the rows of ``x`` over every process: (centroids (K, d), counts (K,)).

    Seeds are rank 0's rows (broadcast); each step assigns local rows and all-reduces counts and sums, so every
    process computes the same centroids from all processes' data. Empty clusters keep their previous centroid.
    """
    with fp32(x.device):
        x = x.detach().float()
        if cosine:
            x = F.normalize(x, dim=-1)
        centroids = sample_rows_synced(x, num_codes)
        counts = torch.zeros(num_codes, device=x.device)
        for _ in range(iters):
            indices = nearest_codes(x, centroids, cosine=cosine)
            counts, sums = code_stats(x, indices, num_codes)
            means = sums / counts.clamp_min(1)[:, None]
            if cosine:
                means = F.normalize(means, dim=-1)
            centroids = torch.where(counts[:, None] > 0, means, centroids)
        # all_reduce gives every rank the same sums, but be exact about it: rank 0's result wins
        return broadcast_(centroids.contiguous()), broadcast_(counts.contiguous())


# --- the shared base of codebook quantizers ----------------------------------------------------------------


class CodebookQuantizer(Quantizer):
    """Base of quantizers with an explicit (K, d) codebook: k-means init, dead-code restart, process sync.

    Subclasses call :meth:`init_codebook_state`, implement :meth:`codes` (the (K, d) codes as looked up) and
    :meth:`write_codes` (overwrite the codebook rows a mask selects), and call :meth:`prepare_codebook` on the
    fp32 search vectors before the search in training mode and :meth:`track_usage` after it. Statistics of their
    own (EMA sums, ...) go through :meth:`keep_if_nonfinite`.

    ``cluster_size`` is the EMA of how many vectors (over all processes) each code received per training forward;
    it starts at 1. A code whose ``cluster_size`` falls below ``dead_code_threshold`` is restarted on a random
    current-batch vector (rank 0's, broadcast) and its ``cluster_size`` reset to the batch's mean count per
    code (at least the threshold), a grace period before it can be declared dead again. Whether any code is dead
    is posted at the end of each training forward and read by the next (:class:`HostFlag`): a forward after one
    that left no dead code skips the restart and its K x d broadcast. ``cluster_size`` is the same on every
    process, so every process takes the same decision.

    These updates count training forwards, i.e. micro-batches: with gradient accumulation over k micro-batches an
    optimizer step makes k of them (the subclasses' ``decay`` / ``usage_decay`` and ``dead_code_threshold`` say
    how to rescale).

    A batch whose search vectors hold a NaN or inf on any process updates nothing (the flag is reduced over
    processes, so all skip it): the codebook state after batches [a, bad, b] is that after [a, b]. The whole batch
    is skipped, not just its bad rows, because a non-finite activation means that step's encoder output is broken;
    the training loop's guard drops the same step's gradients, so the batch leaves no trace anywhere.

    ``initted`` (a buffer, so checkpoints carry it) says whether k-means has run. The forward reads its Python
    mirror ``_initted`` instead, so that check costs no device->host transfer; the mirror is set at construction,
    by ``load_state_dict``, once after the first cross-process sync (which may change the buffer), so every rank
    agrees whether to run the k-means collective, and in the forward after a k-means attempt, which reads whether
    it succeeded (a non-finite batch leaves ``initted`` False: the next forward tries again).
    """

    def make_output(self, quantized: torch.Tensor, indices: torch.Tensor, loss: torch.Tensor,
                    restarted: torch.Tensor | int, z: torch.Tensor) -> QuantizerOutput:
        """The QuantizerOutput for input ``z``: indices reshaped to (B, H, W), usage metrics, restart count."""
        metrics = usage_metrics(indices, self.codebook_size)
        if self.training and self.dead_code_threshold > 0:
            metrics["restarted_codes"] = restarted if isinstance(restarted, torch.Tensor) else float(restarted)
        return QuantizerOutput(quantized, indices.view(z.shape[0], *z.shape[2:]), loss, metrics)

    def init_codebook_state(self, codebook_size: int, kmeans_init: bool, kmeans_iters: int,
                            dead_code_threshold: float, cosine: bool) -> None:
        if not isinstance(codebook_size, int) or codebook_size < 2:
            raise ValueError(f"codebook_size must be an int >= 2, got {codebook_size!r}.")
        if not isinstance(kmeans_iters, int) or kmeans_iters < 1:
            raise ValueError(f"kmeans_iters must be an int >= 1, got {kmeans_iters!r}.")
        if dead_code_threshold < 0:
            raise ValueError(f"dead_code_threshold must be >= 0 (0 turns restarts off), got {dead_code_threshold}.")
        self.codebook_size = codebook_size
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = float(dead_code_threshold)
        self.cosine = cosine
        self.register_buffer("initted", torch.tensor(not kmeans_init))
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self._initted: bool | None = not kmeans_init  # host mirror of ``initted``; None: read the buffer once
        self._synced = False  # first training step in a process group broadcasts rank 0's codebook
        self._finite: torch.Tensor | None = None  # this training forward's all_finite(x), set by prepare_codebook
        self._kmeans_done = HostFlag()  # ``initted`` after the last k-means attempt
        self._any_dead = HostFlag()  # whether a code was dead at the end of the last training forward

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Load as usual, then point the host mirror of ``initted`` at the loaded value (a load-time read, never a
        training-step one). A value that cannot be read here (e.g. on the meta device) is read at the next
        training forward. What earlier forwards posted no longer describes the loaded state: it is posted anew."""
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.repost()
        loaded = state_dict.get(prefix + "initted")
        if isinstance(loaded, torch.Tensor):
            self._initted = None if loaded.is_meta else bool(loaded)

    def repost(self) -> None:
        """After something rewrote the state (a load, the first cross-process sync): post anew what the next forward
        reads, from the state as it is now. The forward that wrote that state posted the same, so a resumed run
        takes the same restart decisions, and draws the same random numbers, as the run it continues."""
        self._kmeans_done.clear()
        self._any_dead.clear()
        if self.dead_code_threshold > 0 and not self.cluster_size.is_meta:
            self._any_dead.post((self.cluster_size < self.dead_code_threshold).any())

    def codes(self) -> torch.Tensor:
        raise NotImplementedError

    def write_codes(self, mask: torch.Tensor, values: torch.Tensor, counts: torch.Tensor) -> None:
        """Overwrite the codebook rows where ``mask`` (bool (K,)) is True with the same rows of ``values`` (fp32
        (K, d)), whose usage is ``counts`` (K,); other rows stay. Use ``torch.where``, not boolean indexing, which
        reads the mask back to the host."""
        raise NotImplementedError

    def sync_state(self) -> None:
        """Make rank 0's codebook state (parameters and buffers) every process's."""
        with torch.no_grad():
            for tensor in [*self.parameters(), *self.buffers()]:
                broadcast_(tensor.data)
        self.repost()

    def keep_if_nonfinite(self, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        """``new``, or ``old`` where this training forward's batch is not finite on some process: the update rule
        of every statistic. ``torch.where`` on the device flag, so nothing is read back (and ``new``'s NaNs never
        leak through)."""
        return new if self._finite is None else torch.where(self._finite, new, old)

    @torch.no_grad()
    def prepare_codebook(self, x: torch.Tensor) -> torch.Tensor:
        """Before the search, in training: sync once, k-means init until a finite batch comes, restart dead codes.

        ``x`` are this process's fp32 search vectors (N, d); whether they are finite on every process decides
        whether this forward updates anything. Returns the number of codes restarted, a 0-dim fp32 tensor (zero
        when restarts are off)."""
        if distributed() and not self._synced:
            self.sync_state()
            self._initted = None  # the broadcast may have changed the buffer: read rank 0's flag below
        self._synced = True
        if self._initted is None:
            self._initted = bool(self.initted)  # once after a sync or an unreadable load, never per step
        self._finite = all_finite(x)
        if not self._initted:
            self.init_with_kmeans(x)
        if self.dead_code_threshold <= 0:
            return torch.zeros((), dtype=torch.float32, device=x.device)
        return self.restart_dead_codes(x)

    @torch.no_grad()
    def init_with_kmeans(self, x: torch.Tensor) -> None:
        """Initialise the codebook with k-means on ``x`` unless the previous attempt succeeded.

        A non-finite batch writes nothing and leaves ``initted`` False; the host learns that one forward later
        (:class:`HostFlag`), so the next forward tries again on its own batch; after a success it stops."""
        if self._kmeans_done.take():
            self._initted = True
            return
        centroids, counts = kmeans(x, self.codebook_size, self.kmeans_iters, cosine=self.cosine)
        self.write_codes(self._finite.expand(self.codebook_size), centroids, counts.clamp_min(1))
        self.initted.logical_or_(self._finite)
        self._kmeans_done.post(self.initted)
        self._any_dead.clear()  # the usage was just rewritten: this forward checks for dead codes in full

    @torch.no_grad()
    def restart_dead_codes(self, x: torch.Tensor) -> torch.Tensor:
        """Move every code whose usage EMA is below ``dead_code_threshold`` onto a random row of rank 0's ``x``;
        returns how many moved (0-dim fp32).

        Skipped, with no collective, when the previous training forward posted that no code was dead. Otherwise
        fixed shapes throughout, so nothing is read back to the host: K candidate rows are drawn, the i-th dead
        code takes the i-th candidate (distinct rows while N allows), and ``torch.where`` writes only the dead rows
        (none for a non-finite batch). Every rank holds the same ``cluster_size``, hence the same dead set."""
        if self._any_dead.take() is False:
            return torch.zeros((), dtype=torch.float32, device=x.device)
        dead = self.cluster_size < self.dead_code_threshold
        if self._finite is not None:
            dead = dead & self._finite
        total = all_reduce_sum_(torch.full((), float(x.shape[0]), dtype=torch.float32, device=x.device))
        grace = (total / self.codebook_size).clamp_min(self.dead_code_threshold)
        candidates = sample_rows_synced(x, self.codebook_size)
        slot = (dead.long().cumsum(0) - 1).clamp_min(0)  # rank of each dead code among the dead ones
        self.write_codes(dead, candidates.index_select(0, slot), grace.expand(self.codebook_size))
        return dead.sum().float()

    @torch.no_grad()
    def track_usage(self, counts: torch.Tensor, decay: float) -> None:
        """EMA of the per-forward counts (already summed over processes), kept for a non-finite batch; then post
        whether a code is dead now, for the next forward's restart."""
        updated = self.cluster_size.mul(decay).add_(counts, alpha=1 - decay)
        self.cluster_size.copy_(self.keep_if_nonfinite(updated, self.cluster_size))
        if self.dead_code_threshold > 0:
            self._any_dead.post((self.cluster_size < self.dead_code_threshold).any())
