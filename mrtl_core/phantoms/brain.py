"""Head anatomy for the synthetic brain scanners: the MNI ICBM152 2009 template plus a procedural head.

The brain comes from the MNI ICBM152 2009 (nonlinear symmetric) grey-matter and white-matter
probability maps and brain mask that nilearn ships *inside its wheel* (1 mm, 197 x 233 x 189, loaded
offline). The template is skull-stripped, so the head around it is built procedurally from a signed
distance to a smoothed intracranial envelope: a CSF rim, the skull (inner table, diploe = fatty
marrow, outer table), temporalis muscle, scalp fat and skin. Its bright fat ring and dark bone are
what make a head image a head image (and what under-sampling aliases across the brain).

Subjects differ by a random affine (head size and per-axis scale, rotation / slice tilt, position),
a smooth elastic deformation, ventricle size, layer thicknesses and slice positions. Oblique slice
planes are *sampled* from the (pre-averaged) 3-D volumes with ``scipy.ndimage.map_coordinates``
(order 1); no 3-D volume is ever deformed, which keeps a subject at a few milliseconds a slice.

Output: :func:`brain_tissue_slices` -> ``{tissue: (num_slices, size, size) float32}`` partial-volume
fractions in [0, 1] summing to <= 1 per pixel (the rest is air). Image rows run anterior -> posterior,
columns patient right -> left (radiological display); the head fills about the central 80 % of a
``FOV_MM`` square field of view.
"""
from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

__all__ = ["FOV_MM", "SLICE_THICKNESS_MM", "TISSUES", "brain_tissue_slices", "template_volumes"]

FOV_MM = 256.0            # square reconstructed FOV; the head (about 210 mm A-P) fills ~80 % of it
SLICE_THICKNESS_MM = 5.0  # nominal, as clinical axial T2 (fastMRI AXT2: 5 mm)
TISSUES = ("white_matter", "grey_matter", "csf", "cortical_bone", "marrow", "muscle", "fat", "skin")

_PAD = 10                 # voxels (at 2 mm) of padding: with the template margins, >= 45 mm of room for the scalp
_DIST_VOXEL_MM = 2.0


@functools.lru_cache(maxsize=1)
def _load_template() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(grey, white, brain mask) float32 (197, 233, 189) at 1 mm, RAS voxel axes, from nilearn's wheel."""
    from nilearn import datasets  # heavy import (~3 s): only when a brain is first simulated

    gm = datasets.load_mni152_gm_template(resolution=1).get_fdata(dtype=np.float32)
    wm = datasets.load_mni152_wm_template(resolution=1).get_fdata(dtype=np.float32)
    mask = datasets.load_mni152_brain_mask(resolution=1).get_fdata(dtype=np.float32)
    total = gm + wm
    over = total > 1.0
    gm[over] /= total[over]
    wm[over] /= total[over]
    return gm, wm, mask


def _block_mean(volume: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor``^3 blocks (the partial volume of a coarser voxel), zero-padding the edges."""
    if factor == 1:
        return volume
    pad = [(0, (-n) % factor) for n in volume.shape]
    v = np.pad(volume, pad)
    s = [n // factor for n in v.shape]
    return v.reshape(s[0], factor, s[1], factor, s[2], factor).mean(axis=(1, 3, 5), dtype=np.float32)


@functools.lru_cache(maxsize=4)
def template_volumes(voxel_mm: int = 2) -> np.ndarray:
    """Grey and white matter fractions averaged to ``voxel_mm`` (1, 2 or 4) mm voxels: (2, X, Y, Z) float32.

    Sampling a 1 mm template at 2 or 4 mm pixel spacing would alias; the block mean is the partial
    volume of the coarser voxel (a crude slice-thickness average, too).
    """
    if voxel_mm not in (1, 2, 4):
        raise ValueError(f"voxel_mm must be 1, 2 or 4, got {voxel_mm!r}")
    gm, wm, _ = _load_template()
    return np.stack([_block_mean(gm, voxel_mm), _block_mean(wm, voxel_mm)])


@functools.lru_cache(maxsize=1)
def _envelope_distance() -> np.ndarray:
    """Signed distance (mm, > 0 outside) to the intracranial envelope, on a padded 2 mm grid.

    The envelope is the brain mask blurred (sigma 4 mm) and thresholded: it bridges sulci and the
    interhemispheric fissure as the inner table of the skull does.
    """
    _, _, mask = _load_template()
    coarse = _block_mean(mask, 2)
    coarse = np.pad(coarse, _PAD)
    envelope = ndimage.gaussian_filter(coarse, sigma=2.0) > 0.35
    envelope = ndimage.binary_fill_holes(envelope)
    outside = ndimage.distance_transform_edt(~envelope)
    inside = ndimage.distance_transform_edt(envelope)
    # voxel centres on either side of the boundary are half a voxel from it
    return ((np.where(envelope, -(inside - 0.5), outside - 0.5)) * _DIST_VOXEL_MM).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _brain_centre() -> np.ndarray:
    _, _, mask = _load_template()
    return np.array(ndimage.center_of_mass(mask), dtype=np.float64)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation matrix (radians): yaw about z (in-plane), pitch about x (A-P tilt), roll about y."""
    cz, sz = np.cos(yaw), np.sin(yaw)
    cx, sx = np.cos(pitch), np.sin(pitch)
    cy, sy = np.cos(roll), np.sin(roll)
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return rz @ rx @ ry


def _box_fraction_below(d: np.ndarray, bound: np.ndarray | float, width: float) -> np.ndarray:
    """Fraction of a pixel of ``width`` mm (centred at signed distance ``d``) lying at distance < ``bound``."""
    return np.clip((bound - d) / width + 0.5, 0.0, 1.0)


def brain_tissue_slices(rng: np.random.Generator, num_slices: int, size: int) -> dict[str, np.ndarray]:
    """Axial head slices of one random subject as partial-volume tissue fractions.

    Args:
        rng: the subject's generator; every random choice (shape, pose, deformation, slices) uses it.
        num_slices: slices spread over the brain from the posterior fossa to the high convexity.
        size: matrix size; pixels are ``FOV_MM / size`` mm.

    Returns:
        ``{tissue: (num_slices, size, size) float32}`` for the names in :data:`TISSUES`, each in [0, 1],
        their sum <= 1 (the rest is air).
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if int(num_slices) != num_slices or num_slices < 1:
        raise ValueError(f"num_slices must be a positive integer, got {num_slices!r}")
    if int(size) != size or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    num_slices, size = int(num_slices), int(size)
    pixel_mm = FOV_MM / size

    # ---- subject: pose, size, deformation, head layers (all from rng) -------------------------------
    head_scale = float(np.clip(rng.normal(1.0, 0.04), 0.92, 1.08))
    axis_scale = head_scale * np.clip(rng.normal(1.0, 0.03, size=3), 0.94, 1.06)  # (x L-R, y A-P, z S-I)
    rot = _rotation(np.deg2rad(rng.normal(0, 4.0)), np.deg2rad(rng.normal(0, 6.0)), np.deg2rad(rng.normal(0, 3.0)))
    shift_mm = rng.normal(0, 4.0, size=2)                        # head position in the FOV
    ventricle_gain = float(rng.uniform(-0.10, 0.30))             # > 0: larger ventricles (atrophy)
    # smooth elastic field: a few random plane waves, wavelengths 50-140 mm, ~2-3 mm RMS in total
    n_waves = 6
    directions = rng.normal(size=(n_waves, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    wavenumbers = 2 * np.pi / rng.uniform(50, 140, size=n_waves)
    wave_k = (directions * wavenumbers[:, None]).astype(np.float32)       # (K, 3) per mm
    wave_phase = rng.uniform(0, 2 * np.pi, size=n_waves).astype(np.float32)
    wave_amp = rng.normal(0, 1.2, size=(n_waves, 3)).astype(np.float32)   # mm
    # head layers outside the intracranial envelope (mm)
    csf_rim = rng.uniform(0.3, 1.5)
    inner_table, diploe, outer_table = rng.uniform(1.5, 2.5), rng.uniform(1.0, 3.0), rng.uniform(1.5, 2.5)
    temporalis = rng.uniform(4.0, 9.0)
    scalp_fat, skin = rng.uniform(2.5, 6.0), rng.uniform(1.4, 2.4)
    # slice stack (template voxel z): from the posterior fossa to the convexity, evenly spaced
    z_low, z_high = rng.uniform(40, 50), rng.uniform(128, 138)
    if num_slices == 1:
        z_slices = np.array([rng.uniform(z_low, z_high)])
    else:
        spacing = (z_high - z_low) / (num_slices - 1)
        z_slices = np.linspace(z_low, z_high, num_slices) + rng.uniform(-0.25, 0.25, num_slices) * spacing

    # ---- sample points: image grid -> world (mm) -> template voxel coordinates ----------------------
    centre = _brain_centre()
    offsets = (np.arange(size, dtype=np.float64) - (size - 1) / 2) * pixel_mm
    # rows: anterior (top) -> posterior = -y; columns: patient right -> left = +x (radiological)
    rows, cols = np.meshgrid(offsets, offsets, indexing="ij")
    yy = -rows - shift_mm[0]
    xx = cols - shift_mm[1]
    plane = np.stack([xx, yy, np.zeros_like(xx)], axis=-1) / axis_scale    # (size, size, 3) template mm
    plane = plane @ rot.T
    normal = rot @ np.array([0.0, 0.0, 1.0])
    # the stack's centre sits on the brain's centre line; slices are parallel planes along the normal
    z_mid = 0.5 * (z_low + z_high)
    base = np.array([centre[0], centre[1], z_mid])
    heights = (z_slices - z_mid)[:, None, None, None] * normal            # (S, 1, 1, 3)
    points = (base + plane[None] + heights).astype(np.float32)            # (S, size, size, 3) voxels (1 mm)

    # ventricle size: a radial expansion around the lateral ventricles' centre (MNI ~ (0, -12, 18) mm)
    vcentre = np.array([98.0, 122.0, 90.0], dtype=np.float32)
    rel = points - vcentre
    points = points - ventricle_gain * rel * np.exp(-np.sum(rel**2, axis=-1, keepdims=True) / (2 * 22.0**2))
    # elastic deformation of the sample positions
    phase = points @ wave_k.T + wave_phase                                # (S, size, size, K)
    points = points + np.sin(phase) @ wave_amp

    # ---- brain: grey / white matter from the block-averaged template --------------------------------
    level = 1 if pixel_mm < 1.5 else (2 if pixel_mm < 3.0 else 4)
    vols = template_volumes(level)
    coords = np.moveaxis(points, -1, 0) / level - (level - 1) / (2 * level)   # voxel centres of the block mean
    gm = ndimage.map_coordinates(vols[0], coords, order=1, mode="constant", cval=0.0)
    wm = ndimage.map_coordinates(vols[1], coords, order=1, mode="constant", cval=0.0)

    # ---- head: layers at signed distance from the intracranial envelope ------------------------------
    dist = _envelope_distance()
    dcoords = np.moveaxis(points, -1, 0) / _DIST_VOXEL_MM - 0.25 + _PAD   # 2 mm grid, padded
    d = ndimage.map_coordinates(dist, dcoords, order=1, mode="constant", cval=100.0)
    d *= head_scale                                                       # template mm -> world mm
    # temporalis: lateral, over the temporal fossa (template voxel coordinates)
    px, py, pz = points[..., 0], points[..., 1], points[..., 2]
    lateral = np.clip(np.abs(px - centre[0]) / 62.0, 0, 1) ** 4
    muscle_t = temporalis * lateral * np.exp(-(((pz - 78.0) / 28.0) ** 2) - ((py - 128.0) / 38.0) ** 2)
    bounds = np.cumsum([csf_rim, inner_table, diploe, outer_table])
    b_inside, b_table1, b_diploe, b_skull = (float(b) for b in bounds)
    b_muscle = b_skull + muscle_t
    b_fat = b_muscle + scalp_fat
    b_skin = b_fat + skin
    w = pixel_mm
    f = [_box_fraction_below(d, b, w) for b in (b_inside, b_table1, b_diploe, b_skull)]
    f_muscle, f_fat, f_skin = (_box_fraction_below(d, b, w) for b in (b_muscle, b_fat, b_skin))

    brain = gm + wm
    over = brain > f[0]
    scale = np.where(over, f[0] / np.maximum(brain, 1e-6), 1.0)
    gm, wm = gm * scale, wm * scale
    out = {
        "white_matter": wm,
        "grey_matter": gm,
        "csf": np.clip(f[0] - gm - wm, 0.0, 1.0),
        "cortical_bone": (f[1] - f[0]) + (f[3] - f[2]),
        "marrow": f[2] - f[1],
        "muscle": f_muscle - f[3],
        "fat": f_fat - f_muscle,
        "skin": f_skin - f_fat,
    }
    return {k: np.clip(v, 0.0, 1.0).astype(np.float32, copy=False) for k, v in out.items()}
