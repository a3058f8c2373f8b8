"""The registered units as the dashboard's pages show them: where a commune code sits (its name, province
and level, from the units table provincial IT loads), with one set of stand-ins for a code the table lacks
(a box that reports a unit not loaded yet), and the units of one province.

It imports only the telemetry tables (no other dashboard module), so province.roster and province.telemetry
use it without an import cycle."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TypedDict

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from province.telemetry_db import Unit

UNKNOWN_PROVINCE = "Chưa rõ tỉnh"
_SHOWN_KINDS = ("xã", "phường", "đặc khu")  # shown before a name that does not already start with it


class PlaceFields(TypedDict):
    """What a page's row per unit says of where the unit sits."""

    commune_code: str
    name: str
    province_code: str
    province_name: str
    level: str


@dataclass(frozen=True, slots=True)
class Place:
    commune_code: str
    name: str
    province_code: str
    province_name: str
    level: str  # commune | province
    kind: str  # xã | phường | đặc khu | ...

    def fields(self) -> PlaceFields:
        """For a row's constructor: `Row(**place.fields(), ...)`."""
        return PlaceFields(
            commune_code=self.commune_code,
            name=self.name,
            province_code=self.province_code,
            province_name=self.province_name,
            level=self.level,
        )

    @property
    def title(self) -> str:
        """The name with its kind in front ("Xã Quảng Phú"), unless the name already says it."""
        if self.kind in _SHOWN_KINDS and not self.name.casefold().startswith(self.kind.casefold()):
            return f"{self.kind.capitalize()} {self.name}"
        return self.name


def unknown(code: str) -> Place:
    """The stand-in for a code the units table lacks: its code for a name, in no known province."""
    return Place(code, code, "", UNKNOWN_PROVINCE, "commune", "xã")


def in_province(province: str) -> Select[str]:
    """The commune codes of one province's units, as a subquery."""
    return select(Unit.commune_code).where(Unit.province_code == province)


def places(s: Session, *, province: str = "", communes: Collection[str] | None = None) -> dict[str, Place]:
    """commune code -> place of every unit in the table, or of one province's, or of `communes` (one query)."""
    query = select(Unit.commune_code, Unit.name, Unit.province_code, Unit.province_name, Unit.level, Unit.kind)
    if province:
        query = query.where(Unit.province_code == province)
    if communes is not None:
        query = query.where(Unit.commune_code.in_(list(communes)))
    return {u.commune_code: Place(*u) for u in s.execute(query)}


def place_of(known: Mapping[str, Place], code: str) -> Place:
    """`code`'s place among `known` (from `places`), else the stand-in."""
    return known.get(code) or unknown(code)
