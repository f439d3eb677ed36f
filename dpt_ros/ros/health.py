"""/diagnostics of :class:`~dpt_ros.ros.node.DptNode`: one status for the model, one per camera."""
from __future__ import annotations

import collections
import math
import os
import time
from typing import TYPE_CHECKING, NamedTuple, Optional

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from dpt_ros.ros import conversions

if TYPE_CHECKING:
    from dpt_ros.ros.node import ModelSet, _Camera
    from dpt_ros.ros.params import Settings

_STALL_S = 5.0  # a camera silent this long is reported at WARN level in /diagnostics
# /diagnostics' input and output rates are of the reports of at least this last stretch: over one report period (1 s,
# or less), a camera slower than it alternated between 0.00 Hz with "no input" and twice its rate
_RATE_WINDOW_S = 5.0
#: a batch running this long (or 3x the slowest recent batch, or 3x the warm-up's pass per frame per camera, if more)
#: is reported as a stuck worker (ERROR)
_STUCK_S = 10.0
_STATS_WINDOW_S = 30.0   # /diagnostics' latency and age figures are of the batches of this last stretch (at most 300)
#: a camera that had at least this many frames dropped in the rate window, a third or more of those it received
#: (the model slower than the camera), is told once per camera and model what gives more frames per second
_SLOW_DROPPED = 5
#: ... and its status is WARN while more than this share of the frames admitted in the rate window (received, less
#: those max_rate skipped: throttled) were dropped for newer ones: the model keeps up with fewer than half of them.
#: Up to half is latest-wins doing its job (a model a little slower than the camera); beyond it most of the camera
#: is lost and outputs come at a pace nobody chose, which max_rate at the model's pace makes a steady one (OK again)
_DROPPED_WARN = 0.5


class _Subscribed(NamedTuple):
    """A camera's image subscription as one report reads it, under ``_lock`` with the counts: its writers
    (``DptNode._subscribe`` and ``_switch``) set these together under that lock, also from the model loader's thread
    (a failed load's revert subscribing back), so a report never mixes one subscription's fields with another's."""
    subscribed: bool   # it has an image subscription now
    topic: str   # its image topic
    since: float   # time.monotonic() when that subscription was made
    received_at: int   # its received count then
    last_image: Optional[float]   # time.monotonic() of its last image
    unsubscribed: dict   # subscription name -> why subscribing it back failed

    @classmethod
    def of(cls, cam: _Camera) -> "_Subscribed":
        """``cam``'s, the caller holding the node's ``_lock``."""
        return cls("image" in cam.subs, cam.image_topic, cam.image_since, cam.received_at_subscribe, cam.last_image,
                   dict(cam.unsubscribed))


def percentile(values, q: float) -> float:
    """The ``q`` percentile (0-100) of a list of numbers, NumPy's default (linear between neighbours); NaN for
    none. The one helper for the node's /diagnostics figures and the benchmarks' (bench_e2e, bench_node_stages)."""
    return float(np.percentile(np.asarray(values, np.float64), q)) if len(values) else float("nan")


class NodeHealth:
    """DptNode's /diagnostics (a mixin: it reads the node's counters, cameras and models)."""

    def diagnostics(self) -> DiagnosticArray:
        """The current DiagnosticArray: one status for the model, one per camera."""
        now = time.monotonic()
        with self._lock:
            last_counts = self._last_diag[1]
            counts = {c.index: collections.Counter(c.counts) for c in self._cameras}
            for c in self._cameras:   # (kept with the rate window's counts; not published)
                counts[c.index]["camera_infos"] = c.infos_received
            stages = {k: list(v) for k, v in self._stage_ms.items()}
            stage_sums, batches = dict(self._stage_sums), self._batches
            ages = list(self._ages_ms)
            # the figures of the last _STATS_WINDOW_S only: after a pause or a stall, not the old ones forever
            recent_batches = sum(1 for t in self._batch_done if now - t <= _STATS_WINDOW_S)
            recent_ages = sum(1 for t in self._age_done if now - t <= _STATS_WINDOW_S)
            errors = collections.Counter(self._errors)
            self._last_diag = (now, counts)
            history = self._rate_history
            while len(history) > 1 and history[1][0] <= now - _RATE_WINDOW_S:
                history.popleft()   # (the oldest kept is at least the window old, once the node has run that long)
            rate_t, rate_counts = history[0]
            # wall seconds, less those in which the node's clock (/clock's) stood still: a paused bag sent no frame
            still = sum(max(0.0, min(end, now) - max(start, rate_t)) for start, end in self._clock_still)
            rate_dt = max(now - rate_t - still, 1e-6)
            history.append((now, counts))
            model_error, loading, m, active = self._model_error, self._model_loading, self._models, self._active
            subscribed = {c.index: _Subscribed.of(c) for c in self._cameras}
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        # as diagnostic_updater names a node's statuses (rclcpp: the fully qualified name without its leading slash),
        # so that diagnostic_aggregator's analyzers (startswith: dpt_node, robot/dpt_node) and tools that group by
        # node find them
        name = self.get_fully_qualified_name().lstrip("/")
        if m is None:   # a managed node, unconfigured (it publishes no diagnostics then; for a direct call)
            msg.status = [DiagnosticStatus(level=DiagnosticStatus.OK, name=f"{name}: model",
                                           message="unconfigured: no model loaded (lifecycle)")]
            return msg
        kv = m.describe()
        if self._MANAGED:
            kv["lifecycle_state"] = "active" if active else "inactive"
        for task, (pre, shape) in list(self._net_inputs.items()):
            if f"{task}.net_size" in kv and getattr(m, f"{task}_pre") is pre():
                kv[f"{task}.net_input"] = shape
        if self._ignored_parameters:
            kv["ignored_parameters"] = ", ".join(self._ignored_parameters)
        kv["cpu_threads"] = "torch {}, opencv {}".format(*self._threads_in_use)
        startup = dict(self._startup)   # (the worker adds its first output's figures)
        for key in ("ready_s", "warmup_s", "first_image_s", "first_output_s"):
            kv[f"startup.{key}"] = f"{startup[key]:.2f}" if key in startup else "none yet"
        if "first_batch_ms" in startup:
            kv["startup.first_batch_ms"] = f"{startup['first_batch_ms']:.1f}"
        kv.update({"publish_format": "serialized CDR" if conversions.cdr_matches_rmw() else "message objects",
                   "model_loading": str(loading), "last_model_error": model_error or "none",
                   "age_p50_ms": f"{percentile(ages[len(ages) - recent_ages:], 50):.1f}",
                   "age_p99_ms": f"{percentile(ages[len(ages) - recent_ages:], 99):.1f}"})
        for stage, values in stages.items():
            values = values[len(values) - recent_batches:]
            kv[f"latency.{stage}_ms"] = f"{(sum(values) / len(values)) if values else float('nan'):.2f}"
        # cumulative since start: a tool's means over its own window are differences of two reports (bench_e2e)
        kv["latency.batches"] = str(batches)
        for stage, ms in stage_sums.items():
            kv[f"latency.{stage}_sum_ms"] = f"{ms:.3f}"
        total = [sum(v) for v in zip(*stages.values())]   # (all held: the stuck limit below scales with the slowest)
        recent_total = total[len(total) - recent_batches:]
        kv["latency.total_p50_ms"] = f"{percentile(recent_total, 50):.2f}"
        kv["latency.total_p99_ms"] = f"{percentile(recent_total, 99):.2f}"
        encode_ms = list(self._compressed.encode_ms) if self._compressed is not None else []
        if encode_ms:   # on their own thread, not part of the total: a frame's compressed copies together
            kv["latency.compressed_copies_ms"] = f"{sum(encode_ms) / len(encode_ms):.2f}"
        for reason, n in sorted(errors.items()):
            kv[f"errors.{reason}"] = str(n)
        if m.device.type == "cuda":
            kv["gpu_memory_allocated_mb"] = f"{torch.cuda.memory_allocated(m.device) / 2**20:.1f}"
            kv["gpu_memory_reserved_mb"] = f"{torch.cuda.memory_reserved(m.device) / 2**20:.1f}"
        # use_sim_time set true again, no /clock since: the clock (and these reports' stamps) stands at the last
        # /clock time received before it was set false (DptNode._sim_time_switched)
        resumed = self._clock_resumed if self.get_clock().ros_time_is_active else None
        if resumed is not None:
            kv["clock"] = (f"waiting for /clock: use_sim_time was set true again, the clock resumed from the last "
                           f"/clock time received, {resumed / 1e9:.3f} s, and no /clock has come since")
        random_w = any(getattr(m, t) is not None and getattr(m, t).random_weights for t in ("depth", "segmentation"))
        level, text = DiagnosticStatus.OK, "running"
        busy = self._busy   # read once: the worker replaces it
        # a batch of every camera's frame at the warm-up's pace counts as one too: before any batch has finished (or
        # after a pause longer than the stats window) a first batch of a model merely slow is not taken for stuck
        warmup = sum(m.warmup_s.values()) * max(1, len(self._cameras))
        limit = max(_STUCK_S, 3.0 * max(total, default=0.0) / 1000.0, 3.0 * warmup)
        if busy is not None and now - busy[1] > limit:
            kv["worker_stuck_in"], kv["worker_stuck_s"] = busy[0], f"{now - busy[1]:.1f}"
            level, text = DiagnosticStatus.ERROR, (
                f"worker stuck in {busy[0]} for {now - busy[1]:.0f} s (limit {limit:.0f} s): no outputs meanwhile")
            if self._stuck_logged != busy:
                self._stuck_logged = busy
                # (before any batch has finished there is no slowest one: it said "took 0.0 s", and a first batch
                # that is merely slow, a large input_size on the CPU, is the likelier cause then)
                before = (f"its slowest recent batch took {max(total) / 1000.0:.1f} s" if total else
                          f"no batch has finished yet: a model slower than {limit:g} s a batch on this device, e.g. "
                          f"a large input_size on the CPU, is taken for stuck until its first batch finishes; if so, "
                          f"a smaller input_size or a GPU")
                self.get_logger().error(
                    f"the inference worker has been in its {busy[0]} stage for {now - busy[1]:.0f} s ({before}): "
                    f"nothing is published meanwhile. A hung GPU or driver (nvidia-smi), a CPU starved by other "
                    f"processes, or a publish blocked by a stalled subscriber; /diagnostics turns OK again when it "
                    f"moves on")
        elif model_error:
            level, text = DiagnosticStatus.WARN, "model load failed; previous model still serving"
        elif resumed is not None:
            level, text = DiagnosticStatus.WARN, kv["clock"]
        elif random_w:
            level, text = DiagnosticStatus.WARN, "random weights: outputs not meaningful" + (
                "" if active else "; inactive (lifecycle): cameras not subscribed")
        elif not active:
            text = "inactive (lifecycle): model loaded, cameras not subscribed"
        statuses = [DiagnosticStatus(level=level, name=f"{name}: model", message=text, hardware_id=str(m.device),
                                     values=[KeyValue(key=k, value=v) for k, v in kv.items()])]
        for cam in self._cameras:
            c, prev = counts[cam.index], last_counts.get(cam.index, collections.Counter())
            before = rate_counts.get(cam.index, collections.Counter())   # (the start of the rate window)
            sub = subscribed[cam.index]
            # (inactive, not subscribed: the topic activate subscribes, not '' before the first activation)
            ckv = {"topic": sub.topic if sub.subscribed else self._image_topic(cam),
                   "input_rate_hz": f"{(c['received'] - before['received']) / rate_dt:.2f}",
                   "output_rate_hz": f"{(c['processed'] - before['processed']) / rate_dt:.2f}"}
            for key in ("received", "processed", "dropped", "idle", "throttled"):
                ckv[key] = str(c[key])
            for key, n in sorted(c.items()):
                if ":" in key:
                    ckv[key.replace(":", ".")] = str(n)
            if cam.calibration is not None:
                ckv["camera_info"] = "camera_info.url"
            elif self._never_had_info(cam) and self._settings["depth.variant"]:   # (segmentation alone needs none)
                ckv["camera_info"] = self._no_info_reason(cam, self._settings)
            elif (problem := cam.info_problem) is not None and "camera_info" in cam.subs:   # (the worker sets it)
                ckv["camera_info"] = problem
            if (problem := cam.reference_problem) is not None:
                ckv["depth_reference"] = problem
            if cam.alignment is not None:
                ckv["alignment.scale"], ckv["alignment.shift"] = (f"{v:.6g}" for v in cam.alignment[:2])
                ckv["alignment.pixels"] = str(cam.alignment[2])
            errs, incomplete = (sum(n for k, n in c.items() if k.startswith(p)) -
                                sum(n for k, n in prev.items() if k.startswith(p)) for p in ("error:", "incomplete:"))
            lvl, txt = DiagnosticStatus.OK, "ok"
            if errs or incomplete:   # (also inactive: frames that failed before or during the deactivation)
                lvl, txt = DiagnosticStatus.WARN, ", ".join(
                    t for n, t in ((errs, f"{errs} frame error{'s' * (errs != 1)}"),
                                   (incomplete, f"{incomplete} frame{'s' * (incomplete != 1)} with outputs skipped"))
                    if n) + " since last report" + ("" if active else "; inactive (lifecycle): not subscribed")
            elif not active:
                txt = "inactive (lifecycle): not subscribed"
            elif c["received"] == max(prev["received"], sub.received_at):   # (the others: another topic's)
                # silent since the last report: after _STALL_S a warning, which robot health monitors show
                last = sub.last_image
                # none since its image subscription was made (a frame from before a reactivation or an
                # image_transport change is of another subscription): "no image yet", not "no image for"
                fresh = last is None or last < sub.since
                silent = now - (sub.since if fresh else last)
                ckv["seconds_since_last_image"] = f"{silent:.1f}" if last is not None else "never"
                if silent < _STALL_S:   # (a camera slower than the reports, with frames in the rate window: ok)
                    lvl, txt = DiagnosticStatus.OK, "no input" if c["received"] == before["received"] else "ok"
                elif fresh:
                    lvl, txt = DiagnosticStatus.WARN, (f"no image yet ({silent:.0f} s since subscribing): check the image "
                                                       f"topic ({sub.topic}) and the camera's QoS")
                    publishers, incompatible, mismatch = self._publishers_now(cam)
                    compressed = self._settings["image_transport"] == "compressed"
                    types = publishers and self._types_instead(
                        sub.topic, f"sensor_msgs/msg/{'CompressedImage' if compressed else 'Image'}")
                    if types:   # publishers of another message type: DDS matches none of them, silently
                        txt += self._image_of_another_type(cam, publishers, types, compressed)
                    elif incompatible:   # the reason known: a QoS this subscription cannot take
                        txt += mismatch
                    elif publishers:   # discovered but silent: also what a separate /dev/shm per container looks like
                        txt += (f"; {publishers} publisher{'s' * (publishers != 1)} found on it, so if none is just "
                                f"idle: processes in containers on one host network (--net=host) with a "
                                f"/dev/shm each (docker's default) discover each other but receive nothing from each "
                                f"other, with no error from Fast DDS: start them with --ipc=host, or give them one "
                                f"/dev/shm (README: In Docker)")
                    else:   # a newcomer's first run: the camera publishes elsewhere (image_raw, a namespace)
                        txt += self._nothing_publishes(cam)
                    said = (sub.topic, "type" if types else "qos" if incompatible else "silent" if publishers
                            else "none")
                    with self._lock:   # (a new subscription, _subscribe, takes its topic's out under it)
                        first = said not in self._silent_logged
                        self._silent_logged.add(said)
                    if first:   # once each reason: the log is what most read
                        self.get_logger().warning(txt)
                else:   # it sent images: a camera stalled, stopped, or restarted with another QoS
                    lvl, txt = DiagnosticStatus.WARN, f"no image for {silent:.1f} s"
                    publishers, incompatible, mismatch = self._publishers_now(cam)
                    if incompatible:
                        txt += mismatch
                    elif not publishers:
                        txt += f"; nothing publishes {sub.topic} now (the camera stopped, or was renamed)"
            elif (slow := self._mostly_dropped(sub, c, before, rate_dt, m, kv["latency.total_p50_ms"])) is not None:
                lvl, txt = DiagnosticStatus.WARN, slow
            if active and sub.unsubscribed:   # a refused parameter change could not subscribe back (the log says so)
                lost = [self._subscription_of(cam, n)[0] for n in sorted(sub.unsubscribed)]
                ckv["not_subscribed"] = ", ".join(lost)
                lvl, txt = DiagnosticStatus.ERROR, (
                    f"not subscribed to {', '.join(lost)}: subscribing back after a refused parameter change failed "
                    f"({'; '.join(sub.unsubscribed[n] for n in sorted(sub.unsubscribed))}); once it can be subscribed, "
                    f"any successful ros2 param set on the node subscribes it again")
            if active:
                self._say_slow(sub, c, before, rate_dt, m, kv["latency.total_p50_ms"])
                self._say_images_lost(cam, c, before, rate_dt, sub)
            statuses.append(DiagnosticStatus(level=lvl, name=f"{name}: camera {cam.ns or '/'}", message=txt,
                                             hardware_id=ckv["topic"],
                                             values=[KeyValue(key=k, value=v) for k, v in ckv.items()]))
        msg.status = statuses
        return msg

    def _mostly_dropped(self, sub: _Subscribed, c: collections.Counter, before: collections.Counter, rate_dt: float,
                        m: ModelSet, batch_ms: str):
        """The camera status's WARN message while more than _DROPPED_WARN of the frames admitted in the rate window
        were dropped (a 30 Hz camera on a model that does 3 Hz on the CPU: 9 of 10), else None. Frames max_rate
        skipped (throttled) are skipped by choice and not counted: a 30 Hz camera under max_rate 10 with a model that
        keeps up stays OK. The status said 'ok' for any share of frames dropped."""
        received, throttled, dropped, processed = (c[k] - before[k] for k in ("received", "throttled", "dropped",
                                                                               "processed"))
        admitted = received - throttled
        if (dropped < _SLOW_DROPPED or dropped <= _DROPPED_WARN * admitted or processed <= 0
                or before["received"] <= sub.received_at):   # (as _say_slow's)
            return None
        advice = _faster_advice(self._settings, m, self.get_fully_qualified_name(), self._default_threads[0],
                                processed / rate_dt)
        return (f"{dropped} of {admitted} frames dropped for newer ones: the model keeps up with "
                f"{processed / rate_dt:.1f} of the {admitted / rate_dt:.1f} frames/s that "
                f"{'max_rate lets through' if throttled else 'arrive'} (a batch takes {batch_ms} ms on {m.device}, "
                f"latency.total_p50_ms). {advice}")

    def _say_images_lost(self, cam: _Camera, c: collections.Counter, before: collections.Counter,
                         rate_dt: float, sub: Optional[_Subscribed] = None) -> None:
        """Once per camera (WARN): fewer than 2/3 as many images as camera_infos arrived in the rate window. A camera
        publishes one of each per frame, and the small camera_info gets through where camera-sized images are lost:
        Fast DDS without a shared-memory segment large enough for them (a 640x480 camera at 30 Hz: 9 to 20 of 30
        images a second here), or a link that cannot carry them. Only input_rate_hz below the camera's said it."""
        if sub is None:   # (the report passes its own, read with its counts)
            with self._lock:
                sub = _Subscribed.of(cam)
        images, infos = c["received"] - before["received"], c["camera_infos"] - before["camera_infos"]
        key = f"lost:{sub.topic}"
        if (key in self._warned or infos < 10 or 3 * images >= 2 * infos
                or before["received"] <= sub.received_at   # (as _say_slow's)
                or not before["camera_infos"] or cam.calibration is not None):
            return
        self._warned.add(key)
        profile = next((f"{k}={os.environ[k]}" for k in ("FASTDDS_DEFAULT_PROFILES_FILE",
                                                         "FASTRTPS_DEFAULT_PROFILES_FILE") if os.environ.get(k)), None)
        info_topic = self.resolve_topic_name(cam.topic("camera_info"))
        self.get_logger().warning(
            f"{sub.topic}: {images / rate_dt:.1f} images/s arrive, but {infos / rate_dt:.1f} camera_infos/s on "
            f"{info_topic} ({images} images against {infos} camera_infos in the last {rate_dt:.1f} s; a camera "
            "publishes one of each per frame): images are lost on the way. Camera-sized images between processes "
            "over Fast DDS without a shared-memory segment large enough for them are lost in bursts: set "
            "FASTDDS_DEFAULT_PROFILES_FILE (Humble, Jazzy: FASTRTPS_DEFAULT_PROFILES_FILE) to dpt_ros's "
            "config/fastdds_large_data.xml for the camera, this node and the subscribers (README: Large images "
            "between processes)" + (f"; this node has {profile}: the camera's process needs it too" if profile
                                     else "") +
            "; over a network link that cannot carry them (Wi-Fi), " + (
                # (the compressed transport already: not the advice to take it)
                "a lower frame rate or JPEG quality at the camera (its compressed transport's jpeg_quality)"
                if self._settings["image_transport"] == "compressed" else
                "the camera's compressed transport: image_transport:=compressed") + ". A relay that thins the images on purpose "
            "(topic_tools throttle, a driver publishing camera_info at a higher rate) gives this too: nothing is lost "
            "then (said once per camera)")

    def _say_slow(self, sub: _Subscribed, c: collections.Counter, before: collections.Counter, rate_dt: float,
                  m: ModelSet, batch_ms: str) -> None:
        """Once per camera and model (INFO: expected, README's Troubleshooting, `dropped` grows): the model keeps up
        with a part of the frames, the newest each time, and what gives more frames per second on this device. The
        counters alone said it in /diagnostics, the log nothing, and README's remedies were a GPU's."""
        received, throttled, dropped, processed = (c[k] - before[k] for k in ("received", "throttled", "dropped",
                                                                               "processed"))
        # of the frames max_rate let through: those it skipped were skipped by choice (30 Hz under max_rate 10 with a
        # model of 3 Hz: 7 of 30 received dropped, a quarter, and nothing was said)
        received -= throttled
        key = f"slow:{sub.topic}"
        # (a window from before the subscription's first frame: rates of the camera's start, or of another topic's)
        if (key in self._warned or dropped < _SLOW_DROPPED or 3 * dropped < received or processed <= 0
                or before["received"] <= sub.received_at):
            return
        self._warned.add(key)
        s, fqn = self._settings, self.get_fully_qualified_name()
        self.get_logger().info(
            f"{sub.topic}: the model keeps up with {processed / rate_dt:.1f} of the {received / rate_dt:.1f} "
            f"frames/s that {'max_rate lets through' if throttled else 'arrive'} ({dropped} of the last {received} "
            f"frames dropped; a batch takes {batch_ms} ms on "
            f"{m.device}, latency.total_p50_ms): the newest frame is processed each time and the others are counted "
            f"as dropped in /diagnostics, as expected with a model slower than the camera. "
            f"{_faster_advice(s, m, fqn, self._default_threads[0], processed / rate_dt)} (said once per camera and "
            f"model)")

    def _publish_diagnostics(self) -> None:
        pub = self._diag_pub   # (None once a managed node's cleanup has taken it down)
        if pub is None:
            return
        try:
            pub.publish(self.diagnostics())
        except Exception:  # noqa: BLE001
            if self._diag_pub is pub:
                raise
            # a cleanup on another thread destroyed it after it was read (InvalidHandle): nothing to report to


def _faster_advice(s: Settings, m: ModelSet, fqn: str, default_threads: int, rate: float) -> str:
    """What gives more frames per second with ``m``'s device and ``s``, as commands (README: Troubleshooting,
    `dropped` grows), then max_rate at the ``rate`` the model keeps up with."""
    def cmd(name, value):
        return f"ros2 param set {fqn} {name} {value}"
    ways = []
    pre = m.depth_pre if m.depth_pre is not None else m.segmentation_pre
    h, w = pre.net_size if pre is not None else (0, 0)
    # (3/4 of its side, down to a multiple of 32; input_size makes the network square, so of a wide one's (kitti's
    # 352x1216) the side of as many pixels: 3/4 of its shorter side, 256x256, would be a fifth of them)
    side = math.isqrt(h * w)
    if side > 32:
        square = "" if h == w else ", input_size makes it square"
        ways.append(f"a smaller input_size (network size {h}x{w} now{square}: "
                    f"{cmd('input_size', max(32, side * 3 // 4 // 32 * 32))})")
    if m.device.type == "cuda":
        if s["precision"] == "fp32":
            ways.append(cmd("precision", "fp16"))
        if not s["cuda_graphs"]:
            ways.append(cmd("cuda_graphs", "true"))
        where = "GPU"
    else:
        if s["precision"] == "fp32":
            ways.append(f"bf16, faster on a CPU with bf16 instructions (AVX512-BF16, AMX), less precise "
                        f"({cmd('precision', 'bf16')})")
        if "dpt_large" in (s["depth.variant"], s["segmentation.variant"]):
            ways.append("a lighter variant (dpt_hybrid for dpt_large)")
        elif s["segmentation.variant"] == "dpt_large_ade20k":
            ways.append("a lighter variant (dpt_hybrid_ade20k)")
        if 0 < s["cpu_threads"] < default_threads:
            ways.append(f"more threads (cpu_threads {s['cpu_threads']} of {default_threads}: "
                        f"{cmd('cpu_threads', 0)})")
        ways.append("a GPU (device auto takes it)")
        where = "CPU"
    steady = f"{max(0.1, math.floor(rate * 10) / 10):.1f}"   # (a double: ros2 param set refuses an integer)
    return (f"For more frames per second: {'; '.join(ways)}. Or {cmd('max_rate', steady)}: a steady {steady} "
            f"frames/s, each processed as it arrives (an output's age then about one batch's time, not up to two), "
            f"the {where} idle in between for the rest of the robot, the frames skipped counted as throttled")
