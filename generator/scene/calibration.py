"""Calibration scenes whose defocus is known exactly, and its measurement from rendered pixels.

Pure data and numpy (no bpy): the caller renders the specs (``generator.render.blender.render``)
and hands the frames back. Used by the physics tests and by
``benchmarks/render_quality_speed.py``, which checks that a render setting
(samples, denoising, light paths) leaves the blur where :mod:`generator.core.lens` puts it.

The CoC probe: small discs on a black world. Each is a sphere flattened along
the viewing axis (scale R x R/1000 x R), so all its points lie at one planar
depth z and its sharp image is an exact disc of diameter d = 2 fx R / z. The
rendered blob is then disc(d) * disc(c) * pixel box, whose per-axis variance
is d^2/16 + c^2/16 + 1/12, so the measured blur diameter is
c = 4 sqrt(var - d^2/16 - 1/12). (A round sphere's visible cap spans depths
z - R..z, which would shift the CoC by a few percent close to focus.)

The noise probe (:func:`grey_plane`, :func:`raw_noise_points`, :func:`fit_noise`) gives back a
sensor's gain and read noise from a flat grey render; the aperture probe (:func:`aperture_probe`,
:func:`measure_aperture`, :func:`aperture_errors`) the blade count, orientation and area of a
shaped aperture's blur.

Two kinds of disc: ``emissive`` (unlit emitters, no bounces: the camera ray
alone decides each pixel) and ``lit`` (grey, partly glossy discs lit directly
by an emitting wall behind the camera and indirectly by a floor below the view,
both out of view: bounces, clamping, caustics and filter-glossy change their
shading, and must not change their blur).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from generator.core.lens import (Aperture, Lens, circumscribed_factor, coc_px, corner_angles_rad, equal_area_factor,
                                 intrinsics)
from generator.scene.sensor import SensorSpec, to_raw, undevelop
from generator.scene.spec import (
    CameraSpec,
    FrameSpec,
    LightSpec,
    MaterialSpec,
    ObjectSpec,
    RenderSpec,
    SceneSpec,
    WorldSpec,
    world_to_camera,
)

#: Probe image size, pixels.
WIDTH, HEIGHT = 160, 96
FOCAL_M = 0.05
SENSOR_M = 0.016  # 100 um pixels at 160 px: f = 500 px, a 18 deg field of view
#: Diameter of each disc's sharp image at the nominal focal length, pixels.
DISC_PX = 5.0
#: Discs left and right of the centre, at the nominal focal length, pixels.
U_OFFSET_PX = 36.0
#: (f-number, (left disc depth, right disc depth) m, focus distances m):
#: CoCs from 5 to 57 px over both lens models.
COC_CASES = (
    (1.4, (0.22, 1.5), (0.3, 0.6)),
    (2.8, (0.3, 2.0), (0.42, 0.8)),
    (4.0, (0.3, 2.0), (0.42, 0.8)),
)
#: Camera at the origin looking along world +Y: camera z = world y.
CAMERA = CameraSpec()
#: Measured CoC may differ from :func:`generator.core.lens.coc_px` by this share or
#: :data:`COC_TOLERANCE_PX`, whichever is larger (the physics tests' tolerance).
COC_TOLERANCE_REL, COC_TOLERANCE_PX = 0.03, 0.5


def coc_probe(lens: Lens, depths, focus, *, render: RenderSpec | None = None, lit: bool = False,
              offsets_px=(-U_OFFSET_PX, U_OFFSET_PX)) -> SceneSpec:
    """Discs at planar ``depths`` (m), one per image offset ``offsets_px`` (right of the centre,
    pixels at the nominal focal length), seen through ``lens`` focused at each of ``focus`` (m).

    ``render`` defaults to 256 samples, no bounces for emissive discs, 4 for lit ones.
    """
    fpx = FOCAL_M / lens.pixel_pitch_m(WIDTH)
    if lit:
        material = MaterialSpec(kind="diffuse", color_a=(0.8, 0.8, 0.8), roughness=0.3, metallic=0.3)
    else:
        material = MaterialSpec(kind="emission", color_a=(1.0, 1.0, 1.0), emission_strength=1.0)
    objects = []
    for i, (z, offset) in enumerate(zip(depths, offsets_px, strict=True)):
        radius = DISC_PX / 2 * z / fpx
        objects.append(ObjectSpec(name=f"disc{i}", shape="uv_sphere", location=(offset * z / fpx, z, 0.0),
                                  rotation=(0.0, 0.0, 0.0), scale=(radius, radius / 1000, radius), material=material))
    if lit:
        # Out of view: an emitting wall 0.5 m behind the camera, which lights the discs
        # directly, and a white floor below the view, which bounces its light onto them.
        objects.append(ObjectSpec(name="lamp_wall", shape="plane", location=(0.0, -0.5, 0.0),
                                  rotation=(-math.pi / 2, 0.0, 0.0), scale=(3.0, 3.0, 1.0),
                                  material=MaterialSpec(kind="emission", color_a=(1.0, 1.0, 1.0),
                                                        emission_strength=2.0)))
        objects.append(ObjectSpec(name="floor", shape="plane", location=(0.0, 0.25, -0.5), rotation=(0.0, 0.0, 0.0),
                                  scale=(1.5, 0.75, 1.0), material=MaterialSpec(kind="diffuse", color_a=(0.9, 0.9, 0.9))))
    if render is None:
        render = RenderSpec(width=WIDTH, height=HEIGHT, samples=256, seed=1, max_bounces=4 if lit else 0)
    return SceneSpec(
        index=0, seed=0, split="test", render=render, lens=lens, camera=CAMERA,
        frames=tuple(FrameSpec(index=k, ramp=0, time_s=0.0, focus_distance_m=f) for k, f in enumerate(focus)),
        objects=tuple(objects), world=WorldSpec(color=(0.0, 0.0, 0.0), strength=0.0),
    )


def coc_probes(model: str, *, render: RenderSpec | None = None, lit: bool = False) -> list[SceneSpec]:
    """The probe of every :data:`COC_CASES` case for lens ``model``."""
    return [coc_probe(Lens(model, FOCAL_M, f_number, SENSOR_M), depths, focus, render=render, lit=lit)
            for f_number, depths, focus in COC_CASES]


# The aperture's shape

#: Aperture probe: image size (pixels), one emissive disc on the axis at planar depth
#: :data:`APERTURE_DEPTH_M`, seen beyond and in front of focus (:data:`APERTURE_FOCUS_M`): CoC 33 px
#: through :data:`APERTURE_LENS` (f/1, 100 um pixels, 500 px focal length) at 64 px.
APERTURE_SIZE = 64
APERTURE_DEPTH_M = 0.5
APERTURE_FOCUS_M = (0.3, 1.5)
APERTURE_LENS = Lens("blender", FOCAL_M, 1.0, 0.1e-3 * APERTURE_SIZE)
#: Harmonics searched for the blade count (Cycles' blade counts).
BLADE_HARMONICS = range(3, 17)
#: Below this strongest harmonic the probe's blur counts as a disc. Measured at 1024 samples: a
#: disc (squeezed or not) 0.015-0.021, harmonics that are no multiple of the blade count up to
#: 0.03 (noise), an octagon 0.065, a hexagon 0.11, fewer blades more.
DISC_STRENGTH = 0.045


def aperture_probe(aperture: Aperture | None, *, samples: int = 1024) -> SceneSpec:
    """One small emissive disc on the axis at :data:`APERTURE_DEPTH_M`, through :data:`APERTURE_LENS`
    with ``aperture``, focused at each of :data:`APERTURE_FOCUS_M` (the disc beyond, then in front of, focus).

    Its sharp image is :data:`DISC_PX` across and covers about 2 % of the 33 px blur, so a pixel
    needs many ``samples`` for its value; the moments of :func:`measure_aperture` average over the blob.
    """
    lens = dataclasses.replace(APERTURE_LENS, aperture=aperture)
    return coc_probe(lens, (APERTURE_DEPTH_M,), APERTURE_FOCUS_M, offsets_px=(0.0,),
                     render=RenderSpec(width=APERTURE_SIZE, height=APERTURE_SIZE, samples=samples, seed=1,
                                       max_bounces=0))


def measure_aperture(spec: SceneSpec, frames: list[np.ndarray]) -> list[dict]:
    """The blur's shape, from the pixels of every disc of a :func:`coc_probe` (e.g. :func:`aperture_probe`).

    From the blob's complex moments m_k = sum I (x + i y)^k / sum I |x + i y|^k about its centroid
    (x right, y up, pixels): a blur that is a polygon of n corners has m_k != 0 only for k a
    multiple of n, and an isotropic blur (the sharp disc) leaves the numerator's ratio to the
    total unchanged, so ``blades`` is the k of :data:`BLADE_HARMONICS` with the largest |m_k| and
    ``corner_deg`` = arg(m_n) / n, degrees in [0, 360 / n), the direction of a corner
    counterclockwise from +x in the image (a corner is farther out than an edge, so m_n points
    there; None for a disc). ``area_px`` (px^2) is the area of the affine image of a regular ``blades``-gon (an ellipse
    for none found) with the blob's covariance once the sharp disc and pixel box are taken out:
    a regular n-gon of circumradius R has per-axis variance R^2 (2 + cos(2 pi / n)) / 12 and area
    (n / 2) R^2 sin(2 pi / n), and both scale with the determinant under a squeeze.
    ``width_u``: the blur's standard deviation along u over that along v, which the harmonics undo
    first (a squeeze along u, as Cycles' ``aperture_ratio``, then leaves a regular polygon).

    Rows as :func:`measure_coc` (``predicted``: the CoC c, px), with those keys and ``strength``
    (|m_n|, 0 for a disc) and ``strength_next`` (the largest |m_k| of another k, the noise floor).
    """
    rows = measure_coc(spec, frames)
    discs = sum(o.name.startswith("disc") for o in spec.objects)
    for row, image in zip(rows, (image for image in frames for _ in range(discs)), strict=True):
        disc_px, half = row["disc_px"], row["half"]
        (mu, mv), var_u, var_v, window = _moments(image.mean(axis=2), row["centre"], half)
        u0, v0 = (int(round(c)) for c in row["centre"])
        vs, us = np.mgrid[v0 - half: v0 + half + 1, u0 - half: u0 + half + 1] + 0.5
        cov_uv = (window * (us - mu) * (vs - mv)).sum() / window.sum()
        blur_u, blur_v = var_u - isotropic(disc_px), var_v - isotropic(disc_px)
        width_u = math.sqrt(max(blur_u, 0.0) / blur_v)
        # Undo the squeeze along u, then the angular harmonics of the blob (weighted by r^2, so
        # they are those of its outline's r^4), y up as the lens's corner angles.
        x, y = (us - mu) / width_u, mv - vs
        weight, angle = window * (x**2 + y**2), np.arctan2(y, x)
        harmonics = {k: (weight * np.exp(1j * k * angle)).sum() / weight.sum() for k in BLADE_HARMONICS}
        strengths = {k: abs(h) for k, h in harmonics.items()}
        blades = max(strengths, key=strengths.get)
        noise = max(v for k, v in strengths.items() if k % blades)
        if strengths[blades] < DISC_STRENGTH:
            blades = 0
        # Area over sqrt(det covariance) of a regular n-gon, 4 pi for a disc (n -> infinity).
        polygon = blades * math.sin(2 * math.pi / blades) / 2 * 12 / (2 + math.cos(2 * math.pi / blades)) \
            if blades else 4 * math.pi
        row.update(blades=blades, strength=strengths[max(strengths, key=strengths.get)], noise=noise,
                   corner_deg=float(np.degrees(np.angle(harmonics[blades])) / blades % (360 / blades))
                   if blades else None,
                   area_px=float(polygon * math.sqrt(max(blur_u * blur_v - cov_uv**2, 0.0))), width_u=width_u)
    return rows


def _moments(image: np.ndarray, centre, half: int):
    """Centroid (u, v) and per-axis variances (px^2) of the blob in a window around ``centre``."""
    u0, v0 = (int(round(c)) for c in centre)
    window = image[v0 - half: v0 + half + 1, u0 - half: u0 + half + 1]
    vs, us = np.mgrid[v0 - half: v0 + half + 1, u0 - half: u0 + half + 1] + 0.5
    total = window.sum()
    mu, mv = (window * us).sum() / total, (window * vs).sum() / total
    return (mu, mv), (window * (us - mu) ** 2).sum() / total, (window * (vs - mv) ** 2).sum() / total, window


def isotropic(disc_px: float) -> float:
    """Per-axis variance (px^2) that a sharp disc of ``disc_px`` and the pixel box add to a blur's."""
    return disc_px**2 / 16 + 1 / 12


def _blur_px(var: float, disc_px: float) -> float:
    """The CoC diameter (px) of a blob of per-axis variance ``var`` (px^2) imaging a disc of ``disc_px``."""
    return 4 * math.sqrt(max(var - isotropic(disc_px), 0.0))


def measure_coc(spec: SceneSpec, frames: list[np.ndarray]) -> list[dict]:
    """Measure every disc of a :func:`coc_probe` in its rendered ``frames`` (linear RGB [H, W, 3]).

    Returns one dict per (frame, disc): ``N``, ``z`` and ``F`` (m), ``predicted`` and
    ``measured`` CoC (px; ``measured_u`` / ``measured_v`` per axis), ``centroid_error``
    (px, from the disc's projection through K), ``edge`` (the brightest pixel on the
    measuring window's border over the disc's peak: 0 when the window holds the
    whole blob) and ``stray`` (the brightest pixel outside every window over the peak).
    """
    w2c = world_to_camera(spec.camera)
    discs = [o for o in spec.objects if o.name.startswith("disc")]
    rows = []
    for frame, image in zip(spec.frames, frames):
        gray = image.mean(axis=2)
        k = intrinsics(spec.lens, frame.focus_distance_m, spec.render.width, spec.render.height)
        covered = np.zeros(gray.shape, dtype=bool)
        frame_rows = []
        for obj in discs:
            x, y, z = w2c[:3, :3] @ obj.location + w2c[:3, 3]
            centre = (k[0, 0] * x / z + k[0, 2], k[1, 1] * y / z + k[1, 2])
            disc_px = 2 * k[0, 0] * obj.scale[0] / z
            predicted = float(coc_px(spec.lens, z, frame.focus_distance_m, spec.render.width))
            half = int(math.ceil((predicted * circumscribed_factor(spec.lens.aperture) + disc_px) / 2 + 3))
            if not (half <= centre[0] <= gray.shape[1] - half and half <= centre[1] <= gray.shape[0] - half):
                raise ValueError(f"disc {obj.name} leaves the frame at focus {frame.focus_distance_m} m")
            (mu, mv), var_u, var_v, window = _moments(gray, centre, half)
            u0, v0 = int(round(centre[0])), int(round(centre[1]))
            covered[v0 - half: v0 + half + 1, u0 - half: u0 + half + 1] = True
            peak = window.max()
            border = max(window[0].max(), window[-1].max(), window[:, 0].max(), window[:, -1].max())
            frame_rows.append(dict(
                N=spec.lens.f_number, z=float(z), F=frame.focus_distance_m, predicted=predicted,
                measured=_blur_px((var_u + var_v) / 2, disc_px), measured_u=_blur_px(var_u, disc_px),
                measured_v=_blur_px(var_v, disc_px),
                centroid_error=math.hypot(mu - centre[0], mv - centre[1]), edge=float(border / peak), peak=float(peak),
                centre=centre, half=half, disc_px=disc_px))
        stray = float(gray[~covered].max()) if (~covered).any() else 0.0
        for row in frame_rows:
            row["stray"] = stray / row["peak"]
        rows += frame_rows
    return rows


def tolerances(measured_px: float, expected_px: float) -> float:
    """|measured - expected| blur in units of max(:data:`COC_TOLERANCE_REL` x expected,
    :data:`COC_TOLERANCE_PX`): <= 1 holds."""
    return abs(measured_px - expected_px) / max(COC_TOLERANCE_REL * expected_px, COC_TOLERANCE_PX)


def coc_error(row: dict) -> float:
    """A :func:`measure_coc` row's error in :func:`tolerances` (<= 1 passes)."""
    return tolerances(row["measured"], row["predicted"])


# Blur of a textured plane

#: The plane probe's camera: 50 mm at f/1.4 on a 36 mm sensor, Blender's lens (no breathing: the
#: all-in-focus image, rendered through frame 0's camera, has every frame's K).
PLANE_LENS = Lens("blender", 0.05, 1.4, 0.036)
#: Checks of the plane probe, pixels on a side (in focus).
CHECK_PX = 3.0


def plane_probe(size: int, depth_m: float, focus, *, samples: int = 64, denoise: bool = False,
                lens: Lens = PLANE_LENS) -> SceneSpec:
    """A fronto-parallel checker plane filling the view at planar ``depth_m`` (m), lit by a sun along
    the view axis (no bounces), seen focused at each of ``focus`` (m); with the all-in-focus image."""
    k = intrinsics(lens, float(focus[0]), size, size)
    half_m = 0.75 * size / k[0, 0] * depth_m  # half-width 1.5x the view's: every blur disc stays on the plane
    facing = (math.pi / 2, 0.0, 0.0)  # a unit plane's normal +Z turned to -Y: facing the camera
    plane = ObjectSpec(name="plane", shape="plane", location=(0.0, depth_m, 0.0), rotation=facing,
                       scale=(half_m, half_m, 1.0),
                       material=MaterialSpec(kind="checker", color_a=(0.85, 0.85, 0.85), color_b=(0.04, 0.04, 0.04),
                                             scale=0.75 * size / CHECK_PX))
    sun = LightSpec(kind="sun", location=(0.0, -1.0, 0.0), rotation=facing, energy=3.0, size=0.01)
    return SceneSpec(
        index=0, seed=0, split="test", lens=lens, camera=CAMERA, objects=(plane,), lights=(sun,),
        render=RenderSpec(width=size, height=size, samples=samples, seed=1, max_bounces=0, aif=True, denoise=denoise),
        frames=tuple(FrameSpec(index=t, ramp=0, time_s=0.0, focus_distance_m=float(f)) for t, f in enumerate(focus)),
        world=WorldSpec(color=(0.0, 0.0, 0.0), strength=0.0),
    )


def disc_kernel(diameter_px: float, supersample: int = 16) -> np.ndarray:
    """A uniform disc of ``diameter_px`` pixels, area-sampled on the pixel grid, summing to 1; [n, n], n odd."""
    n = 2 * int(math.ceil(diameter_px / 2 + 1)) + 1
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    grid = (np.arange(n) - n // 2)[:, None] + offsets[None, :]  # [n, s] sub-pixel coordinates
    x = grid.reshape(-1)
    inside = (x[:, None] ** 2 + x[None, :] ** 2) <= (diameter_px / 2) ** 2
    kernel = inside.reshape(n, supersample, n, supersample).mean(axis=(1, 3))
    if kernel.sum() == 0:  # smaller than a sub-pixel: a point
        kernel[n // 2, n // 2] = 1
    return kernel / kernel.sum()


def fit_blur_px(sharp: np.ndarray, blurred: np.ndarray, max_px: float, step_px: float = 0.05) -> float:
    """The disc diameter (px) that best maps ``sharp`` onto ``blurred`` (least squares, both [H, W] or
    [H, W, 3]), searched from 0 to ``max_px`` and refined by a parabola; scored at least
    ``max_px / 2 + 2`` px from the border, where the circular convolution does not reach."""
    sharp, blurred = (np.asarray(a, dtype=np.float64) for a in (sharp, blurred))
    if sharp.ndim == 3:
        sharp, blurred = sharp.mean(axis=2), blurred.mean(axis=2)
    h, w = sharp.shape
    m = int(math.ceil(max_px / 2 + 2))
    spectrum = np.fft.rfft2(sharp)
    diameters = np.arange(0.0, max_px + step_px / 2, step_px)
    errors = []
    for d in diameters:
        kernel = disc_kernel(d)
        padded = np.zeros((h, w))
        n = kernel.shape[0]
        padded[:n, :n] = kernel
        padded = np.roll(padded, (-(n // 2), -(n // 2)), axis=(0, 1))  # centre the kernel at (0, 0)
        convolved = np.fft.irfft2(spectrum * np.fft.rfft2(padded), s=(h, w))
        errors.append(float(np.mean((convolved - blurred)[m:h - m, m:w - m] ** 2)))
    i = int(np.argmin(errors))
    if 0 < i < len(errors) - 1:
        y0, y1, y2 = errors[i - 1: i + 2]
        curvature = y0 - 2 * y1 + y2
        if curvature > 0:
            return float(diameters[i] + step_px * 0.5 * (y0 - y2) / curvature)
    return float(diameters[i])


# Sensor noise and aperture shape, measured from pixels


def grey_plane(size: int, levels: int, *, samples: int = 4) -> SceneSpec:
    """A diffuse grey plane filling the view, lit by a sun along the view axis (no bounces, no
    texture: every pixel has the same radiance), seen ``levels`` times at one focus (one Cycles
    render; a sensor gives each frame its own exposure), stored as 16-bit PNG so that quantisation
    stays far below the noise."""
    probe = plane_probe(size, 1.0, (1.0,) * levels, samples=samples)
    grey = MaterialSpec(kind="diffuse", color_a=(0.5, 0.5, 0.5), color_b=(0.5, 0.5, 0.5))
    return dataclasses.replace(probe, objects=(dataclasses.replace(probe.objects[0], material=grey),),
                               render=dataclasses.replace(probe.render, aif=False, rgb="png16"))


def raw_noise_points(frames: list[np.ndarray], clean: list[np.ndarray], sensor: SensorSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per frame and channel, (mean, variance) of the raw noise: each stored frame undone to raw
    (:func:`~generator.scene.sensor.undevelop`), against its clean render taken to raw (:func:`~generator.scene.sensor.to_raw`)."""
    means, variances = [], []
    for i, (frame, radiance) in enumerate(zip(frames, clean)):
        raw, expected = undevelop(frame, sensor), to_raw(radiance, sensor, i)
        for c in range(3):
            means.append(expected[..., c].mean())
            variances.append((raw[..., c] - expected[..., c]).var())
    return np.array(means), np.array(variances)


def fit_noise(means: np.ndarray, variances: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
    """(gain, read variance) of the line variance = gain * mean + read, and their standard errors.

    Weighted least squares: a variance measured over n pixels has a standard error of about
    var * sqrt(2 / n), so each point is weighted by 1 / var; unweighted, the brightest points (the
    largest variances, the largest errors) would decide the intercept, the read noise.
    """
    (gain, read), cov = np.polyfit(means, variances, 1, w=1 / variances, cov="unscaled")
    # "unscaled": the weights are 1 / sigma up to the common factor sqrt(2 / n), which the residuals give
    residual = (variances - gain * means - read) / variances
    scale = float(residual @ residual) / max(len(means) - 2, 1)
    return (float(gain), float(read)), (math.sqrt(cov[0, 0] * scale), math.sqrt(cov[1, 1] * scale))


def aperture_errors(aperture: Aperture, row: dict) -> tuple[float | None, float]:
    """A :func:`measure_aperture` row's corner direction error (degrees, within half a blade period;
    None for a disc) and its area error in the CoC tolerance (:func:`tolerances`: <= 1 holds), the
    measured area's equal-area diameter against the CoC times :func:`equal_area_factor`. In front
    of focus the image of the aperture is turned by 180 degrees."""
    diameter = math.sqrt(4 * row["area_px"] / math.pi)
    area = tolerances(diameter, row["predicted"] * equal_area_factor(aperture))
    if not aperture.blades:
        return None, area
    period = 360 / aperture.blades
    expected = math.degrees(corner_angles_rad(aperture)[0]) + (0 if row["z"] > row["F"] else 180)
    return (row["corner_deg"] - expected + period / 2) % period - period / 2, area
