"""Which tests run alone: the suite runs in two passes (scripts/test.sh),
`pytest -n 2 -m "not serial"` on both cores with pytest-xdist, then `pytest -m serial`
with nothing beside it. A test is serial when running it next to another test could
change its outcome: it shares something that exists once on the machine (the podman
image the session builds), or it measures time or media on a real network path where
a second busy core would be a different test (the network labs).

Mark a single test with `@pytest.mark.serial`; a whole file goes in SERIAL_FILES."""

from __future__ import annotations

import pytest

SERIAL_FILES = frozenset(
    {
        # podman: one `image` per session (scripts/image.sh builds one tag), containers
        "test_image.py",
        "test_deploy_pod.py",
        # network namespaces with a Chromium inside, media under a cap or a cut, timed
        "test_lab_icerestart.py",
        "test_lab_simulcast.py",
        "test_lab_turn.py",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SERIAL_FILES:
            item.add_marker(pytest.mark.serial)
