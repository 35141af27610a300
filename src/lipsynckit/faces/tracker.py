"""Follow one face through a video: detect on keyframes, track in between, smooth.

Why not detect on every frame: detectors cost 10-200 ms per frame on a CPU while a face moves
little between frames. The tracker streams frames (it keeps only the previous frame's small grey
copy) and

* runs the detector on a copy capped at ``detect_max_side`` every ``detect_every`` frames, at once
  on a scene cut (HSV-histogram Bhattacharyya distance between consecutive frames above
  ``scene_cut``, or a change of frame size) and whenever tracking fails;
* between detections moves the box with a median-flow tracker: pyramidal Lucas-Kanade on corners
  inside the box, forward-backward checked; the median displacement moves the box and the median
  ratio of point distances scales it (landmarks follow the same similarity);
* chooses the face (``select``: largest, n-th from the left, under a given box, or most confident) when none is
  followed yet, and afterwards keeps identity: the detection with the highest IoU with the tracked box;
* afterwards fills gaps of at most ``fill_gaps`` frames between two sightings of the same face by
  linear interpolation, and smooths boxes with a centred moving average of ``smooth_window`` frames
  inside each run of one identity (never across a cut).

``exact=True`` is what the official inference code does: the detector on every full-resolution
frame, no tracking, no smoothing, no gap filling (identity is still kept by IoU).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from lipsynckit.errors import VideoError
from lipsynckit.faces.base import FaceDetector
from lipsynckit.faces.select import box_iou, match_face, select_face
from lipsynckit.types import Face, FaceTrack

log = logging.getLogger(__name__)


class TrackOptions(BaseModel):
    """How faces are found and followed; ``exact=True`` reproduces the official per-frame detection."""

    model_config = ConfigDict(extra="forbid")

    select: Literal["largest", "index", "box", "score"] = Field(
        default="largest", description="which face to follow (score = the detector's most confident)"
    )
    index: int = Field(default=0, description="with select='index': 0 = leftmost face, -1 = rightmost")
    box: tuple[float, float, float, float] | None = Field(
        default=None, description="with select='box': x1, y1, x2, y2"
    )
    exact: bool = Field(
        default=False, description="detect every frame at full resolution (official behaviour)"
    )
    detect_every: int = Field(
        default=8, ge=1, description="run the detector every N frames, track in between (median flow)"
    )
    detect_max_side: int = Field(
        default=640, ge=64, description="longest side of the image given to the detector"
    )
    track_max_side: int = Field(
        default=320, ge=64, description="longest side of the grey image used for tracking"
    )
    scene_cut: float = Field(
        default=0.35, gt=0.0, le=1.0, description="histogram distance that counts as a cut"
    )
    detect_near: bool = Field(
        default=True,
        description="confirm a followed face by detecting in a window around it before searching the whole frame",
    )
    min_iou: float = Field(default=0.3, gt=0.0, lt=1.0, description="IoU that keeps identity between frames")
    max_track_frames: int = Field(
        default=30, ge=0, description="frames a face is tracked without a confirming detection"
    )
    smooth_window: int = Field(
        default=5, ge=1, description="centred moving-average window (1 = no smoothing)"
    )
    fill_gaps: int = Field(
        default=3, ge=0, description="fill gaps of at most N frames between sightings of one face"
    )
    segment_frames: int = Field(
        default=128,
        ge=0,
        description="frames per segment of the parallel face pass, rounded up to a multiple of "
        "detect_every (0 = one segment); the track does not depend on the number of threads",
    )

    @field_validator("box", mode="before")
    @classmethod
    def _box(cls, v: Any) -> Any:
        if v is not None and len(v) != 4:
            raise ValueError("box must be x1, y1, x2, y2")
        return v


@dataclass
class TrackStats:
    """What the tracker did (for logs, benchmarks and tests)."""

    frames: int = 0
    detect_frames: list[int] = field(default_factory=list)
    cut_frames: list[int] = field(default_factory=list)
    tracked_frames: int = 0
    track_failures: int = 0
    filled_frames: int = 0

    @property
    def detections(self) -> int:
        return len(self.detect_frames)


def _scaled(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    import cv2

    h, w = image.shape[:2]
    s = min(1.0, max_side / float(max(h, w)))
    if s == 1.0:
        return image, 1.0
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA), s


def _scale_face(f: Face, s: float) -> Face:
    lm = None if f.landmarks is None else f.landmarks * s
    return Face(box=f.box * s, score=f.score, landmarks=lm)


def _similarity(face: Face, box: np.ndarray, score: float | None = None) -> Face:
    """Move ``face`` (box and landmarks) onto ``box`` by per-axis scale + translation."""
    old = face.box
    lm = None
    if face.landmarks is not None:
        sx = (box[2] - box[0]) / max(1e-6, old[2] - old[0])
        sy = (box[3] - box[1]) / max(1e-6, old[3] - old[1])
        lm = (face.landmarks - old[:2]) * np.array([sx, sy], np.float32) + box[:2]
    return Face(box=box.astype(np.float32), score=face.score if score is None else score, landmarks=lm)


class _MedianFlow:
    """Box tracking between two grey frames by forward-backward checked Lucas-Kanade."""

    def __init__(self) -> None:
        import cv2

        self.cv2 = cv2
        self.lk = {
            "winSize": (15, 15),
            "maxLevel": 3,
            "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03),
        }

    def points(self, grey: np.ndarray, box: np.ndarray) -> np.ndarray:
        cv2 = self.cv2
        h, w = grey.shape
        x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
        x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
        if x2 - x1 < 4 or y2 - y1 < 4:
            return np.zeros((0, 1, 2), np.float32)
        mask = np.zeros_like(grey)
        mask[y1:y2, x1:x2] = 255
        pts = cv2.goodFeaturesToTrack(grey, maxCorners=80, qualityLevel=0.01, minDistance=3, mask=mask)
        if pts is None or len(pts) < 10:  # flat face region: a regular grid still carries texture
            xs = np.linspace(x1 + 0.15 * (x2 - x1), x2 - 0.15 * (x2 - x1), 8)
            ys = np.linspace(y1 + 0.15 * (y2 - y1), y2 - 0.15 * (y2 - y1), 8)
            grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 1, 2).astype(np.float32)
            pts = grid if pts is None else np.concatenate([pts.astype(np.float32), grid])
        return pts.astype(np.float32)

    def track(self, prev: np.ndarray, cur: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, float] | None:
        """New box (same coordinates as ``box``) and the fraction of reliable points, or None."""
        cv2 = self.cv2
        p0 = self.points(prev, box)
        if len(p0) < 6:
            return None
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(prev, cur, p0, None, **self.lk)
        if p1 is None:
            return None
        p0r, st2, _ = cv2.calcOpticalFlowPyrLK(cur, prev, p1, None, **self.lk)
        if p0r is None:
            return None
        fb = np.linalg.norm((p0 - p0r).reshape(-1, 2), axis=1)
        ok = (st1.reshape(-1) == 1) & (st2.reshape(-1) == 1) & np.isfinite(fb)
        if ok.sum() < 6:
            return None
        thr = max(1.0, float(np.median(fb[ok])))
        ok &= fb <= thr
        if ok.sum() < 6:
            return None
        a = p0.reshape(-1, 2)[ok]
        b = p1.reshape(-1, 2)[ok]
        d = np.median(b - a, axis=0)
        rng = np.random.default_rng(0)
        n = len(a)
        m = min(400, n * (n - 1))
        i: np.ndarray = rng.integers(0, n, size=m)
        j: np.ndarray = rng.integers(0, n, size=m)
        keep = i != j
        da = np.linalg.norm(a[i[keep]] - a[j[keep]], axis=1)
        db = np.linalg.norm(b[i[keep]] - b[j[keep]], axis=1)
        good = da > 2.0
        s = float(np.median(db[good] / da[good])) if good.any() else 1.0
        s = float(np.clip(s, 0.8, 1.25))
        cx = (box[0] + box[2]) / 2.0 + d[0]
        cy = (box[1] + box[3]) / 2.0 + d[1]
        hw, hh = (box[2] - box[0]) * s / 2.0, (box[3] - box[1]) * s / 2.0
        new = np.array([cx - hw, cy - hh, cx + hw, cy + hh], np.float32)
        return new, float(ok.sum()) / float(len(p0))


def _hist(small_bgr_or_rgb: np.ndarray) -> np.ndarray:
    import cv2

    hsv = cv2.cvtColor(small_bgr_or_rgb, cv2.COLOR_RGB2HSV)
    h = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256])
    return cv2.normalize(h, h, 1.0, 0.0, cv2.NORM_L1)


class FaceTracker:
    """Streaming face tracker: ``update(frame)`` per frame, then ``finish()`` for the :class:`FaceTrack`."""

    def __init__(self, detector: FaceDetector, options: TrackOptions | None = None) -> None:
        self.detector = detector
        self.options = options or TrackOptions()
        if self.options.select == "box" and self.options.box is None:
            raise ValueError("TrackOptions(select='box') needs box=(x1, y1, x2, y2)")
        self.stats = TrackStats()
        self._faces: list[Face | None] = []
        self._segment: list[int] = []  # identity run id per frame (-1 = none)
        self._seg = -1
        self._cuts: set[int] = set()
        self._flow: _MedianFlow | None = None
        self._prev_grey: np.ndarray | None = None
        self._prev_scale = 1.0
        self._prev_hist: np.ndarray | None = None
        self._prev_shape: tuple[int, ...] | None = None
        self._cur: Face | None = None
        self._since_detect = 0
        self._since_confirm = 0

    # -- per frame -------------------------------------------------------------------------------
    def _detect(self, frame: np.ndarray, full: bool) -> list[Face]:
        self.stats.detect_frames.append(self.stats.frames)
        if full:
            return self.detector.detect(frame)
        small, s = _scaled(frame, self.options.detect_max_side)
        faces = self.detector.detect(small)
        return faces if s == 1.0 else [_scale_face(f, 1.0 / s) for f in faces]

    def _detect_near(self, frame: np.ndarray, box: np.ndarray) -> list[Face]:
        """Detect inside a window of twice the face's size around ``box`` (frame coordinates out)."""
        h, w = frame.shape[:2]
        x1, y1, x2, y2 = (float(v) for v in box)
        side = max(x2 - x1, y2 - y1)
        cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        a, b = max(0, int(cx - side)), max(0, int(cy - side))
        c, d = min(w, int(cx + side) + 1), min(h, int(cy + side) + 1)
        if c - a < 16 or d - b < 16:
            return self._detect(frame, full=False)
        self.stats.detect_frames.append(self.stats.frames)
        # the window is about two faces wide: 384 px keeps the face near 190 px, plenty for any detector
        crop, s = _scaled(np.ascontiguousarray(frame[b:d, a:c]), min(self.options.detect_max_side, 384))
        out = []
        for f in self.detector.detect(crop):
            g = f if s == 1.0 else _scale_face(f, 1.0 / s)
            shift = np.array([a, b], np.float32)
            lm = None if g.landmarks is None else g.landmarks + shift
            out.append(Face(box=g.box + np.tile(shift, 2), score=g.score, landmarks=lm))
        return out

    def _fresh(self, faces: list[Face]) -> Face | None:
        o = self.options
        chosen = select_face(faces, o.select, o.index, o.box)
        if chosen is not None:
            self._seg += 1
        return chosen

    def update(self, frame: np.ndarray) -> Face | None:
        """Process the next frame; returns the followed face in it (before smoothing) or None."""
        import cv2

        if (
            not isinstance(frame, np.ndarray)
            or frame.ndim != 3
            or frame.shape[2] != 3
            or frame.dtype != np.uint8
        ):
            raise VideoError(
                f"frame {self.stats.frames}: expected an RGB uint8 (H, W, 3) array, got "
                f"{getattr(frame, 'dtype', type(frame))} {getattr(frame, 'shape', '')}",
                stage="faces",
                remedy="decode frames with lipsynckit.media.VideoSource (RGB uint8)",
            )
        o = self.options
        i = self.stats.frames
        if o.exact:
            face = self._step_exact(frame)
        else:
            face = self._step_fast(frame, i, cv2)
        self._faces.append(face)
        self._segment.append(self._seg if face is not None else -1)
        self.stats.frames += 1
        return face

    def _step_exact(self, frame: np.ndarray) -> Face | None:
        faces = self._detect(frame, full=True)
        chosen = match_face(faces, self._cur.box, self.options.min_iou) if self._cur is not None else None
        if chosen is None:
            chosen = self._fresh(faces)
        self._cur = chosen
        return chosen

    def _step_fast(self, frame: np.ndarray, i: int, cv2: Any) -> Face | None:
        o = self.options
        small, ts = _scaled(frame, o.track_max_side)
        grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        hist = _hist(small)
        cut = False
        if self._prev_shape is not None:
            if frame.shape != self._prev_shape:
                cut = True
            elif self._prev_hist is not None:
                cut = cv2.compareHist(self._prev_hist, hist, cv2.HISTCMP_BHATTACHARYYA) > o.scene_cut
        if cut:
            self.stats.cut_frames.append(i)
            self._cuts.add(i)
            self._cur = None

        tracked: Face | None = None
        if self._cur is not None and self._prev_grey is not None:
            if self._flow is None:
                self._flow = _MedianFlow()
            res = self._flow.track(self._prev_grey, grey, self._cur.box * self._prev_scale)
            if res is None:
                self.stats.track_failures += 1
            else:
                box, _frac = res
                tracked = _similarity(self._cur, box / ts)

        need = cut or self._cur is None or tracked is None or self._since_detect + 1 >= o.detect_every
        # a lost face is searched for on the keyframe cadence only (cost stays bounded on face-free video)
        if self._cur is None and not cut and i > 0 and self._since_detect + 1 < o.detect_every:
            need = False
        face: Face | None
        if need:
            self._since_detect = 0
            ref = tracked if tracked is not None else self._cur
            chosen = None
            if ref is not None and not cut and o.detect_near:
                # confirm a followed face near where it is: a crop costs a fraction of the whole frame
                chosen = match_face(self._detect_near(frame, ref.box), ref.box, o.min_iou)
            faces: list[Face] = []
            if chosen is None:
                faces = self._detect(frame, full=False)
                chosen = match_face(faces, ref.box, o.min_iou) if ref is not None else None
            if chosen is not None:
                face = chosen
                self._since_confirm = 0
            elif tracked is not None and self._since_confirm < o.max_track_frames:
                face = tracked
                self._since_confirm += 1
                self.stats.tracked_frames += 1
            else:
                face = self._fresh(faces)
                self._since_confirm = 0
        else:
            self._since_detect += 1
            face = tracked
            if tracked is not None:
                self._since_confirm += 1
                self.stats.tracked_frames += 1
        self._cur = face
        self._prev_grey, self._prev_scale, self._prev_hist, self._prev_shape = grey, ts, hist, frame.shape
        return face

    # -- segments (lipsynckit.faces.segments) -----------------------------------------------------
    def seed(self, face: Face) -> None:
        """Start following ``face`` (from the segment before): the first frame confirms it near there."""
        if self.stats.frames:
            raise RuntimeError("seed() before the first frame only")
        self._cur = face
        self._seg = 0

    @property
    def faces_so_far(self) -> list[Face | None]:
        """The followed face per frame so far (before gap filling and smoothing)."""
        return self._faces

    @property
    def last_histogram(self) -> np.ndarray | None:
        """Colour histogram of the last frame (None in exact mode): scene cuts between segments."""
        return self._prev_hist

    @property
    def last_shape(self) -> tuple[int, ...] | None:
        return self._prev_shape

    def append(self, other: FaceTracker, start: int, cut: bool, continues: bool) -> None:
        """Add the frames of ``other`` (the segment from frame ``start``) after this tracker's.

        ``cut``: a scene cut falls at ``start``; ``continues``: other's first face is the face this
        tracker ended on, so both are one identity run (filled and smoothed across the join).
        """
        if start != len(self._faces):
            raise ValueError(f"segment starts at frame {start}, expected {len(self._faces)}")
        last_id = self._segment[-1] if self._segment else -1
        first_id = other._segment[0] if other._segment else -1
        base = self._seg + 1
        for sid in other._segment:
            if sid < 0:
                self._segment.append(-1)
            elif continues and sid == first_id and last_id >= 0:
                self._segment.append(last_id)
            else:
                self._segment.append(base + sid)
        self._faces.extend(other._faces)
        self._seg = max(self._seg, base + other._seg)
        self._cuts.update(start + c for c in other._cuts)
        st, ot = self.stats, other.stats
        if cut:
            self._cuts.add(start)
            st.cut_frames.append(start)
        st.frames += ot.frames
        st.detect_frames.extend(start + i for i in ot.detect_frames)
        st.cut_frames.extend(start + i for i in ot.cut_frames)
        st.tracked_frames += ot.tracked_frames
        st.track_failures += ot.track_failures
        self._prev_hist, self._prev_shape = other._prev_hist, other._prev_shape

    # -- end of stream ---------------------------------------------------------------------------
    def finish(self) -> FaceTrack:
        """Fill short gaps, smooth, and return the track (call once, after the last frame)."""
        faces = list(self._faces)
        seg = list(self._segment)
        o = self.options
        if not o.exact:
            if o.fill_gaps > 0:
                self._fill(faces, seg)
            if o.smooth_window > 1:
                faces = self._smooth(faces, seg)
        name = str(getattr(self.detector, "name", type(self.detector).__name__))
        log.info(
            "faces: %d/%d frames, %d detector calls, %d cuts, %d tracked, %d filled",
            sum(f is not None for f in faces),
            len(faces),
            self.stats.detections,
            len(self.stats.cut_frames),
            self.stats.tracked_frames,
            self.stats.filled_frames,
        )
        return FaceTrack(faces=faces, detector=name)

    def _fill(self, faces: list[Face | None], seg: list[int]) -> None:
        o = self.options
        n = len(faces)
        i = 0
        while i < n:
            if faces[i] is not None or i == 0:
                i += 1
                continue
            j = i
            while j < n and faces[j] is None:
                j += 1
            a, b = faces[i - 1], faces[j] if j < n else None
            gap = j - i
            no_cut = not any(k in self._cuts for k in range(i, j + 1))
            if (
                a is not None
                and b is not None
                and gap <= o.fill_gaps
                and no_cut
                and box_iou(a.box, b.box) >= o.min_iou
            ):
                for k in range(i, j):
                    t = (k - i + 1) / (gap + 1)
                    box = (1 - t) * a.box + t * b.box
                    lm = None
                    if (
                        a.landmarks is not None
                        and b.landmarks is not None
                        and a.landmarks.shape == b.landmarks.shape
                    ):
                        lm = (1 - t) * a.landmarks + t * b.landmarks
                    faces[k] = Face(box=box, score=min(a.score, b.score), landmarks=lm)
                    seg[k] = seg[i - 1]
                old = seg[j]
                for k in range(j, n):  # the same face: one identity run
                    if seg[k] != old:
                        break
                    seg[k] = seg[i - 1]
                self.stats.filled_frames += gap
            i = j

    def _smooth(self, faces: list[Face | None], seg: list[int]) -> list[Face | None]:
        half = self.options.smooth_window // 2
        boxes = np.array(
            [f.box if f is not None else np.full(4, np.nan, np.float32) for f in faces], np.float64
        )
        out: list[Face | None] = []
        n = len(faces)
        for k, f in enumerate(faces):
            if f is None:
                out.append(None)
                continue
            lo, hi = k, k
            while lo - 1 >= max(0, k - half) and seg[lo - 1] == seg[k] and lo not in self._cuts:
                lo -= 1
            while hi + 1 <= min(n - 1, k + half) and seg[hi + 1] == seg[k] and (hi + 1) not in self._cuts:
                hi += 1
            r = min(k - lo, hi - k)  # symmetric window: no lag at run ends
            box = boxes[k - r : k + r + 1].mean(axis=0).astype(np.float32)
            out.append(_similarity(f, box))
        return out


def track_faces(
    frames: Iterable[np.ndarray],
    detector: FaceDetector,
    options: TrackOptions | None = None,
    num_frames: int | None = None,
    progress: bool = False,
) -> FaceTrack:
    """Find and follow one face through streamed RGB frames (at most ``num_frames`` are read)."""
    tracker = FaceTracker(detector, options)
    it: Iterator[np.ndarray] = iter(frames) if num_frames is None else islice(frames, num_frames)
    from lipsynckit.progress import progress_bar

    # the shared bar: a widget in notebooks, quiet under `-q`, throttled when not on a terminal
    bar = progress_bar(total=num_frames, desc="faces", unit="frame", enable=progress)
    try:
        for frame in it:
            tracker.update(frame)
            bar.update(1)
    finally:
        bar.close()
    if num_frames is not None and tracker.stats.frames < num_frames:
        log.warning("faces: expected %d frames, got %d", num_frames, tracker.stats.frames)
    return tracker.finish()
