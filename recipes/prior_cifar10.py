"""Train a class-conditional autoregressive prior on CIFAR-10 tokens. Everything but the defaults is
recipes/prior_anime.py, so all of its options work here.

    accelerate launch recipes/vqvae_cifar10.py --data ../shared/data/cifar10 --output-dir runs/vqvae-cifar10
    accelerate launch recipes/prior_cifar10.py --tokenizer runs/vqvae-cifar10/tokenizer \
        --data ../shared/data/cifar10 --output-dir runs/prior-cifar10
    vqstack sample --tokenizer runs/vqvae-cifar10/tokenizer --prior runs/prior-cifar10/prior --labels ship \
        --cfg-scale 2 --n 16 --out ships.png
"""
from prior_anime import build_parser, main

from vqstack.training.runtime import run_recipe

CLASSES = "airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck"

if __name__ == "__main__":
    parser = build_parser(__doc__)
    # the WebDataset shards hold the class id in "cls"; the Hub's CIFAR-10 calls it "label"
    parser.set_defaults(data="uoft-cs/cifar10", output_dir="runs/prior-cifar10", attributes="", class_column="cls",
                        class_names=CLASSES)
    run_recipe(lambda: main(parser=parser))
