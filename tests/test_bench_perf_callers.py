"""bench/perf_callers.py: libpython samples are charged to the compiled function or the
interpreter that called into CPython."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from perf_callers import INTERPRETED, caller, named_caller, parse, report

SCRIPT = """\
python 11259    1001001
\t          1a9c6d PyType_HasFeature (inlined)
\t          1a9c6d PyLong_AsLongLongAndOverflow (/usr/lib/libpython3.11.so.1.0)
\t            2f10 as_ll (inlined)
\t            2f10 forward_memo (/w/sfu/native/_fanout.cpython-311-x86_64-linux-gnu.so)
\t            3a00 fanout_fanout (/w/sfu/native/_fanout.cpython-311-x86_64-linux-gnu.so)
\t          101a0a _PyEval_EvalFrameDefault (/usr/lib/libpython3.11.so.1.0)

python 11259    1001001
\t          100a03 _PyEval_EvalFrameDefault (/usr/lib/libpython3.11.so.1.0)
\t          10fbfa __pyx_f_6uvloop_4loop_6Handle__run (/v/uvloop/loop.so)

python 11259    1001001
\t          199a0d _Py_dict_lookup (/usr/lib/libpython3.11.so.1.0)
\t          199a0d PyObject_GetAttr (/usr/lib/libpython3.11.so.1.0)
\t          101a0a _PyEval_EvalFrameDefault (/usr/lib/libpython3.11.so.1.0)
\t            4e18 ingress_dispatch (/w/sfu/native/_ingress.cpython-311-x86_64-linux-gnu.so)

python 11259    1001001
\t ffffffff820555b7 __ip_make_skb ([kernel.kallsyms])
\t            3086 batch_flush_n (/w/sfu/native/_fanout.cpython-311-x86_64-linux-gnu.so)
"""


def test_libpython_time_goes_to_the_compiled_caller_or_the_interpreter() -> None:
    samples = parse(SCRIPT.splitlines())
    assert len(samples) == 4
    # the inlined frames take the library of the function they are inlined into
    assert samples[0][0] == ("PyType_HasFeature", "/usr/lib/libpython3.11.so.1.0")
    assert samples[0][2][1].endswith("_fanout.cpython-311-x86_64-linux-gnu.so")
    assert caller(samples[0]) == "_fanout:as_ll"
    assert named_caller(samples[0]) == "_fanout:forward_memo"  # past the helper
    assert caller(samples[1]) == INTERPRETED
    assert caller(samples[2]) == INTERPRETED  # Python code ran under the compiled loop
    text = report(samples, 5)
    assert "50.0%  libpython" not in text
    assert "75.0%  libpython" in text and "25.0%  kernel" in text
    assert "25.0%  _fanout:forward_memo" in text
