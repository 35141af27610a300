"""The batching scheduler on CPU with real threads: order, cross-job batches, back-pressure, chunks,
out-of-memory halving, error routing, memory-budget probing, and the ordered CPU map.

The generate functions are small torch ops on real face crops (Grace Hopper's photo), so a batched
result can be checked against the same op run on one frame.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lipsynckit.errors import DeviceOutOfMemoryError, LipSyncError
from lipsynckit.scheduler import (
    BatchScheduler,
    FrameGenerationError,
    FrameOutOfMemoryError,
    RssMemoryMeter,
    SchedulerClosedError,
    SchedulerOptions,
    device_to_host,
    forget_batch_sizes,
    host_to_device,
    is_out_of_memory,
    map_ordered,
    remember_batch_size,
    remembered_batch_size,
)
from lipsynckit.types import ModelBatch, PreparedFace, WorkItem

FACE = 48  # crop side: small, so the whole file runs in seconds

pytestmark = pytest.mark.timeout(120)  # a scheduling bug shows as a hang: fail it, not the whole run


@pytest.fixture(autouse=True)
def _fresh_table() -> None:
    forget_batch_sizes()


@pytest.fixture(scope="module")
def photo(grace_hopper_jpg: Path) -> np.ndarray:
    bgr = cv2.imread(str(grace_hopper_jpg))
    assert bgr is not None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def crop_for(photo: np.ndarray, job: int, index: int) -> np.ndarray:
    """A different real crop per (job, frame): a window sliding over the photo."""
    h, w = photo.shape[:2]
    y = (37 * job + 5 * index) % (h - 160)
    x = (53 * job + 7 * index) % (w - 160)
    return cv2.resize(photo[y : y + 160, x : x + 160], (FACE, FACE), interpolation=cv2.INTER_AREA)


def make_item(photo: np.ndarray, job: int, index: int) -> WorkItem:
    g = torch.Generator().manual_seed(1000 * job + index)
    audio = torch.randn(1, 80, 16, generator=g)  # a Wav2Lip-shaped mel window
    face = PreparedFace(box=(0, 0, FACE, FACE), crop=crop_for(photo, job, index))
    return WorkItem(job_id=job, index=index, face=face, audio=audio)


class ConvGenerate:
    """A fixed random conv net on the crops, modulated by the audio: a stand-in for a lip-sync generator.

    Records every batch as (job id, frame index) pairs.
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3, padding=1)
        ).eval()
        self.delay_s = delay_s
        self.batches: list[list[tuple[int, int]]] = []
        self.lock = threading.Lock()

    def __call__(self, batch: ModelBatch) -> list[np.ndarray]:
        with self.lock:
            self.batches.append([(it.job_id, it.index) for it in batch.items])
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.run(batch)

    @torch.no_grad()
    def run(self, batch: ModelBatch) -> list[np.ndarray]:
        x = torch.from_numpy(np.stack([f.crop for f in batch.faces()])).permute(0, 3, 1, 2).float() / 255.0
        a = batch.audio().mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)
        y = self.net(x) + a
        return list(y.permute(0, 2, 3, 1).numpy())


def expected(gen: ConvGenerate, photo: np.ndarray, job: int, index: int) -> np.ndarray:
    return gen.run(ModelBatch([make_item(photo, job, index)]))[0]


def produce(
    job_obj: object, photo: np.ndarray, n: int, pace_s: float = 0.0, errors: list[BaseException] | None = None
) -> threading.Thread:
    """A producer thread; with ``errors``, a LipSyncError from submit() (failed job) ends it quietly."""

    def body() -> None:
        try:
            for i in range(n):
                job_obj.submit(make_item(photo, job_obj.id, i))  # type: ignore[attr-defined]
                if pace_s:
                    time.sleep(pace_s)
        except LipSyncError as exc:
            if errors is None:
                raise
            errors.append(exc)
        finally:
            job_obj.close()  # type: ignore[attr-defined]

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t


def consume(job_obj: object, sink: dict[int, list[tuple[int, np.ndarray]]]) -> threading.Thread:
    def body() -> None:
        sink[job_obj.id] = list(job_obj.results())  # type: ignore[attr-defined]

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t


def test_three_concurrent_jobs_keep_order_mix_in_batches_and_match_single_frame_runs(
    photo: np.ndarray,
) -> None:
    gen = ConvGenerate(delay_s=0.01)  # slow enough that all three queues hold work at once
    sizes = {0: 37, 1: 23, 2: 30}
    opts = SchedulerOptions(max_batch=8, max_wait_ms=5, queue_size=8, workers=1)
    with BatchScheduler(gen, opts) as sched:
        jobs = [sched.open_job() for _ in sizes]
        assert [j.id for j in jobs] == [0, 1, 2]
        out: dict[int, list[tuple[int, np.ndarray]]] = {}
        threads = [produce(j, photo, sizes[j.id]) for j in jobs] + [consume(j, out) for j in jobs]
        for t in threads:
            t.join(timeout=60)
            assert not t.is_alive()
        stats = sched.stats()

    for j, n in sizes.items():
        assert [i for i, _ in out[j]] == list(range(n)), f"job {j} out of order"
        for i in (0, n // 2, n - 1):  # batched output equals the op run on that frame alone
            np.testing.assert_allclose(out[j][i][1], expected(gen, photo, j, i), atol=1e-5)
    # every frame went through generate exactly once
    seen = sorted(p for b in gen.batches for p in b)
    assert seen == sorted((j, i) for j, n in sizes.items() for i in range(n))
    # cross-job batching: some batches carry frames of several jobs, and none exceeds max_batch
    assert max(len({j for j, _ in b}) for b in gen.batches) >= 2
    assert max(len(b) for b in gen.batches) <= 8
    assert stats.items == sum(sizes.values())
    assert stats.batches == len(gen.batches)
    assert 0.0 < stats.mean_batch_fill <= 1.0
    assert 0.0 < stats.device_busy_fraction <= 1.0
    assert stats.stage_s["generate"] > 0.0
    assert stats.oom_retries == 0 and stats.failed_items == 0
    assert all(d <= 8 for d in stats.max_queue_depth.values()), stats.max_queue_depth
    # fewer batches than frames: batching happened
    assert stats.batches < stats.items / 2


def test_round_robin_is_fair_between_jobs_with_full_queues(photo: np.ndarray) -> None:
    release = threading.Event()

    class Gated(ConvGenerate):
        def __call__(self, batch: ModelBatch) -> list[np.ndarray]:
            release.wait(timeout=30)
            return super().__call__(batch)

    gen = Gated()
    opts = SchedulerOptions(max_batch=6, max_wait_ms=0, queue_size=12)
    with BatchScheduler(gen, opts) as sched:
        a, b = sched.open_job(), sched.open_job()
        for i in range(12):  # fill both queues before the device gets going
            a.submit(make_item(photo, a.id, i))
            b.submit(make_item(photo, b.id, i))
        a.close()
        b.close()
        release.set()
        ra, rb = list(a.results()), list(b.results())
    assert [i for i, _ in ra] == list(range(12)) and [i for i, _ in rb] == list(range(12))
    # after the first batch (taken before job b had anything queued), both jobs share each batch evenly
    for batch in gen.batches[1:]:
        counts = [sum(1 for j, _ in batch if j == job) for job in (0, 1)]
        assert abs(counts[0] - counts[1]) <= 1 or len(batch) < 6, gen.batches


def test_back_pressure_bounds_the_queue(photo: np.ndarray) -> None:
    release = threading.Event()

    class Gated(ConvGenerate):
        def __call__(self, batch: ModelBatch) -> list[np.ndarray]:
            release.wait(timeout=30)
            return super().__call__(batch)

    gen = Gated()
    opts = SchedulerOptions(max_batch=4, max_wait_ms=0, queue_size=5)
    with BatchScheduler(gen, opts) as sched:
        job = sched.open_job()
        producer = produce(job, photo, 40)
        deadline = time.monotonic() + 10
        while not job._producer_blocked and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # would the producer get further? it must not
        assert producer.is_alive() and job._producer_blocked, "submit() did not block on a full queue"
        assert 5 < job.submitted <= 4 + 5 + 1  # in generate + queued + the one blocked in submit()
        assert job.queued_items == 5
        release.set()
        got = list(job.results())
        producer.join(timeout=10)
        stats = sched.stats()
    assert [i for i, _ in got] == list(range(40))
    assert stats.max_queue_depth[job.id] <= 5


def test_result_buffer_bounds_unread_outputs_of_a_slow_consumer(photo: np.ndarray) -> None:
    gen = ConvGenerate()
    opts = SchedulerOptions(max_batch=2, max_wait_ms=0, queue_size=4, result_buffer=3)
    held: list[int] = []
    with BatchScheduler(gen, opts) as sched:
        job = sched.open_job()
        producer = produce(job, photo, 30)
        got = []
        for i, _ in job.results():
            got.append(i)
            time.sleep(0.005)  # a slow encoder
            held.append(len(job._done))
        producer.join(timeout=10)
    assert got == list(range(30))
    assert max(held) <= 3 + 2  # the buffer plus one batch taken before the consumer caught up


def test_chunks_are_never_split_nor_mixed(photo: np.ndarray) -> None:
    gen = ConvGenerate(delay_s=0.005)
    sizes = {0: 40, 1: 35, 2: 16}  # short last chunks: 8 and 3 frames
    opts = SchedulerOptions(max_batch=32, chunk_frames=16, max_wait_ms=5, queue_size=32)
    with BatchScheduler(gen, opts) as sched:
        jobs = [sched.open_job() for _ in sizes]
        out: dict[int, list[tuple[int, np.ndarray]]] = {}
        threads = [produce(j, photo, sizes[j.id]) for j in jobs] + [consume(j, out) for j in jobs]
        for t in threads:
            t.join(timeout=60)
            assert not t.is_alive()
    for j, n in sizes.items():
        assert [i for i, _ in out[j]] == list(range(n))
    where: dict[tuple[int, int], int] = {}
    for b_i, batch in enumerate(gen.batches):
        assert len(batch) <= 32
        # a batch is a sequence of whole chunks: runs of consecutive frames of one job, starting at a
        # chunk boundary and as long as the chunk
        k = 0
        while k < len(batch):
            job, start = batch[k]
            assert start % 16 == 0, batch
            length = min(16, sizes[job] - start)
            run = batch[k : k + length]
            assert run == [(job, start + t) for t in range(length)], batch
            chunk = (job, start // 16)
            assert chunk not in where
            where[chunk] = b_i
            k += length
    assert sorted(where) == sorted((j, c) for j, n in sizes.items() for c in range((n + 15) // 16))


def _oom_above(
    limit: int, gen: ConvGenerate, cuda_type: bool = True
) -> Callable[[ModelBatch], list[np.ndarray]]:
    def generate(batch: ModelBatch) -> list[np.ndarray]:
        if len(batch) > limit:
            if cuda_type:
                raise torch.cuda.OutOfMemoryError(
                    f"CUDA out of memory. Tried to allocate {len(batch)} frames"
                )
            raise RuntimeError(
                "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"
            )
        return gen(batch)

    return generate


@pytest.mark.parametrize("cuda_type", [True, False])
def test_out_of_memory_halves_the_batch_and_loses_no_frame(photo: np.ndarray, cuda_type: bool) -> None:
    gen = ConvGenerate()
    opts = SchedulerOptions(max_batch=16, max_wait_ms=20, queue_size=64, model_name="fake")
    with BatchScheduler(_oom_above(5, gen, cuda_type), opts) as sched:
        a, b = sched.open_job(), sched.open_job()
        for i in range(30):
            a.submit(make_item(photo, a.id, i))
        for i in range(11):
            b.submit(make_item(photo, b.id, i))
        a.close()
        b.close()
        ra, rb = list(a.results()), list(b.results())
        stats = sched.stats()
    assert [i for i, _ in ra] == list(range(30)) and [i for i, _ in rb] == list(range(11))
    np.testing.assert_allclose(ra[17][1], expected(gen, photo, a.id, 17), atol=1e-5)
    assert stats.oom_retries >= 2  # 16 -> 8 -> 4
    assert stats.batch_size == 4 and stats.batch_size_history == [16, 8, 4]
    assert max(len(x) for x in gen.batches) <= 5
    assert sorted(p for x in gen.batches for p in x) == sorted(
        [(0, i) for i in range(30)] + [(1, i) for i in range(11)]
    )
    assert stats.items == 41 and stats.failed_items == 0
    # the reduced size is remembered for this model, device and crop size
    assert remembered_batch_size("fake", "cpu", (FACE, FACE)) == 4


def test_remembered_size_is_used_by_the_next_scheduler(photo: np.ndarray) -> None:
    remember_batch_size("fake2", "cpu", (FACE, FACE), 3)
    gen = ConvGenerate()
    with BatchScheduler(gen, SchedulerOptions(max_batch=16, max_wait_ms=50, model_name="fake2")) as sched:
        job = sched.open_job()
        for i in range(12):
            job.submit(make_item(photo, job.id, i))
        job.close()
        assert len(list(job.results())) == 12
    assert max(len(x) for x in gen.batches) <= 3


def test_out_of_memory_at_batch_size_one_names_job_and_frame(photo: np.ndarray) -> None:
    # the device thread waits until every frame is queued, so the failure reaches job 1 through
    # results() and never through a submit() that happens to run after it (no race on a loaded machine)
    all_queued = threading.Event()

    def generate(batch: ModelBatch) -> list[np.ndarray]:
        assert all_queued.wait(timeout=60), "frames were not all queued"
        if any(it.job_id == 1 and it.index == 6 for it in batch.items):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory.")
        return ConvGenerate.run(gen, batch)

    gen = ConvGenerate()
    with BatchScheduler(generate, SchedulerOptions(max_batch=4, max_wait_ms=20)) as sched:
        a, b = sched.open_job(), sched.open_job()
        for i in range(10):
            a.submit(make_item(photo, a.id, i))
            b.submit(make_item(photo, b.id, i))
        a.close()
        b.close()
        all_queued.set()
        ra = list(a.results())
        got_b: list[int] = []
        with pytest.raises(FrameOutOfMemoryError) as info:
            for i, _ in b.results():
                got_b.append(i)
    # job 0 shared batches with the failing frame, but splitting isolated it: job 0 is whole
    assert [i for i, _ in ra] == list(range(10))
    assert got_b == list(range(6))
    err = info.value
    assert isinstance(err, DeviceOutOfMemoryError) and err.exit_code == 3
    assert err.job_id == 1 and err.indices == [6]
    assert "job 1" in str(err) and "6" in str(err) and err.remedy and err.stage == "model"


def test_an_exception_goes_to_the_jobs_in_the_failing_batch_with_their_frames(photo: np.ndarray) -> None:
    gen = ConvGenerate(delay_s=0.003)

    def generate(batch: ModelBatch) -> list[np.ndarray]:
        if any(it.job_id == 0 and it.index == 7 for it in batch.items):
            gen.batches.append([(it.job_id, it.index) for it in batch.items])
            raise ValueError("broken crop")
        return gen(batch)

    sizes = {0: 20, 1: 20, 2: 20}
    with BatchScheduler(generate, SchedulerOptions(max_batch=4, max_wait_ms=5, queue_size=8)) as sched:
        jobs = [sched.open_job() for _ in sizes]
        results: dict[int, list[int]] = {j: [] for j in sizes}
        errors: dict[int, BaseException] = {}

        def consume_job(job: object) -> None:
            try:
                for i, _ in job.results():  # type: ignore[attr-defined]
                    results[job.id].append(i)  # type: ignore[attr-defined]
            except LipSyncError as exc:
                errors[job.id] = exc  # type: ignore[attr-defined]

        submit_errors: list[BaseException] = []
        producers = [produce(j, photo, sizes[j.id], pace_s=0.001, errors=submit_errors) for j in jobs]
        consumers = [threading.Thread(target=consume_job, args=(j,)) for j in jobs]
        for t in consumers:
            t.start()
        for t in producers:
            t.join(timeout=30)
            assert not t.is_alive()
        for t in consumers:
            t.join(timeout=30)
            assert not t.is_alive()
    # a failed job's producer got the job's error from submit() (if it was still submitting)
    assert all(isinstance(e, FrameGenerationError) and e.job_id in errors for e in submit_errors)
    failing = next(b for b in gen.batches if (0, 7) in b)
    in_failing = {j for j, _ in failing}
    assert 0 in in_failing
    for j in sizes:
        if j in in_failing:
            err = errors[j]
            assert isinstance(err, FrameGenerationError)
            assert err.job_id == j
            assert err.indices == [i for jj, i in failing if jj == j]
            assert f"job {j}" in str(err) and "broken crop" in str(err)
            assert isinstance(err.__cause__, ValueError)
            # everything before the failing frames came out, in order
            assert results[j] == list(range(min(err.indices)))
        else:
            assert j not in errors and results[j] == list(range(sizes[j]))


def test_submit_after_a_failure_raises_so_the_producer_stops(photo: np.ndarray) -> None:
    def generate(batch: ModelBatch) -> list[np.ndarray]:
        raise ValueError("nope")

    with BatchScheduler(generate, SchedulerOptions(max_batch=2, max_wait_ms=0)) as sched:
        job = sched.open_job()
        job.submit(make_item(photo, job.id, 0))
        with pytest.raises(FrameGenerationError):
            list(job.results())
        with pytest.raises(FrameGenerationError):
            job.submit(make_item(photo, job.id, 1))
        assert sched.stats().failed_items == 1


def test_a_job_that_submits_nothing_yields_nothing(photo: np.ndarray) -> None:
    gen = ConvGenerate()
    with BatchScheduler(gen, SchedulerOptions()) as sched:
        empty = sched.open_job()
        full = sched.open_job()
        empty.close()
        for i in range(3):
            full.submit(make_item(photo, full.id, i))
        full.close()
        assert list(empty.results()) == []
        assert [i for i, _ in full.results()] == [0, 1, 2]
        with pytest.raises(SchedulerClosedError):
            empty.submit(make_item(photo, empty.id, 0))
    assert sum(len(b) for b in gen.batches) == 3


def test_one_thread_can_submit_then_read_without_closing(photo: np.ndarray) -> None:
    """min_batch must not hang a consumer that waits on frames already queued."""
    gen = ConvGenerate()
    with BatchScheduler(gen, SchedulerOptions(max_batch=16, min_batch=8, max_wait_ms=1)) as sched:
        job = sched.open_job()
        for i in range(3):
            job.submit(make_item(photo, job.id, i))
        it = job.results()
        assert [next(it)[0] for _ in range(3)] == [0, 1, 2]
        job.close()
        assert list(it) == []


def test_min_batch_holds_small_batches_while_more_work_can_come(photo: np.ndarray) -> None:
    gen = ConvGenerate()
    with BatchScheduler(gen, SchedulerOptions(max_batch=8, min_batch=4, max_wait_ms=1)) as sched:
        job = sched.open_job()
        for i in range(2):
            job.submit(make_item(photo, job.id, i))
        time.sleep(0.2)  # far past max_wait_ms: still below min_batch, nobody waiting, job open
        assert gen.batches == []
        for i in range(2, 5):
            job.submit(make_item(photo, job.id, i))
        job.close()
        assert [i for i, _ in job.results()] == [0, 1, 2, 3, 4]
    assert len(gen.batches[0]) >= 4


def test_leaving_the_scheduler_with_an_open_job_reports_its_frames(photo: np.ndarray) -> None:
    gen = ConvGenerate()
    sched = BatchScheduler(gen, SchedulerOptions(chunk_frames=4))
    with sched:
        job = sched.open_job()
        for i in range(6):  # one whole chunk of 4 is queued, 2 frames wait for their chunk
            job.submit(make_item(photo, job.id, i))
    got: list[int] = []
    with pytest.raises(SchedulerClosedError):
        for i, _ in job.results():
            got.append(i)
    assert got == [0, 1, 2, 3]
    with pytest.raises(SchedulerClosedError):
        sched.open_job()


def test_wrong_job_id_is_refused(photo: np.ndarray) -> None:
    with BatchScheduler(ConvGenerate(), SchedulerOptions()) as sched:
        job = sched.open_job()
        with pytest.raises(ValueError, match="job_id"):
            job.submit(make_item(photo, job.id + 5, 0))
        job.close()


def test_memory_budget_probe_sizes_the_batch_and_is_remembered(photo: np.ndarray) -> None:
    per_frame, fixed = 10_000_000, 4_000_000
    used = {"peak": 0}

    class FakeMeter:
        resets = 0

        def reset(self) -> int:
            FakeMeter.resets += 1
            used["peak"] = 0
            return 0

        def peak(self) -> int:
            return used["peak"]

    gen = ConvGenerate()

    def generate(batch: ModelBatch) -> list[np.ndarray]:
        used["peak"] = max(used["peak"], fixed + per_frame * len(batch))
        return gen(batch)

    budget = fixed + 6 * per_frame + per_frame // 2  # room for 6 frames
    opts = SchedulerOptions(max_batch=16, max_wait_ms=50, memory_budget_bytes=budget, model_name="probe")
    with BatchScheduler(generate, opts, memory_meter=FakeMeter()) as sched:
        job = sched.open_job()
        for i in range(40):
            job.submit(make_item(photo, job.id, i))
        job.close()
        assert [i for i, _ in job.results()] == list(range(40))
        assert sched.batch_size == 6
    assert FakeMeter.resets == 2  # probes with 1 and 2 frames
    assert [len(b) for b in gen.batches[:2]] == [1, 2]
    assert max(len(b) for b in gen.batches[2:]) == 6
    assert remembered_batch_size("probe", "cpu", (FACE, FACE)) == 6
    # a second scheduler for the same key does not probe again
    with BatchScheduler(generate, opts, memory_meter=FakeMeter()) as sched:
        job = sched.open_job()
        for i in range(8):
            job.submit(make_item(photo, job.id, i))
        job.close()
        assert len(list(job.results())) == 8
        assert sched.batch_size == 6
    assert FakeMeter.resets == 2


@pytest.mark.skipif(not RssMemoryMeter.available(), reason="needs Linux /proc/self/clear_refs")
def test_rss_meter_sees_a_real_allocation() -> None:
    meter = RssMemoryMeter()
    base = meter.reset()
    x = torch.ones(200 * 2**20 // 4)  # 200 MiB touched
    grew = meter.peak() - base
    del x
    assert grew >= 150 * 2**20


def test_map_ordered_keeps_order_bounds_work_and_raises_in_place() -> None:
    active = 0
    most = 0
    lock = threading.Lock()
    times: list[float] = []

    def work(x: int) -> int:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        time.sleep(0.001 * ((x * 7) % 5))
        with lock:
            active -= 1
        return x * x

    pulled = []

    def source() -> Iterator[int]:
        for i in range(60):
            pulled.append(i)
            yield i

    gen = map_ordered(work, source(), workers=3, max_pending=4, on_time=times.append)
    first = next(gen)
    assert first == 0
    assert len(pulled) <= 4 + 1  # bounded read-ahead
    rest = list(gen)
    assert [first, *rest] == [i * i for i in range(60)]
    assert most <= 3 and len(times) == 60

    def boom(x: int) -> int:
        if x == 5:
            raise KeyError(x)
        return x

    got = []
    with pytest.raises(KeyError):
        for y in map_ordered(boom, range(10), workers=2):
            got.append(y)
    assert got == [0, 1, 2, 3, 4]
    assert list(map_ordered(boom, range(5), workers=0)) == [0, 1, 2, 3, 4]


def test_scheduler_map_ordered_records_stage_time() -> None:
    with BatchScheduler(ConvGenerate(), SchedulerOptions(workers=2)) as sched:

        def slow(x: int) -> int:
            time.sleep(0.002)
            return x

        out = list(sched.map_ordered(slow, range(10), stage="decode"))
        assert out == list(range(10))
        assert sched.stats().stage_s["decode"] >= 0.015


def test_options_validate() -> None:
    with pytest.raises(ValueError):
        SchedulerOptions(min_batch=8, max_batch=4)
    with pytest.raises(ValueError):
        SchedulerOptions(device="tpu")
    with pytest.raises(ValueError):
        SchedulerOptions(max_batch=0)
    assert SchedulerOptions().max_batch == 16


def test_is_out_of_memory() -> None:
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_host_device_helpers_on_cpu(photo: np.ndarray) -> None:
    crops = [crop_for(photo, 0, i) for i in range(3)]
    t = host_to_device(crops, "cpu")
    assert t.shape == (3, FACE, FACE, 3) and t.dtype == torch.uint8
    np.testing.assert_array_equal(device_to_host(t).numpy()[1], crops[1])


# ------------------------------------------------------------------------------------------------
# CUDA: streams, pinned staging, events (skipped without a GPU)
# ------------------------------------------------------------------------------------------------


class StagedConv:
    """The ConvGenerate op split into to_device / compute / to_host hooks."""

    def __init__(self, base: ConvGenerate, device: torch.device) -> None:
        self.net = base.net.to(device)
        self.device = device
        self.batches = 0

    def to_device(self, batch: ModelBatch, stream: object | None) -> tuple[torch.Tensor, torch.Tensor]:
        crops = host_to_device([f.crop for f in batch.faces()], self.device)
        audio = host_to_device(batch.audio(), self.device)
        return crops, audio

    @torch.no_grad()
    def compute(self, handle: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        crops, audio = handle
        self.batches += 1
        x = crops.permute(0, 3, 1, 2).float() / 255.0
        return (self.net(x) + audio.mean(dim=(1, 2, 3)).view(-1, 1, 1, 1)).permute(0, 2, 3, 1).contiguous()

    def to_host(self, device_out: torch.Tensor, stream: object | None) -> list[np.ndarray]:
        return list(device_to_host(device_out).numpy())


@pytest.mark.gpu
def test_cuda_streams_give_the_same_frames_in_order(photo: np.ndarray) -> None:
    base = ConvGenerate()
    ref = {(j, i): expected(base, photo, j, i) for j in range(2) for i in range(0, 50, 7)}
    staged = StagedConv(base, torch.device("cuda"))
    with BatchScheduler(staged, SchedulerOptions(device="cuda", max_batch=8)) as sched:
        jobs = [sched.open_job() for _ in range(2)]
        out: dict[int, list[tuple[int, np.ndarray]]] = {}
        threads = [produce(j, photo, 50) for j in jobs] + [consume(j, out) for j in jobs]
        for t in threads:
            t.join(timeout=60)
        stats = sched.stats()
    for j in range(2):
        assert [i for i, _ in out[j]] == list(range(50))
        for i in range(0, 50, 7):
            np.testing.assert_allclose(out[j][i][1], ref[(j, i)], atol=1e-4)
    assert stats.items == 100 and staged.batches == stats.batches


@pytest.mark.gpu
def test_cuda_oom_is_caught_and_the_cache_emptied(photo: np.ndarray) -> None:
    base = ConvGenerate()
    staged = StagedConv(base, torch.device("cuda"))
    real_compute = staged.compute

    def compute(handle: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        if handle[0].shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (test)")
        return real_compute(handle)

    staged.compute = compute  # type: ignore[method-assign]
    with BatchScheduler(staged, SchedulerOptions(device="cuda", max_batch=8, max_wait_ms=20)) as sched:
        job = sched.open_job()
        for i in range(20):
            job.submit(make_item(photo, job.id, i))
        job.close()
        assert [i for i, _ in job.results()] == list(range(20))
        assert sched.batch_size == 2


def test_staged_hooks_run_on_cpu_too(photo: np.ndarray) -> None:
    base = ConvGenerate()
    staged = StagedConv(base, torch.device("cpu"))
    with BatchScheduler(staged, SchedulerOptions(max_batch=4, max_wait_ms=20)) as sched:
        job = sched.open_job()
        for i in range(10):
            job.submit(make_item(photo, job.id, i))
        job.close()
        out = list(job.results())
        stats = sched.stats()
    assert [i for i, _ in out] == list(range(10))
    np.testing.assert_allclose(out[9][1], expected(base, photo, 0, 9), atol=1e-5)
    assert staged.batches == stats.batches >= 3


def test_cuda_control_flow_with_stand_in_streams(photo: np.ndarray, cuda_stand_ins: list[str]) -> None:
    """Without a GPU, drive the streams path with stand-ins: batch k+1 is launched before batch k is
    retired (overlap), every stream waits on the event before it, and OOM in a launch splits the batch."""
    base = ConvGenerate()
    calls = cuda_stand_ins

    class Logged(StagedConv):
        def to_device(self, batch: ModelBatch, stream: object | None) -> tuple[torch.Tensor, torch.Tensor]:
            assert stream is not None and hasattr(stream, "wait_event")
            calls.append(f"h2d {batch.items[0].index}")
            return super().to_device(batch, stream)

        def compute(self, handle: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            if handle[0].shape[0] > 4:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (stand-in)")
            return super().compute(handle)

    staged = Logged(base, torch.device("cpu"))
    opts = SchedulerOptions(max_batch=8, max_wait_ms=30, queue_size=64)
    sched = BatchScheduler(staged, opts)
    sched._cuda = True  # take the CUDA path with the stand-ins above
    with sched:
        job = sched.open_job()
        for i in range(40):
            job.submit(make_item(photo, job.id, i))
        job.close()
        out = list(job.results())
        stats = sched.stats()
    assert [i for i, _ in out] == list(range(40))
    np.testing.assert_allclose(out[33][1], expected(base, photo, 0, 33), atol=1e-5)
    assert stats.batch_size == 4 and stats.oom_retries >= 1 and "empty_cache" in calls
    # overlap: after the OOM settled, a batch is launched (h2d) before the previous one is synced
    seq = [c.split()[0] for c in calls]
    assert any(a == "h2d" and b == "h2d" for a, b in zip(seq, seq[1:], strict=False)), calls
    h2d, comp, d2h = sched._streams  # type: ignore[misc]
    # compute waits on the copy-in event of every launch (the OOM one included), copy-out on compute's
    assert len(comp.waits) == stats.batches + stats.oom_retries and len(d2h.waits) == stats.batches
    assert all(e.stream is h2d for e in comp.waits) and all(e.stream is comp for e in d2h.waits)


def test_the_scheduler_keeps_out_of_job_private_state() -> None:
    """core.py drives jobs through Job's own methods (ready, pop, deliver, fail_units, take_queued, ...)."""
    import ast
    import inspect

    import lipsynckit.scheduler.core as core

    tree = ast.parse(inspect.getsource(core))
    private = [
        f"line {n.lineno}: {ast.unparse(n)}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        and n.attr.startswith("_")
        and not n.attr.startswith("__")
        and isinstance(n.value, (ast.Name, ast.Attribute))
        and ast.unparse(n.value) in ("job", "j", "u.job")
    ]
    assert not private, private
