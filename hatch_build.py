"""hatchling build hook: compile sfu/native's C modules (sfu/native/build.py) into the build.

An editable install (`scripts/install.sh`) compiles them in place; a wheel
(the container image) carries them and is tagged for this platform.  Without
a compiler nothing is compiled, a line says so, and the pure-Python paths run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class NativeBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        spec = importlib.util.spec_from_file_location(
            "_visitroom_native_build", root / "sfu/native/build.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        built = module.build_all(root / "sfu" / "native")
        if built and version != "editable":
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
            for path in built:
                build_data["force_include"][str(path)] = str(path.relative_to(root))
