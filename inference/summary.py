"""The summary image: what triage concluded, drawn on the study's images, as a Secondary Capture.

Any viewer shows it: a banner with the verdict (FRACTURE / DOUBT / NO FRACTURE, or score and
route), solid boxes for fractures (at or above the FRACTURE threshold), dashed ones for doubt and
for lesions, and "AI result - not verified by a radiologist" on every image.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from inference.inputs import StudyImages
from triage.outcomes import BreastOutcome, FractureOutcome, Mark, MarkKind

HEIGHT = 768
BANNER = 56
DISCLAIMER = "AI result - not verified by a radiologist"
RED, YELLOW, ORANGE, WHITE, BLACK = (230, 40, 40), (250, 210, 40), (255, 140, 0), (255, 255, 255), (0, 0, 0)


def banner(outcome: FractureOutcome | BreastOutcome, reason: str) -> str:
    """The banner's words."""
    off = (
        f"  ({', '.join(d.label for d in sorted(outcome.not_enabled))} not enabled)"
        if outcome.not_enabled
        else ""
    )
    if isinstance(outcome, FractureOutcome) and outcome.analysed and outcome.probability is not None:
        return f"{outcome.verdict.label}  (AI score {outcome.probability:.2f}){off}"[:160]
    if isinstance(outcome, BreastOutcome) and outcome.analysed:
        route = outcome.route.replace("_", " ")
        risk = "  HIGH RISK" if outcome.high_risk else ""
        return f"SCORE {outcome.score} OF 10 - {route}{risk}{off}"[:160]
    reading = "DOUBLE READ" if isinstance(outcome, BreastOutcome) else "READ AS USUAL"
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


_COLOURS = {MarkKind.FRACTURE: RED, MarkKind.DOUBT: YELLOW, MarkKind.LESION: ORANGE}


def render(
    study: StudyImages, outcome: FractureOutcome | BreastOutcome, reason: str, model: str
) -> np.ndarray:
    """Tile the study's images side by side at one height, draw the marks, banner and disclaimer."""
    marks: dict[str, list[Mark]] = {}
    for mark in outcome.marks:
        marks.setdefault(mark.sop_instance_uid, []).append(mark)
    tiles = []
    for image in study.images:
        # an unreadable image is a grey tile: still say what triage concluded, beside the others
        pixels = (
            image.pixels if image.pixels is not None else np.full((HEIGHT, HEIGHT * 4 // 5), 0.2, np.float32)
        )
        scale = HEIGHT / pixels.shape[0]
        tile = (
            Image.fromarray((pixels * 255).astype(np.uint8))
            .resize((max(1, round(pixels.shape[1] * scale)), HEIGHT), Image.Resampling.BILINEAR)
            .convert("RGB")
        )
        draw = ImageDraw.Draw(tile)
        for mark in marks.get(image.ref.sop_instance_uid, []):
            box = [c * scale for c in mark.corners]
            if mark.kind is MarkKind.FRACTURE:
                draw.rectangle(box, outline=_COLOURS[mark.kind], width=4)
            else:
                _dashed_rectangle(draw, box, _COLOURS[mark.kind])
        tiles.append(tile)
    width = sum(t.width for t in tiles)
    canvas = Image.new("RGB", (max(width, 640), HEIGHT + 2 * BANNER), BLACK)
    x = 0
    for tile in tiles:
        canvas.paste(tile, (x, BANNER))
        x += tile.width
    draw = ImageDraw.Draw(canvas)
    large, small = ImageFont.load_default(size=28), ImageFont.load_default(size=20)
    draw.text((12, 12), banner(outcome, reason), fill=WHITE, font=large)
    draw.text((12, HEIGHT + BANNER + 16), f"{DISCLAIMER}  |  {model}", fill=YELLOW, font=small)
    return np.asarray(canvas)


def summary_image(
    study: StudyImages, pixels: np.ndarray, series_instance_uid: str, sop_instance_uid: str
) -> hd.sc.SCImage:
    """Wrap the rendered pixels as a Secondary Capture in the source study (new series)."""
    reference = study.headers[0]
    lateralities = {image.facts.laterality for image in study.images}
    laterality = lateralities.pop() if len(lateralities) == 1 else None
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
    if laterality is None and {"L", "R"} <= lateralities:
        image.ImageLaterality = "B"  # PS3.3 C.7.6.1: both sides shown on one image (a screen)
    if "Laterality" not in image and "ImageLaterality" not in image:
        # General Series Laterality is Type 2C: required for a paired body part (a hand, a hip)
        # unless Image Laterality is given; empty when the sources show no single side (U, none).
        image.Laterality = ""
    image.SeriesDescription = "AI-generated triage summary, not verified by a radiologist"
    image.BurnedInAnnotation = "YES"
    image.ImageComments = DISCLAIMER
    return image
