"""`videomaker presets`: list the shipped presets, or save one as pretrained directories."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("presets", help="List presets or save one to a directory.", description=__doc__)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="Print the shipped presets.").set_defaults(run=_list)
    save = actions.add_parser(
        "save",
        help="Write a preset's weights in the pretrained layout (loads back with --preset DIR).",
    )
    save.add_argument("name", help="Preset name or directory.")
    save.add_argument("directory", help="Where to write it.")
    save.set_defaults(run=_save)


def _list(args: argparse.Namespace) -> int:
    from videomaker.presets import list_presets, load_preset

    for name in list_presets():
        preset = load_preset(name)
        source = "random init" if preset.is_random_init else f"{preset.base_model} + {preset.motion_adapter}"
        print(f"{name:8s} {preset.resolution}px  {source}\n         {preset.description}")
    return 0


def _save(args: argparse.Namespace) -> int:
    from videomaker.loading import save_preset

    print(save_preset(args.name, args.directory))
    return 0
