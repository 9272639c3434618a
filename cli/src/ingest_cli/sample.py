"""Deterministic synthetic GRO death extracts, written as a stream so N can be in the millions.

Every field and variant of the format turns up within the first few dozen records: repeated
given names, aliases with grouped and interleaved types, maiden names, partial and free-format
dates, updates with each reason, non-ASCII names, present-but-empty elements. The data is made
up: it names nobody.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import BinaryIO
from xml.sax.saxutils import escape

from contracts.gro import NS_ADDR, NS_GRO, NS_PD, NS_PERSON

HEADER = (
    f'<DeathRegistrationGroup xmlns="{NS_GRO}"\n'
    f'                        xmlns:ns1="{NS_PD}"\n'
    '                        xmlns:ns2="http://www.govtalk.gov.uk/people/AddressAndPersonalDetails"\n'
    f'                        xmlns:ns3="{NS_ADDR}"\n'
    f'                        xmlns:ns4="{NS_PERSON}"\n'
    '                        xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"\n'
    '                        xsi:schemaLocation="http://www.ons.gov.uk/gro/OGDDeathExtractDWP'
    ' .\\OGDDeathExtractDWP-v1-1.xsd">\n'
)

GIVEN = (
    "Robert",
    "Eoghan",
    "Alfie",
    "Rae",
    "Oscar",
    "Jane",
    "Amy",
    "Clarissa",
    "Matthew",
    "Zoë",
    "Łukasz",
    "Siân",
    "Chloé",
    "José",
    "Ærin",
    "Øyvind",
    "Şule",
    "Ěva",
    "Ğül",
    "Ali",
    "Mary",
    "Alice",
    "Timothy",
    "Grace",
)
FAMILY = (
    "LEE",
    "GRIBBEN",
    "MONTGOMERY",
    "MACKINNON",
    "KEIL",
    "GROVES",
    "PARR",
    "DE BASTIANI",
    "ÁLVAREZ",
    "ŘEHOŘ",
    "MÜLLER",
    "O'NEILL",
    "ÇELIK",
    "ÉCLAIR",
    "ÏSOLDE",
    "ÖZTÜRK",
    "KIM",
    "PEREZ",
    "SMITH-JONES",
    "NGUYEN",
)
TITLES = ("Mr", "Mrs", "Ms", "Mx", "Dr")
SUFFIXES = ("OBE", "PhD", "MBE")
ALIAS_TYPES = ("otherwise", "formerly known as", "became a doctor")
STREETS = ("Ave Maria Lane", "Finsbury Avenue", "Garlick Hill", "West Smithfield", "Brown Lane")
PLACES = ("Bourton-on-the-hill", "Aston Subedge", "Bibury", "Telham", "Kent", "Somerset")
POSTCODES = ("BT62 4HL", "EN4 0LT", "DT3 6FZ", "DD1 9GG", "NR99 1AB", "IV44 8RF")
FREE_DATES = ("early spring 1921", "about 1930", "unknown")


def _el(name: str, text: str, indent: int) -> str:
    return f"{' ' * indent}<{name}>{escape(text)}</{name}>\n"


def _name(tag: str, rng: random.Random, variant: int, indent: int) -> str:
    inner = indent + 4
    parts: list[str] = []
    if variant % 3 == 0:
        parts.append(_el("ns4:PersonNameTitle", rng.choice(TITLES), inner))
    if variant % 11 != 5:  # sometimes a single (family) name only
        for _ in range(1 + variant % 3):
            parts.append(_el("ns4:PersonGivenName", rng.choice(GIVEN), inner))
    if variant % 13 == 7:
        parts.append(f"{' ' * inner}<ns4:PersonGivenName></ns4:PersonGivenName>\n")
    if variant % 17 != 3:  # people with a single (given) name exist
        parts.append(_el("ns4:PersonFamilyName", rng.choice(FAMILY), inner))
    if variant % 11 == 5 and variant % 17 == 3:
        parts.append(_el("ns4:PersonFamilyName", rng.choice(FAMILY), inner))
    if variant % 7 == 2:
        parts.append(_el("ns4:PersonNameSuffix", rng.choice(SUFFIXES), inner))
    pad = " " * indent
    return f"{pad}<{tag}>\n{''.join(parts)}{pad}</{tag}>\n"


def _aliases(rng: random.Random, n: int, indent: int) -> str:
    variant = n % 6
    if variant == 0 or variant == 1:
        return ""
    count = 1 + n % 3
    if variant == 2:  # interleaved: Alias, Type, Alias, Type
        out = []
        for i in range(count):
            out.append(_name("DeceasedAliasName", rng, n + i, indent))
            out.append(_el("DeceasedAliasNameType", rng.choice(ALIAS_TYPES), indent))
        return "".join(out)
    if variant == 3:  # grouped: Alias, Alias, Type, Type
        names = "".join(_name("DeceasedAliasName", rng, n + i, indent) for i in range(count))
        types = "".join(
            _el("DeceasedAliasNameType", rng.choice(ALIAS_TYPES), indent) for _ in range(count)
        )
        return names + types
    if variant == 4:  # several aliases, a single type, and an empty type
        names = "".join(_name("DeceasedAliasName", rng, n + i, indent) for i in range(count))
        return (
            names
            + _el("DeceasedAliasNameType", "formerly known as", indent)
            + (f"{' ' * indent}<DeceasedAliasNameType></DeceasedAliasNameType>\n")
        )
    # an alias whose only part is a title
    pad = " " * indent
    return (
        f"{pad}<DeceasedAliasName>\n"
        + _el("ns4:PersonNameTitle", "Dr", indent + 4)
        + f"{pad}</DeceasedAliasName>\n"
        + _el("DeceasedAliasNameType", "became a doctor", indent)
    )


def _date(rng: random.Random, lo: int, hi: int) -> str:
    return f"{rng.randint(lo, hi):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def record_xml(n: int, rng: random.Random) -> str:
    """One `DeathRegistration` element, exercising the variant chosen by its ordinal."""
    i = 8
    out = ["    <DeathRegistration>\n", _el("RegistrationID", str(1 + (n * 7919) % 999_999_999), i)]
    stamp = f"{_date(rng, 2008, 2024)}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:"
    stamp += f"{rng.randint(0, 59):02d}" + (".000" if n % 4 == 1 else "")
    if n % 5 == 4:  # an update, cycling through every reason
        out.append(_el("RecordUpdateDateTime", stamp, i))
        out.append(_el("RecordUpdateReason", str(1 + (n // 5) % 5), i))
    else:
        out.append(_el("RecordLockedDateTime", stamp, i))
    out.append(_name("DeceasedName", rng, n, i))
    out.append(_aliases(rng, n, i))
    for _ in range(n % 4 if n % 3 == 1 else 0):
        out.append(_el("DeceasedMaidenName", rng.choice(FAMILY), i))
    if n % 19 == 9:
        out.append(f"{' ' * i}<DeceasedMaidenName></DeceasedMaidenName>\n")
    out.append(_el("DeceasedGender", ("1", "2", "9")[n % 3], i))
    death_variant = n % 8
    if death_variant < 5:
        level = f"{' ' * 12}<ns1:VerificationLevel>0{n % 4}</ns1:VerificationLevel>\n"
        out.append(
            f"{' ' * i}<DeceasedDeathDate>\n"
            + _el("ns1:PersonDeathDate", _date(rng, 1990, 2024), 12)
            + (level if death_variant % 2 else "")
            + f"{' ' * i}</DeceasedDeathDate>\n"
        )
    else:
        if death_variant == 6:
            out.append(_el("PartialMonthOfDeath", str(rng.randint(1, 12)), i))
        out.append(_el("PartialYearOfDeath", str(rng.randint(1950, 2024)), i))
        if death_variant == 7:
            out.append(_el("QualifierText", "on or about", i))
            out.append(_el("FreeFormatDeathDate", rng.choice(FREE_DATES), i))
    birth_variant = n % 6
    if birth_variant < 3:
        level = f"{' ' * 12}<ns1:VerificationLevel>0{n % 4}</ns1:VerificationLevel>\n"
        out.append(
            f"{' ' * i}<DeceasedBirthDate>\n"
            + _el("ns1:PersonBirthDate", _date(rng, 1900, 1990), 12)
            + (level if birth_variant == 1 else "")
            + f"{' ' * i}</DeceasedBirthDate>\n"
        )
    elif birth_variant == 3:
        out.append(_el("PartialMonthOfBirth", str(rng.randint(1, 12)), i))
        out.append(_el("PartialYearOfBirth", str(rng.randint(1900, 1990)), i))
    elif birth_variant == 4:
        out.append(_el("FreeFormatBirthDate", rng.choice(FREE_DATES), i))
        out.append(f"{' ' * i}<PartialYearOfBirth></PartialYearOfBirth>\n")
    if n % 10 != 9:
        addr = [f"{' ' * i}<DeceasedAddress>\n"]
        if n % 4 == 2:
            addr.append(_el("ns3:Flat", str(rng.randint(1, 99)), 12))
            addr.append(_el("ns3:Building", "Chiltern House", 12))
        for k in range(1 + n % 6):
            street = f"{rng.randint(1, 300)} {rng.choice(STREETS)}"
            addr.append(_el("ns3:Line", street if k == 0 else rng.choice(PLACES), 12))
        if n % 9 != 4:
            addr.append(_el("ns3:Postcode", rng.choice(POSTCODES), 12))
        addr.append(f"{' ' * i}</DeceasedAddress>\n")
        out.extend(addr)
    out.append("    </DeathRegistration>\n")
    return "".join(out)


def iter_sample(records: int, seed: int = 0) -> Iterator[bytes]:
    """Yield a whole synthetic extract in chunks of UTF-8 bytes."""
    rng = random.Random(seed)
    yield HEADER.encode()
    chunk: list[str] = []
    for n in range(records):
        chunk.append(record_xml(n, rng))
        if len(chunk) == 1000:
            yield "".join(chunk).encode()
            chunk.clear()
    if chunk:
        yield "".join(chunk).encode()
    yield f"    <RecordCount>{records}</RecordCount>\n</DeathRegistrationGroup>\n".encode()


def write_sample(out: BinaryIO, records: int, seed: int = 0) -> int:
    """Write a synthetic extract to `out`; return the number of bytes written."""
    written = 0
    for chunk in iter_sample(records, seed):
        out.write(chunk)
        written += len(chunk)
    return written
