"""Environment variables for DDS processes that mean the same on every supported distro.

Two settings changed name between ROS 2 releases, and each release reads only its own name:

- localhost-only discovery: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` from Iron on (Jazzy still reads
  the old name, with a deprecation warning); Humble's rcl knows only ``ROS_LOCALHOST_ONLY=1``.
- the Fast DDS XML profile file: Fast DDS 3 (Kilted) reads ``FASTDDS_DEFAULT_PROFILES_FILE``, Fast DDS 2.x
  (Humble 2.6, Jazzy 2.14) reads ``FASTRTPS_DEFAULT_PROFILES_FILE``.

No ROS imports: tools use this to build the environment of the processes they start.
"""
from __future__ import annotations

import os
from typing import Mapping, MutableMapping, Optional

PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def localhost_only(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The variable that keeps discovery on this machine, for the distro in ``environ`` (``ROS_DISTRO``,
    set by a sourced ROS 2 installation; without it, as from the PyPI wheels, the current name)."""
    if environ.get("ROS_DISTRO") == "humble":
        return {"ROS_LOCALHOST_ONLY": "1"}
    return {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def set_profile(env: MutableMapping[str, str], profile: Optional[str]) -> MutableMapping[str, str]:
    """Point both Fast DDS profile variables at ``profile``, or remove both when it is None / empty
    (a stale file under the other name would otherwise still be read by that Fast DDS version)."""
    for key in PROFILE_VARIABLES:
        if profile:
            env[key] = str(profile)
        else:
            env.pop(key, None)
    return env


def profile_of(environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """The profile file the user set under either name (Fast DDS 3's name first), or None."""
    return next((environ[k] for k in PROFILE_VARIABLES if environ.get(k)), None)
