"""Settings a remote worker reads from Prefect ``Secret`` blocks (docs/operations.md §Secrets).

A worker on another machine has no ``.env``; the Databento key and the IB connection can live on
the Prefect server instead, as Secret blocks named below. Precedence, highest first:

1. ``IFD_DATABENTO__API_KEY`` / ``IFD_IB__*`` from the environment, then from ``.env``,
2. ``DATABENTO_API_KEY`` (the Databento SDK's own variable; the key only),
3. the profile (IB settings; profiles may not hold the key),
4. the Secret block,
5. the default.

A block is read only for a setting that none of 1-3 gave, and only in the flows layer
(``ifd_core`` does not import Prefect). Values never reach a log: the key stays a ``SecretStr``,
and what is logged is the *names* of the settings taken from blocks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import SecretStr

from ifd_core.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SecretSetting:
    """One setting a Secret block can supply: the block's name and the setting's path."""

    block: str
    group: str
    field: str
    secret: bool = False  # a SecretStr setting

    @property
    def key(self) -> str:
        return f"{self.group}.{self.field}"


SECRET_SETTINGS = (
    SecretSetting("ifd-databento-api-key", "databento", "api_key", secret=True),
    SecretSetting("ifd-ib-host", "ib", "host"),
    SecretSetting("ifd-ib-port", "ib", "port"),
    SecretSetting("ifd-ib-client-id", "ib", "client_id"),
    SecretSetting("ifd-ib-account", "ib", "account"),
)
BY_NAME = {s.block: s for s in SECRET_SETTINGS}


def given_elsewhere(settings: Settings, s: SecretSetting) -> bool:
    """True when the environment or a config file gave the setting (levels 1-3)."""
    group = getattr(settings, s.group)
    if s.field in group.model_fields_set:
        return True
    if s.secret:  # the SDK variable fills the key after validation, outside fields_set
        return bool(getattr(group, s.field).get_secret_value())
    return False


def _read_block(name: str) -> str | None:
    from prefect.blocks.system import Secret

    try:
        value = Secret.load(name).get()
    except ValueError:  # no such block
        return None
    return str(value)


def apply_secret_blocks(settings: Settings) -> list[str]:
    """Fill the settings no higher source gave from their Secret blocks; returns their keys.

    Needs a Prefect API (``PREFECT_API_URL``); without one nothing is read. A server that does
    not answer is logged as a warning and the settings stay as they are (the job then says
    which setting it misses).
    """
    from flows.notifications import prefect_api_url

    missing = [s for s in SECRET_SETTINGS if not given_elsewhere(settings, s)]
    if not missing or prefect_api_url() is None:
        return []
    taken: list[str] = []
    for s in missing:
        try:
            raw = _read_block(s.block)
        except Exception as exc:  # the API is down: say so, do not stop the flow here
            log.warning(
                "could not read Secret block %s from Prefect (%s)", s.block, type(exc).__name__
            )
            break
        if raw is None:
            continue
        group = getattr(settings, s.group)
        setattr(group, s.field, SecretStr(raw) if s.secret else raw)  # validated on assignment
        taken.append(s.key)
    if taken:
        log.info("settings from Prefect Secret blocks: %s", ", ".join(taken))
    return taken


def check_value(s: SecretSetting, value: str) -> None:
    """Raise ``ValueError`` when ``value`` does not fit the setting (a port that is no number);
    the message names the setting, never the value."""
    from pydantic import ValidationError

    model = Settings.model_fields[s.group].annotation
    if not value:
        raise ValueError(f"{s.key}: the value is empty")
    try:
        model.model_validate({s.field: value})
    except ValidationError as exc:
        why = exc.errors()[0]["msg"]
        raise ValueError(f"{s.key}: {why}") from None


def store_secret(block: str, value: str) -> str:
    """Check ``value`` and save it as the Secret block ``block`` (overwriting); returns the
    block's id. ``KeyError`` for a block that is not one of :data:`SECRET_SETTINGS`."""
    from prefect.blocks.system import Secret

    check_value(BY_NAME[block], value)
    return str(Secret(value=value).save(block, overwrite=True))


def secret_status(settings: Settings) -> list[tuple[str, str, str]]:
    """(block, setting, where the effective value comes from) for each secret setting: the
    environment/config, the block, or the default; never the value."""
    rows = []
    for s in SECRET_SETTINGS:
        if given_elsewhere(settings, s):
            where = "environment or config file (wins over the block)"
        else:
            try:
                where = "Secret block" if _read_block(s.block) is not None else "default (unset)"
            except Exception as exc:
                where = f"unknown: Prefect did not answer ({type(exc).__name__})"
        rows.append((s.block, s.key, where))
    return rows
