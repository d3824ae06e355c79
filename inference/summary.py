"""The summary image: what triage concluded, drawn on the study's images, as a Secondary Capture.

Any viewer shows it: a banner with the verdict (FRACTURE / DOUBT / NO FRACTURE, or score and
route), solid boxes for fractures (at or above the FRACTURE threshold), dashed ones for doubt and
for lesions, and "AI result - not verified by a radiologist" on every image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom import Dataset

from inference.schemas import outcome_marks
from triage.imaging import UnreadableImage, read_dicom

HEIGHT = 768
BANNER = 56
DISCLAIMER = "AI result - not verified by a radiologist"
RED, YELLOW, ORANGE, WHITE, BLACK = (230, 40, 40), (250, 210, 40), (255, 140, 0), (255, 255, 255), (0, 0, 0)


def verdict(pipeline: str, outcome: dict[str, Any], reason: str) -> str:
    """The banner's words."""
    if pipeline == "fracture" and "state" in outcome:
        return f"{outcome['state']}  (AI probability {outcome['probability']:.2f})"
    if pipeline == "breast" and outcome.get("score") is not None:
        route = outcome["route"].replace("_", " ")
        return f"SCORE {outcome['score']} OF 10 - {route}" + ("  HIGH RISK" if outcome["high_risk"] else "")
    reading = "DOUBLE READ" if pipeline == "breast" else "READ AS USUAL"
    return f"NOT ANALYSED - {reading}: {reason}"[:160]


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box: Sequence[float], colour: tuple[int, int, int]) -> None:
    x0, y0, x1, y1 = box
    dash = 8
    for a, b in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)), ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = max(abs(b[0] - a[0]), abs(b[1] - a[1]))
        for start in np.arange(0, length, 2 * dash):
            t0, t1 = start / length, min(start + dash, length) / length
            draw.line(
                [
                    (a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0),
                    (a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1),
                ],
                fill=colour,
                width=3,
            )


def _marks(
    pipeline: str, outcome: dict[str, Any]
) -> dict[str, list[tuple[list[float], bool, tuple[int, int, int]]]]:
    """Per SOP Instance UID: (corners, solid, colour) for every box to draw."""
    marks: dict[str, list[tuple[list[float], bool, tuple[int, int, int]]]] = {}
    threshold = outcome.get("thresholds", {}).get("fracture", 1.0)
    for sop_instance_uid, corners, score in outcome_marks(pipeline, outcome):
        solid = pipeline == "fracture" and score >= threshold
        colour = ORANGE if pipeline != "fracture" else RED if solid else YELLOW
        marks.setdefault(sop_instance_uid, []).append((corners, solid, colour))
    return marks


def render(
    sources: Sequence[Dataset],
    paths: Sequence[Any],
    pipeline: str,
    outcome: dict[str, Any],
    reason: str,
    model: str,
) -> np.ndarray:
    """Tile the study's images side by side at one height, draw the marks, banner and disclaimer."""
    marks = _marks(pipeline, outcome)
    tiles = []
    for ds, path in zip(sources, paths, strict=True):
        try:
            pixels, _ = read_dicom(path)
        except UnreadableImage:  # still say what triage concluded, beside the images it could read
            pixels = np.full((HEIGHT, HEIGHT * 4 // 5), 0.2, dtype=np.float32)
        scale = HEIGHT / pixels.shape[0]
        tile = (
            Image.fromarray((pixels * 255).astype(np.uint8))
            .resize((max(1, round(pixels.shape[1] * scale)), HEIGHT), Image.Resampling.BILINEAR)
            .convert("RGB")
        )
        draw = ImageDraw.Draw(tile)
        for corners, solid, colour in marks.get(str(ds.SOPInstanceUID), []):
            box = [c * scale for c in corners]
            if solid:
                draw.rectangle(box, outline=colour, width=4)
            else:
                _dashed_rectangle(draw, box, colour)
        tiles.append(tile)
    width = sum(t.width for t in tiles)
    canvas = Image.new("RGB", (max(width, 640), HEIGHT + 2 * BANNER), BLACK)
    x = 0
    for tile in tiles:
        canvas.paste(tile, (x, BANNER))
        x += tile.width
    draw = ImageDraw.Draw(canvas)
    large, small = ImageFont.load_default(size=28), ImageFont.load_default(size=20)
    draw.text((12, 12), verdict(pipeline, outcome, reason), fill=WHITE, font=large)
    draw.text((12, HEIGHT + BANNER + 16), f"{DISCLAIMER}  |  {model}", fill=YELLOW, font=small)
    return np.asarray(canvas)


def summary_image(
    sources: Sequence[Dataset], pixels: np.ndarray, series_instance_uid: str, sop_instance_uid: str
) -> hd.sc.SCImage:
    """Wrap the rendered pixels as a Secondary Capture in the source study (new series)."""
    reference = sources[0]
    lateralities = {str(ds.get("ImageLaterality", "") or ds.get("Laterality", "")) for ds in sources}
    laterality = lateralities.pop() if len(lateralities) == 1 else None  # a screen shows both breasts
    image = hd.sc.SCImage.from_ref_dataset(
        reference,
        pixels,
        "RGB",
        8,
        "PATIENT",
        series_instance_uid,
        9902,
        sop_instance_uid,
        1,
        "triage (open source)",
        patient_orientation=("L", "F"),
        laterality=laterality if laterality in {"L", "R"} else None,
    )
    if laterality is None and {"L", "R"} <= lateralities | {
        str(ds.get("ImageLaterality", "")) for ds in sources
    }:
        image.ImageLaterality = "B"  # PS3.3 C.7.6.1: both sides shown on one image
    image.SeriesDescription = "AI-generated triage summary, not verified by a radiologist"
    image.BurnedInAnnotation = "YES"
    image.ImageComments = DISCLAIMER
    return image
