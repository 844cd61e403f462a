"""A frozen random codebook (BEST-RQ, Chiu et al. 2022): nothing in the codebook is learned."""
import torch
import torch.nn.functional as F

from vqstack.api import Quantizer, QuantizerOutput, fp32, to_maps, to_vectors, usage_metrics


class RandomProjectionQuantizer(Quantizer):
    """Nearest code by cosine similarity among fixed random unit codes; only the encoder learns (commitment).

    Args:
        dim: channels of the input z.
        codebook_size: number of frozen random codes.
        commitment_weight: weight of ||z - sg(e)||^2, which pulls the encoder toward the fixed codes.
        seed: seed of the random codebook, so every process and every reload draws the same codes.
    """

    def __init__(self, dim: int, codebook_size: int = 512, commitment_weight: float = 0.25, seed: int = 0):
        super().__init__()
        self.dim, self.codebook_size, self.commitment_weight = dim, codebook_size, commitment_weight
        codes = torch.randn(codebook_size, dim, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("codebook", F.normalize(codes, dim=1))

    @classmethod
    def example_kwargs(cls):
        return {"dim": 8, "codebook_size": 32}

    def forward(self, z):
        self.check_input(z)
        with fp32(z.device):  # similarities in fp32 even under bf16 autocast: bf16 mis-ranks close codes
            vectors = F.normalize(to_vectors(z).float(), dim=1)
            indices = (vectors @ self.codebook.t()).argmax(dim=1)  # nearest on the sphere = largest cosine
            codes = self.codebook[indices]
            loss = self.commitment_weight * F.mse_loss(vectors, codes)
            quantized = vectors + (codes - vectors).detach()  # straight-through
        b, _, h, w = z.shape
        return QuantizerOutput(quantized=to_maps(quantized, z.shape).to(z.dtype), indices=indices.view(b, h, w),
                               loss=loss, metrics=usage_metrics(indices, self.codebook_size))

    def indices_to_codes(self, indices):
        return self.codebook[indices].permute(0, 3, 1, 2)
