"""Build time for reproducible media: SOURCE_DATE_EPOCH when set, else now."""

from __future__ import annotations

import datetime as dt
import os


def build_time() -> dt.datetime:
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    if sde:
        try:
            return dt.datetime.fromtimestamp(int(sde), dt.UTC).replace(tzinfo=None)
        except ValueError:
            raise ValueError(
                f"SOURCE_DATE_EPOCH={sde!r} is not a whole number of seconds"
            ) from None
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def reproducible() -> bool:
    return bool(os.environ.get("SOURCE_DATE_EPOCH"))
