"""Knee anatomy for the synthetic knee scanners: a procedural 3-D joint sampled on sagittal planes.

The knee is a set of implicit (signed-distance-like, millimetre) functions of anatomical
coordinates ``x`` (medial -> lateral), ``y`` (posterior -> anterior) and ``z`` (inferior ->
superior), origin at the centre of the tibiofemoral joint line, evaluated on each slice's pixel grid
(vectorised float32 numpy, no 3-D volume). Profiles along z (bone calibres, muscle bellies, the limb
outline) are tabulated and Gaussian-rounded, so metaphyses flare smoothly into narrowing shafts and
outlines curve. Modelled structures:

* bones with a cortical shell around fatty marrow whose trabecular network partially replaces
  marrow by bone (plates and rods ~0.19 mm thick at ~0.65 mm spacing, Hildebrand et al., J Bone Miner
  Res 1999;14:1167, computed at 1/8 mm and averaged over the voxel, with mm-scale density patches:
  a mottled partial-volume texture at 1.25 mm pixels, not pixel noise): distal femur (shaft,
  metaphysis, medial and lateral condyles, trochlea with its groove, intercondylar notch under
  Blumensaat's line), tibia (sloped plateau, medial concave / lateral convex, tibial spines,
  tubercle, shaft), patella (with its pointed lower pole) and fibular head and shaft;
* hyaline cartilage on the femoral condyles and trochlea, the tibial plateaux and the patella;
* wedge-shaped medial and lateral menisci (C-shaped in 3-D: two triangles - anterior and posterior
  horns - in central sagittal slices, a bow-tie body in peripheral ones), optionally torn;
* ligaments and tendons: ACL, PCL, MCL, LCL, patellar and quadriceps tendons, iliotibial band,
  biceps femoris and semimembranosus tendons; a thin deep fascia;
* synovial fluid: a film in the tibiofemoral and patellofemoral joints, a suprapatellar recess of
  random size (effusion), optionally a Baker's (popliteal) cyst;
* muscles (quadriceps heads, hamstrings, sartorius, gastrocnemius heads, popliteus, soleus,
  tibialis anterior) with fat septa between them and fatty marbling; popliteal artery (flow void)
  and vein; Hoffa's, prefemoral and popliteal fat; subcutaneous fat and skin.

Subjects differ (all from ``rng``) by size and per-axis scale, bone proportions (condyle radii and
anterior reach, shaft calibre, flare height, femoral bow), flexion (0-20 deg), position and in-plane
tilt in the FOV, posterior tibial slope (5-10 deg), patellar height, joint space, cartilage
thickness (and focal defects), meniscus size, effusion, subcutaneous fat (BMI), thigh and calf bulk,
muscle bulk, a smooth elastic warp and the slice positions, which spread medial -> lateral through
the whole joint (or lateral -> medial for a "left" knee).

Output: :func:`knee_tissue_slices` -> ``{tissue: (num_slices, size, size) float32}`` partial-volume
fractions in [0, 1] summing to <= 1 per pixel (the rest is air, or a flow void). Display: sagittal,
rows superior -> inferior, columns anterior -> posterior (anterior on the left, as radiologists
view sagittal knees). The limb's outline tapers (thigh above, popliteal fossa, calf below) and
follows the flexed femur; above and below, the fractions fade to zero over ``FADE_WIDTH_MM`` from
``FADE_START_MM`` (a dome-shaped edge), standing in for the fall-off of a knee coil's sensitivity
and the slab at its ends, so the object stays within the central 90 % of a ``FOV_MM`` square field
of view without a hard cut.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from scipy import ndimage

__all__ = ["FOV_MM", "SLICE_THICKNESS_MM", "TISSUES", "knee_tissue_slices", "knee_subject"]

FOV_MM = 160.0            # square field of view of the sagittal slices
SLICE_THICKNESS_MM = 3.0  # nominal, as fastMRI's sagittal/coronal PD knees
TISSUES = ("marrow", "cortical_bone", "cartilage", "meniscus", "fluid", "muscle", "fat", "skin", "tendon")

_F32 = np.float32
FADE_START_MM = 54.0   # |z| (from the FOV centre) where the coil/slab taper of the signal begins ...
FADE_WIDTH_MM = 12.0   # ... and its width (zero by 71 mm, inside the 160 mm FOV)


# ----------------------------------------------------------------------------- implicit-shape helpers
def _inside(d: np.ndarray, pix: float) -> np.ndarray:
    """Occupancy of a pixel by the region ``d < 0``: a linear ramp one pixel wide (the exact area
    fraction for a straight edge along the grid)."""
    return np.clip(_F32(0.5) - d * _F32(1.0 / pix), 0.0, 1.0)


def _smin(a, b, k):
    """Smooth union (polynomial smooth minimum) of two distances, blending over ``k`` mm."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _smax(a, b, k):
    """Smooth intersection."""
    return -_smin(-a, -b, k)


def _ellipsoid(p, c, r):
    """Approximate signed distance to an ellipsoid (centre ``c``, semi-axes ``r``; r may be arrays)."""
    u = (p[0] - c[0]) / r[0]
    v = (p[1] - c[1]) / r[1]
    w = (p[2] - c[2]) / r[2]
    k0 = np.sqrt(u * u + v * v + w * w)
    k1 = np.sqrt((u / r[0]) ** 2 + (v / r[1]) ** 2 + (w / r[2]) ** 2)
    return k0 * (k0 - 1.0) / (k1 + 1e-6)


def _ellipse(a, b, ca, cb, ra, rb):
    """Approximate signed distance to an ellipse in the (a, b) plane."""
    u = (a - ca) / ra
    v = (b - cb) / rb
    k0 = np.sqrt(u * u + v * v)
    k1 = np.sqrt((u / ra) ** 2 + (v / rb) ** 2)
    return k0 * (k0 - 1.0) / (k1 + 1e-6)


_ZSTEP = 0.2                                  # mm: resolution of the tabulated z-profiles
_ZGRID = np.arange(-300.0, 300.0 + _ZSTEP, _ZSTEP)


class _Pts(tuple):
    """Coordinates (x, y, z) of a slice's pixels, with ``zi``: z quantised to ``_ZSTEP`` as indices into
    ``_ZGRID``, so that a profile along z costs one table look-up instead of an ``np.interp``."""

    @classmethod
    def make(cls, x, y, z, zi=None):
        p = cls((x, y, z))
        if zi is None:
            zi = np.clip(np.rint((z + _F32(300.0)) * _F32(1.0 / _ZSTEP)), 0, len(_ZGRID) - 1).astype(np.intp)
        p.zi = zi
        return p


_TABLES: dict = {}      # per-call cache of smoothed z-profiles (cleared by knee_tissue_slices)
_ZCOARSE = np.arange(-300.0, 301.0, 1.0)


def _table(zk, v, sm):
    """A z-profile tabulated on ``_ZGRID``: piecewise-linear through the knots, then smoothed with a
    Gaussian of ``sm`` mm (so bone flares, muscle bellies and the limb outline curve, no kinks)."""
    key = (tuple(zk), tuple(float(a) for a in v), sm)
    t = _TABLES.get(key)
    if t is None:
        c = np.interp(_ZCOARSE, zk, v)
        if sm > 0:
            c = ndimage.gaussian_filter1d(c, sm, mode="nearest")
        t = np.interp(_ZGRID, _ZCOARSE, c).astype(_F32)
        _TABLES[key] = t
    return t


def _interp(p, zk, v, sm=6.0):
    """Smooth profile v(z) (knots ``zk``, Gaussian-rounded over ``sm`` mm) at the points ``p``."""
    t = _table(zk, v, sm)
    if isinstance(p, _Pts):
        return t[p.zi]
    return np.interp(p[2], _ZGRID, t).astype(_F32)


def _gcyl(p, zk, xc, yc, ax, ay, sm=6.0):
    """Generalised elliptic cylinder along z: centre and semi-axes smoothly interpolated from knots ``zk``."""
    return _ellipse(p[0], p[1], _interp(p, zk, xc, sm), _interp(p, zk, yc, sm), _interp(p, zk, ax, sm),
                    _interp(p, zk, ay, sm))


def _rbox(p, zk, xc, yc, ax, ay, rf=0.55, sm=6.0):
    """Generalised rounded-rectangle cylinder along z (an axial section like a distal femur's)."""
    ax, ay = _interp(p, zk, ax, sm), _interp(p, zk, ay, sm)
    r = _F32(rf) * np.minimum(ax, ay)
    qx = np.abs(p[0] - _interp(p, zk, xc, sm)) - ax + r
    qy = np.abs(p[1] - _interp(p, zk, yc, sm)) - ay + r
    out = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    return out + np.minimum(np.maximum(qx, qy), 0.0) - r


def _seg(p, a, b, dims=(0, 1, 2)):
    """Distance to the segment a-b, measured in the coordinate axes ``dims``."""
    ba = [b[i] - a[i] for i in dims]
    pa = [p[i] - a[i] for i in dims]
    bb = sum(v * v for v in ba)
    h = np.clip(sum(q * v for q, v in zip(pa, ba)) / bb, 0.0, 1.0)
    return np.sqrt(sum((q - v * h) ** 2 for q, v in zip(pa, ba)))


def _polyline(p, pts, dims=(0, 1, 2)):
    d = _seg(p, pts[0], pts[1], dims)
    for a, b in zip(pts[1:-1], pts[2:]):
        d = np.minimum(d, _seg(p, a, b, dims))
    return d


def _bezier(p0, p1, p2, n=6):
    t = np.linspace(0.0, 1.0, n + 1)[:, None]
    pts = (1 - t) ** 2 * np.asarray(p0) + 2 * t * (1 - t) * np.asarray(p1) + t * t * np.asarray(p2)
    return [tuple(q) for q in pts]


def _rot_x(theta):
    """Rotation in the (y, z) plane by ``theta`` (radians); positive turns superior -> posterior."""
    c, s = math.cos(theta), math.sin(theta)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rotation(ax_deg, ay_deg, az_deg):
    a, b, g = np.deg2rad([ax_deg, ay_deg, az_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(g), -np.sin(g), 0], [np.sin(g), np.cos(g), 0], [0, 0, 1]])
    return rz @ ry @ rx


# ----------------------------------------------------------------------------- one subject's anatomy
class _Knee:
    """One subject: random parameters drawn once, then implicit functions evaluated per slice."""

    def __init__(self, rng: np.random.Generator):
        u = rng.uniform
        # global pose and size
        s = u(0.92, 1.06)
        self.scale = s * u(0.96, 1.04, size=3)                      # x, y, z
        self.rot = _rotation(u(-8, 8), u(-3, 3), u(-7, 7))          # in-plane tilt, varus/valgus, int/ext rot
        self.shift = np.array([0.0, u(-9, -1), u(-8, 8)])         # anatomy at the FOV centre
        self.flex = math.radians(u(0.0, 20.0))
        # smooth elastic warp: a few random low-frequency sinusoids (mm)
        k = 4
        dirs = rng.standard_normal((k, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        self.warp_w = (2 * np.pi / u(90, 200, size=(k, 1))) * dirs
        self.warp_phase = u(0, 2 * np.pi, size=k)
        self.warp_amp = rng.normal(0.0, 0.9, size=(k, 3))
        # joint
        self.js = u(0.3, 1.6)                                       # joint space between cartilage surfaces
        self.cf, self.ct, self.cp = u(1.8, 2.8), u(1.5, 2.5), u(2.6, 4.0)   # cartilage thickness
        self.zfb = self.js / 2 + self.cf                              # femoral subchondral bone, lowest point
        self.ztb = -(self.js / 2 + self.ct)                           # tibial subchondral bone at the contact
        self.rm, self.rl = 22.0 * u(0.92, 1.08), 20.5 * u(0.92, 1.08)  # medial / lateral condyle radius
        self.fant = u(19.0, 23.0)                                     # anterior (distal-facet) reach of the condyles
        self.ycc = -8.0 + u(-2, 2)                                    # condyle centre (A-P)
        self.cond_w = 14.0 * u(0.9, 1.1)
        self.cond_x = 21.0 * u(0.93, 1.07)
        self.notch_w = 9.5 * u(0.85, 1.15)
        self.roof_slope = math.tan(math.radians(u(33, 42)))
        self.groove = u(3.5, 6.5)
        self.tib_w = 38.0 * u(0.93, 1.07)
        self.tib_d = 24.0 * u(0.93, 1.07)
        self.slope = math.tan(math.radians(u(5, 10)))     # posterior tibial slope
        self.spine = u(4.0, 7.5)
        self.pat_r = np.array([22.0, 11.0, 20.0]) * u(0.9, 1.1, size=3)
        self.pat_dz = u(-6, 7)                                       # patella baja / alta
        self.pat_tilt = math.radians(u(-6, 6))
        self.defect = None
        if u() < 0.3:                                                 # focal cartilage defect
            self.defect = (u(-30, 30), u(-25, 15), u(2.0, 5.0))
        self.men = u(0.85, 1.15)
        self.men_tear = u() < 0.2
        self.eff = rng.beta(1.3, 3.0)                                 # effusion 0..1
        self.baker = u(0, 1) if u() < 0.2 else None
        self.fat = u(3.0, 13.0)                                       # subcutaneous fat (BMI)
        self.mb = u(0.85, 1.15)                                       # muscle bulk
        self.bvf = u(0.15, 0.28)                                      # epiphyseal trabecular BV/TV
        self.marble = u(0.05, 0.25)                                   # fatty infiltration of muscle
        self.thigh = u(0.0, 6.0)                                      # thigh bulk above the knee (mm)
        self.calf = u(0.0, 6.0)                                       # calf bulk below it (mm)
        self.shaft = u(0.9, 1.1)                                      # femoral / tibial shaft calibre
        self.bow = u(0.0, 6.0)                                        # anterior bow of the femoral shaft (mm at 10 cm)
        self.flare = u(0.85, 1.15)                                    # height of the metaphyseal flares
        self._derived()

    # fixed-in-subject derived geometry ---------------------------------------------------------
    def _derived(self):
        # metaphyses flaring smoothly into narrower shafts: a Lorentzian-like decay of the semi-axes
        # from the epiphysis (condyles / plateau) to the diaphysis, tabulated as knots every 4 mm
        fl, sh = self.flare, self.shaft
        zf = np.arange(8.0, 300.0, 4.0)
        tf = 1.0 / (1.0 + (np.maximum(zf - 26.0, 0.0) / (20.0 * fl)) ** 2)
        self.fem_prof = (zf.tolist(), [0.0] * len(zf),
                         (-4.0 + 6.0 * (1.0 - tf) + self.bow * ((zf - 30.0).clip(0) / 100.0) ** 2).tolist(),
                         (15.0 * sh + (39.0 - 15.0 * sh) * tf).tolist(), (13.5 * sh + (19.0 - 13.5 * sh) * tf).tolist())
        zt = np.arange(-300.0, 12.0, 4.0)
        tt = 1.0 / (1.0 + (np.maximum(-zt - 6.0, 0.0) / (22.0 * fl)) ** 2)
        w, dp = self.tib_w, self.tib_d
        self.tib_prof = (zt.tolist(), (2.0 * (1.0 - tt)).tolist(), [-1.0] * len(zt),
                         (11.5 * sh + (w - 11.5 * sh) * tt).tolist(), (12.5 * sh + (dp - 12.5 * sh) * tt).tolist())
        self.C = np.array([0.0, self.ycc, self.zfb + self.rm])        # flexion centre (medial condyle)
        self.Rf = _rot_x(self.flex)                                   # femur frame -> tibia frame
        # patella: in the tibia frame, resting on the trochlea
        ry = self.pat_r[1]
        zp = 36.0 + self.pat_dz - 12.0 * self.flex
        # rest the patella on the trochlea: find the femur's anterior surface at the patella's height
        ys = np.linspace(0.0, 45.0, 181)
        front = 0.0
        for xq in (-6.0, 3.0, 12.0):
            pt = np.stack([np.full_like(ys, xq), ys, np.full_like(ys, zp)])
            pf = self.Rf.T @ (pt - self.C[:, None]) + self.C[:, None]
            d, _ = self.femur(tuple(pf))
            front = max(front, float(ys[d < 0].max()) if (d < 0).any() else 0.0)
        self.pat_c = np.array([3.0, front + self.cf + self.cp + 0.6 + ry, zp])
        ypc, zpc, rz = self.pat_c[1], self.pat_c[2], self.pat_r[2]
        self.pat_lo = (0.0, ypc + 1.0, zpc - rz + 3.0)
        self.pat_hi = (0.0, ypc - 2.0, zpc + rz - 3.0)
        self.tub = (0.0, 28.0, -24.0)

    def to_tibia(self, pf):
        """Femur-frame point -> tibia frame (flexion about the condyle centre)."""
        return tuple(self.Rf @ (np.asarray(pf, float) - self.C) + self.C)

    # coordinates ---------------------------------------------------------------------------
    def coords(self, x0, yy, zz):
        """Anatomical (tibia-frame) and femur-frame coordinates of a sagittal plane at ``x0`` mm."""
        pts = [np.full_like(yy, x0), yy, zz]
        R = self.rot
        p = [sum(_F32(R[i, j]) * pts[j] for j in range(3)) / _F32(self.scale[i]) + _F32(self.shift[i])
             for i in range(3)]
        arg = [sum(_F32(self.warp_w[k, j]) * p[j] for j in range(3)) + _F32(self.warp_phase[k])
               for k in range(len(self.warp_phase))]
        sins = [np.sin(a) for a in arg]
        p = [p[i] + sum(_F32(self.warp_amp[k, i]) * sins[k] for k in range(len(sins))) for i in range(3)]
        Ri = self.Rf.T                                                # tibia -> femur frame
        c = self.C
        pf = [p[0], _F32(Ri[1, 1]) * (p[1] - c[1]) + _F32(Ri[1, 2]) * (p[2] - c[2]) + _F32(c[1]),
              _F32(Ri[2, 1]) * (p[1] - c[1]) + _F32(Ri[2, 2]) * (p[2] - c[2]) + _F32(c[2])]
        return _Pts.make(*p), _Pts.make(*pf)

    # bones -----------------------------------------------------------------------------------
    def femur(self, q):
        x, y, z = q
        zfb = self.zfb
        d = None
        for xc, r in ((-self.cond_x, self.rm), (self.cond_x, self.rl)):
            zc = zfb + r
            circ = np.sqrt((y - self.ycc) ** 2 + (z - zc) ** 2) - r
            ant = _ellipse(y, z, 8.0, zc + 3.0, self.fant, r - 3.0)
            prof = _smin(circ, ant, 6.0)
            dc = _smax(prof, np.abs(x - xc) - self.cond_w, 5.0)
            d = dc if d is None else np.minimum(d, dc)
        groove = -self.groove * np.exp(-((x - 1.0) / 9.0) ** 2) + 1.5 * np.clip(x / 20.0, -1, 1)
        tro = _ellipse(y, z, 6.0 + groove, zfb + self.rm + 4.0, self.fant - 2.0, 20.0)
        tro = _smax(tro, np.abs(x - 1.0) - 31.0, 6.0)
        meta = _rbox(q, *self.fem_prof, 0.7, 3.0)
        meta = _smax(meta, 14.0 - z, 5.0)
        d = _smin(_smin(d, tro, 5.0), meta, 7.0)
        notch = self.notch(q)
        return _smax(d, -notch, 2.0), notch

    def notch(self, q):
        x, y, z = q
        zroof = self.zfb + 8.0 + (6.0 - y) * self.roof_slope
        return _smax(np.abs(x - 0.5) - self.notch_w, z - zroof, 3.0)

    def tib_top(self, q):
        x, y, _ = q
        dy = (y + 1.0) / 22.0                                        # about the plateau's AP centre
        med = 1.0 / (1.0 + np.exp(x / 3.0))                          # 1 medially, 0 laterally
        top = self.ztb + self.slope * (y - self.ycc) + dy * dy * (1.3 * med - 0.9 * (1.0 - med))
        ey = np.exp(-(y / 9.0) ** 2)
        top = top + self.spine * ey * (np.exp(-((x + 4.5) / 3.2) ** 2) + 0.8 * np.exp(-((x - 4.5) / 3.2) ** 2))
        return top

    def tibia(self, q):
        x, y, z = q
        cyl = _rbox(q, *self.tib_prof, 0.8, 3.0)
        tub = _ellipsoid(q, (4.0, 22.0, -25.0), (11.0, 7.0, 13.0))
        cyl = _smin(cyl, tub, 5.0)
        top = self.tib_top(q)
        return _smax(cyl, z - top, 4.0), cyl, top

    def fibula(self, q):
        head = _ellipsoid(q, (31.0, -20.0, -17.0), (9.0, 9.5, 9.0))
        tip = _ellipsoid(q, (33.0, -23.0, -9.0), (4.0, 4.0, 6.0))
        shaft = _smax(_ellipse(q[0], q[1], 31.5, -20.0, 6.0, 6.0), q[2] + 16.0, 3.0)
        return _smin(_smin(head, tip, 3.0), shaft, 6.0)

    def patella(self, q):
        c, r = self.pat_c, self.pat_r
        x, y, z = q
        ct, st = math.cos(self.pat_tilt), math.sin(self.pat_tilt)
        yl, zl = ct * (y - c[1]) - st * (z - c[2]), st * (y - c[1]) + ct * (z - c[2])
        ry = r[1] * (1.0 - 0.38 * np.clip(-zl / r[2], 0.0, 1.0) ** 1.5)   # pointed inferior pole
        ryy = ry * np.where(yl > 0, _F32(0.85), _F32(1.15))         # flatter anterior, deeper articular face
        return _ellipsoid((x - c[0], yl, zl), (0.0, 0.0, 0.0), (r[0], ryy, r[2])), yl, zl

    # soft tissue ----------------------------------------------------------------------------
    def deep(self, q):
        """Deep fascia (the limb without subcutaneous fat) in the tibia frame: a knee narrowest at the
        popliteal fossa, the thigh widening above (quadriceps, hamstrings) and the calf bulging
        posteriorly below (gastrocnemius), with the shin's thin cover over the tibia."""
        c = self.pat_c
        ry, rz = self.pat_r[1], self.pat_r[2]
        zp, yp = c[2], c[1]
        th, ca = self.thigh, self.calf
        zk = [-250.0, -110.0, -70.0, -35.0, -10.0, zp - rz - 4.0, zp, zp + rz + 6.0, 85.0, 140.0, 250.0]
        ya = [15.0, 17.0, 19.0, 27.0, 31.0, yp + 5.0, yp + ry + 1.2, yp + 3.0 + 0.3 * th, yp + 4.0 + th,
              yp + 8.0 + 1.5 * th, yp + 10.0 + 1.5 * th]
        yq = np.array([-50.0 - 0.5 * ca, -60.0 - ca, -60.0 - ca, -57.0 - 0.6 * ca, -50.0, -47.0, -48.0,
                       -53.0 - 0.7 * th, -58.0 - th, -62.0 - 1.2 * th, -64.0 - 1.2 * th])
        yq = -8.0 + (yq + 8.0) * self.mb
        ya = np.asarray(ya)
        axk = np.array([34.0, 40.0, 42.0, 44.0, 47.0, 49.0, 50.0, 51.0, 53.0 + th, 58.0 + th, 60.0 + th])
        axk = axk * (0.6 + 0.4 * self.mb)
        yc = (ya + yq) / 2.0
        ay = (ya - yq) / 2.0
        return (_gcyl(q, zk, [-2.0] * len(zk), yc.tolist(), axk.tolist(), ay.tolist(), 12.0),
                _interp(q, zk, yc, 12.0), _interp(q, zk, ay, 12.0))


# ----------------------------------------------------------------------------- muscles
# (frame, z knots, x centre, y centre, x semi-axis, y semi-axis, z low, z high)
_MUSCLES = (
    ("p", [0, 20, 60], [0, 0, 0], [24, 25, 26], [27, 29, 30], [8, 9, 11], 16, 200),              # vastus intermedius
    ("p", [30, 200], [3, 3], [40, 42], [16, 16], [8, 9], 48, 200),                                 # rectus femoris
    ("p", [-30, 0, 200], [-32, -31, -30], [8, 10, 10], [15, 17, 17], [19, 24, 24], -8, 200),       # vastus medialis
    ("p", [0, 200], [33, 33], [6, 4], [14, 15], [20, 22], 14, 200),                                # vastus lateralis
    ("f", [20, 60, 200], [-27, -27, -25], [-38, -42, -42], [13, 16, 17], [13, 17, 18], 22, 200),   # semimembranosus
    ("f", [30, 60, 200], [31, 30, 28], [-36, -39, -40], [13, 15, 16], [13, 16, 17], 30, 200),      # biceps femoris
    ("f", [-20, 200], [-44, -42], [-22, -24], [8, 8], [9, 10], -200, 200),                         # sartorius
    ("t", [-200, -30, 0, 20, 42], [-14, -15, -19, -21, -22], [-47, -46, -43, -39, -30],
     [23, 22, 17, 14, 8], [19, 18, 14, 10, 5], -200, 44),                                           # gastrocnemius, medial
    ("t", [-200, -30, 0, 20, 38], [13, 14, 18, 21, 23], [-46, -45, -42, -38, -30],
     [19, 18, 15, 12, 7], [17, 16, 12, 9, 5], -200, 38),                                            # gastrocnemius, lateral
    ("t", [-200, -30], [3, 3], [-29, -27], [28, 25], [9, 7], -200, -26),                           # soleus
    ("t", [-200, -20], [19, 18], [6, 6], [9, 8], [11, 10], -200, -18),                             # tibialis anterior
    ("t", [-200, -30], [33, 33], [-6, -6], [8, 7], [8, 7], -200, -28),                             # extensor digitorum / peronei
)


def _muscle_d(m, p, pf, mb, ztop):
    frame, zk, xc, yc, ax, ay, zlo, zhi = m
    q = p if frame == "t" else pf
    if frame == "p":                    # quadriceps: heights relative to the patella's upper pole
        q = _Pts.make(q[0], q[1], q[2] - _F32(ztop), np.clip(q.zi - int(round(ztop / _ZSTEP)), 0, len(_ZGRID) - 1))
    d = _gcyl(q, zk, xc, yc, [a * mb for a in ax], [a * mb for a in ay])
    cap = np.maximum(zlo - q[2], q[2] - zhi)
    return _smax(d, cap, 8.0)


# ----------------------------------------------------------------------------- textures
TRABECULAR_SPACING_MM = 0.65   # Tb.Sp of the distal femur / proximal tibia (Hildebrand et al. 1999)
TRABECULAR_THICKNESS_MM = 0.19


@functools.lru_cache(maxsize=8)
def _trabecular_tile(size: int) -> np.ndarray:
    """A periodic tile (96 mm square, at the pixel size of a ``size`` matrix) of trabecular bone volume
    fraction, mean 1: a 2-D section of plates and rods, computed at 1/8 mm and averaged over each voxel.

    The network is the zero set of band-limited Gaussian noise (wavelength twice
    ``TRABECULAR_SPACING_MM``), thickened to walls about ``TRABECULAR_THICKNESS_MM`` thick, whose
    thickness (local BV/TV) is modulated by a smooth field with a ~1-2 mm correlation length (real
    cancellous bone is denser and sparser in patches). Averaged over a 1.25 mm voxel, the plates give a
    mottled partial-volume texture, not pixel noise. Fixed seed: one tile per size, reused by every
    subject at random offsets and orientations (``_trabecular_slice``)."""
    from scipy import fft as sfft

    pix = FOV_MM / size
    f = max(1, int(round(pix / 0.125)))
    h = pix / f
    m = max(8, int(round(96.0 / pix)))
    n = m * f
    rng = np.random.default_rng(20250101)
    ky = np.fft.fftfreq(n, h)[:, None].astype(_F32)
    kx = np.fft.rfftfreq(n, h)[None, :].astype(_F32)
    kr = np.sqrt(kx * kx + ky * ky)
    k0 = 1.0 / (2.0 * TRABECULAR_SPACING_MM)
    ring = np.exp(-0.5 * ((kr - k0) / (0.35 * k0)) ** 2)
    g = sfft.irfft2(sfft.rfft2(rng.standard_normal((n, n), dtype=_F32)) * ring, s=(n, n))
    g *= 1.0 / g.std()
    low = np.exp(-0.5 * (kr * (2 * np.pi * 0.9)) ** 2)                     # ~0.9 mm Gaussian smoothing
    mod = sfft.irfft2(sfft.rfft2(rng.standard_normal((n, n), dtype=_F32)) * low, s=(n, n))
    mod *= 1.0 / mod.std()
    # wall half-thickness in units of g: |grad g| ~ 2 pi / wavelength / sqrt(2)
    w0 = 0.5 * TRABECULAR_THICKNESS_MM * (2 * np.pi * k0) / math.sqrt(2.0)
    bone = (np.abs(g) < w0 * np.exp(0.55 * mod)).astype(_F32)
    a = bone.reshape(m, f, m, f).mean(axis=(1, 3))
    return (a / a.mean()).astype(_F32)


def _trabecular_slice(rng: np.random.Generator, size: int) -> np.ndarray:
    """The trabecular tile laid over one slice at a random offset, flip and transpose."""
    tile = _trabecular_tile(size)
    m = tile.shape[0]
    oy, ox, fl = rng.integers(0, m), rng.integers(0, m), rng.integers(0, 8)
    if fl & 4:
        tile = tile.T
    iy = (oy + np.arange(size)) % m
    ix = (ox + np.arange(size)) % m
    if fl & 1:
        iy = iy[::-1]
    if fl & 2:
        ix = ix[::-1]
    return tile[np.ix_(iy, ix)]


def _striation(noise: np.ndarray, pix: float) -> np.ndarray:
    """Fatty streaks along the muscle fibres (mostly superior-inferior): anisotropic smoothing."""
    g = ndimage.gaussian_filter(noise, (max(0.6, 5.0 / pix), max(0.4, 0.6 / pix)))
    g *= 1.0 / (g.std() + 1e-6)
    return np.clip(g - 0.8, 0.0, 1.5) / 1.5


# ----------------------------------------------------------------------------- one slice
def _render(k: _Knee, x0: float, yy, zz, pix: float, noise_t, noise_m, fade, out: dict, s: int):
    p, pf = k.coords(x0, yy, zz)
    xmin, xmax = float(p[0].min()), float(p[0].max())

    def near(lo, hi):                 # does the slice reach the x-range [lo, hi] of a structure?
        return lo - 4.0 < xmax and hi + 4.0 > xmin
    acc = {t: np.zeros_like(yy) for t in TISSUES}
    half = _F32(0.5 * FOV_MM)

    # the limb's envelope follows the tibia below the joint and the (flexed) femur above it
    wf = np.clip((p[2] + 10.0) * _F32(1.0 / 50.0), 0.0, 1.0)
    wf = wf * wf * (3.0 - 2.0 * wf)
    pe = _Pts.make(p[0], p[1] + wf * (pf[1] - p[1]), p[2] + wf * (pf[2] - p[2]))
    d_deep, yc_deep, ay_deep = k.deep(pe)
    # bones (computed first: the deep fascia always wraps them, at least ~3 mm out)
    d_fem, notch = k.femur(pf)
    d_tib, tib_cyl, tib_top = k.tibia(p)
    d_fib = k.fibula(p) if near(20.0, 45.0) else np.full_like(yy, 100.0)
    d_pat, pyl, pzl = k.patella(p)
    d_deep = _smin(d_deep, np.minimum.reduce([d_fem, d_tib, d_fib, d_pat]) - 3.0, 4.0)
    post = np.clip(0.5 - 0.7 * (p[1] - yc_deep) / ay_deep, 0.0, 1.0)   # 0 anterior .. 1 posterior
    fat_t = k.fat * (0.3 + 0.45 * post) + 0.3 * k.fat * np.clip(-p[0] / 45.0, 0.0, 1.0)
    d_env = d_deep - fat_t - 1.6                                     # skin 1.6 mm
    box = np.abs(yy) - _F32(0.86 * half)              # (a guard: the coil's former compresses a large limb)
    d_env = _smax(d_env, box, 3.0)
    remain = _inside(d_env, pix)

    def put(name, occ, frac=1.0):
        nonlocal remain
        f = remain * occ
        if name is not None:
            acc[name] += f if frac == 1.0 else f * _F32(frac)
        remain = remain - f

    put("skin", 1.0 - _inside(d_env + 1.6, pix))
    put("fat", 1.0 - _inside(_smax(d_deep, box + 3.0, 8.0), pix))
    put("tendon", _inside(np.abs(d_deep + 0.4) - 0.4, pix) * _F32(0.35))   # deep fascia line

    # bones ---------------------------------------------------------------------------------
    t_fem = 1.4 + 3.0 * np.clip((pf[2] - 45.0) / 30.0, 0.0, 1.0)
    t_tib = 1.3 + 3.0 * np.clip((-p[2] - 35.0) / 30.0, 0.0, 1.0)
    outer = np.maximum.reduce([_inside(d_fem, pix), _inside(d_tib, pix), _inside(d_fib, pix), _inside(d_pat, pix)])
    inner = np.maximum.reduce([_inside(d_fem + t_fem, pix), _inside(d_tib + t_tib, pix),
                               _inside(d_fib + 1.3, pix), _inside(d_pat + 1.3, pix)])
    # trabecular density: dense in the epiphyses, sparse (fatty) in the shafts
    bvf = k.bvf * (0.3 + 0.7 * np.exp(-(p[2] / 38.0) ** 2))
    trab = np.clip(bvf * (0.45 + 0.55 * noise_t), 0.0, 0.85)
    marrow = inner * (1.0 - trab)
    acc["marrow"] += remain * marrow
    acc["cortical_bone"] += remain * (outer - marrow)
    remain = remain * (1.0 - outer)

    # cartilage ----------------------------------------------------------------------------
    # articular surfaces only: condyles (not their outer flanks), trochlea; never the notch walls
    side = np.minimum(np.abs(pf[0] - k.cond_x), np.abs(pf[0] + k.cond_x)) - (k.cond_w - 1.5)
    side = np.minimum(side, np.maximum(np.abs(pf[0] - 1.0) - 27.0, 6.0 - pf[1]))
    zone_f = _inside(pf[2] - 42.0, pix) * (1.0 - _inside(notch + 1.0, pix)) * _inside(side, pix)
    c_f = _inside(d_fem - k.cf, pix) * zone_f
    zone_t = _inside(tib_top - 2.5 - p[2], pix) * _inside(tib_cyl + 2.0, pix) * (1.0 - _inside(np.abs(p[0]) - 7.5, pix))
    c_t = _inside(d_tib - k.ct, pix) * zone_t
    zone_p = _inside(pyl + 3.0, pix) * _inside(-(pzl + 0.62 * k.pat_r[2]), pix)
    c_p = _inside(d_pat - k.cp * (1.0 - 0.35 * np.clip(np.abs(p[0] - k.pat_c[0]) / k.pat_r[0], 0, 1)), pix) * zone_p
    cart = np.maximum.reduce([c_f, c_t, c_p])
    if k.defect is not None:
        dx, dy, r = k.defect
        cart = cart * (1.0 - 0.8 * _inside(np.sqrt((pf[0] - dx) ** 2 + (pf[1] - dy) ** 2) - r, pix))
    put("cartilage", cart)

    # menisci: wedges in a C-shaped ring between condyle and plateau ----------------------------
    d_fc = d_fem - k.cf
    men = np.zeros_like(yy)
    tear = None
    for xc, ax, ay, rin_a, rin_p in ((-k.cond_x - 1.0, 15.5, 23.0, 0.60, 0.45), (k.cond_x + 1.0, 14.5, 18.0, 0.55, 0.55)):
        if abs(x0 / k.scale[0] - xc) > ax + 12.0:
            continue
        u = (p[0] - xc) / (ax * k.men)
        v = (p[1] - k.ycc - 2.0) / (ay * k.men)
        rho = np.sqrt(u * u + v * v)
        rin = rin_a + (rin_p - rin_a) * np.clip(0.5 - v, 0.0, 1.0)
        sc = 0.5 * (ax + ay) * k.men
        zb = tib_top + k.ct
        h = 7.5 * k.men * np.clip((rho - rin) / (1.0 - rin), 0.0, 1.0) + 0.3
        dm = np.maximum.reduce([(rin - rho) * sc, (rho - 1.0) * sc, zb - p[2], (p[2] - zb - h) * 0.8, -d_fc + 0.3])
        men = np.maximum(men, _inside(dm, pix))
        if k.men_tear and xc < 0:
            tear = _inside(np.abs(p[2] - zb - 0.45 * h) - 0.45, pix) * _inside(v + 0.2, pix) * _inside(dm - 0.6, pix)
    if tear is not None:
        men = men * (1.0 - tear)
    put("meniscus", men)

    # ligaments and tendons ------------------------------------------------------------------
    tf = k.to_tibia
    pl = _F32(k.pat_c[0])
    ten = []
    if near(-2.0, 13.0):
        ten.append(_seg(p, tf((8.0, -17.0, 24.0)), (1.0, 7.0, -1.0)) - 4.3)                 # ACL
    if near(-10.0, 4.0):
        ten.append(_polyline(p, _bezier(tf((-4.0, 1.0, 17.0)), tf((-3.0, -21.0, 21.0)), (-1.0, -21.0, -10.0))) - 5.0)  # PCL
    if xmin < -26.0:                                                                         # MCL on the medial bones
        d_med = np.minimum(d_fem, d_tib)
        mcl_y = _interp(p, [-60.0, 0.0, 40.0], [4.0, -1.0, -4.0])
        ten.append(_smax(np.abs(d_med - 2.2) - 1.3,
                         np.maximum.reduce([np.abs(p[1] - mcl_y) - 8.0, p[0] + 28.0, np.abs(p[2] + 10.0) - 45.0]), 2.0))
    if near(34.0, 44.0):
        ten.append(_seg(p, tf((41.5, -4.0, 22.0)), (36.5, -17.0, -14.0)) - 2.5)              # LCL
        ten.append(_seg(p, tf((37.0, -33.0, 28.0)), (35.0, -22.0, -12.0)) - 3.0)             # biceps tendon
    if near(-33.0, -26.0):
        ten.append(_seg(p, tf((-30.0, -32.0, 18.0)), (-29.0, -17.0, -8.0)) - 2.8)            # semimembranosus
    if near(28.0, 47.0):
        ten.append(_smax(_seg(p, tf((46.0, 2.0, 70.0)), (29.0, 12.0, -10.0), (0, 2)) - 1.1,
                         np.abs(p[1] - 6.0) - 6.0, 2.0))                                         # iliotibial band
    if near(k.pat_c[0] - 17.0, k.pat_c[0] + 17.0):
        pt = _seg(p, k.pat_lo, k.tub, (1, 2)) - (2.3 + 0.6 * np.clip((k.pat_lo[2] - p[2]) / 40.0, 0, 1))
        ten.append(_smax(pt, np.abs(p[0] - pl) - 15.0, 3.0))                                    # patellar tendon
        qt = _seg(p, k.pat_hi, tf((0.0, k.pat_c[1] - 6.0, k.pat_c[2] + 80.0)), (1, 2)) - 3.6
        ten.append(_smax(qt, np.abs(p[0] - pl) - 17.0, 3.0))                                    # quadriceps tendon
    if ten:
        put("tendon", _inside(np.minimum.reduce(ten), pix))

    # fluid -------------------------------------------------------------------------------
    g = k.js / 2 + k.ct + 0.8 + 1.5 * k.eff
    fl = [_smax(d_fem - g, d_tib - g, 1.0), _smax(d_fem - k.cf - 1.2 - k.eff, d_pat - k.cp - 1.2 - k.eff, 1.0)]
    th = 0.8 + 6.5 * k.eff
    zr = 14.0 + 22.0 * k.eff
    fl.append(_ellipsoid(pf, (0.0, 19.5 + th, k.pat_c[2] + k.pat_r[2] + zr - 12.0), (27.0, th, zr)))   # suprapatellar
    if k.baker is not None:
        b = k.baker
        fl.append(_ellipsoid(p, (-22.0, -44.0, 6.0), (7.0 + 5 * b, 5.0 + 7 * b, 10.0 + 12 * b)))
    occ = _inside(np.minimum.reduce(fl), pix)
    if tear is not None:
        occ = np.maximum(occ, tear)
    put("fluid", occ)

    # popliteal vessels: artery = flow void, vein = slow-flow bright ----------------------------
    art = [tf((2.0, -33.0, 90.0)), tf((2.0, -34.0, 30.0)), (1.0, -33.0, -5.0), (-1.0, -31.0, -90.0)]
    put(None, _inside(_polyline(p, art) - 3.2, pix))
    vein = [(a[0] + 4.0, a[1] - 5.0, a[2]) for a in art]
    put("fluid", _inside(_polyline(p, vein) - 3.6, pix), 0.5)

    # muscles with fat septa (the boundaries between neighbouring muscles) and fatty marbling -----
    ds = [_muscle_d(m, p, pf, k.mb, k.pat_c[2] + k.pat_r[2]) for m in _MUSCLES
          if min(m[2]) - max(m[4]) * k.mb - 4.0 < xmax and max(m[2]) + max(m[4]) * k.mb + 4.0 > xmin]
    ds.append(_smax(_seg(p, tf((30.0, -28.0, 6.0)), (-16.0, -27.0, -38.0)) - 6.0, -d_tib - 1.0, 2.0))   # popliteus
    D = np.stack(ds)
    two = np.partition(D, 1, axis=0)
    d1, d2 = two[0], two[1]
    mus = _inside(d1, pix) * (1.0 - _inside(np.abs(d2 - d1) - 0.7, pix) * _inside(d2 - 0.5, pix))
    mus = mus * (1.0 - k.marble * noise_m)
    put("muscle", mus)
    put("fat", 1.0)                                                  # Hoffa's, prefemoral, popliteal, septa

    for t in TISSUES:
        out[t][s] = acc[t] * fade


def knee_subject(rng: np.random.Generator) -> dict[str, float]:
    """The parameters :func:`knee_tissue_slices` draws for the subject of ``rng`` (the same first draws):
    pose and a few anatomical ones, to check the images against (tests, galleries).

    Returns ``{"scale", "tilt_deg" (in-plane rotation of the leg in the FOV, + turns superior ->
    posterior), "flexion_deg", "tibial_slope_deg", "effusion" (0-1), "fat_mm", "cartilage_femur_mm",
    "cartilage_tibia_mm", "cartilage_patella_mm"}``.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    k = _Knee(rng)
    return {"scale": float(np.mean(k.scale)),
            "tilt_deg": float(np.degrees(np.arctan2(k.rot[2, 1], k.rot[1, 1]))),
            "flexion_deg": float(np.degrees(k.flex)), "tibial_slope_deg": float(np.degrees(np.arctan(k.slope))),
            "effusion": float(k.eff), "fat_mm": float(k.fat), "cartilage_femur_mm": float(k.cf),
            "cartilage_tibia_mm": float(k.ct), "cartilage_patella_mm": float(k.cp)}


def knee_tissue_slices(rng: np.random.Generator, num_slices: int, size: int) -> dict[str, np.ndarray]:
    """Sagittal slices through one random knee, medial -> lateral (or the reverse for a "left" knee).

    Args:
        rng: the subject's random generator (all variation comes from it).
        num_slices: number of slices S, spread evenly through the joint at subject-specific positions.
        size: matrix size N (the FOV is ``FOV_MM`` square).

    Returns:
        ``{tissue: (S, N, N) float32}`` partial-volume fractions in [0, 1], summing to <= 1 per pixel,
        for the tissues in :data:`TISSUES`. Rows run superior -> inferior, columns anterior -> posterior.
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if isinstance(num_slices, bool) or not isinstance(num_slices, (int, np.integer)) or num_slices < 1:
        raise ValueError(f"num_slices must be a positive integer, got {num_slices!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"size must be an integer >= 16, got {size!r}")
    num_slices, size = int(num_slices), int(size)
    k = _Knee(rng)
    # slice positions: the whole joint, bone edge to bone edge plus a margin of soft tissue
    lo, hi = -rng.uniform(30.0, 35.0), rng.uniform(29.0, 34.0)
    if num_slices == 1:
        xs = np.array([rng.uniform(lo, hi)])
    else:
        xs = np.linspace(lo, hi, num_slices) + rng.uniform(-2.0, 2.0)
    xs = xs * k.scale[0]
    if rng.random() < 0.5:                                          # a "left" knee: lateral -> medial
        xs = xs[::-1]
    pix = FOV_MM / size
    c = (np.arange(size, dtype=_F32) - _F32(size / 2 - 0.5)) * _F32(pix)
    zz, yy = np.meshgrid(-c, -c, indexing="ij")                     # rows: superior first; cols: anterior first
    out = {t: np.zeros((num_slices, size, size), _F32) for t in TISSUES}
    # the receive coil's sensitivity and the slab end the limb above and below: a smooth (smoothstep) taper
    # of the signal over ~12 mm, its edge a dome (further out near the skin, where the coil's
    # conductors are), zero before the outer 10 % of the field of view
    edge = _F32(FADE_START_MM) + _F32(5.0) * np.minimum((yy / _F32(65.0)) ** 2, 1.0)
    t = np.clip((np.abs(zz) - edge) * _F32(1.0 / FADE_WIDTH_MM), 0.0, 1.0)
    fade = (_F32(1.0) - t * t * (_F32(3.0) - _F32(2.0) * t)).astype(_F32)
    _TABLES.clear()
    for s, x0 in enumerate(xs):
        noise_t = _trabecular_slice(rng, size)
        noise_m = _striation(rng.standard_normal((size, size), dtype=_F32), pix)
        _render(k, float(x0), yy, zz, pix, noise_t, noise_m, fade, out, s)
    return out
