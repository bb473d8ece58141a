"""Extended phase graphs (EPG) of a CPMG echo train: the echoes of a turbo spin echo.

A turbo spin echo excites once (90 deg) and refocuses with a train of pulses of angle ``alpha``
spaced by the echo spacing. At ``alpha = 180`` deg every echo is a pure spin echo,
``exp(-n ESP / T2)``. Below 180 deg (SAR-reduced trains at 3 T, or a transmit field ``B1+`` below
nominal) part of the magnetisation is stored along z by one pulse and returned by a later one: the
stimulated echoes, which decay with T1 while stored, add to the spin echoes and make the echo
amplitudes depend on ``alpha``, T1 and T2 together. The EPG tracks those pathways exactly as
configuration states (Hennig J, J Magn Reson 1988;78:397-407; tutorial: Weigel M, JMRI
2015;41:266-295): transverse states ``F+_k``, ``F-_k`` and longitudinal states ``Z_k`` of dephasing
order ``k`` (the crusher/readout gradient area between pulses shifts ``k`` by one per half spacing).

Real CPMG form. The refocusing pulses rotate about the axis of the excited magnetisation (x), so
that ``F+_k`` and ``F-_k`` stay real and ``Z_k = i y_k`` with ``y_k`` real. Longitudinal regrowth
toward equilibrium during the train (``1 - exp(-ESP/T1)``, under 1 % per spacing for brain tissue)
is left out: it enters along z, is odd under the CPMG symmetry (x -> x, y -> -y, z -> -z with the
dephasing reversed) and so adds only to the signal in quadrature to the CPMG phase, never to the
CPMG-phase echo returned here (the test checks this against an isochromat simulation that includes
the regrowth).
"""
from __future__ import annotations

import numpy as np

__all__ = ["cpmg_echoes"]


def _relax(fp: np.ndarray, fm: np.ndarray, y: np.ndarray, e1: np.ndarray, e2: np.ndarray) -> None:
    """Decay over half an echo spacing (in place): transverse states by ``e2``, longitudinal by ``e1``."""
    fp *= e2
    fm *= e2
    y *= e1


def _dephase(fp: np.ndarray, fm: np.ndarray) -> None:
    """One unit of gradient dephasing (in place): ``F+_k -> F+_{k+1}``, ``F-_k -> F-_{k-1}``; the new
    ``F+_0`` is ``conj(F-_0)``, which is ``F-_1`` before the shift (real form: no conjugate)."""
    fp[..., 1:] = fp[..., :-1].copy()
    fm[..., :-1] = fm[..., 1:].copy()
    fm[..., -1] = 0.0
    fp[..., 0] = fm[..., 0]


def _refocus(fp: np.ndarray, fm: np.ndarray, y: np.ndarray, alpha: np.ndarray):
    """Rotation by ``alpha`` (rad, shape ``(*B, 1)``) about x of every state: the EPG transition matrix
    (Weigel 2015, eq. 15, phase 0) in the real form ``Z = i y``."""
    c2, s2 = np.cos(alpha / 2) ** 2, np.sin(alpha / 2) ** 2
    s, c = np.sin(alpha), np.cos(alpha)
    return (c2 * fp + s2 * fm + s * y,
            s2 * fp + c2 * fm - s * y,
            -0.5 * s * (fp - fm) + c * y)


def cpmg_echoes(t1, t2, echo_spacing: float, refocusing_deg, num_echoes: int) -> np.ndarray:
    """Echo amplitudes of a CPMG train after an ideal 90 deg excitation of unit magnetisation.

    Args:
        t1, t2: relaxation times (ms), arrays that broadcast with ``refocusing_deg`` to a batch shape B.
        echo_spacing: ESP (ms); echo ``n`` (1-based) is at ``n * ESP``.
        refocusing_deg: the refocusing flip angle(s) actually played (nominal angle x B1+ ratio).
        num_echoes: echo train length.

    Returns:
        ``(*B, num_echoes)`` float64: the CPMG-phase signal at each echo in units of the magnetisation
        excited (``exp(-n ESP / T2)`` at 180 deg; ``sin^2(alpha/2)`` for the first echo without
        relaxation).
    """
    t1, t2, alpha = np.broadcast_arrays(np.asarray(t1, dtype=np.float64), np.asarray(t2, dtype=np.float64),
                                        np.deg2rad(np.asarray(refocusing_deg, dtype=np.float64)))
    if int(num_echoes) != num_echoes or num_echoes < 1:
        raise ValueError(f"num_echoes must be a positive integer, got {num_echoes!r}")
    if not (echo_spacing > 0 and np.all(t1 > 0) and np.all(t2 > 0)):
        raise ValueError("echo_spacing, t1 and t2 must be positive")
    n = int(num_echoes)
    batch = t1.shape
    orders = 2 * n + 2                                   # one order per half spacing, and a spare
    fp = np.zeros(batch + (orders,))
    fm = np.zeros(batch + (orders,))
    y = np.zeros(batch + (orders,))
    fp[..., 0] = fm[..., 0] = 1.0                        # excited magnetisation along x
    e1 = np.exp(-0.5 * echo_spacing / t1)[..., None]
    e2 = np.exp(-0.5 * echo_spacing / t2)[..., None]
    a = alpha[..., None]
    echoes = np.empty(batch + (n,))
    for i in range(n):
        _relax(fp, fm, y, e1, e2)
        _dephase(fp, fm)
        fp, fm, y = _refocus(fp, fm, y, a)
        _relax(fp, fm, y, e1, e2)
        _dephase(fp, fm)
        echoes[..., i] = fp[..., 0]
    return echoes
