"""CURVE encryption and authentication for links that leave the machine.

A key store is a folder (``~/.config/posebus/keys``, or ``$POSEBUS_KEYS``)::

    server.key              public key of this machine's pair (give it to clients)
    server.key_secret       its secret key, mode 0600 (never leaves the machine)
    authorized/alice.key    public keys of the clients this machine's servers accept

The binding end of a link is the CURVE server: it proves it holds the secret key
of the public key the client expects, and a ZAP authenticator (one thread per
context) admits only clients whose public key is in ``authorized/``. Anyone else
completes no handshake and gets nothing.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

DEFAULT_KEYS_DIR = "~/.config/posebus/keys"
AUTHORIZED = "authorized"


def keys_dir(folder: str | os.PathLike | None = None) -> Path:
    """The key store: ``folder`` if given, else ``$POSEBUS_KEYS``, else the default."""
    return Path(folder or os.environ.get("POSEBUS_KEYS") or DEFAULT_KEYS_DIR).expanduser()


def _private_folder(folder: Path) -> Path:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    return folder


def generate(name: str, folder: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Write a new key pair ``<name>.key`` (public) and ``<name>.key_secret`` (0600)."""
    folder = _private_folder(keys_dir(folder))
    _private_folder(folder / AUTHORIZED)
    if (folder / f"{name}.key").exists() or (folder / f"{name}.key_secret").exists():
        raise FileExistsError(f"a key named {name} already exists in {folder}")
    public_file, secret_file = map(Path, zmq.auth.create_certificates(folder, name))
    secret_file.chmod(0o600)
    return public_file, secret_file


def authorize(public_file: str | os.PathLike, folder: str | os.PathLike | None = None) -> Path:
    """Copy a client's public key file into the store's ``authorized/`` folder."""
    public, secret = zmq.auth.load_certificate(public_file)
    if secret is not None:
        raise ValueError(f"{public_file} holds a secret key; authorize its public .key file instead")
    target = _private_folder(keys_dir(folder) / AUTHORIZED) / Path(public_file).name
    target.write_bytes(Path(public_file).read_bytes())
    return target


@dataclass(frozen=True)
class Key:
    name: str  # "server", or "authorized/alice"
    public: str  # Z85
    has_secret: bool


def list_keys(folder: str | os.PathLike | None = None) -> list[Key]:
    """Own key pairs first, then the authorized client keys."""
    folder = keys_dir(folder)
    keys = []
    for prefix in ("", f"{AUTHORIZED}/"):
        for public_file in sorted(folder.glob(f"{prefix}*.key")):
            public, _ = zmq.auth.load_certificate(public_file)
            has_secret = public_file.with_suffix(".key_secret").exists()
            keys.append(Key(prefix + public_file.stem, public.decode(), has_secret))
    return keys


def public_key(name: str, folder: str | os.PathLike | None = None) -> bytes:
    """The Z85 public key ``<name>.key`` of the store."""
    public, _ = zmq.auth.load_certificate(keys_dir(folder) / f"{name}.key")
    return public


def key_pair(secret_file: str | os.PathLike) -> tuple[bytes, bytes]:
    """(public, secret) from a ``.key_secret`` file."""
    public, secret = zmq.auth.load_certificate(secret_file)
    if secret is None:
        raise ValueError(f"{secret_file} holds no secret key")
    return public, secret


_authenticators: dict[zmq.Context, tuple[ThreadAuthenticator, Path]] = {}


def start_authenticator(ctx: zmq.Context, authorized_clients_dir: str | os.PathLike) -> None:
    """Admit only clients whose public key is in ``authorized_clients_dir`` (once per context)."""
    folder = Path(authorized_clients_dir)
    if ctx in _authenticators:
        if _authenticators[ctx][1] != folder:
            raise ValueError(f"this context already authorizes {_authenticators[ctx][1]}, not {folder}")
        return
    if not folder.is_dir():
        raise FileNotFoundError(f"no authorized-clients folder {folder}")
    authenticator = ThreadAuthenticator(ctx)
    authenticator.start()
    authenticator.configure_curve(domain="*", location=str(folder))
    _authenticators[ctx] = (authenticator, folder)


def stop_authenticator(ctx: zmq.Context) -> None:
    """Stop the context's authenticator thread, if it has one (before ``ctx.destroy``)."""
    entry = _authenticators.pop(ctx, None)
    if entry:
        entry[0].stop()


def secure_server(sock: zmq.Socket, server_secret_file: str | os.PathLike,
                  authorized_clients_dir: str | os.PathLike) -> None:
    """Make ``sock`` a CURVE server with this key pair; call before bind."""
    start_authenticator(sock.context, authorized_clients_dir)
    sock.curve_publickey, sock.curve_secretkey = key_pair(server_secret_file)
    sock.curve_server = True


def secure_client(sock: zmq.Socket, client_secret_file: str | os.PathLike,
                  server_public_file: str | os.PathLike) -> None:
    """Make ``sock`` a CURVE client of the server with that public key; call before connect."""
    sock.curve_publickey, sock.curve_secretkey = key_pair(client_secret_file)
    sock.curve_serverkey, _ = zmq.auth.load_certificate(server_public_file)


@dataclass(frozen=True)
class Curve:
    """CURVE settings of one process: its key store, its own key pair, and the server it talks to.

    Binding ends serve with ``<own_name>`` and admit ``authorized/*.key``;
    connecting ends need ``server_name``, whose ``<server_name>.key`` is in the store.
    """
    keys_dir: Path
    own_name: str
    server_name: str | None = None

    @property
    def secret_file(self) -> Path:
        return Path(self.keys_dir) / f"{self.own_name}.key_secret"

    @property
    def authorized_dir(self) -> Path:
        return Path(self.keys_dir) / AUTHORIZED

    @property
    def server_public_file(self) -> Path:
        if self.server_name is None:
            raise ValueError("a connecting end with CURVE needs the server's key name (--curve-server)")
        return Path(self.keys_dir) / f"{self.server_name}.key"

    def as_server(self, sock: zmq.Socket) -> None:
        secure_server(sock, self.secret_file, self.authorized_dir)

    def as_client(self, sock: zmq.Socket) -> None:
        secure_client(sock, self.secret_file, self.server_public_file)
