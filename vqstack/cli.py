"""The ``vqstack`` command line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .core import KIND_HOOKS, plugins_info, registry


def cmd_plugins(args) -> int:
    """List every plugin, its distribution and version, and what it registered."""
    info = plugins_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for plugin in info:
        version = f" {plugin['version']}" if plugin["version"] else ""
        print(f"{plugin['name']}  ({plugin['distribution']}{version})")
        for kind, names in plugin["components"].items():
            print(f"    {kind}: {', '.join(names)}")
        if not plugin["components"]:
            print("    (registers no components)")
    return 0


def cmd_components(args) -> int:
    """List registered component names by kind."""
    for kind in [args.kind] if args.kind else KIND_HOOKS:
        reg = registry(kind)
        print(f"{kind}: {', '.join(reg.names()) or '(none)'}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(data=args.data, quantizer=args.quantizer, resolution=args.resolution, batch=args.batch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vqstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plugins", help=cmd_plugins.__doc__)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("components", help=cmd_components.__doc__)
    p.add_argument("kind", nargs="?", choices=list(KIND_HOOKS), help="only this kind")
    p.set_defaults(func=cmd_components)

    p = sub.add_parser("demo", help="Build a small tokenizer from registry names, encode and decode images, "
                                    "and print the token grid and codebook statistics.")
    p.add_argument("--data", type=Path, default=Path("../shared/data/anime-faces"),
                   help="folder of images (default: the shared anime faces; random images when absent)")
    p.add_argument("--quantizer", default="vq", help="registered quantizer name (default: vq)")
    p.add_argument("--resolution", type=int, default=64, help="image size (default: 64)")
    p.add_argument("--batch", type=int, default=8, help="number of images (default: 8)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
