"""Where the shipped files live: in a checkout, or inside the installed package.

`templates/email/` and `codes_db/` sit at the top of the repository. A wheel
installs them as the packages `consultant.templates` and `consultant.codes_db`
(see pyproject.toml), so both layouts are looked up here, checkout first.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def _find(checkout_name: str, package: str) -> Path:
    local = _CHECKOUT / checkout_name
    if local.is_dir():
        return local
    try:
        return Path(str(resources.files(package)))
    except ModuleNotFoundError:
        raise FileNotFoundError(f"cannot find {checkout_name}/ (neither in a checkout nor installed)") from None


def templates_dir() -> Path:
    return _find("templates", "consultant.templates") / "email"


def codes_db_dir() -> Path:
    return _find("codes_db", "consultant.codes_db")
