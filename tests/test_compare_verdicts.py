"""``benchmarks/compare_verdicts.py``: two books agree when their prose agrees with the numbers masked."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import compare_verdicts as cv  # noqa: E402

PAGE = """<html><body><nav>menu 1 2 3</nav><article>
<h1>Results</h1><p>The U-Net is {verdict} zero-filled (foreground SSIM {m}, 95 % CI {lo} to {hi}).</p>
<div class="cell_input"><pre>x = {code}</pre></div>
<table><tr><td>{m}</td><td>{word}</td></tr></table>
<p>At N = 5 the best is <em>{best}</em>, closing {share} % of the gap.</p></article></body></html>"""


def _book(root: Path, **kw) -> Path:
    values = {"verdict": "better than", "m": "+0.287", "lo": "+0.281", "hi": "+0.293", "code": "1",
              "word": "a", "best": "l2sp", "share": "52", **kw}
    (root / "notebooks").mkdir(parents=True)
    (root / "notebooks" / "08_results.html").write_text(PAGE.format(**values), encoding="utf-8")
    return root


def test_numbers_code_and_tables_do_not_count_words_do(tmp_path, capsys):
    before = _book(tmp_path / "a")
    same = _book(tmp_path / "b", m="+0.301", lo="−0.002", hi="+0.6e-3", code="2", word="b", share="49")
    assert cv.compare(before, same, ["08"]) == {}
    assert cv.main([str(before), str(same), "--pages", "08"]) == 0
    assert "page 08: 2 sentences, the same words" in capsys.readouterr().out
    moved = _book(tmp_path / "c", verdict="not clearly different from", best="lp-ft")
    diff = cv.compare(before, moved, ["08"])["08"]
    assert any(line.startswith("-") and "better than" in line for line in diff)
    assert any(line.startswith("+") and "lp-ft" in line for line in diff)
    assert cv.main([str(before), str(moved), "--pages", "08"]) == 1
    assert cv.compare(before, moved, ["05"]) == {"05": ["missing in before: notebooks/05*.html"]}


def test_numbers_are_masked_in_every_notation():
    assert cv.sentences("<article><p>SSIM 0.941, −0.031 and +1.5e-3 dB over 4 subjects (40 slices).</p></article>") == \
        ["SSIM #, # and # dB over # subjects (# slices)."]
