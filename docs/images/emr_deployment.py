"""Draw docs/images/emr-deployment.png: fruitfeat on Amazon EMR, as deploy/emr/cloudformation.yaml builds it.

    .venv/bin/python docs/images/emr_deployment.py [--out docs/images/emr-deployment.png]

(`make diagrams` runs it.) What is drawn is what the stack creates (KMS key, data and log buckets, the
two IAM roles and the instance profile, the EMR security configuration), the transient cluster that
`make emr-submit` starts with them, and the flows between the submitting machine, the buckets and the
cluster. The allowed regions come from fruitfeat.config.regions, so the picture cannot disagree with
the guard. Matplotlib only (a dependency of fruitfeat already), object API, no display needed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from fruitfeat.config.regions import EU_REGIONS

OUT = Path(__file__).with_name("emr-deployment.png")

# Figure units: 1 unit = 0.1 inch.
WIDTH, HEIGHT = 180, 116
INK = "#1f2933"
COLOURS = {
    "region": "#2b6cb0",
    "stack": "#718096",
    "bucket": "#e6f4ea",
    "bucket_edge": "#2f855a",
    "kms": "#fff4e5",
    "kms_edge": "#c05621",
    "iam": "#fdecef",
    "iam_edge": "#b83280",
    "security": "#f3e8ff",
    "security_edge": "#6b46c1",
    "cluster": "#ebf4ff",
    "cluster_edge": "#2c5282",
    "node": "#ffffff",
    "outside": "#f7fafc",
}


def box(ax, x, y, w, h, title, lines=(), face="#ffffff", edge=INK, size=9.5, title_size=11, dashed=False):
    """A rounded box with a bold title on top and left-aligned lines below it."""
    ax.add_patch(
        FancyBboxPatch(
            (x, y), w, h, boxstyle="round,pad=0,rounding_size=1.2", facecolor=face, edgecolor=edge,
            linewidth=1.6, linestyle="--" if dashed else "-", zorder=2,
        )
    )  # fmt: skip
    ax.text(x + 1.2, y + h - 1.2, title, ha="left", va="top", fontsize=title_size, weight="bold", color=INK, zorder=3)
    if lines:
        ax.text(
            x + 1.2, y + h - 1.6 - title_size * 0.2 - 1.2, "\n".join(lines), ha="left", va="top",
            fontsize=size, color=INK, linespacing=1.35, zorder=3,
        )  # fmt: skip


def frame(ax, x, y, w, h, label, colour, size=11.5):
    """A dashed boundary with its label on the top edge."""
    ax.add_patch(
        FancyBboxPatch(
            (x, y), w, h, boxstyle="round,pad=0,rounding_size=2", facecolor="none", edgecolor=colour,
            linewidth=2.2, linestyle=(0, (6, 3)), zorder=1,
        )
    )  # fmt: skip
    ax.text(
        x + 2, y + h, f" {label} ", ha="left", va="center", fontsize=size, weight="bold", color=colour,
        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.5}, zorder=4,
    )  # fmt: skip


def arrow(ax, start, end, label="", number=None, colour=INK, rad=0.0, label_at=0.5, offset=(0, 0), style="-|>",
          dashed=False, both=False):
    """An arrow with an optional numbered label placed along it."""
    ax.add_patch(
        FancyArrowPatch(
            start, end, arrowstyle=("<|-|>" if both else style), mutation_scale=16, linewidth=1.8,
            color=colour, linestyle="--" if dashed else "-", connectionstyle=f"arc3,rad={rad}", zorder=5,
        )
    )  # fmt: skip
    if label:
        x = start[0] + (end[0] - start[0]) * label_at + offset[0]
        y = start[1] + (end[1] - start[1]) * label_at + offset[1]
        text = f"({number}) {label}" if number else label
        ax.text(
            x, y, text, ha="center", va="center", fontsize=9.5, color=colour, zorder=6,
            bbox={"facecolor": "white", "edgecolor": colour, "boxstyle": "round,pad=0.3", "linewidth": 0.8},
        )  # fmt: skip


#: The data bucket's prefixes and what the stack, `make emr-upload` and the job put there.
BUCKET_LAYOUT = (
        "fruits-360/  input photos (Training/, Test/)",
        "weights/     mobilenetv2_notop.onnx",
        "             + .onnx.provenance.json",
        "emr/         fruitfeat-env.tar.gz (venv)",
        "             fruitfeat-0.1.0-py3-none-any.whl",
        "             jobs/run_pipeline.py",
        "             conf/emr.yaml",
        "             tls/emr-certificates.zip",
        "fruitfeat/   runs/<run_id>/ (features/,",
        "             errors/, manifest.json, ...)",
        "             _LATEST",
)


FLOWS = [
    (
        "(1) upload from the laptop or CI: photos, the .onnx and its provenance, the venv archive, the wheel, "
        "the entry script, the config (HTTPS, SSE-KMS with the data key)"
    ),
    "(2) submit the step (a new transient cluster, or a step on a running one); poll its state",
    "(3) EMR starts the nodes with the service role, the instance profile and the security configuration",
    (
        "(4) the step reads the venv archive, entry script and config; the job reads the .onnx and the photos "
        "(EMRFS over TLS, instance profile)"
    ),
    "(5) the job writes runs/<run_id>/ under fruitfeat/, then _LATEST",
    "(6) logs: the nodes push theirs to emr-logs/, S3 delivers the data bucket's access logs to s3-access/",
]


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width, subsequent_indent="     "))


def tag(ax, x, y, number, colour):
    """The flow number in a circle, explained in the legend."""
    ax.text(
        x, y, str(number), ha="center", va="center", fontsize=10, weight="bold", color="white", zorder=7,
        bbox={"facecolor": colour, "edgecolor": "white", "boxstyle": "circle,pad=0.25", "linewidth": 1},
    )  # fmt: skip


def draw(out: Path) -> Path:
    fig = Figure(figsize=(WIDTH / 10, HEIGHT / 10))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(0, HEIGHT)
    ax.set_axis_off()
    mono = {"family": "monospace", "fontsize": 9}
    green, grey, blue = COLOURS["bucket_edge"], "#4a5568", COLOURS["cluster_edge"]

    ax.text(
        2, HEIGHT - 1.5, "fruitfeat on Amazon EMR: what deploy/emr/cloudformation.yaml creates, and the flows of a run",
        ha="left", va="top", fontsize=15, weight="bold", color=INK,
    )  # fmt: skip

    # ---------------------------------------------------------------- outside AWS: the submitting machine
    box(
        ax, 1, 55, 27, 52, "Laptop or CI",
        [
            "AWS credentials from the",
            "standard chain only",
            "",
            "make weights",
            "  → mobilenetv2_notop.onnx",
            "     + .onnx.provenance.json",
            "make wheel + Dockerfile.env",
            "  → fruitfeat-env.tar.gz (packed",
            "     venv: no pyspark, no boto3)",
            "aws s3 sync  → the photos",
            "make emr-upload",
            "make emr-submit, emr-status",
            "  python -m fruitfeat.cloud.cli",
            "  (boto3, the [emr] extra): checks",
            "  the config and every bucket's",
            "  region before any upload or",
            "  cluster",
        ],
        face=COLOURS["outside"], edge=INK, size=9.2,
    )  # fmt: skip
    legend = "\n".join(_wrap(flow, 40) for flow in FLOWS)
    box(ax, 1, 2, 27, 50, "Flows", face="white", edge=grey)
    ax.text(2.2, 47.5, legend, ha="left", va="top", fontsize=8.6, color=INK, linespacing=1.3, zorder=3)

    # ---------------------------------------------------------------- the EU region
    frame(ax, 31, 2, 147, 107, "One AWS region in the EU (default eu-west-1)", COLOURS["region"], size=12.5)
    ax.text(
        104.5, 3.3,
        "Allowed: " + ", ".join(EU_REGIONS) + ".  London (eu-west-2) and Zurich (eu-central-2) are outside the EU.\n"
        "Any other region is refused by the template's Rules, by the emr profile of the job config and by the EMR "
        "command line.",
        ha="center", va="bottom", fontsize=9, color=COLOURS["region"], style="italic", zorder=6,
    )  # fmt: skip

    # ---- the CloudFormation stack
    frame(ax, 33, 10, 80, 91, "CloudFormation stack (deploy/emr/cloudformation.yaml)", COLOURS["stack"], size=11)
    box(ax, 35, 62, 76, 35, "Data bucket (DataBucket)", face=COLOURS["bucket"], edge=green)
    ax.text(
        36.2, 92.5,
        "SSE-KMS with the data key\nversioned, TLS only\nBlock Public Access, no ACLs\naccess-logged\n\n"
        "lifecycle: runs/ expire after\nRunsRetentionDays, old versions\nare erased, partial uploads\naborted",
        ha="left", va="top", fontsize=9, color=INK, linespacing=1.35, zorder=3,
    )  # fmt: skip
    prefixes = "\n".join(BUCKET_LAYOUT)
    ax.text(62, 95.5, prefixes, ha="left", va="top", color=INK, linespacing=1.3, zorder=3, **mono)
    box(
        ax, 35, 40, 37, 18, "KMS key (DataKey)",
        ["customer-managed, yearly", "rotation; alias/<stack>-data", "encrypts S3 objects, EMR", "local disks, EBS volumes"],
        face=COLOURS["kms"], edge=COLOURS["kms_edge"], size=9,
    )  # fmt: skip
    box(
        ax, 74, 40, 37, 18, "Log bucket (LogBucket)",
        ["SSE-S3, TLS only, no public", "access; expires after", "LogRetentionDays", "emr-logs/  s3-access/"],
        face=COLOURS["bucket"], edge=green, size=9,
    )  # fmt: skip
    box(
        ax, 35, 12, 24, 24, "EMR service role",
        ["AmazonEMRService-", "  Policy_v2 (subnets", "  tagged for EMR)", "+ pass the node role", "+ the data key, for", "  EBS encryption"],
        face=COLOURS["iam"], edge=COLOURS["iam_edge"], size=8.8, title_size=10,
    )  # fmt: skip
    box(
        ax, 61, 12, 25, 24, "Security configuration",
        ["at rest: SSE-KMS for", "  EMRFS; local disks", "  and EBS (data key)", "in transit: TLS (PEM", "  zip in emr/tls/)", "IMDSv2 only"],
        face=COLOURS["security"], edge=COLOURS["security_edge"], size=8.8, title_size=10,
    )  # fmt: skip
    box(
        ax, 88, 12, 23, 24, "Node role + profile",
        ["read fruits-360/,", "  weights/, emr/", "write, delete only", "  under fruitfeat/", "use the data key", "push emr-logs/"],
        face=COLOURS["iam"], edge=COLOURS["iam_edge"], size=8.8, title_size=10,
    )  # fmt: skip

    # ---- the EMR service and the transient cluster (made per run by make emr-submit, not by the stack)
    box(
        ax, 121, 87, 56, 13, "Amazon EMR service",
        ["RunJobFlow (a new cluster) or AddJobFlowSteps", "acts with the EMR service role"],
        face=COLOURS["outside"], edge=blue, size=9,
    )  # fmt: skip
    frame(ax, 121, 10, 56, 71, "Transient EMR cluster (emr-7.12.0)", blue, size=11)
    ax.text(
        149, 78, "runs one step, then terminates (idle guard: 1 h)",
        ha="center", va="top", fontsize=9, color=blue, zorder=3,
    )  # fmt: skip
    box(
        ax, 123, 60, 52, 14, "Primary node (m6i.xlarge)",
        ["YARN ResourceManager; runs the step:", "spark-submit --deploy-mode cluster"],
        face=COLOURS["node"], edge=blue, size=9,
    )  # fmt: skip
    box(
        ax, 123, 38, 52, 19, "Core node (m6i.xlarge)",
        [
            "the Spark driver's YARN container: lists,",
            "broadcasts the .onnx, fits the PCA, publishes",
            "+ one 2-core executor",
        ],
        face=COLOURS["node"], edge=blue, size=9,
    )  # fmt: skip
    box(
        ax, 123, 13, 52, 22, "Core nodes (m6i.xlarge) × n",
        [
            "two 2-core executors each; one Python",
            "worker per core runs ONNX Runtime from",
            "the unpacked venv (--archives ...#environment)",
            "EBS and local disks encrypted (data key)",
        ],
        face=COLOURS["node"], edge=blue, size=9,
    )  # fmt: skip

    # ---------------------------------------------------------------- flows
    arrow(ax, (28, 80), (35, 80), colour=green)
    tag(ax, 31.5, 82.5, 1, green)
    ax.plot([28, 149], [104, 104], color=INK, linewidth=1.8, zorder=5)
    arrow(ax, (149, 104), (149, 100), colour=INK)
    tag(ax, 90, 104, 2, INK)
    arrow(ax, (149, 87), (149, 81), colour=blue)
    tag(ax, 152, 84, 3, blue)
    arrow(ax, (111, 76), (121, 76), colour=green)
    tag(ax, 116, 78.5, 4, green)
    arrow(ax, (121, 68), (111, 68), colour=green)
    tag(ax, 116, 70.5, 5, green)
    arrow(ax, (121, 49), (111, 49), colour=grey)
    tag(ax, 116, 51.5, 6, grey)
    arrow(ax, (92, 62), (92, 58), colour=grey)
    tag(ax, 95, 60, 6, grey)
    arrow(ax, (53, 58), (53, 62), colour=COLOURS["kms_edge"], dashed=True)
    ax.text(54.5, 60, "encrypts", ha="left", va="center", fontsize=8.5, color=COLOURS["kms_edge"], zorder=6)
    arrow(ax, (111, 24), (121, 24), colour=COLOURS["iam_edge"], dashed=True)
    ax.text(116, 26.5, "instance\nprofile", ha="center", va="bottom", fontsize=8, color=COLOURS["iam_edge"], zorder=6)

    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, facecolor="white")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"PNG to write (default {OUT})")
    args = parser.parse_args(argv)
    print(draw(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
