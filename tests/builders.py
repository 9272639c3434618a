"""Build GRO extracts for tests, element by element, as the format reference describes them."""

from __future__ import annotations

from contracts.gro import NS_ADDR, NS_GRO, NS_PD, NS_PERSON

ROOT_OPEN = (
    f'<DeathRegistrationGroup xmlns="{NS_GRO}" xmlns:ns1="{NS_PD}" '
    f'xmlns:ns3="{NS_ADDR}" xmlns:ns4="{NS_PERSON}">\n'
)

LOCKED = "<RecordLockedDateTime>2022-03-01T12:09:33</RecordLockedDateTime>"
NAME = (
    "<DeceasedName><ns4:PersonGivenName>Robert</ns4:PersonGivenName>"
    "<ns4:PersonFamilyName>LEE</ns4:PersonFamilyName></DeceasedName>"
)
GENDER = "<DeceasedGender>1</DeceasedGender>"
DEATH = (
    "<DeceasedDeathDate><ns1:PersonDeathDate>2022-03-01</ns1:PersonDeathDate></DeceasedDeathDate>"
)


def record(
    *,
    registration_id: str | None = "500045735",
    timestamps: str = LOCKED,
    name: str = NAME,
    after_name: str = "",
    gender: str = GENDER,
    death: str = DEATH,
    rest: str = "",
) -> str:
    """One DeathRegistration; each argument is the XML of that part ("" leaves it out)."""
    reg = "" if registration_id is None else f"<RegistrationID>{registration_id}</RegistrationID>"
    return (
        f"  <DeathRegistration>{reg}{timestamps}{name}{after_name}{gender}{death}{rest}"
        "</DeathRegistration>\n"
    )


def extract(*records: str, count: int | None = None) -> bytes:
    """A whole extract holding `records`, with a RecordCount trailer (the true count by default)."""
    n = len(records) if count is None else count
    return (
        ROOT_OPEN + "".join(records) + f"  <RecordCount>{n}</RecordCount>\n"
        "</DeathRegistrationGroup>\n"
    ).encode()


def fragment(rec: str) -> bytes:
    """A record as the splitter emits it: standalone, with the root's namespaces declared."""
    return (
        rec.strip()
        .replace(
            "<DeathRegistration>",
            f'<DeathRegistration xmlns="{NS_GRO}" xmlns:ns1="{NS_PD}" '
            f'xmlns:ns3="{NS_ADDR}" xmlns:ns4="{NS_PERSON}">',
            1,
        )
        .encode()
    )
