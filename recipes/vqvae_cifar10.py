"""Train a plain VQ-VAE (van den Oord et al. 2017) on CIFAR-10: pixel loss and the quantizer's loss only, no
discriminator, no perceptual network. The machinery (data, accelerate, checkpoints, resume, logs) is the VQGAN
recipe's; only the defaults differ, so every option of recipes/vqgan_anime.py works here too.

    accelerate launch recipes/vqvae_cifar10.py --data ../shared/data/cifar10 --output-dir runs/vqvae-cifar10
    accelerate launch recipes/vqvae_cifar10.py --data ../shared/data/cifar10 --quantizer fsq --config fsq.yaml
    accelerate launch --multi_gpu --num_processes 2 recipes/vqvae_cifar10.py --data ../shared/data/cifar10

--data also takes the Hub id of CIFAR-10 (the default) or any image folder; the preset "cifar" is an f=4 tokenizer
(8x8 tokens for 32x32 images) with 512 codes.
"""
from vqgan_anime import build_parser, main

from vqstack.training.runtime import run_recipe

if __name__ == "__main__":
    parser = build_parser(__doc__)
    parser.set_defaults(data="uoft-cs/cifar10", preset="cifar", output_dir="runs/vqvae-cifar10", disc_weight=0.0,
                        perceptual_weight=0.0)
    run_recipe(lambda: main(parser=parser))
