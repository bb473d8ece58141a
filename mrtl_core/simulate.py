"""Physics-based synthetic MR scanners: tissue fractions -> multi-coil Cartesian k-space.

A *domain* (``brain-1.5T``, ``brain-3T``, ``knee-1.5T``, ``knee-3T``) is one anatomy, one field
strength, one receive array and one fixed protocol. :func:`simulate_subject` turns a random subject of
that anatomy (partial-volume tissue maps from :mod:`mrtl_core.phantoms`) into fastMRI-like raw data:

1. **Contrast** -- each tissue's magnetisation from the protocol's signal equation with field-dependent
   relaxation times (:data:`TISSUES`, jittered a few % per subject), summed over the tissue fractions.
2. **Transmit field B1+** -- a smooth map of the actual/nominal flip-angle ratio ``r``: nearly flat at
   1.5 T, centre-bright / periphery-dark at 3 T (the dielectric effect of a ~26 cm RF wavelength in
   tissue), with a random per-subject tilt, softly limited to measured ranges (relative B1+ within
   about 0.9-1.1 at 1.5 T and 0.7-1.3 at 3 T, see ``_b1_saturate``). A spin echo with 90/180 pulses
   scaled by ``r`` gives ``sin(r pi/2) sin^2(r pi/2)`` (excitation x refocusing efficiency); we use
   that first-order model for the TSE too (it ignores the stimulated-echo pathways of a long echo
   train, which make a TSE somewhat *less* sensitive).
3. **Receive coils** -- quasi-static Biot-Savart fields of rectangular loops on a cylinder around the
   object (one ring of 8 at 1.5 T, two rings of 8 at 3 T), ``S_c = B_x - i B_y``. The delivered maps are
   normalised, ``sum_c |S_c|^2 = 1``; the residual receive shading (the coil's "bias field", partly
   flattened as scanners do with a prescan normalisation) stays in the image ``x`` so that
   ``coil image_c = S_c x`` holds exactly (the SENSE model).
4. **Phase** -- a smooth low-order background phase (B0 offsets, RF phase), per subject and slice.
5. **Encoding** -- the image is simulated on a 2x oversampled readout, ``(2 size, size)``, with the
   anatomy in the central ``size`` rows (as fastMRI raw data), transformed with the centred orthonormal
   FFT, and complex white Gaussian noise of standard deviation ``noise_std`` (per coil, per sample;
   real and imaginary parts each ``noise_std / sqrt 2``) is added.

**SNR.** The thermal SNR per unit volume grows about linearly with B0 (signal ~ B0^2: polarisation x
induced EMF; body-dominated noise ~ B0). We scale the noise by ``1.5 T / B0``: 3 T gets 2x the SNR of
1.5 T at identical tissue signal. In practice the gain is smaller (about 1.6-1.9x): longer T1 at 3 T
lowers the recovered signal at the same TR (this *is* in our signal equation: white matter loses 7 %
on the brain protocol), the higher B1+ inhomogeneity loses signal in the periphery (also modelled),
and 3 T protocols trade SNR for a higher readout bandwidth (chemical shift) and lower SAR (not
modelled). The noise level is set so that the domain's reference tissue (white matter for the brain,
muscle for the knee) has an RSS SNR of ``snr_1p5T`` (30 / 25) at 1.5 T at unit B1 and bias, whatever
the matrix size (as if slice thickness or averages were adapted to the resolution).

**Protocols.** The same protocol runs at both fields (as a hospital would move it to a 3 T system).

* Brain: axial T2-weighted turbo spin echo, TR 4500 / TE 100 ms ("AXT2", the most common fastMRI
  brain contrast). The TR 500 / TE 15 spin echo of a first prototype had *no* grey/white contrast at
  1.5 T (0.246 vs 0.245) because T1 and proton-density weighting cancel. With T2 weighting the water
  content (GM 0.80 vs WM 0.69) and T2 (95 vs 72 ms) both favour grey matter, at both fields. Computed
  with :data:`TISSUES` (see :func:`contrast_table`), signal in units of pure water's PD:

  ======  =====  =====  =====  =====  ============  =====
  field   GM     WM     CSF    fat    marrow        GM/WM
  ======  =====  =====  =====  =====  ============  =====
  1.5 T   0.274  0.171  0.668  0.345  0.464         1.60
  3 T     0.267  0.159  0.622  0.398  0.401         1.67
  ======  =====  =====  =====  =====  ============  =====

  3 T thus changes contrast only mildly (GM/WM by 4 %, CSF -7 %, fat +15 %), on top of B1+, coil
  count and SNR: a realistic shift, not "contrast appears".
* Knee: proton-density-weighted turbo spin echo, TR 3000 / TE 30 ms (as fastMRI's CORPD; our knee
  phantom is sagittal, hence "SAGPD"): 1.5 T / 3 T marrow 0.709 / 0.678, fat 0.675 / 0.704, fluid
  0.635 / 0.542, muscle 0.360 / 0.362, cartilage 0.261 / 0.228, meniscus 0.047 / 0.027, tendon and
  cortical bone ~0: fluid and fat bright, cartilage intermediate (dimmer than muscle with these
  in-vitro cartilage values), meniscus, tendons and bone dark.

Fat is bright on TSE because the closely spaced refocusing pulses suppress J-coupling dephasing
(Henkelman et al., JMRI 1992;2:533): we lengthen fat's T2 by ``TSE_FAT_T2_FACTOR`` for TSE sequences.

**Clinical sites.** ``brain-1.5T-clinical`` and ``brain-3T-clinical`` add a hospital's own axial T2
TSE protocol (:class:`ClinicalSite`, :data:`CLINICAL_1P5T`, :data:`CLINICAL_3T`) to the brain
scanners: in-vivo relaxation (:data:`CLINICAL_TISSUES`), the site's matrix over its FOV with the
acquired phase lines only (:func:`site_grid`), the echo train's T2 weighting of each phase-encode line
(:func:`echo_of_line`), the refocusing angle and B1+ through extended phase graphs
(:mod:`mrtl_core.epg`), fat's chemical shift at the site's bandwidth, the voxel law of SNR
(:func:`voxel_snr_factor`) and correlated receiver noise (:func:`noise_covariance`). Each is one of
:data:`SITE_FACTORS`, switched on or off alone (``site.without("chemical_shift")``); with none the
site is the fixed-protocol pipeline at its TR / TE. The fixed-protocol domains have no site.

**Randomised pre-training.** ``brain-mixed-1.5T`` draws each subject's scanner (:class:`Randomisation`):
a protocol among T1 SE, PD TSE and T2 TSE, an SNR, a receive array and its shading, so a network
trained on it must learn the inverse problem rather than one protocol; ``brain-flair-1.5T`` is the
contrast neither pre-training sees (FLAIR, CSF nulled), the measurable stand-in for data the
simulator was not made for.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import scipy.fft

from .epg import cpmg_echoes


__all__ = [
    "TissueProperties", "TISSUES", "TSE_FAT_T2_FACTOR", "Protocol", "Domain", "DOMAINS", "get_domain",
    "SimulatedSubject", "simulate_subject", "tissue_signal", "contrast_table", "b1_signal_factor",
    "coil_sensitivities", "subject_seed_sequence",
    "CLINICAL_TISSUES", "SITE_FACTORS", "ClinicalSite", "CLINICAL_1P5T", "CLINICAL_3T", "REFERENCE_SITE",
    "SiteGrid", "site_grid", "echo_of_line", "voxel_snr_factor", "chemical_shift_mm", "site_echo_table",
    "noise_covariance", "site_noise_std",
    "Randomisation", "BRAIN_PROTOCOL", "BRAIN_T1_PROTOCOL", "BRAIN_PD_PROTOCOL", "BRAIN_FLAIR_PROTOCOL",
]


# --------------------------------------------------------------------------------------------------
# Tissues
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TissueProperties:
    """Relative proton density and relaxation times (ms) at 1.5 T and 3 T."""

    pd: float
    t1: tuple[float, float]   # (1.5 T, 3 T)
    t2: tuple[float, float]
    source: str = ""

    def at(self, field_strength_T: float) -> tuple[float, float, float]:
        """(PD, T1, T2) at ``field_strength_T``, linearly interpolated in B0 between 1.5 and 3 T."""
        w = float(np.clip((field_strength_T - 1.5) / 1.5, 0.0, 1.0)) if field_strength_T != 1.5 else 0.0
        t1 = (1 - w) * self.t1[0] + w * self.t1[1]
        t2 = (1 - w) * self.t2[0] + w * self.t2[1]
        return self.pd, t1, t2


#: Literature values, rounded. PD is relative water (proton) density, pure water = 1.
#: - Stanisz GJ et al. "T1, T2 relaxation and magnetization transfer in tissue at 3T." MRM 2005;54:507-512
#:   (white/grey matter, muscle, cartilage at 1.5 T and 3 T); Bojorquez JZ et al. "What are normal
#:   relaxation times of tissues at 3 T?" MRI 2017;35:69-80 (review, confirms the brain values; CSF).
#: - Gold GE et al. "Musculoskeletal MRI at 3.0 T: relaxation times and image contrast." AJR
#:   2004;183:343-351 (synovial fluid, bone marrow of the knee, 1.5 T and 3 T).
#: - de Bazelaire CMJ et al. "MR imaging relaxation times of abdominal and pelvic tissues measured in
#:   vivo at 3.0 T: preliminary results." Radiology 2004;230:652-659 (subcutaneous fat, 1.5 T and 3 T).
#: - Water content (PD) of grey / white matter about 0.80 / 0.69: e.g. Neeb H et al., NeuroImage
#:   2006;31:1156-1168. Fat and marrow PD are apparent (MR-visible lipid protons relative to water).
#: - skin, meniscus, tendon, cortical bone: estimates (no single reference): meniscus and tendon are
#:   short-T2 collagen (T2 ~ 10 / ~ 5 ms, dark on every clinical sequence); cortical bone has T2* below
#:   1 ms and gives no signal at clinical echo times.
TISSUES: dict[str, TissueProperties] = {
    "white_matter": TissueProperties(0.69, (884, 1084), (72, 69), "Stanisz 2005"),
    "grey_matter": TissueProperties(0.80, (1124, 1820), (95, 99), "Stanisz 2005"),
    "csf": TissueProperties(1.00, (3700, 4200), (1900, 1800), "Bojorquez 2017 (mid-range of reported values)"),
    "fluid": TissueProperties(1.00, (2850, 3620), (1210, 767), "Gold 2004 (synovial fluid)"),
    "fat": TissueProperties(0.90, (343, 382), (58, 68), "de Bazelaire 2004 (subcutaneous fat)"),
    "marrow": TissueProperties(0.85, (288, 371), (165, 133), "Gold 2004 (bone marrow)"),
    "muscle": TissueProperties(0.75, (1008, 1412), (44, 50), "Stanisz 2005 (skeletal muscle)"),
    "skin": TissueProperties(0.65, (800, 1000), (35, 32), "estimate (collagen-rich dermis)"),
    "cartilage": TissueProperties(0.75, (1024, 1168), (30, 27), "Stanisz 2005 (articular cartilage)"),
    "meniscus": TissueProperties(0.60, (1000, 1200), (12, 10), "estimate (fibrocartilage, short T2)"),
    "tendon": TissueProperties(0.50, (600, 800), (5, 4), "estimate (ligament/tendon, very short T2)"),
    "cortical_bone": TissueProperties(0.05, (250, 300), (0.5, 0.4), "estimate (T2* < 1 ms: no signal)"),
}

#: Apparent T2 lengthening of fat in fast/turbo spin echo (J-coupling suppressed by the echo train).
TSE_FAT_T2_FACTOR = 1.8
_FAT_LIKE = ("fat",)   # marrow's Gold 2004 T2 was measured with a CPMG train already


# --------------------------------------------------------------------------------------------------
# Protocols and signal equations
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Protocol:
    """One fixed acquisition protocol (times in ms).

    ``sequence``: ``"SE"`` (spin echo), ``"TSE"`` (turbo/fast spin echo: the SE equation at the
    effective TE, with fat's J-coupling T2 lengthening) or ``"IR"`` (inversion recovery spin echo).
    ``acquisition`` is the fastMRI-style label written to the HDF5 ``acquisition`` attribute.
    """

    acquisition: str
    sequence: str
    TR: float
    TE: float
    TI: float | None = None
    echo_train_length: int = 1

    def __post_init__(self) -> None:
        if self.sequence not in ("SE", "TSE", "IR"):
            raise ValueError(f"Protocol.sequence must be 'SE', 'TSE' or 'IR', got {self.sequence!r}")
        if not (self.TR > 0 and self.TE > 0 and self.TE < self.TR):
            raise ValueError(f"Protocol needs 0 < TE < TR, got TR={self.TR!r}, TE={self.TE!r}")
        if self.sequence == "IR" and not (self.TI and 0 < self.TI < self.TR):
            raise ValueError(f"an IR protocol needs 0 < TI < TR, got TI={self.TI!r}")

    def signal(self, pd, t1, t2, *, fat_like: bool = False):
        """Magnetisation at the echo for nominal flip angles (arrays broadcast)."""
        pd, t1, t2 = (np.asarray(v, dtype=np.float64) for v in (pd, t1, t2))
        if self.sequence == "TSE" and fat_like:
            t2 = t2 * TSE_FAT_T2_FACTOR
        decay = np.exp(-self.TE / t2)
        if self.sequence == "IR":
            return pd * np.abs(1.0 - 2.0 * np.exp(-self.TI / t1) + np.exp(-self.TR / t1)) * decay
        return pd * (1.0 - np.exp(-self.TR / t1)) * decay

    def to_dict(self) -> dict[str, Any]:
        out = {"acquisition": self.acquisition, "sequence": self.sequence, "TR": self.TR, "TE": self.TE,
               "TI": self.TI, "echo_train_length": self.echo_train_length}
        return {k: v for k, v in out.items() if v is not None}


def tissue_signal(tissue: str, protocol: Protocol, field_strength_T: float) -> float:
    """Nominal (un-jittered, B1 = 1) signal of ``tissue`` for ``protocol`` at ``field_strength_T``."""
    if tissue not in TISSUES:
        raise ValueError(f"unknown tissue {tissue!r}; known: {sorted(TISSUES)}")
    pd, t1, t2 = TISSUES[tissue].at(field_strength_T)
    return float(protocol.signal(pd, t1, t2, fat_like=tissue in _FAT_LIKE))


def contrast_table(protocol: Protocol, fields=(1.5, 3.0), tissues=None) -> dict[str, dict[float, float]]:
    """``{tissue: {field: signal}}`` for a protocol: the numbers behind the protocol choice."""
    tissues = tissues or list(TISSUES)
    return {t: {b: tissue_signal(t, protocol, b) for b in fields} for t in tissues}


# Largest |r - 1| a body-coil transmit field reaches inside a head or knee: 1.5 T is nearly uniform
# (r in about 0.95-1.05, at most +-10 %); a 3 T birdcage gives central brightening of r ~ 1.2 and a
# periphery at ~0.75-0.85, i.e. r within about 0.7-1.3 (Sled & Pike, MRM 2000;43:589; Vaughan et al.,
# MRM 2001;46:24). Linear in B0 between the two fields, clamped outside.
_B1_MAX_DEVIATION_FIELDS_T = (1.5, 3.0)
_B1_MAX_DEVIATION = (0.10, 0.30)
_B1_TILT_FRACTION = 0.25


def _b1_max_deviation(field_strength_T: float) -> float:
    """Largest transmit-ratio deviation ``|r - 1|`` allowed at ``field_strength_T`` (0.10 / 0.30 at 1.5 / 3 T)."""
    return float(np.interp(float(field_strength_T), _B1_MAX_DEVIATION_FIELDS_T, _B1_MAX_DEVIATION))


def _b1_saturate(ratio: np.ndarray, field_strength_T: float) -> np.ndarray:
    """Softly limit a transmit-ratio map to ``1 +- w``, ``w = _b1_max_deviation(field)``.

    ``1 + w tanh((r - 1) / w)``: the identity to first order near r = 1 and smooth (a hard clip would
    leave flat plateaus with kinks), strictly inside ``(1 - w, 1 + w)``. The quadratic-plus-tilt model
    extrapolates without bound beyond its reference ellipse (scalp, subcutaneous fat), where real B1+
    levels off; without the limit a random tilt drove r down to ~0.2 (90 % spin-echo signal loss).
    """
    w = _b1_max_deviation(field_strength_T)
    return 1.0 + w * np.tanh((np.asarray(ratio, dtype=np.float64) - 1.0) / w)


def b1_signal_factor(ratio: np.ndarray) -> np.ndarray:
    """Spin-echo signal vs. actual/nominal flip-angle ratio: ``sin(r pi/2) * sin^2(r pi/2)``.

    Excitation (90 deg x r) gives ``sin``; a refocusing pulse of 180 deg x r refocuses the fraction
    ``sin^2(r pi/2)``. Equal to 1 at r = 1, e.g. 0.86 at r = 1.2 or 0.8.
    """
    s = np.sin(0.5 * np.pi * np.asarray(ratio))
    return s * s * s


# --------------------------------------------------------------------------------------------------
# Receive coils (quasi-static Biot-Savart of loops on a cylinder)
# --------------------------------------------------------------------------------------------------
def _loop_segments(num_coils: int, rings: int, radius: float, height: float, ring_gap: float,
                   segments_per_side: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Midpoints and vectors (C, N, 3) of the straight segments of rectangular loops on a cylinder
    (axis = z). Each loop spans 1.15x its share of the circumference (overlap, as decoupled arrays)."""
    per_ring = num_coils // rings
    width = 1.15 * 2 * np.pi / per_ring
    mids, vecs = [], []
    edges = np.linspace(0.0, 1.0, segments_per_side + 1)
    for ring in range(rings):
        zc = (ring - (rings - 1) / 2) * ring_gap
        for k in range(per_ring):
            phi0 = 2 * np.pi * (k + 0.5 * ring) / per_ring
            a, b = phi0 - width / 2, phi0 + width / 2
            z0, z1 = zc - height / 2, zc + height / 2
            pts = []
            # closed path: bottom arc a->b, right side z0->z1, top arc b->a, left side z1->z0
            for e in edges[:-1]:
                pts.append((a + (b - a) * e, z0))
            for e in edges[:-1]:
                pts.append((b, z0 + (z1 - z0) * e))
            for e in edges[:-1]:
                pts.append((b + (a - b) * e, z1))
            for e in edges[:-1]:
                pts.append((a, z1 + (z0 - z1) * e))
            pts.append(pts[0])
            p = np.array([[radius * np.cos(ph), radius * np.sin(ph), z] for ph, z in pts])
            mids.append(0.5 * (p[1:] + p[:-1]))
            vecs.append(p[1:] - p[:-1])
    return np.array(mids), np.array(vecs)


def coil_sensitivities(points: np.ndarray, num_coils: int, rings: int, radius: float, height: float,
                       ring_gap: float, coil_phase: np.ndarray | None = None) -> np.ndarray:
    """Receive sensitivities ``B_x - i B_y`` (arbitrary units) of a loop array at ``points`` (..., 3) mm.

    Returns complex64 (C, ...). Biot-Savart for unit current; ``coil_phase`` (C,) adds each channel's
    cable/receiver phase.
    """
    mids, vecs = _loop_segments(num_coils, rings, radius, height, ring_gap)   # (C, N, 3)
    shape = points.shape[:-1]
    p = points.reshape(-1, 3).astype(np.float32)
    m = mids.reshape(-1, 3).astype(np.float32)                                 # (C N, 3)
    # B(p) = sum_n dl_n x (p - m_n) / |p - m_n|^3, expanded so that the (P, C N) work is one matrix
    # of inverse cubed distances and the cross products become small matrix products.
    # a finite conductor width (5 % of the radius) keeps fields bounded near the wires
    r2 = np.full((p.shape[0], m.shape[0]), (0.05 * radius) ** 2, dtype=np.float32)
    for k in range(3):
        r2 += np.square(p[:, k:k + 1] - m[None, :, k])
    inv = (r2 * np.sqrt(r2)).reshape(p.shape[0], num_coils, -1)
    np.reciprocal(inv, out=inv)                                                 # (P, C, N)
    dl = vecs.astype(np.float32)
    mx, my, mz = (mids[..., k].astype(np.float32) for k in range(3))
    dx, dy, dz = dl[..., 0], dl[..., 1], dl[..., 2]
    # per-coil sums over segments as one GEMM with a block-diagonal weight matrix (C N, 8 C)
    weights = [dy, dy * mz, dz, dz * my, dz * mx, dx, dx * mz]
    n_seg = mids.shape[1]
    w = np.zeros((num_coils, n_seg, len(weights), num_coils), dtype=np.float32)
    for j, wt in enumerate(weights):
        w[np.arange(num_coils), :, j, np.arange(num_coils)] = wt
    t = (inv.reshape(p.shape[0], -1) @ w.reshape(num_coils * n_seg, -1)).reshape(p.shape[0], len(weights), num_coils)
    px, py, pz = p[:, 0:1], p[:, 1:2], p[:, 2:3]
    # (dl x r)_x = dy rz - dz ry, (dl x r)_y = dz rx - dx rz, with r = p - m
    bx = pz * t[:, 0] - t[:, 1] - py * t[:, 2] + t[:, 3]
    by = px * t[:, 2] - t[:, 4] - pz * t[:, 5] + t[:, 6]
    out = (bx - 1j * by).T * radius                                             # (C, P), O(1) near a coil
    if coil_phase is not None:
        out *= np.exp(1j * np.asarray(coil_phase))[:, None]
    return out.reshape((num_coils, *shape)).astype(np.complex64)


def _interp_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) linear interpolation from ``n_in`` to ``n_out`` samples over the same extent
    (sample centres, edge values held)."""
    x = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    x = np.clip(x, 0, n_in - 1)
    i0 = np.clip(np.floor(x).astype(int), 0, n_in - 2) if n_in > 1 else np.zeros(n_out, int)
    w = x - i0
    m = np.zeros((n_out, n_in), dtype=np.float32)
    m[np.arange(n_out), i0] += 1 - w
    if n_in > 1:
        m[np.arange(n_out), i0 + 1] += w
    return m


def _linear_weights(x: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """(len(x), len(nodes)) weights of linear interpolation at ``x`` between increasing ``nodes``."""
    if len(nodes) == 1:
        return np.ones((len(x), 1), dtype=np.float32)
    i0 = np.clip(np.searchsorted(nodes, x, side="right") - 1, 0, len(nodes) - 2)
    w = np.clip((x - nodes[i0]) / (nodes[i0 + 1] - nodes[i0]), 0.0, 1.0)
    m = np.zeros((len(x), len(nodes)), dtype=np.float32)
    m[np.arange(len(x)), i0] = 1 - w
    m[np.arange(len(x)), i0 + 1] += w
    return m


def _interpolate_maps(coarse: np.ndarray, mr: np.ndarray, mc: np.ndarray) -> np.ndarray:
    """Separable linear interpolation of complex maps (C, S, r, w) -> (S, C, H, n) with two plain
    2-D GEMMs (numpy's batched matmul is very slow for many small complex products)."""
    C, S, r, w = coarse.shape
    H, n = mr.shape[0], mc.shape[0]
    x = np.ascontiguousarray(coarse.transpose(2, 1, 0, 3)).view(np.float32)        # (r, S, C, 2w)
    x = (mr @ x.reshape(r, -1)).reshape(H * S * C, 2 * w)                          # rows
    kron = np.kron(mc.T, np.eye(2, dtype=np.float32))                               # (2w, 2n), re/im kept
    x = (x @ kron).view(np.complex64).reshape(H, S, C, n)                           # columns
    return np.ascontiguousarray(x.transpose(1, 2, 0, 3))


# --------------------------------------------------------------------------------------------------
# Clinical sites: a hospital's own T2 TSE protocol, factor by factor
# --------------------------------------------------------------------------------------------------
#: In-vivo relaxation times (ms) of the brain for the clinical sites; :data:`TISSUES` (mostly in vitro,
#: Stanisz 2005) stays the table of the fixed-protocol domains. Values chosen from the literature
#: before any simulation was run:
#: - white / grey matter T1 at 3 T: Wansapura JP et al. "NMR relaxation times in the human brain at
#:   3.0 tesla." JMRI 1999;9:531-538 (WM 832, GM 1331 ms).
#: - white / grey matter T1 at 1.5 T: Wright PJ et al. "Water proton T1 measurements in brain tissue
#:   at 7, 3, and 1.5 T using IR-EPI, IR-TSE, and MPRAGE." MAGMA 2008;21:121-130 (MPRAGE, WM 646,
#:   cortical GM 1197 ms; their 3 T WM, 838 ms, agrees with Wansapura; their 3 T GM, 1607 ms, does not:
#:   the 3 T GM T1 in the literature spans about 1330-1610 ms, and the 1.5 -> 3 T lengthening we get
#:   for GM, +11 %, lies below the +14-30 % Lu et al. JMRI 2005;22:13 measured).
#: - white / grey matter T2 at both fields: Cox EF, Gowland PA. MRM 2010;64:1440-1445 (gradient echo
#:   sampling of a spin echo, the same volunteers at 1.5, 3 and 7 T: WM 80 / 71, frontal GM 87 / 76 ms),
#:   i.e. 11-13 % shorter at 3 T, as Lu et al. 2005 (12-19 % shorter) and Gelman N et al. Radiology
#:   1999;210:759 also found T2 shorter at 3 T. (Numbers as the papers' abstracts state them.)
#: - water content (PD) as :data:`TISSUES`; CSF, skull, marrow, muscle, fat and skin keep the values
#:   (and sources) of :data:`TISSUES`.
CLINICAL_TISSUES: dict[str, TissueProperties] = {
    **TISSUES,
    "white_matter": TissueProperties(0.69, (646, 832), (80, 71),
                                     "T1: Wright 2008 (1.5 T), Wansapura 1999 (3 T); T2: Cox & Gowland 2010"),
    "grey_matter": TissueProperties(0.80, (1197, 1331), (87, 76),
                                    "T1: Wright 2008 (1.5 T), Wansapura 1999 (3 T); T2: Cox & Gowland 2010"),
}

#: The physics a clinical site adds to a fixed-protocol domain; each can be switched off alone.
SITE_FACTORS = frozenset({
    "relaxation",         # in-vivo T1/T2 (CLINICAL_TISSUES) instead of TISSUES
    "resolution",         # the site's matrix over its FOV; phase lines beyond the acquired matrix zero
    "echo_train",         # each phase-encode line at its own echo: T2 weighting (blur) along phase
    "refocusing",         # the site's refocusing angle (SAR-reduced at 3 T) instead of 180 deg
    "b1_contrast",        # EPG at the actual refocusing angle alpha * B1+ (not only sin^3 shading)
    "chemical_shift",     # fat and marrow displaced along the readout at the site's bandwidth
    "snr",                # noise from the voxel law (volume x B0 x sqrt(lines x NSA / BW per pixel))
    "noise_correlation",  # correlated receiver noise between coils
})

FAT_WATER_PPM = 3.4          # main (methylene) lipid peak relative to water
GAMMA_MHZ_PER_T = 42.577     # proton gyromagnetic ratio / 2 pi
_LIPID_TISSUES = ("fat", "marrow")          # chemically shifted (the diploe is fatty marrow)
#: Coil noise correlation: the fraction of the normalised overlap of the coils' raw sensitivities that
#: appears as noise correlation (see :func:`noise_covariance`).
NOISE_CORRELATION_SCALE = 0.3
_B1_GRID_POINTS = 21         # EPG evaluated at this many transmit ratios across the field's B1+ range


@dataclass(frozen=True)
class ClinicalSite:
    """A hospital's axial T2 TSE protocol: the physics a clinical site adds to a :class:`Domain`.

    Times in ms. ``matrix`` is the *acquired* (readout, phase) matrix over the square ``fov_mm``; the
    image is reconstructed on a square readout x readout matrix (phase lines beyond the acquired ones
    zero-filled, as vendors do). Linear phase-encode ordering with the k-space centre at echo
    ``TE / echo_spacing`` (:func:`echo_of_line`); full Fourier, no vendor k-space filter. ``factors``
    names the physics switched on (a subset of :data:`SITE_FACTORS`; :meth:`without` / :meth:`only`
    switch them one at a time); with none the site reproduces the fixed-protocol pipeline at its TR/TE.
    The ``snr`` law uses the protocol's voxel whatever the simulated matrix (as the fixed-protocol
    domains keep their SNR at any ``size``).
    """

    name: str
    TR: float
    TE: float
    echo_spacing: float
    echo_train_length: int
    refocusing_deg: float
    bandwidth_hz_per_px: float
    fov_mm: float
    matrix: tuple[int, int]
    slice_thickness_mm: float
    averages: int = 1
    factors: frozenset = SITE_FACTORS
    source: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.factors) - SITE_FACTORS
        if unknown:
            raise ValueError(f"ClinicalSite {self.name!r}: unknown factors {sorted(unknown)}; "
                             f"known: {sorted(SITE_FACTORS)}")
        object.__setattr__(self, "factors", frozenset(self.factors))
        ratio = self.TE / self.echo_spacing
        if abs(ratio - round(ratio)) > 1e-9 or not 1 <= round(ratio) <= self.echo_train_length:
            raise ValueError(f"ClinicalSite {self.name!r}: TE must be an echo of the train (n x echo_spacing)")
        if not (0 < self.matrix[1] <= self.matrix[0] and self.TR > self.echo_train_length * self.echo_spacing):
            raise ValueError(f"ClinicalSite {self.name!r}: needs phase <= readout matrix and TR > ETL x ESP")

    def without(self, *names: str) -> "ClinicalSite":
        """This site with the factors ``names`` switched off."""
        unknown = set(names) - SITE_FACTORS
        if unknown:
            raise ValueError(f"unknown factors {sorted(unknown)}; known: {sorted(SITE_FACTORS)}")
        return dataclasses.replace(self, factors=self.factors - set(names))

    def only(self, *names: str) -> "ClinicalSite":
        """This site with only the factors ``names`` switched on (none: the fixed-protocol control)."""
        return dataclasses.replace(self, factors=frozenset(names))

    @property
    def centre_echo(self) -> int:
        """The echo (1-based) acquired at the centre of k-space: TE_eff / ESP."""
        return int(round(self.TE / self.echo_spacing))

    @property
    def protocol(self) -> Protocol:
        """The fixed-protocol equivalent (the SE equation at TE_eff), used with the factors off."""
        return Protocol("AXT2", "TSE", TR=self.TR, TE=self.TE, echo_train_length=self.echo_train_length)

    @property
    def voxel_mm3(self) -> float:
        """Acquired voxel volume: (FOV / readout) x (FOV / phase lines) x slice thickness."""
        return self.fov_mm / self.matrix[0] * self.fov_mm / self.matrix[1] * self.slice_thickness_mm

    def to_dict(self, field_strength_T: float) -> dict[str, Any]:
        """The protocol as written to the file header (extra keys beyond :meth:`Protocol.to_dict`)."""
        return {**self.protocol.to_dict(), "site": self.name, "echo_spacing": self.echo_spacing,
                "refocusing_flip_deg": self.refocusing_deg if "refocusing" in self.factors else 180.0,
                "bandwidth_hz_per_px": self.bandwidth_hz_per_px, "fov_mm": self.fov_mm,
                "acquired_matrix": list(self.matrix), "slice_thickness_mm": self.slice_thickness_mm,
                "averages": self.averages, "ordering": "linear",
                "chemical_shift_px": chemical_shift_mm(self, field_strength_T) * self.matrix[0] / self.fov_mm,
                "factors": ",".join(sorted(self.factors))}


# Typical axial T2 TSE protocols of a 1.5 T and a 3 T hospital scanner (issue 14's numbers; Lu et al.
# JMRI 2005;22:13 moved routine brain protocols from 1.5 T to 3 T this way): 3 T buys a larger matrix
# over a smaller FOV and thinner slices with its SNR, a wider bandwidth (chemical shift) and a
# refocusing angle cut to 140 deg (the 120-150 deg of SAR-limited 3 T trains). Fixed before any run.
CLINICAL_1P5T = ClinicalSite(
    name="1.5T-clinical", TR=4500.0, TE=100.0, echo_spacing=10.0, echo_train_length=16, refocusing_deg=180.0,
    bandwidth_hz_per_px=130.0, fov_mm=240.0, matrix=(256, 224), slice_thickness_mm=5.0, averages=1,
    source="typical 1.5 T axial T2 TSE (issue 14; Lu et al. JMRI 2005;22:13)")
CLINICAL_3T = ClinicalSite(
    name="3T-clinical", TR=5000.0, TE=100.0, echo_spacing=10.0, echo_train_length=16, refocusing_deg=140.0,
    bandwidth_hz_per_px=220.0, fov_mm=220.0, matrix=(448, 320), slice_thickness_mm=4.0, averages=1,
    source="typical 3 T axial T2 TSE (issue 14; Lu et al. JMRI 2005;22:13), SAR-reduced refocusing")
#: The site whose readout matrix a requested image ``size`` stands for, and whose reference-tissue SNR
#: is the fixed-protocol source's (``snr_1p5T``): the other site's noise follows from the voxel law.
REFERENCE_SITE = CLINICAL_1P5T


def voxel_snr_factor(site: ClinicalSite, field_strength_T: float) -> float:
    """Relative per-voxel SNR: voxel volume x B0 x sqrt(phase lines x averages / bandwidth per pixel).

    The noise variance of one voxel falls with the sampling time spent on it: N_phase x NSA readouts of
    ``1 / BW_px`` each (a readout of N_read samples over ``N_read x BW_px`` Hz).
    """
    return site.voxel_mm3 * field_strength_T * np.sqrt(site.matrix[1] * site.averages / site.bandwidth_hz_per_px)


def chemical_shift_mm(site: ClinicalSite, field_strength_T: float) -> float:
    """Fat-water displacement along the readout (mm): ``delta f / BW_px`` pixels of ``FOV / N_read``."""
    delta_f = FAT_WATER_PPM * GAMMA_MHZ_PER_T * field_strength_T        # Hz (ppm x MHz)
    return delta_f / site.bandwidth_hz_per_px * site.fov_mm / site.matrix[0]


def echo_of_line(num_lines: int, echo_train_length: int, centre_echo: int) -> np.ndarray:
    """Echo number (1-based) of each acquired phase-encode line, linear ordering: (num_lines,) int.

    Line ``k`` (0 .. num_lines-1, the centre line at ``num_lines // 2``) falls in one of
    ``echo_train_length`` equal segments swept in k-space order; the sweep is shifted so that the
    centre line's segment is ``centre_echo``. With TE_eff later than the middle of the train the
    shift leaves echo 1 unused and pushes the last segment past the train's end: it is given the last
    echo (a scanner would read it one spacing later, a weight error of ``exp(-ESP / T2)`` on the
    outermost ``1 / ETL`` of k-space).
    """
    k = np.arange(num_lines) - num_lines // 2
    echo = centre_echo + np.floor(k * echo_train_length / num_lines).astype(int)
    return np.clip(echo, 1, echo_train_length)


def _even(x: float) -> int:
    """``x`` rounded to the nearest even integer (at least 2)."""
    return max(2, 2 * int(round(x / 2)))


@dataclass(frozen=True)
class SiteGrid:
    """Where a domain's image lives for a requested ``size``: ``matrix`` (square recon matrix),
    ``render`` (the size at which the phantom's ``FOV_MM`` is rendered at the grid's pixel pitch),
    ``fov_mm`` (recon FOV) and ``acquired`` (phase-encode lines acquired, centred)."""

    matrix: int
    render: int
    fov_mm: float
    acquired: int


def site_grid(domain: "Domain", size: int) -> SiteGrid:
    """The image grid of ``domain`` for a requested ``size`` (the display size of the reference site).

    Without a site (or with ``resolution`` off) it is the fixed-protocol grid: ``size`` pixels over
    the anatomy's FOV, every line acquired. With ``resolution`` the matrix is ``size`` scaled by the
    site's readout matrix over the reference site's (256), rounded to even (224 at size 128 for
    448), over the site's FOV: the phantom is rendered at ``FOV_MM / pitch`` pixels (rounded to even,
    so the FOV is the site's to within half a pixel of the render) and the phase lines beyond
    ``matrix x N_phase / N_read`` are not acquired.
    """
    site = domain.site
    anatomy_fov = domain.fov_mm
    if site is None or "resolution" not in site.factors:
        return SiteGrid(int(size), int(size), anatomy_fov, int(size))
    m = _even(size * site.matrix[0] / REFERENCE_SITE.matrix[0])
    render = _even(anatomy_fov * m / site.fov_mm)
    if render > 2 * m:
        raise ValueError(f"site {site.name!r}: FOV {site.fov_mm} mm is under half the anatomy's {anatomy_fov} mm")
    return SiteGrid(m, render, m * anatomy_fov / render, min(m, _even(m * site.matrix[1] / site.matrix[0])))


def _place(maps: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Put rendered maps (..., R, R) into the encoded grid (..., rows, cols): rows centred in the
    oversampled readout (R <= rows), columns folded modulo ``cols`` (phase wrap of anything outside
    the phase FOV), centres aligned."""
    R = maps.shape[-1]
    out = np.zeros(maps.shape[:-2] + (rows, cols), dtype=maps.dtype)
    top = (rows - R) // 2
    target = np.arange(R) - (R - cols) // 2
    for block in np.unique(target // cols):
        sel = target // cols == block
        out[..., top:top + R, target[sel] - block * cols] += maps[..., sel]
    return out


def _shift_rows(maps: np.ndarray, shift_px: float) -> np.ndarray:
    """Sub-pixel shift of real maps (..., H, W) by ``shift_px`` rows (towards higher row index): a
    phase ramp on the readout's k-space, as the fat's off-resonance writes it there."""
    H = maps.shape[-2]
    spectrum = np.fft.rfft(maps, axis=-2)
    ramp = np.exp(-2j * np.pi * np.fft.rfftfreq(H) * shift_px)
    return np.fft.irfft(spectrum * ramp[:, None], n=H, axis=-2).astype(maps.dtype)


def _centred_fft_cols(x: np.ndarray, inverse: bool = False) -> np.ndarray:
    """Centred orthonormal 1-D FFT along the last axis (phase encoding); the DC line at index W // 2."""
    f = scipy.fft.ifft if inverse else scipy.fft.fft
    return scipy.fft.fftshift(f(scipy.fft.ifftshift(x, axes=-1), axis=-1, norm="ortho", workers=_FFT_WORKERS), axes=-1)


def site_echo_table(site: ClinicalSite, params: np.ndarray, fat_like: np.ndarray,
                    ratios: np.ndarray | None) -> np.ndarray:
    """Each tissue's signal at each echo: ``PD (1 - exp(-TR/T1)) x [sin(r pi/2)] x EPG echo``.

    ``params`` (T, 3) are (PD, T1, T2) and ``fat_like`` (T,) bool (fat's TSE T2 lengthening). With
    ``ratios`` (G,) the table is (T, G, ETL), evaluated at the refocusing angle ``alpha r`` and the
    excitation ``sin(r pi/2)`` of each transmit ratio; without, (T, ETL) at the nominal angle. The
    recovery over the TR ignores the train's own duration (ETL x ESP = 160 ms: under 0.1 % for brain
    tissue, 2 % for CSF).
    """
    pd, t1, t2 = (params[:, i] for i in range(3))
    t2 = np.where(fat_like, t2 * TSE_FAT_T2_FACTOR, t2)
    alpha = site.refocusing_deg if "refocusing" in site.factors else 180.0
    recovery = pd * (1.0 - np.exp(-site.TR / t1))
    if ratios is None:
        return recovery[:, None] * cpmg_echoes(t1, t2, site.echo_spacing, alpha, site.echo_train_length)
    echoes = cpmg_echoes(t1[:, None], t2[:, None], site.echo_spacing, alpha * ratios[None, :], site.echo_train_length)
    return (recovery[:, None] * np.sin(0.5 * np.pi * ratios)[None, :])[..., None] * echoes


def _mix_echoes(fractions: np.ndarray, table: np.ndarray, ratio: np.ndarray | None,
                ratios: np.ndarray | None) -> np.ndarray:
    """Signal of one slice at each echo: (P, T) fractions x table -> (P, E) float32.

    With a B1+ ``ratio`` per pixel (P,) the (T, G, E) table is interpolated linearly between the
    ``ratios`` grid nodes: pixels are grouped by their lower node, one matrix product per node.
    """
    if ratio is None:
        return fractions @ table.astype(np.float32)
    step = ratios[1] - ratios[0]
    pos = np.clip((ratio - ratios[0]) / step, 0.0, len(ratios) - 1.0)
    lower = np.minimum(pos.astype(int), len(ratios) - 2)
    order = np.argsort(lower, kind="stable")          # pixels of one node contiguous
    bounds = np.searchsorted(lower[order], np.arange(len(ratios)))
    f = fractions[order]
    w = (pos - lower)[order].astype(np.float32)[:, None]
    tab = table.astype(np.float32)
    mixed = np.empty((fractions.shape[0], table.shape[-1]), dtype=np.float32)
    for g in range(len(ratios) - 1):
        a, b = bounds[g], bounds[g + 1]
        if b > a:
            mixed[a:b] = (f[a:b] * (1 - w[a:b])) @ tab[:, g] + (f[a:b] * w[a:b]) @ tab[:, g + 1]
    out = np.empty_like(mixed)
    out[order] = mixed
    return out


def _site_image(site: ClinicalSite, stack: np.ndarray, table: np.ndarray, b1: np.ndarray,
                shading: np.ndarray, grid: SiteGrid, ratios: np.ndarray | None) -> np.ndarray:
    """The noise-free complex image (S, H, m) of a clinical site.

    ``stack`` (S, T, H, m) placed tissue fractions (lipids already shifted), ``table`` from
    :func:`site_echo_table` ((T, G, E) with ``ratios``, else (T, E)), ``b1`` (S, H, m) transmit ratio,
    ``shading`` (S, H, m) complex: receive bias x background phase (x the sin^3 B1 factor when
    ``ratios`` is None). Phase-encode line ``k`` of the image is line ``k`` of the echo it was acquired
    at (:func:`echo_of_line`), lines outside the acquired ``grid.acquired`` zero: per echo, the
    tissue-mixed image is transformed along phase and its own lines kept. The coil sensitivities
    are applied afterwards to this image (they are smooth: the echo selection and the coil product
    nearly commute), so that ``coil image = S_c x`` stays the SENSE model exactly.
    """
    S, T, H, m = stack.shape
    lo = m // 2 - grid.acquired // 2
    lines = np.arange(lo, lo + grid.acquired)
    if "echo_train" in site.factors:
        echo = echo_of_line(grid.acquired, site.echo_train_length, site.centre_echo)
    else:
        echo = np.full(grid.acquired, site.centre_echo)
    used = np.unique(echo)
    table = table[..., used - 1]
    column = np.searchsorted(used, echo)             # index into ``used`` of each acquired line
    image = np.empty((S, H, m), dtype=np.complex64)
    for s in range(S):
        fractions = stack[s].reshape(T, H * m).T
        mixed = _mix_echoes(fractions, table, None if ratios is None else b1[s].reshape(-1), ratios)
        mixed = mixed.reshape(H, m, len(used)).transpose(2, 0, 1) * shading[s]      # (E, H, m) complex64
        if len(used) == 1 and grid.acquired == m:
            image[s] = mixed[0]
            continue
        spectrum = _centred_fft_cols(mixed)
        kept = np.zeros((H, m), dtype=np.complex64)
        kept[:, lines] = spectrum[column, :, lines].T
        image[s] = _centred_fft_cols(kept, inverse=True)
    return image


def noise_covariance(raw: np.ndarray, inside: np.ndarray, noise_std: float,
                     scale: float = NOISE_CORRELATION_SCALE) -> np.ndarray:
    """Receiver noise covariance (C, C) complex128 from the coils' raw sensitivities over the object.

    ``Psi = sigma^2 [(1 - scale) I + scale rho]``, ``rho_cd = <S_c, S_d> / (|S_c| |S_d|)`` the normalised
    overlap of the raw maps ``raw`` (S, C, H, W) over the ``inside`` (S, H, W) pixels. An
    approximation: noise correlation comes from the shared sample (Roemer PB et al. MRM 1990;16:192,
    the mutual noise resistance, an electric-field overlap), and the magnetic overlap of our loops
    overstates it (0.65-0.7 between neighbours in a ring, up to 0.9 across the two rings of the 3 T
    array); ``scale = 0.3`` puts nearest-neighbour noise correlations at about 0.2, within the 0.1-0.3
    of real head arrays (a calibration to that literature range, fixed before any reconstruction was
    run). Unit diagonal (x sigma^2), positive definite for ``scale < 1``.
    """
    maps = np.moveaxis(raw[:, :, ::2, ::2], 1, -1)[inside[:, ::2, ::2]].astype(np.complex128)   # (P, C)
    gram = maps.T @ maps.conj()
    norm = np.sqrt(np.real(np.diag(gram)))
    rho = gram / np.outer(norm, norm)
    return noise_std ** 2 * ((1.0 - scale) * np.eye(len(norm)) + scale * rho)


def site_noise_std(domain: "Domain") -> float:
    """Noise standard deviation of a clinical site with ``snr`` on: the voxel law, calibrated so that
    the reference site's reference tissue (in-vivo, nominal B1, centre echo) has RSS SNR
    ``snr_1p5T`` at 1.5 T."""
    ref = REFERENCE_SITE
    pd, t1, t2 = CLINICAL_TISSUES[domain.reference_tissue].at(1.5)
    signal = pd * (1.0 - np.exp(-ref.TR / t1)) * cpmg_echoes(t1, t2, ref.echo_spacing, ref.refocusing_deg,
                                                             ref.echo_train_length)[ref.centre_echo - 1]
    law = voxel_snr_factor(ref, 1.5) / voxel_snr_factor(domain.site, domain.field_strength_T)
    return float(signal / domain.snr_1p5T * law)


# --------------------------------------------------------------------------------------------------
# Domains
# --------------------------------------------------------------------------------------------------
def _brain_slices(rng, num_slices, size):
    from .phantoms.brain import brain_tissue_slices

    return brain_tissue_slices(rng, num_slices, size)


def _knee_slices(rng, num_slices, size):
    from .phantoms.knee import knee_tissue_slices  # written separately; imported only when used

    return knee_tissue_slices(rng, num_slices, size)


def _anatomy_constant(anatomy: str, name: str, default: float) -> float:
    """``phantoms.<anatomy>.<name>`` (the anatomy's own constant), or ``default`` where it defines none."""
    module = importlib.import_module(f".phantoms.{anatomy}", __package__)
    return float(getattr(module, name, default))


BRAIN_PROTOCOL = Protocol("AXT2", "TSE", TR=4500.0, TE=100.0, echo_train_length=16)
KNEE_PROTOCOL = Protocol("SAGPD", "TSE", TR=3000.0, TE=30.0, echo_train_length=8)

#: The other clinical brain contrasts at 1.5 T, each from the ranges of routine protocols (fastMRI's
#: brain labels AXT1, AXT2, AXFLAIR; Bitar et al., RadioGraphics 2006;26:513, and vendors' default
#: tables): a T1-weighted spin echo (TR 400-600 / TE 10-20), a proton-density TSE (TR 2500-3500 /
#: TE 15-30) and FLAIR, an inversion-recovery TSE whose TI nulls CSF (TI = T1 ln 2 for TR >> T1:
#: 2565 ms for CSF's 3700 ms at 1.5 T; TR 8000-10000 / TE 100-140).
BRAIN_T1_PROTOCOL = Protocol("AXT1", "SE", TR=500.0, TE=15.0)
BRAIN_PD_PROTOCOL = Protocol("AXPD", "TSE", TR=3000.0, TE=25.0, echo_train_length=8)
BRAIN_FLAIR_PROTOCOL = Protocol("AXFLAIR", "IR", TR=9000.0, TE=120.0, TI=2500.0, echo_train_length=16)


@dataclass(frozen=True)
class Randomisation:
    """Domain randomisation of the scanner (issue: pre-train on the inverse problem, not on one
    simulator): what each subject of a randomised domain draws, from its own random stream, before
    it is simulated. The ranges are clinical ones fixed before any network met the data:

    * ``protocols``: one, uniformly (the held-out contrast is simply left out);
    * ``snr_range``: the reference tissue's SNR at 1.5 T, log-uniform (the fixed scanner's 30 is its
      geometric middle: half to twice, as averages, slice thickness and bandwidth vary between sites);
    * ``coil_counts``: the receive array, 8 (one ring) or 16 elements (two rings), as the fixed domains;
    * ``receive_bias_range``: how much of the array's shading the site's prescan normalisation leaves.
    """

    protocols: tuple[Protocol, ...]
    snr_range: tuple[float, float] = (15.0, 60.0)
    coil_counts: tuple[int, ...] = (8, 16)
    receive_bias_range: tuple[float, float] = (0.2, 0.5)

    def __post_init__(self) -> None:
        if not self.protocols:
            raise ValueError("Randomisation needs at least one protocol")
        if not 0 < self.snr_range[0] <= self.snr_range[1]:
            raise ValueError(f"Randomisation.snr_range must be 0 < low <= high, got {self.snr_range!r}")
        if not self.coil_counts or min(self.coil_counts) < 1:
            raise ValueError(f"Randomisation.coil_counts must be positive counts, got {self.coil_counts!r}")
        if not 0 <= self.receive_bias_range[0] <= self.receive_bias_range[1] <= 1:
            raise ValueError(f"Randomisation.receive_bias_range must lie in [0, 1], got {self.receive_bias_range!r}")

    def draw(self, domain: "Domain", rng: np.random.Generator) -> "Domain":
        """The fixed scanner one subject of ``domain`` meets (its name kept: the same subject seeds)."""
        protocol = self.protocols[int(rng.integers(len(self.protocols)))]
        snr = float(np.exp(rng.uniform(np.log(self.snr_range[0]), np.log(self.snr_range[1]))))
        coils = int(self.coil_counts[int(rng.integers(len(self.coil_counts)))])
        bias = float(rng.uniform(*self.receive_bias_range))
        return dataclasses.replace(domain, protocol=protocol, snr_1p5T=snr, num_coils=coils,
                                   coil_rings=1 if coils <= 8 else 2, coil_height_mm=150.0 if coils <= 8 else 90.0,
                                   receive_bias=bias, randomisation=None)


@dataclass(frozen=True)
class Domain:
    """A synthetic scanner: anatomy + field + receive array + protocol + field imperfections.

    ``b1_centre`` / ``b1_edge``: nominal transmit ratio at the object's centre / at its reference
    ellipse (``object_radii_mm``, half-widths along rows and columns); ``b1_jitter`` the subject-to-
    subject spread. Each subject also gets a random linear tilt (std ``_B1_TILT_FRACTION`` of the
    centre-edge contrast per axis); the map is then softly limited to ``1 +- _b1_max_deviation(field)``
    (``_b1_saturate``: within about 0.7-1.3 at 3 T and 0.9-1.1 at 1.5 T). ``coil_*``: loop array
    geometry (mm); the cylinder axis is the slice normal for axial brain slices
    (``coil_axis="slice"``) and the image rows for the knee (``coil_axis="rows"``, the leg's long axis
    lies in coronal and sagittal planes). The loops sit close to the object, as in real receive
    arrays (elements ~10-25 mm from the scalp/skin): brain cylinder radius 110 mm around the
    95 x 75 mm head (15 mm gap at the anterior/posterior ends, 35 mm at the sides), knee 80 mm
    around the 70 x 60 mm knee (room for the slab's outer slices). Distant loops (the earlier
    135 / 105 mm) give nearly identical, slowly varying profiles across the phase-encode
    direction, so SENSE unfolding is ill-conditioned (analytic mean g at R = 4 of 3.1 brain /
    4.5 knee, max 8, for the true maps at 96 px); close loops give the
    measured range of real 8-channel arrays (mean ~1.9 brain / 2.4 knee, max ~4; 16 channels
    lower), while the rim-to-centre shading stays moderate. ``receive_bias``: exponent of the
    receive shading kept in the image (0: perfectly flattened, 1: raw array shading). ``site``: a
    :class:`ClinicalSite` whose protocol physics replaces the fixed protocol's (``None``: the
    fixed-protocol pipeline, unchanged).
    """

    name: str
    anatomy: str
    field_strength_T: float
    num_coils: int
    protocol: Protocol
    reference_tissue: str
    snr_1p5T: float
    b1_centre: float
    b1_edge: float
    object_radii_mm: tuple[float, float]
    coil_rings: int
    coil_radius_mm: float
    coil_height_mm: float
    coil_axis: str = "slice"
    slice_extent_mm: float = 90.0
    receive_bias: float = 0.35
    b1_jitter: float = 0.03
    param_jitter: float = 0.03
    description: str = ""
    site: ClinicalSite | None = None
    randomisation: Randomisation | None = None

    @property
    def tissue_slices(self) -> Callable[[np.random.Generator, int, int], dict[str, np.ndarray]]:
        if self.anatomy == "brain":
            return _brain_slices
        if self.anatomy == "knee":
            return _knee_slices
        raise ValueError(f"Domain {self.name!r}: unknown anatomy {self.anatomy!r}")

    @property
    def fov_mm(self) -> float:
        """Square reconstructed FOV (mm), defined by the anatomy module."""
        default = 256.0 if self.anatomy == "brain" else 160.0
        return _anatomy_constant(self.anatomy, "FOV_MM", default)

    @property
    def slice_thickness_mm(self) -> float:
        default = 5.0 if self.anatomy == "brain" else 3.0
        return _anatomy_constant(self.anatomy, "SLICE_THICKNESS_MM", default)

    @property
    def noise_std(self) -> float:
        """Complex noise standard deviation per coil and k-space sample (see the module docstring;
        a clinical site with ``snr`` on: :func:`site_noise_std`)."""
        if self.site is not None and "snr" in self.site.factors:
            return site_noise_std(self)
        ref = tissue_signal(self.reference_tissue, self.protocol, 1.5)
        return ref / self.snr_1p5T * (1.5 / self.field_strength_T)


def _brain(name: str, field_T: float, coils: int, b1_centre: float, b1_edge: float, description: str) -> Domain:
    return Domain(
        name=name, anatomy="brain", field_strength_T=field_T, num_coils=coils, protocol=BRAIN_PROTOCOL,
        reference_tissue="white_matter", snr_1p5T=30.0, b1_centre=b1_centre, b1_edge=b1_edge,
        object_radii_mm=(95.0, 75.0), coil_rings=1 if coils <= 8 else 2, coil_radius_mm=110.0,
        coil_height_mm=150.0 if coils <= 8 else 90.0, coil_axis="slice", slice_extent_mm=90.0,
        description=description,
    )


def _knee(name: str, field_T: float, coils: int, b1_centre: float, b1_edge: float, description: str) -> Domain:
    return Domain(
        name=name, anatomy="knee", field_strength_T=field_T, num_coils=coils, protocol=KNEE_PROTOCOL,
        reference_tissue="muscle", snr_1p5T=25.0, b1_centre=b1_centre, b1_edge=b1_edge,
        object_radii_mm=(70.0, 60.0), coil_rings=1 if coils <= 8 else 2, coil_radius_mm=80.0,
        coil_height_mm=160.0 if coils <= 8 else 90.0, coil_axis="rows", slice_extent_mm=100.0,
        description=description,
    )


def _clinical(name: str, field_T: float, coils: int, b1_centre: float, b1_edge: float, site: ClinicalSite,
              description: str) -> Domain:
    """A brain domain with a clinical site: the fixed-protocol scanner's array and B1+, the site's protocol."""
    return dataclasses.replace(_brain(name, field_T, coils, b1_centre, b1_edge, description),
                               protocol=site.protocol, site=site)


DOMAINS: dict[str, Domain] = {
    d.name: d for d in (
        _brain("brain-1.5T", 1.5, 8, 1.02, 0.95, "axial T2 TSE brain, 1.5 T, 8-channel head coil (source)"),
        _brain("brain-3T", 3.0, 16, 1.12, 0.78, "axial T2 TSE brain, 3 T, 16-channel head coil, other subjects"),
        _knee("knee-1.5T", 1.5, 8, 1.02, 0.96, "PD TSE knee, 1.5 T, 8-channel knee coil"),
        _knee("knee-3T", 3.0, 16, 1.08, 0.88, "PD TSE knee, 3 T, 16-channel knee coil"),
        _clinical("brain-1.5T-clinical", 1.5, 8, 1.02, 0.95, CLINICAL_1P5T,
                  "axial T2 TSE brain, 1.5 T hospital protocol (256x224, 240 mm, 5 mm, 130 Hz/px), 8 channels"),
        _clinical("brain-3T-clinical", 3.0, 16, 1.12, 0.78, CLINICAL_3T,
                  "axial T2 TSE brain, 3 T hospital protocol (448x320, 220 mm, 4 mm, 220 Hz/px, 140 deg), 16 channels"),
        dataclasses.replace(
            _brain("brain-mixed-1.5T", 1.5, 8, 1.02, 0.95, "axial brain, 1.5 T, each subject its own protocol "
                   "(T1 SE, PD TSE or T2 TSE), SNR (15-60), array (8 or 16) and shading: randomised pre-training"),
            randomisation=Randomisation((BRAIN_T1_PROTOCOL, BRAIN_PD_PROTOCOL, BRAIN_PROTOCOL))),
        dataclasses.replace(
            _brain("brain-flair-1.5T", 1.5, 8, 1.02, 0.95, "axial FLAIR brain, 1.5 T, 8 channels: the contrast "
                   "that neither pre-training sees"), protocol=BRAIN_FLAIR_PROTOCOL),
    )
}


def get_domain(name: str | Domain) -> Domain:
    """The registered :class:`Domain` called ``name`` (a :class:`Domain` is returned unchanged)."""
    if isinstance(name, Domain):
        return name
    if not isinstance(name, str):
        raise TypeError(f"domain must be a str or Domain, got {type(name).__name__}")
    try:
        return DOMAINS[name]
    except KeyError:
        raise ValueError(f"unknown domain {name!r}; known: {sorted(DOMAINS)}") from None


# --------------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------------
@dataclass
class SimulatedSubject:
    """One simulated subject (a "file"): fastMRI multi-coil raw data plus the ground truth behind it.

    Shapes: S slices, C coils, k-space ``(S, C, 2 size, size)`` (readout oversampled 2x along rows;
    for a clinical site ``size`` is its own matrix, :func:`site_grid`, and ``noise_covariance`` the
    receiver noise covariance (C, C) where correlated noise is on).
    ``image`` is the noise-free complex image (S, 2 size, size) with ``coil image_c = sens_maps_c *
    image``; ``b1_ratio`` the transmit ratio map and ``bias`` the receive shading kept in ``image``.
    ``fov_mm`` is the *reconstructed* FOV (readout, phase, slice thickness); the encoded readout FOV is
    twice the first entry.
    """

    kspace: np.ndarray
    sens_maps: np.ndarray
    domain: str
    field_strength_T: float
    patient_id: str
    fov_mm: tuple[float, float, float]
    protocol: dict
    noise_std: float
    subject_index: int
    seed: int
    image: np.ndarray
    b1_ratio: np.ndarray
    bias: np.ndarray
    fractions: dict[str, np.ndarray] = field(repr=False)
    tissue_params: dict[str, tuple[float, float, float]] = field(repr=False)
    noise_covariance: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_slices(self) -> int:
        return int(self.kspace.shape[0])

    @property
    def num_coils(self) -> int:
        return int(self.kspace.shape[1])


def subject_seed_sequence(domain: str, subject_index: int, seed: int = 0) -> np.random.SeedSequence:
    """The subject's seed: (dataset seed, CRC-32 of the domain name, subject index). CRC-32 is stable
    across processes (Python's ``hash`` of a str is salted), and naming the domain gives every domain
    its own subjects."""
    return np.random.SeedSequence([int(seed), zlib.crc32(domain.encode("utf-8")), int(subject_index)])


#: Threads of the k-space FFT (the one step numpy/scipy can spread over cores).
_FFT_WORKERS = max(1, min(2, os.cpu_count() or 1))


def _smooth_poly(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    """Random 2nd-order polynomial in normalised coordinates (u, v in about [-1, 1])."""
    c = rng.normal(0.0, scale, size=5)
    return c[0] * u + c[1] * v + c[2] * u * u + c[3] * v * v + c[4] * u * v


def simulate_subject(domain: str | Domain, subject_index: int, num_slices: int, size: int,
                     seed: int = 0) -> SimulatedSubject:
    """Simulate one subject of ``domain``: ``num_slices`` slices, ``size x size`` images.

    Deterministic in (domain name, subject_index, seed). See the module docstring for the physics.
    A domain with a clinical :class:`ClinicalSite` (``resolution`` on) returns the site's own matrix,
    :func:`site_grid` ``(domain, size).matrix`` (``size`` stands for the reference site's 256 readout
    samples: 224 for the 3 T site at size 128), over the site's FOV, k-space ``(S, C, 2 m, m)`` with the
    phase lines beyond the acquired matrix zero (signal and noise), and ``noise_covariance`` (C, C).
    """
    dom = get_domain(domain)
    for arg, value, low in (("subject_index", subject_index, 0), ("num_slices", num_slices, 1), ("size", size, 8)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{arg} must be an integer >= {low}, got {value!r}")
    if size % 2:
        raise ValueError(f"size must be even (centred FFT with a 2x readout), got {size!r}")
    if dom.randomisation is not None:   # the subject's scanner, from a fifth stream beside the four below
        draws = subject_seed_sequence(dom.name, int(subject_index), int(seed)).spawn(5)[4]
        dom = dom.randomisation.draw(dom, np.random.default_rng(draws))
    site = dom.site
    factors = site.factors if site is not None else frozenset()
    grid = site_grid(dom, int(size))
    S, n, C = int(num_slices), grid.matrix, dom.num_coils
    H = 2 * n
    ss = subject_seed_sequence(dom.name, int(subject_index), int(seed))
    rng_anatomy, rng_tissue, rng_fields, rng_noise = (np.random.default_rng(s) for s in ss.spawn(4))

    # 1. anatomy and contrast -------------------------------------------------------------------
    fractions = dom.tissue_slices(rng_anatomy, S, grid.render)
    table_of = CLINICAL_TISSUES if "relaxation" in factors else TISSUES
    unknown = sorted(set(fractions) - set(table_of))
    if unknown:
        raise ValueError(f"anatomy {dom.anatomy!r} returned unknown tissues {unknown}")
    names = sorted(fractions)
    tissue_params = {}
    signals = np.empty(len(names), dtype=np.float64)
    for i, t in enumerate(names):
        pd, t1, t2 = table_of[t].at(dom.field_strength_T)
        pd, t1, t2 = np.array([pd, t1, t2]) * (1.0 + dom.param_jitter * rng_tissue.standard_normal(3))
        tissue_params[t] = (float(pd), float(t1), float(t2))
        if site is None:
            signals[i] = dom.protocol.signal(pd, t1, t2, fat_like=t in _FAT_LIKE)
    stack = np.stack([fractions[t] for t in names], axis=1)                  # (S, T, R, R)
    if site is None:
        object_frac = stack.sum(axis=1)
        magnetisation = np.einsum("t,stij->sij", signals.astype(np.float32), stack)  # (S, n, n)
    else:
        stack = _place(stack, H, n)                                          # (S, T, H, n)
        object_frac = stack.sum(axis=1)
        fractions = {t: stack[:, i, n // 2: n // 2 + n].copy() for i, t in enumerate(names)}  # the recon FOV
        if "chemical_shift" in factors:  # lipids displaced along the readout (rows), in mm of the protocol
            shift_px = chemical_shift_mm(site, dom.field_strength_T) / (grid.fov_mm / n)
            for i, t in enumerate(names):
                if t in _LIPID_TISSUES:
                    stack[:, i] = _shift_rows(stack[:, i], shift_px)

    # physical coordinates of the (H, n) encoded grid, mm from the FOV centre
    fov = dom.fov_mm if site is None else grid.fov_mm
    pix = fov / n
    ys = (np.arange(H) - (H - 1) / 2) * pix                                   # rows (readout)
    xs = (np.arange(n) - (n - 1) / 2) * pix                                   # columns (phase encode)

    # 2. transmit field B1+ (smooth, per subject) ---------------------------------------------------
    ry, rx = dom.object_radii_mm
    v, u = ys[:, None] / ry, xs[None, :] / rx
    centre = dom.b1_centre * (1 + dom.b1_jitter * rng_fields.standard_normal())
    edge = dom.b1_edge * (1 + dom.b1_jitter * rng_fields.standard_normal())
    # left-right / anterior-posterior asymmetry (positioning, quadrature imbalance): a quarter of the
    # centre-edge contrast per axis, so the tilt stays a perturbation of the dielectric pattern.
    tilt = rng_fields.normal(0.0, _B1_TILT_FRACTION * abs(dom.b1_centre - dom.b1_edge) + 0.01, size=2)
    b1 = centre + (edge - centre) * (u * u + v * v) + tilt[0] * u + tilt[1] * v
    b1 = _b1_saturate(b1, dom.field_strength_T).astype(np.float32)          # (H, n)
    b1 = np.broadcast_to(b1, (S, H, n))

    # 3. receive coils: coarse Biot-Savart, interpolated; the cylinder is fixed, the object moves --
    # The fields are smooth: evaluate them on a coarse grid (<= 48 x 24) at <= 5 slice offsets and
    # interpolate linearly (in-plane and between slices).
    nc_r, nc_c = min(H, 48), min(n, 24)
    cy = (np.arange(nc_r) - (nc_r - 1) / 2) * (H * pix / nc_r)
    cx = (np.arange(nc_c) - (nc_c - 1) / 2) * (n * pix / nc_c)
    centre_offset = rng_fields.normal(0.0, 8.0)
    offsets = (np.linspace(-0.5, 0.5, S) if S > 1 else np.zeros(1)) * dom.slice_extent_mm + centre_offset
    n_z = min(S, 5)
    z_nodes = np.linspace(offsets[0], offsets[-1], n_z)
    gz, gy, gx = np.meshgrid(z_nodes, cy, cx, indexing="ij")
    if dom.coil_axis == "slice":      # axial: cylinder axis = slice normal
        pts = np.stack([gx, -gy, gz], axis=-1)
    else:                             # cylinder axis along the image rows; slice offset in-plane normal
        pts = np.stack([gx, gz, gy], axis=-1)
    rot = rng_fields.uniform(-np.pi / 16, np.pi / 16)                        # array rotation vs. anatomy
    cr, sr = np.cos(rot), np.sin(rot)
    pts = pts @ np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]]).T
    coil_phase = rng_fields.uniform(-np.pi, np.pi, size=C)
    coarse = coil_sensitivities(pts, C, dom.coil_rings, dom.coil_radius_mm, dom.coil_height_mm,
                                ring_gap=dom.coil_height_mm * 0.9, coil_phase=coil_phase)  # (C, Z, r, c)
    if n_z != S:
        mz = _linear_weights(offsets, z_nodes)
        coarse = np.einsum("sz,czrw->csrw", mz, coarse).astype(np.complex64)
    mr, mc = _interp_matrix(H, nc_r), _interp_matrix(n, nc_c)
    raw = _interpolate_maps(coarse, mr, mc)                                  # (S, C, H, n) complex64
    inside = np.zeros((S, H, n), dtype=bool)
    if site is None:
        inside[:, n // 2: n // 2 + n] = object_frac > 0.5
    else:
        inside = object_frac > 0.5
    psi = None
    if "noise_correlation" in factors:   # from the raw (unnormalised) maps, before they become sens
        psi = noise_covariance(raw, inside, dom.noise_std)
    rss = np.sqrt(np.sum(raw.real**2 + raw.imag**2, axis=1))                 # (S, H, n)
    sens = raw
    sens *= (1.0 / rss)[:, None]
    bias = (rss / max(float(rss[inside].mean()) if inside.any() else float(rss.mean()), 1e-12)) ** dom.receive_bias

    # 4. smooth background phase (per subject, plus a per-slice offset) -------------------------------
    uu, vv = xs[None, :] / (fov / 2), ys[:, None] / (fov / 2)
    phase = _smooth_poly(rng_fields, uu, vv, 0.6)[None] + rng_fields.uniform(-np.pi, np.pi, size=(S, 1, 1))

    # 5. image, coils, k-space, noise --------------------------------------------------------------
    if site is None:
        image = np.zeros((S, H, n), dtype=np.complex64)
        image[:, n // 2: n // 2 + n] = magnetisation
        image *= (b1_signal_factor(b1) * bias).astype(np.float32) * np.exp(1j * phase).astype(np.complex64)
    else:
        params = np.array([tissue_params[t] for t in names])
        fat_like = np.array([t in _FAT_LIKE for t in names])
        shading = np.exp(1j * phase).astype(np.complex64) * bias.astype(np.float32)
        if "b1_contrast" in factors:     # B1+ sets the refocusing angle: EPG on a grid of ratios
            w = _b1_max_deviation(dom.field_strength_T)
            ratios = np.linspace(1.0 - w, 1.0 + w, _B1_GRID_POINTS)
        else:                            # B1+ as shading only: the first-order sin^3 factor
            ratios = None
            shading = shading * b1_signal_factor(b1).astype(np.float32)
        table = site_echo_table(site, params, fat_like, ratios)
        image = _site_image(site, stack, table, b1, shading, grid, ratios)
    # centred FFT without shifts (H, n even): fft2c(x) = (-1)^((H+n)/2) c * fft2(c * x), with the
    # checkerboard c = (-1)^(row+col); the input factor is folded into the (coil-independent) image.
    checker = np.where((np.arange(H)[:, None] + np.arange(n)[None, :]) % 2, -1.0, 1.0).astype(np.float32)
    sign = -1.0 if ((H + n) // 2) % 2 else 1.0
    coil_images = sens * (image * (sign * checker))[:, None]
    # workers: pocketfft splits the batch of 1-D transforms between threads, each computed as with
    # one (bit-identical output); the rest of the pipeline is single-threaded numpy.
    kspace = scipy.fft.fft2(coil_images, norm="ortho", overwrite_x=True, workers=_FFT_WORKERS)
    kspace *= checker
    sigma = dom.noise_std
    # The noise is the C-order stream of standard_normal((S, C, H, n, 2), float32), drawn one slice at
    # a time into one buffer (the generator's state carries over: the same numbers), so neither it nor
    # the complex128 product below is a whole-subject array (their page faults cost more than the
    # arithmetic). The scale is a float64 scalar, so the product is complex128 and the sum is rounded
    # to complex64 once: the recorded data depend on exactly this arithmetic.
    scale = sigma / np.sqrt(2.0)
    noise = np.empty((C, H, n, 2), dtype=np.float32)
    noise_c = noise.view(np.complex64)[..., 0]
    # correlated receiver noise: L z with Psi = L L^H, on the same white stream z
    mix = None if psi is None else (np.linalg.cholesky(psi) * (scale / sigma)).astype(np.complex64)
    for sl in range(S):
        rng_noise.standard_normal(dtype=np.float32, out=noise)
        if mix is None:
            kspace[sl] += scale * noise_c
        else:
            kspace[sl] += (mix @ noise_c.reshape(C, -1)).reshape(C, H, n)
    if grid.acquired < n:                # lines beyond the acquired matrix: not acquired, zero-filled
        lo = n // 2 - grid.acquired // 2
        kspace[..., :lo] = 0
        kspace[..., lo + grid.acquired:] = 0

    if site is None:
        fov_mm = (float(fov), float(fov), float(dom.slice_thickness_mm))
        protocol = dom.protocol.to_dict()
    else:
        thickness = site.slice_thickness_mm if "resolution" in factors else dom.slice_thickness_mm
        fov_mm = (float(fov), float(fov), float(thickness))
        protocol = site.to_dict(dom.field_strength_T)
    return SimulatedSubject(
        kspace=kspace, sens_maps=sens, domain=dom.name, field_strength_T=float(dom.field_strength_T),
        patient_id=f"{dom.name}-s{int(seed)}-{int(subject_index):05d}",
        fov_mm=fov_mm, protocol=protocol, noise_std=float(sigma), subject_index=int(subject_index),
        seed=int(seed), image=image, b1_ratio=np.ascontiguousarray(b1), bias=bias.astype(np.float32),
        fractions=fractions, tissue_params=tissue_params, noise_covariance=psi,
    )
