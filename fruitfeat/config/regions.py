"""The EU regions fruitfeat may run in: photos, their EXIF and their file names are personal data.

Its own module, with no AWS client, so that validating a config never needs boto3. The
CloudFormation template's Rules list the same regions (tests/test_emr_deploy.py checks it).
"""

from __future__ import annotations

from fruitfeat.errors import RegionError

EU_REGIONS: tuple[str, ...] = (
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
)




def check_region(region: str | None) -> str:
    """The region itself if it is an EU region."""
    if region not in EU_REGIONS:
        raise RegionError(
            f"region {region!r} is not allowed: fruitfeat processes personal data and runs only in the EU "
            f"({', '.join(EU_REGIONS)})"
        )
    return region
