"""CURVE key store: generate, list and show key pairs, authorize clients.

    python -m bus.keys generate NAME        write NAME.key and NAME.key_secret (0600)
    python -m bus.keys list                 every key in the store, with its Z85 public key
    python -m bus.keys show NAME            print NAME's Z85 public key
    python -m bus.keys show NAME --secret   print NAME's Z85 secret key (for a Node client)
    python -m bus.keys authorize FILE       accept the client whose public key file this is

The store is --keys DIR, else $POSEBUS_KEYS, else ~/.config/posebus/keys.
"""
from __future__ import annotations

import argparse
import sys

from bus import security


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bus.keys", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--keys", metavar="DIR", help="key store folder")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("generate", help="new key pair").add_argument("name")
    commands.add_parser("list", help="keys in the store")
    show = commands.add_parser("show", help="a key in Z85")
    show.add_argument("name")
    show.add_argument("--secret", action="store_true", help="print the secret key instead")
    commands.add_parser("authorize", help="accept a client's public key").add_argument("file")
    args = parser.parse_args(argv)
    folder = security.keys_dir(args.keys)

    try:
        if args.command == "generate":
            public_file, secret_file = security.generate(args.name, folder)
            print(f"public key  {public_file}  (copy to the other side)")
            print(f"secret key  {secret_file}  (keep here)")
        elif args.command == "list":
            for key in security.list_keys(folder):
                print(f"{key.name:24} {key.public}  {'pair' if key.has_secret else 'public'}")
        elif args.command == "show":
            if args.secret:
                print(security.key_pair(folder / f"{args.name}.key_secret")[1].decode())
            else:
                print(security.public_key(args.name, folder).decode())
        else:
            print(f"authorized  {security.authorize(args.file, folder)}")
    except (OSError, ValueError) as exc:
        print(f"posebus: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
