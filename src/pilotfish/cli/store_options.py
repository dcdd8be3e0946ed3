"""``--config-store`` and the etcd client options, shared by ``control-plane`` and ``up``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from pilotfish.store.etcd_target import DEFAULT_PREFIX, EtcdTls, parse_endpoints

__all__ = ["STORE_OPTIONS", "StoreChoice", "store_choice", "store_options"]


class StoreChoice:
    """What the store options said: None (files) or an etcd address with its TLS."""

    def __init__(self, url: str | None, tls: EtcdTls | None, prefix: str) -> None:
        self.url = url
        self.tls = tls
        self.prefix = prefix


def _store(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None or value == "files":
        return None
    try:
        parse_endpoints(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    return value


STORE_OPTIONS = [
    click.option(
        "--config-store",
        default=None,
        callback=_store,
        metavar="files|etcd://HOST:PORT[,HOST:PORT...]",
        help="Where configuration lives: files (the default) or an etcd cluster "
        "(etcds:// for TLS). Keys follow Kubernetes' layout under --etcd-prefix.",
    ),
    click.option(
        "--etcd-cacert",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="CA bundle to verify etcd's certificate with (etcds://; default: system roots).",
    ),
    click.option(
        "--etcd-cert",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="Client certificate presented to etcd (etcds://, with --etcd-key).",
    ),
    click.option(
        "--etcd-key",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="Key of --etcd-cert.",
    ),
    click.option(
        "--etcd-prefix",
        default=DEFAULT_PREFIX,
        show_default=True,
        help="Key prefix of the configuration in etcd.",
    ),
]


def store_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(STORE_OPTIONS):
        f = option(f)
    return f


def store_choice(
    config_store: str | None,
    etcd_cacert: str | None,
    etcd_cert: str | None,
    etcd_key: str | None,
    etcd_prefix: str,
) -> StoreChoice:
    """Check the options together; UsageError when they do not fit."""
    if (etcd_cert is None) != (etcd_key is None):
        raise click.UsageError("--etcd-cert and --etcd-key go together")
    given = etcd_cacert or etcd_cert
    if given and (config_store is None or not parse_endpoints(config_store).tls):
        raise click.UsageError(
            "--etcd-cacert/--etcd-cert/--etcd-key need an etcds:// --config-store"
        )
    if not etcd_prefix.startswith("/") or etcd_prefix.endswith("/"):
        raise click.BadParameter(
            "must start with '/' and not end with it", param_hint="--etcd-prefix"
        )
    tls = EtcdTls(etcd_cacert, etcd_cert, etcd_key) if given else None
    return StoreChoice(config_store, tls, etcd_prefix)
