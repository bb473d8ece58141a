"""mrtl: transfer learning for deep-learning MR reconstruction, the library behind the book."""
import os as _os

if _os.environ.get("MRTL_THREADS", "").strip():   # opt-in thread policy (mrtl_core.threads): lab kernels set it
    from .threads import apply_policy as _apply_policy

    _apply_policy()
