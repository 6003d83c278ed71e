"""Put this checkout's src/ first on sys.path, so jobs import the library the workflow was written for,
whether or not s3r is installed in the job's environment (conda envs hold only the dependencies), and
ahead of any other installed s3r."""

import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
if Path(SRC).is_dir():
    if SRC in sys.path:
        sys.path.remove(SRC)
    sys.path.insert(0, SRC)
