"""The EU regions fruitfeat may run in: photos, their EXIF and their file names are personal data.

Only regions in EU member states: eu-west-2 (London) and eu-central-2 (Zurich) are in Europe but
outside the EU, so they are refused like any other region. Its own module, with no AWS client, so
that validating a config never needs boto3. The CloudFormation template's Rules list the same
regions (tests/test_emr_deploy.py checks it).
"""

from __future__ import annotations

from fruitfeat.errors import RegionError

EU_REGIONS: tuple[str, ...] = (
    "eu-west-1",  # Ireland
    "eu-west-3",  # Paris
    "eu-central-1",  # Frankfurt
    "eu-north-1",  # Stockholm
    "eu-south-1",  # Milan
    "eu-south-2",  # Spain
)


def check_region(region: str | None) -> str:
    """The region itself if it is an EU region."""
    if region not in EU_REGIONS:
        raise RegionError(
            f"region {region!r} is not allowed: fruitfeat processes personal data and runs only in the EU "
            f"({', '.join(EU_REGIONS)})"
        )
    return region
