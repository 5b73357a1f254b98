"""seg_perception: semantic perception for ROS 2 robots, with a ROS-free core.

Importing the package is cheap and needs neither ROS nor the heavy optional engines.
"""
from __future__ import annotations

import pkgutil

# A colcon build installs the generated `seg_perception.msg` beside symlinks to these sources; a
# source checkout earlier on sys.path would otherwise hide it. Merge every `seg_perception` folder
# found on sys.path into this package.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = "0.1.0"
